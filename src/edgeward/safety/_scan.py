"""One vectorised pass over a text that tells the regex checks where to look.

Python's ``re`` tries an alternation of many words at every position of a text: dozens of
patterns over a 2,000-character prompt cost milliseconds. So the checks do not scan whole
texts. :class:`Scan` finds, with numpy, every word (its position and a hash of it and of its
first few letters) and every digit run; a :class:`Lexicon` looks the word hashes up in a table
of trigger words, and runs a pattern only in a window around each trigger. Benign text holds few
triggers, so most patterns never run at all.
"""

from __future__ import annotations

import bisect
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import numpy as np

__all__ = ["MONTHS_EN", "UPPER_CLASS", "WEEKDAYS_EN", "WEEKDAY_ABBR_EN", "Intervals", "Lexicon",
           "Scan", "Term", "merge_windows", "register", "word_hash"]

_U64 = np.uint64
_P = 0x100000001B3
_MAX = 1 << 17
_PREFIX = 4  # prefix triggers ("suicid*") are looked up by their first four characters
_POW = np.cumprod(np.concatenate([np.ones(1, _U64), np.full(_MAX, _P, _U64)]), dtype=_U64)
_POW_INV = np.cumprod(np.concatenate([np.ones(1, _U64), np.full(_MAX, pow(_P, -1, 2**64), _U64)]),
                      dtype=_U64)


# Upper-case letters for a regex character class: ASCII and Latin-1 to Latin Extended-B.
UPPER_CLASS = "A-Z" + "".join(chr(i) for i in range(0xC0, 0x250) if chr(i).isupper())

# English month and weekday names, lower case, for the date rules (which find them) and the
# address rules (which must not take "March 12" for a street and its number).
MONTHS_EN = ("january", "jan", "february", "feb", "march", "mar", "april", "apr", "may", "june",
             "jun", "july", "jul", "august", "aug", "september", "sept", "sep", "october", "oct",
             "november", "nov", "december", "dec")
WEEKDAYS_EN = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
WEEKDAY_ABBR_EN = ("mon", "tue", "tues", "wed", "thu", "thur", "thurs", "fri", "sat", "sun")

_KEYS: dict[int, set[int]] = {}


def register(hashes: Iterable[int], length: int = 0) -> None:
    """Make :meth:`Scan.words_by_hash` report words with these hashes (of whole words, or of
    their first ``length`` characters). Lexicons register their triggers when built."""
    _KEYS.setdefault(length, set()).update(hashes)


def word_hash(s: str) -> int:
    """The same hash :class:`Scan` computes for a whole word ``s`` (lower case)."""
    h = 0
    p = 1
    for ch in s:
        h = (h + ord(ch) * p) % 2**64
        p = p * _P % 2**64
    return h


class Scan:
    """Words and digit runs of a text, found with numpy.

    Attributes:
        text: the text as given.
        lower: the lower-cased text (same length; case-insensitive patterns run on it).
        codes: the code points of ``lower`` (uint32).
        starts, ends: start and end offsets of each word (letters, digits, non-ASCII).
        digit_runs: ``(start, end)`` of each run of digits.
    """

    def __init__(self, text: str) -> None:
        self.text = text[:_MAX - 1]
        lower = self.text.lower()
        self.lower = lower if len(lower) == len(self.text) else self.text
        c = np.frombuffer(self.lower.encode("utf-32-le"), dtype=np.uint32)
        self.codes = c
        digit = (c >= 48) & (c <= 57)
        self._digit = digit
        # Letters, digits and any other non-ASCII character, except punctuation: Latin-1's
        # (¿ ¡ « » ...), general punctuation (“ ” — …) and CJK punctuation.
        punct = ((c >= 0xA0) & (c <= 0xBF)) | ((c >= 0x2000) & (c <= 0x206F)) \
            | ((c >= 0x3000) & (c <= 0x303F))
        word = digit | ((c >= 97) & (c <= 122)) | ((c >= 65) & (c <= 90)) | ((c > 127) & ~punct)
        edges = np.flatnonzero(np.diff(np.concatenate([[False], word, [False]]).astype(np.int8)))
        self.starts = edges[0::2]
        self.ends = edges[1::2]
        d_edges = np.flatnonzero(np.diff(np.concatenate([[False], digit, [False]]).astype(np.int8)))
        self.digit_runs = list(zip(d_edges[0::2].tolist(), d_edges[1::2].tolist(), strict=True))
        n = len(c)
        self._prefix = np.zeros(n + 1, dtype=_U64)
        with np.errstate(over="ignore"):
            np.cumsum(c.astype(_U64) * _POW[:n], dtype=_U64, out=self._prefix[1:])
        self._hash_cache: dict[int, dict[int, list[int]]] = {}

    def words_by_hash(self, length: int = 0) -> dict[int, list[int]]:
        """Indices of the words whose hash (of the whole word, ``length=0``, or of its first
        ``length`` characters) is a registered key (see :func:`register`), by hash. One
        vectorised lookup per length and text; computed once per length."""
        table = self._hash_cache.get(length)
        if table is None:
            table = {}
            keys = _KEYS.get(length)
            s, e = self.starts, self.ends
            if keys and len(s):
                if length:
                    keep = np.flatnonzero(e - s >= length)
                    s = s[keep]
                    e = s + length
                with np.errstate(over="ignore"):
                    hashes = ((self._prefix[e] - self._prefix[s]) * _POW_INV[s]).tolist()
                hit = keys.intersection(hashes)
                if hit:
                    index = keep.tolist() if length else range(len(hashes))
                    for i, hv in zip(index, hashes, strict=True):
                        if hv in hit:
                            table.setdefault(hv, []).append(i)
            self._hash_cache[length] = table
        return table

    def count(self, ch: str, start: int = 0, end: int | None = None) -> int:
        """How often the character ``ch`` occurs in ``text[start:end]``."""
        return self.text.count(ch, start, len(self.text) if end is None else end)


@dataclass(frozen=True)
class Term:
    """A lexicon entry.

    Attributes:
        key: what a match means (a rule name, a hazard category, a PII type).
        triggers: words that must occur for the pattern to be tried; ``word*`` is a prefix.
        pattern: confirms the match in a window around a trigger (run on the lower-cased text
            unless ``case_sensitive``); ``None``: the trigger word itself is the match.
        before, after: window size around the trigger word, in characters.
        case_sensitive: run ``pattern`` on the original text.
        anchored: the pattern must match at the trigger word's start (``pattern.match``; much
            cheaper than searching a window); ``before`` and ``after`` are then unused.
    """

    key: str
    triggers: tuple[str, ...]
    pattern: re.Pattern[str] | None = None
    before: int = 60
    after: int = 160
    case_sensitive: bool = False
    anchored: bool = False


class Intervals:
    """Non-overlapping ``[start, end)`` ranges; adding one that overlaps none costs a binary
    search (detectors add thousands of spans to a long text)."""

    def __init__(self) -> None:
        self.starts: list[int] = []
        self.ends: list[int] = []

    def overlaps(self, start: int, end: int) -> bool:
        """Whether ``[start, end)`` overlaps a range already added."""
        i = bisect.bisect_right(self.starts, start)
        return (i > 0 and self.ends[i - 1] > start) or (i < len(self.starts)
                                                         and self.starts[i] < end)

    def add(self, start: int, end: int) -> bool:
        """Add ``[start, end)`` unless it overlaps; returns whether it was added."""
        if self.overlaps(start, end):
            return False
        i = bisect.bisect_right(self.starts, start)
        self.starts.insert(i, start)
        self.ends.insert(i, end)
        return True

    def first_start_in(self, start: int, end: int) -> int | None:
        """The first range start inside ``(start, end)``, if any."""
        i = bisect.bisect_right(self.starts, start)
        return self.starts[i] if i < len(self.starts) and self.starts[i] < end else None


def merge_windows(windows: Iterable[tuple[int, int]]) -> list[tuple[int, int]]:
    """Sorted, merged ``(start, end)`` windows."""
    merged: list[tuple[int, int]] = []
    for s, e in sorted(windows):
        if merged and s <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], e))
        else:
            merged.append((s, e))
    return merged


class Lexicon:
    """Terms looked up by trigger word, confirmed by a pattern in a window around it."""

    def __init__(self, terms: Iterable[Term]) -> None:
        self.terms = tuple(terms)
        # length (0 = whole word) -> hash -> term indices. Prefix triggers are cut to
        # _PREFIX characters so that every lexicon shares a few hash tables per scan.
        self._by_hash: dict[int, dict[int, list[int]]] = {}
        for i, term in enumerate(self.terms):
            for trig in term.triggers:
                word = trig.rstrip("*").lower()
                length = min(len(word), _PREFIX) if trig.endswith("*") else 0
                key = word_hash(word[:length] if length else word)
                self._by_hash.setdefault(length, {}).setdefault(key, []).append(i)
        for length, table in self._by_hash.items():
            register(table, length)

    def _hits(self, scan: Scan) -> dict[int, list[int]]:
        """term index -> indices of the words that trigger it."""
        hits: dict[int, list[int]] = {}
        for length, table in self._by_hash.items():
            words = scan.words_by_hash(length)
            for h in table.keys() & words.keys():
                for t in table[h]:
                    hits.setdefault(t, []).extend(words[h])
        return hits

    def find(self, scan: Scan) -> Iterator[tuple[Term, int, int]]:
        """Every match: ``(term, start, end)``; a term whose pattern has a group reports
        group 1's span."""
        n = len(scan.text)
        for t, word_ids in sorted(self._hits(scan).items()):
            term = self.terms[t]
            if term.pattern is None:
                for w in sorted(set(word_ids)):
                    yield term, int(scan.starts[w]), int(scan.ends[w])
                continue
            text = scan.text if term.case_sensitive else scan.lower
            group = 1 if term.pattern.groups else 0
            if term.anchored:
                for w in sorted(set(word_ids)):
                    m = term.pattern.match(text, int(scan.starts[w]))
                    if m:
                        yield term, m.start(group), m.end(group)
                continue
            windows = merge_windows((max(0, int(scan.starts[w]) - term.before),
                                     min(n, int(scan.ends[w]) + term.after)) for w in word_ids)
            for lo, hi in windows:
                for m in term.pattern.finditer(text, lo, hi):
                    yield term, m.start(group), m.end(group)

    def keys(self, scan: Scan) -> set[str]:
        """The keys of the terms that match at least once."""
        return {term.key for term, _, _ in self.find(scan)}
