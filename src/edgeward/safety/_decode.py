"""Find and decode payloads hidden in a text: base64, base32, hex, URL-encoding, rot13,
reversed text, Morse code, pig latin, leetspeak, spaced letters.

Each decoder is cheap and conservative: a candidate counts only if it decodes to readable text
(printable UTF-8 with letters and spaces, or, for rot13, more common English words than the
text itself has). The decoded texts are checked like the text itself, so "aG93IHRvIG1ha2Ug..."
is judged by what it says.
"""

from __future__ import annotations

import base64
import binascii
import codecs
import functools
import re
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from edgeward.safety._scan import Scan, register, word_hash
from edgeward.safety._segment import segment, word_costs

__all__ = ["Payload", "decode_payloads"]

_HEX = re.compile(r"(?:(?:0x|\\x)?[0-9A-Fa-f]{2}[\s,:]?){8,}")
_HEX_SEP = re.compile(r"0x|\\x|[\s,:]")
_LEET_HINT = re.compile(r"[a-z][013457@$|]+[a-z]")
_LEET_TOKEN = re.compile(r"(?<![\w@$])(?=[\w@$|]*[A-Za-z])(?=[\w@$|]*[013457@$|])[\w@$|]{2,}")
_LEET_INNER = re.compile(r"[A-Za-z][013457@$|]+[A-Za-z]|^[013457@$|]+[A-Za-z]{2}")
_LEET = str.maketrans({"0": "o", "1": "i", "3": "e", "4": "a", "5": "s", "7": "t", "8": "b",
                       "9": "g", "@": "a", "$": "s", "|": "l"})
_SPACED = re.compile(r"(?<![A-Za-z])(?:[A-Za-z][ .\-_*]){3,}[A-Za-z](?![A-Za-z])")
_SPACED_SEP = re.compile(r"[ .\-_*]")
_MAX_PAYLOADS = 4
_MIN_READABLE = 0.85

# The most frequent English words: rot13 text turns into these when decoded.
_COMMON = frozenset([
    "the", "be", "to", "of", "and", "a", "in", "that", "have", "i", "it", "for", "not", "on",
    "with", "he", "as", "you", "do", "at", "this", "but", "his", "by", "from", "they", "we", "say",
    "her", "she", "or", "an", "will", "my", "one", "all", "would", "there", "their", "what", "so",
    "up", "out", "if", "about", "who", "get", "which", "go", "me", "when", "make", "can", "like",
    "time", "no", "just", "him", "know", "take", "people", "into", "year", "your", "good", "some",
    "could", "them", "see", "other", "than", "then", "now", "look", "only", "come", "its", "over",
    "think", "also", "back", "after", "use", "two", "how", "our", "work", "first", "well", "way",
    "even", "new", "want", "because", "any", "these", "give", "day", "most", "us", "is", "are",
    "was", "were", "been", "has", "had", "did", "does", "how", "why", "where", "tell", "write",
    "explain", "steps", "step", "instructions", "make", "build", "create", "kill", "bomb", "weapon",
    "drug", "hack", "steal", "money", "guide", "help", "please", "ignore", "previous",
    "instructions"
])
_COMMON_H = frozenset(word_hash(w) for w in _COMMON)
_ROT_H = frozenset(word_hash(codecs.encode(w, "rot13")) for w in _COMMON) - _COMMON_H
_REV_H = frozenset(word_hash(w[::-1]) for w in _COMMON if len(w) > 1) - _COMMON_H
register(_COMMON_H | _ROT_H | _REV_H)

_URL_ESCAPE = re.compile(r"%[0-9a-f]{2}")
_BASE32 = re.compile(r"[a-z2-7]{16,}=*")
_MORSE = re.compile(r"[.\-]{1,7}(?:(?: {1,3}| ?/ ?)[.\-]{1,7}){5,}")
_MORSE_CODE = {
    ".-": "a", "-...": "b", "-.-.": "c", "-..": "d", ".": "e", "..-.": "f", "--.": "g",
    "....": "h", "..": "i", ".---": "j", "-.-": "k", ".-..": "l", "--": "m", "-.": "n",
    "---": "o", ".--.": "p", "--.-": "q", ".-.": "r", "...": "s", "-": "t", "..-": "u",
    "...-": "v", ".--": "w", "-..-": "x", "-.--": "y", "--..": "z", "-----": "0",
    ".----": "1", "..---": "2", "...--": "3", "....-": "4", ".....": "5", "-....": "6",
    "--...": "7", "---..": "8", "----.": "9", ".-.-.-": ".", "--..--": ",", "..--..": "?"}
_PIG = re.compile(r"\b[a-z]+(?:ay|way|yay)\b")
_WORD_RE = re.compile(r"[a-z]+")
_VOWELS = frozenset("aeiou")


@dataclass(frozen=True)
class Payload:
    """A decoded hidden payload.

    Attributes:
        encoding: ``base64``, ``base32``, ``hex``, ``url``, ``rot13``, ``reversed``, ``morse``,
            ``pig_latin``, ``leet``, ``spaced`` or ``unicode_tags``.
        text: the decoded text.
    """

    encoding: str
    text: str


def _readable(raw: bytes) -> str | None:
    try:
        s = raw.decode("utf-8")
    except UnicodeDecodeError:
        return None
    if len(s) < 4:
        return None
    printable = sum(ch.isprintable() or ch in "\n\t\r" for ch in s)
    letters = sum(ch.isalpha() for ch in s)
    if printable / len(s) < _MIN_READABLE or letters / len(s) < 0.5 or " " not in s.strip():
        return None
    return s


def _runs(mask: npt.NDArray[np.bool_], min_len: int) -> list[tuple[int, int]]:
    edges = np.flatnonzero(np.diff(np.concatenate([[False], mask, [False]]).astype(np.int8)))
    starts, ends = edges[0::2], edges[1::2]
    keep = ends - starts >= min_len
    return list(zip(starts[keep].tolist(), ends[keep].tolist(), strict=True))


def _base64(scan: Scan) -> list[Payload]:
    c = scan.codes
    mask = ((c >= 97) & (c <= 122)) | ((c >= 48) & (c <= 57)) | (c == 43) | (c == 47) \
        | (c == 61) | (c == 95) | (c == 45)  # + / = _ -
    found = []
    for a, b in _runs(mask, 16):
        token = scan.text[a:b].rstrip("=")
        if token.isalpha() and (token.islower() or token.isupper() or token.istitle()):
            continue  # an ordinary long word
        token += "=" * (-len(token) % 4)
        found += _decoded("base64", functools.partial(
            base64.b64decode, token.replace("-", "+").replace("_", "/"), validate=True))
    return found


def _decoded(encoding: str, decode: Callable[[], bytes]) -> list[Payload]:
    """The payload ``decode()`` yields, if it decodes at all and to readable text."""
    try:
        raw = decode()
    except (binascii.Error, ValueError):
        return []
    text = _readable(raw)
    return [] if text is None else [Payload(encoding, text)]


def _hex(scan: Scan) -> list[Payload]:
    c = scan.codes
    mask = ((c >= 97) & (c <= 102)) | ((c >= 48) & (c <= 57)) | (c == 32) | (c == 44) \
        | (c == 58) | (c == 120) | (c == 92)  # space , : x \\
    found = []
    for a, b in _runs(mask, 16):
        for m in _HEX.finditer(scan.text, a, b):
            digits = _HEX_SEP.sub("", m.group())
            try:
                raw = bytes.fromhex(digits[:len(digits) // 2 * 2])
            except ValueError:
                continue
            decoded = _readable(raw)
            if decoded is not None:
                found.append(Payload("hex", decoded))
    return found


def _rot13(scan: Scan) -> list[Payload]:
    words = scan.words_by_hash(0)
    plain = sum(len(words[h]) for h in _COMMON_H & words.keys())
    rotated = sum(len(words[h]) for h in _ROT_H & words.keys())
    if rotated >= 3 and rotated > 1.5 * plain:
        return [Payload("rot13", codecs.encode(scan.text, "rot13"))]
    return []


def _leet(scan: Scan) -> list[Payload]:
    text = scan.text
    if not _LEET_HINT.search(scan.lower):
        return []
    changed = [t for t in _LEET_TOKEN.findall(text) if _LEET_INNER.search(t)]
    if len(changed) >= 2:
        return [Payload("leet", _LEET_TOKEN.sub(lambda m: m.group().translate(_LEET), text))]
    return []


def _spaced(text: str) -> list[Payload]:
    if not _SPACED.search(text):
        return []
    return [Payload("spaced",
                    _SPACED.sub(lambda m: segment(_SPACED_SEP.sub("", m.group())), text))]


def _base32(scan: Scan) -> list[Payload]:
    found = []
    for m in _BASE32.finditer(scan.lower):
        token = m.group().rstrip("=")
        if token.isalpha() or len(token) % 8 in (1, 3, 6):
            continue  # an ordinary long word, or a length base32 never has
        found += _decoded("base32", functools.partial(
            base64.b32decode, token.upper() + "=" * (-len(token) % 8)))
    return found


def _url(scan: Scan) -> list[Payload]:
    if len(_URL_ESCAPE.findall(scan.lower)) < 4:
        return []
    decoded = urllib.parse.unquote_plus(scan.text)
    return [Payload("url", decoded)] if decoded != scan.text else []


def _reversed(scan: Scan) -> list[Payload]:
    """Text written backwards, as a whole ("?bmob a ekam") or word by word ("ekam a bmob")."""
    words = scan.words_by_hash(0)
    plain = sum(len(words[h]) for h in _COMMON_H & words.keys())
    backwards = sum(len(words[h]) for h in _REV_H & words.keys())
    if backwards >= 3 and backwards > 1.5 * plain:
        text = scan.text
        return [Payload("reversed", text[::-1]),
                Payload("reversed", " ".join(w[::-1] for w in text.split()))]
    return []


def _morse(scan: Scan) -> list[Payload]:
    found = []
    for m in _MORSE.finditer(scan.text):
        words = re.split(r" ?/ ?| {2,}", m.group())
        out = [""]
        for word in words:
            letters = [_MORSE_CODE.get(code) for code in word.split(" ") if code]
            if not letters or None in letters:
                out = []
                break
            out.append("".join(c for c in letters if c))
        decoded = " ".join(w for w in out if w)
        if len(decoded) >= 4:
            found.append(Payload("morse", decoded))
    return found


def _unpig(word: str, known: dict[str, float]) -> str:
    """``ombbay`` -> ``bomb``: the reading (moving 1 to 3 letters back) that is a known word."""
    if word.endswith(("way", "yay")) and word[0] in _VOWELS and word[:-3] in known:
        return word[:-3]
    stem = word[:-2]
    for n in (1, 2, 3):
        if len(stem) > n and (cand := stem[-n:] + stem[:-n]) in known \
                and not (set(stem[-n:]) & _VOWELS):
            return cand
    return word


def _pig_latin(scan: Scan) -> list[Payload]:
    words = _WORD_RE.findall(scan.lower)
    pig = _PIG.findall(scan.lower)
    if len(pig) < 3 or len(pig) < 0.6 * len(words):
        return []
    known = word_costs()[0]
    return [Payload("pig_latin", _PIG.sub(lambda m: _unpig(m.group(), known), scan.lower))]


def decode_payloads(text: str | Scan) -> list[Payload]:
    """Every hidden payload found in a text (at most four), decoded.

    Args:
        text: normalised text, or its :class:`~edgeward.safety._scan.Scan`.

    Returns:
        The payloads, in the order base64, base32, hex, URL-encoding, rot13, reversed,
        Morse, pig latin, leet, spaced.
    """
    scan = text if isinstance(text, Scan) else Scan(text)
    found: list[Payload] = []
    if len(scan.text) >= 16:
        found += _base64(scan)
        found += _base32(scan)
        found += _hex(scan)
    found += _url(scan)
    found += _rot13(scan)
    found += _reversed(scan)
    if "-" in scan.text and "." in scan.text:
        found += _morse(scan)
    if "ay" in scan.lower:
        found += _pig_latin(scan)
    found += _leet(scan)
    found += _spaced(scan.text)
    return found[:_MAX_PAYLOADS]
