"""Hashed word and character n-gram features, computed with numpy in well under a millisecond.

The same function featurises text for training (:mod:`edgeward.safety.train`) and for
inference, so the two cannot drift. Every n-gram is hashed with a polynomial rolling hash
over the text's code points (mod 2**64), computed for all positions at once from prefix sums,
then mixed and cut to ``bits`` bits: no per-n-gram Python work, and the same buckets on every
platform and in every process (Python's own ``hash`` is salted per process).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from edgeward.errors import ConfigError

__all__ = ["FeatureConfig", "bucket_counts", "buckets"]

_P = 0x100000001B3  # odd, so it has an inverse mod 2**64
_MAX = 1 << 14  # precomputed powers: texts are cut to fewer characters than this
_U64 = np.uint64
_M1 = _U64(0x9E3779B97F4A7C15)
_M2 = _U64(0xBF58476D1CE4E5B9)
_SPACE = 32
_NON_WORD = re.compile(r"[\W_]+")
_WORD_TAG = 101
_BIGRAM_TAG = 102


def _powers(base: int) -> npt.NDArray[np.uint64]:
    steps = np.full(_MAX + 1, base, dtype=_U64)
    steps[0] = 1
    return np.cumprod(steps, dtype=_U64)


_POW = _powers(_P)
_POW_INV = _powers(pow(_P, -1, 2**64))


@dataclass(frozen=True)
class FeatureConfig:
    """What the featuriser extracts. Stored with the trained weights.

    Attributes:
        bits: the number of hash buckets is ``2**bits``.
        char_ngrams: character n-gram lengths (over the lower-cased text with every run of
            non-word characters replaced by one space, so n-grams see word boundaries).
        words: word unigrams.
        word_bigrams: word bigrams.
        head_chars: characters featurised from the start of a long text.
        tail_chars: characters featurised from its end (long jailbreaks put the payload last).
    """

    bits: int = 18
    char_ngrams: tuple[int, ...] = (3, 4, 5)
    words: bool = True
    word_bigrams: bool = True
    head_chars: int = 3072
    tail_chars: int = 1024

    def __post_init__(self) -> None:
        if not 10 <= self.bits <= 24:
            raise ConfigError(f"bits={self.bits!r} is not in [10, 24]")
        if any(not 1 <= n <= 8 for n in self.char_ngrams):
            raise ConfigError(f"char_ngrams={self.char_ngrams!r}: each must be in [1, 8]")
        if self.head_chars + self.tail_chars + 2 > _MAX:
            raise ConfigError(f"head_chars + tail_chars = {self.head_chars + self.tail_chars} "
                             f"exceeds {_MAX - 2}")

    def to_dict(self) -> dict[str, object]:
        """The JSON form recorded next to the weights."""
        return {"bits": self.bits, "char_ngrams": list(self.char_ngrams), "words": self.words,
                "word_bigrams": self.word_bigrams, "head_chars": self.head_chars,
                "tail_chars": self.tail_chars}

    @classmethod
    def from_dict(cls, d: dict[str, object]) -> FeatureConfig:
        """Inverse of :meth:`to_dict`."""
        grams = d.get("char_ngrams", (3, 4, 5))
        return cls(bits=int(str(d.get("bits", 18))),
                   char_ngrams=tuple(int(n) for n in grams) if isinstance(grams, list | tuple)
                   else (3, 4, 5),
                   words=bool(d.get("words", True)), word_bigrams=bool(d.get("word_bigrams", True)),
                   head_chars=int(str(d.get("head_chars", 3072))),
                   tail_chars=int(str(d.get("tail_chars", 1024))))


def _mix(h: npt.NDArray[np.uint64], tag: int, bits: int) -> npt.NDArray[np.int64]:
    with np.errstate(over="ignore"):
        h = (h + _U64(tag) * _M1) * _M2
        h ^= h >> _U64(31)
        h = h * _M1
    return (h >> _U64(64 - bits)).astype(np.int64)


def _prepare(text: str, cfg: FeatureConfig) -> str:
    if len(text) > cfg.head_chars + cfg.tail_chars:
        text = text[:cfg.head_chars] + " " + text[-cfg.tail_chars:]
    return " " + _NON_WORD.sub(" ", text.lower()).strip() + " "


def buckets(text: str, cfg: FeatureConfig) -> npt.NDArray[np.int64]:
    """The hash bucket of every n-gram occurrence in ``text`` (with repeats).

    Args:
        text: normalised text (see :mod:`edgeward.safety._normalise`).
        cfg: which n-grams.

    Returns:
        An int64 array of bucket indices in ``[0, 2**cfg.bits)``.
    """
    t = _prepare(text, cfg)
    c = np.frombuffer(t.encode("utf-32-le"), dtype=np.uint32).astype(_U64)
    n = len(c)
    out: list[npt.NDArray[np.int64]] = []
    with np.errstate(over="ignore"):
        prefix = np.zeros(n + 1, dtype=_U64)
        np.cumsum(c * _POW[:n], dtype=_U64, out=prefix[1:])
        for k in cfg.char_ngrams:
            if n >= k:
                out.append(_mix((prefix[k:] - prefix[:-k]) * _POW_INV[:n - k + 1], k, cfg.bits))
        if cfg.words:
            spaces = np.flatnonzero(c == _SPACE)
            starts, ends = spaces[:-1] + 1, spaces[1:]
            keep = ends > starts
            starts, ends = starts[keep], ends[keep]
            words = (prefix[ends] - prefix[starts]) * _POW_INV[starts]
            out.append(_mix(words, _WORD_TAG, cfg.bits))
            if cfg.word_bigrams and len(words) > 1:
                out.append(_mix(words[:-1] * _M2 + words[1:], _BIGRAM_TAG, cfg.bits))
    return np.concatenate(out) if out else np.zeros(0, dtype=np.int64)


def bucket_counts(text: str, cfg: FeatureConfig
                  ) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float32]]:
    """Distinct buckets of ``text`` and their sublinear term frequencies ``1 + log(count)``.

    Returns:
        ``(indices, values)``, indices sorted ascending.
    """
    b = np.sort(buckets(text, cfg))  # sort + run lengths: faster than np.unique here
    if len(b) == 0:
        return b, np.zeros(0, dtype=np.float32)
    first = np.empty(len(b), dtype=bool)
    first[0] = True
    np.not_equal(b[1:], b[:-1], out=first[1:])
    starts = np.flatnonzero(first)
    counts = np.diff(np.append(starts, len(b)))
    return b[starts], (1.0 + np.log(counts)).astype(np.float32)
