"""The normaliser in front of every check, so that obfuscation does not slip past them.

Per character: Unicode NFKC (fullwidth, ligatures, mathematical and circled letters become
plain ones); accents stripped from Latin letters; zero-width, bidi-control, other format and
control characters and combining marks (Zalgo text) removed; Unicode tag characters, which can
smuggle invisible ASCII, removed and decoded as a hidden payload. Per word: Cyrillic and Greek
look-alikes folded to Latin in words that mix scripts or consist only of look-alikes. Every
character of the result keeps the index of the original character it came from, so PII spans
found in the normalised text map back onto the original.

Hidden payloads (base64, hex, rot13, leetspeak, spaced-out letters) are decoded by
:func:`edgeward.safety._decode.decode_payloads` and checked alongside the text.

Plain ASCII text with no control characters, the common case, is returned as it is in a few
microseconds.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field
from functools import lru_cache

__all__ = ["Normalised", "normalise"]

_KEEP_CONTROLS = frozenset("\t\n\r")
_ASCII_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_TAG_FIRST, _TAG_LAST = 0xE0000, 0xE007F
_DROP_CATEGORIES = frozenset({"Cf", "Cc", "Mn", "Me", "Cs", "Co", "Cn"})

# Cyrillic, Greek and other letters that render like Latin ones (after NFKC). A subset of
# Unicode's confusables.txt: the letters attackers actually use.
_HOMOGLYPHS: dict[str, str] = {
    # Cyrillic lower
    "а": "a", "в": "b", "е": "e", "ё": "e", "к": "k", "м": "m", "н": "h", "о": "o",
    "р": "p", "с": "c", "т": "t", "у": "y", "х": "x", "ѕ": "s", "і": "i", "ї": "i",
    "ј": "j", "ԁ": "d", "ԛ": "q", "ԝ": "w", "һ": "h", "ӏ": "l", "ɡ": "g", "ո": "n",
    "ս": "u", "ց": "g", "օ": "o", "ա": "w", "ɑ": "a", "ʏ": "y", "ı": "i", "ȷ": "j",
    # Cyrillic upper
    "А": "A", "В": "B", "Е": "E", "К": "K", "М": "M", "Н": "H", "О": "O", "Р": "P",
    "С": "C", "Т": "T", "У": "Y", "Х": "X", "Ѕ": "S", "І": "I", "Ј": "J", "Ԛ": "Q",
    "Ԝ": "W", "Һ": "H", "Ӏ": "I",
    # Greek
    "α": "a", "β": "b", "γ": "y", "ε": "e", "ι": "i", "κ": "k", "ν": "v", "ο": "o",
    "ρ": "p", "τ": "t", "υ": "u", "χ": "x", "ω": "w", "Α": "A", "Β": "B", "Ε": "E",
    "Ζ": "Z", "Η": "H", "Ι": "I", "Κ": "K", "Μ": "M", "Ν": "N", "Ο": "O", "Ρ": "P",
    "Τ": "T", "Υ": "Y", "Χ": "X",
    # Latin-ish symbols NFKC leaves alone
    "ø": "o", "Ø": "O", "ł": "l", "Ł": "L", "đ": "d", "Đ": "D", "ħ": "h", "ŧ": "t",
}
_WORD = re.compile(r"\w+")
_HOMOGLYPH_CHARS = re.compile("[" + "".join(_HOMOGLYPHS) + "]")
_SPECIAL = re.compile(r"[^\t\n\r\x20-\x7e]")  # anything but printable ASCII


@dataclass(frozen=True)
class Normalised:
    """A text after normalisation.

    Attributes:
        text: the normalised text.
        offsets: ``offsets[i]`` is the index in the original text of the character that
            ``text[i]`` came from; ``None`` when the text was not changed (identity).
        changes: how many characters each step changed (``invisible``, ``nfkc``,
            ``homoglyph``), only the steps that changed something.
        hidden: text smuggled in Unicode tag characters, decoded (empty if none).
    """

    text: str
    offsets: tuple[int, ...] | None = None
    changes: dict[str, int] = field(default_factory=dict)
    hidden: str = ""

    def original_span(self, start: int, end: int) -> tuple[int, int]:
        """Map the range ``[start, end)`` of :attr:`text` onto the original text."""
        if self.offsets is None or start >= end:
            return start, end
        return self.offsets[start], self.offsets[end - 1] + 1


@lru_cache(maxsize=8192)
def _char(ch: str) -> tuple[str, str]:
    """``(replacement, step)`` for one non-ASCII character; step is "" when unchanged."""
    cp = ord(ch)
    if _TAG_FIRST <= cp <= _TAG_LAST:
        return "", "tag"
    if ch in _KEEP_CONTROLS:
        return ch, ""
    if unicodedata.category(ch) in _DROP_CATEGORIES:
        return "", "invisible"
    out = unicodedata.normalize("NFKC", ch)
    if not out.isascii():
        stripped = "".join(c for c in unicodedata.normalize("NFKD", out)
                           if not unicodedata.combining(c))
        if stripped.isascii() and stripped:
            out = stripped
        # NFKC can produce format characters of its own (rare); drop them too.
        out = "".join(c for c in out if c in _KEEP_CONTROLS
                      or unicodedata.category(c) not in _DROP_CATEGORIES)
    return out, ("" if out == ch else "nfkc")


def _fold_homoglyphs(text: str) -> tuple[str, int]:
    """Fold look-alikes in words that mix scripts or are made only of look-alikes."""
    if not _HOMOGLYPH_CHARS.search(text):
        return text, 0
    chars = list(text)
    folded = 0
    for m in _WORD.finditer(text):
        word = m.group()
        if word.isascii():
            continue
        confusable = [c in _HOMOGLYPHS for c in word]
        if not any(confusable):
            continue
        has_latin = any("a" <= c.lower() <= "z" for c in word)
        if has_latin or all(confusable):
            for i, c in enumerate(word, start=m.start()):
                if c in _HOMOGLYPHS:
                    chars[i] = _HOMOGLYPHS[c]
                    folded += 1
    return "".join(chars), folded


def normalise(text: str) -> Normalised:
    """Normalise ``text`` for the checks (see the module docstring).

    Only the characters outside printable ASCII are looked at, one by one; the runs of
    plain ASCII between them are copied as they are.

    Args:
        text: any text.

    Returns:
        The normalised text, its offset map to the original, and what changed.
    """
    if text.isascii() and not _ASCII_CONTROL.search(text):
        return Normalised(text)
    pieces: list[str] = []
    offsets: list[int] = []
    hidden: list[str] = []
    changes: dict[str, int] = {}
    pos = 0
    for m in _SPECIAL.finditer(text):
        i = m.start()
        ch = text[i]
        out, step = _char(ch)
        if not step:
            continue
        if step == "tag":
            cp = ord(ch) - _TAG_FIRST
            if 0x20 <= cp < 0x7F:
                hidden.append(chr(cp))
            step = "invisible"
        changes[step] = changes.get(step, 0) + 1
        pieces.append(text[pos:i])
        offsets.extend(range(pos, i))
        pieces.append(out)
        offsets.extend([i] * len(out))
        pos = i + 1
    pieces.append(text[pos:])
    offsets.extend(range(pos, len(text)))
    folded_text, folded = _fold_homoglyphs("".join(pieces))
    if folded:
        changes["homoglyph"] = folded
    if not changes:
        return Normalised(text)
    return Normalised(folded_text, tuple(offsets), changes, "".join(hidden))
