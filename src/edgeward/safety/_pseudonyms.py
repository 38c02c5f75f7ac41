"""Consistent pseudonyms: ``[NAME_1]``, ``[NAME_2]``, ``[DATE_1]`` instead of ``[NAME]``.

With ``[pii] pseudonyms = true`` a redaction writes a numbered placeholder, and the same value
gets the same number within one conversation, so the model (and whoever reads its answer) can
still tell that the patient in turn 3 is the one of turn 1, and that two people are two people.
The agent makes one :class:`Pseudonyms` per request and hands it to the check of every message
and to the response's output stream.

Values are compared normalised (the filter's normaliser, case-folded, whitespace collapsed;
for number-like types only their letters and digits count, so ``555-0100`` and ``555 0100`` are
one phone). Numbers are given in order of first appearance, so the same conversation history
resent with the next request gets the same numbers again. The mapping holds patient data: it is
never logged, printed or returned (its ``repr`` shows only a count), and it is bounded: past
``max_values`` values a new value gets the plain ``[TYPE]`` placeholder, never a number that
another value already has.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterable

from edgeward.errors import ConfigError
from edgeward.safety._normalise import normalise
from edgeward.safety._pii import redact
from edgeward.safety._verdict import Span

__all__ = ["Pseudonyms", "redact_pseudonymous"]

# Types whose value is an identifier: punctuation and spacing in it are formatting only.
_CODES = frozenset({"PHONE", "CARD", "IBAN", "SSN", "MRN", "ACCOUNT", "LICENSE", "VEHICLE",
                    "DEVICE"})
_SPACE = re.compile(r"\s+")
_NOT_ALNUM = re.compile(r"[\W_]+")


def _key(kind: str, value: str) -> str:
    text = normalise(value).text.casefold()
    if kind in _CODES:
        return _NOT_ALNUM.sub("", text)
    return _SPACE.sub(" ", text).strip(" .,;:")


class Pseudonyms:
    """The placeholders of one conversation: value -> ``[TYPE_n]``, per PII type.

    Thread-safe; cheap to make (one per request).

    Example::

        p = Pseudonyms()
        p.placeholder("NAME", "Ada Okonkwo")    # '[NAME_1]'
        p.placeholder("NAME", "ada  OKONKWO")   # '[NAME_1]' (same person)
        p.placeholder("NAME", "Ben Adeyemi")    # '[NAME_2]'

    Args:
        max_values: most distinct values it numbers (all types together); later new values
            get the plain ``[TYPE]`` placeholder.

    Raises:
        ConfigError: ``max_values`` is below 1.
    """

    __slots__ = ("_lock", "_max", "_numbers", "_size")

    def __init__(self, *, max_values: int = 1024) -> None:
        if max_values < 1:
            raise ConfigError(f"Pseudonyms max_values = {max_values!r}: must be at least 1")
        self._max = max_values
        self._numbers: dict[str, dict[str, int]] = {}  # type -> normalised value -> number
        self._size = 0
        self._lock = threading.Lock()

    @property
    def size(self) -> int:
        """Distinct values numbered so far."""
        return self._size

    def __repr__(self) -> str:  # never the values
        return f"Pseudonyms({self._size} values, max {self._max})"

    def placeholder(self, kind: str, value: str) -> str:
        """The placeholder of ``value`` (of PII type ``kind``): ``[KIND_n]``, the same ``n``
        for the same normalised value; ``[KIND]`` once the mapping is full."""
        key = _key(kind, value)
        with self._lock:
            numbers = self._numbers.setdefault(kind, {})
            n = numbers.get(key)
            if n is None:
                if self._size >= self._max:
                    return f"[{kind}]"
                n = numbers[key] = len(numbers) + 1
                self._size += 1
        return f"[{kind}_{n}]"


def redact_pseudonymous(text: str, spans: Iterable[Span], pseudonyms: Pseudonyms) -> str:
    """``text`` with every span replaced by its numbered placeholder (``[NAME_1]``).

    Like :func:`edgeward.safety.redact`, which writes ``[NAME]``; spans are non-overlapping
    ranges of ``text``.
    """
    return redact(text, spans, placeholder=pseudonyms.placeholder)
