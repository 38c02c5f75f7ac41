"""The safety filter's interface: verdicts, the filter protocol, and the pass-through filter.

The device agent depends only on this interface: it calls :meth:`SafetyFilter.check` on every
prompt before generation, and feeds every generated piece through a per-response
:class:`OutputStream`, which may hold text back, redact it, or stop generation. It makes one
:class:`~edgeward.safety.Pseudonyms` per request and passes it to both, so that a filter whose
policy asks for numbered placeholders (``[NAME_1]``) keeps them consistent across the request's
messages and its answer; a filter without pseudonyms ignores it.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, Protocol

from edgeward.errors import ConfigError

if TYPE_CHECKING:
    from edgeward.safety._pseudonyms import Pseudonyms

__all__ = [
    "Action",
    "OutputStream",
    "PassThroughFilter",
    "SafetyFilter",
    "Span",
    "Stage",
    "StreamStep",
    "Verdict",
]

Action = Literal["allow", "redact", "block"]
Stage = Literal["prompt", "output"]
_ACTIONS = ("allow", "redact", "block")


@dataclass(frozen=True)
class Span:
    """A character range of the checked text, end exclusive, with what it is (``"EMAIL"``)."""

    start: int
    end: int
    type: str

    def __post_init__(self) -> None:
        if not 0 <= self.start <= self.end:
            raise ConfigError(f"span [{self.start}, {self.end}) is not a range")


@dataclass(frozen=True)
class Verdict:
    """The filter's decision on one text.

    Attributes:
        action: ``allow``, ``redact`` (use ``redacted_text``) or ``block``.
        categories: hazard categories or PII types that decided it (``"S1"``, ``"EMAIL"``).
        scores: per-check or per-category scores in [0, 1].
        spans: redacted ranges of the (original) text.
        redacted_text: the text with spans replaced by typed placeholders, for ``redact``.
        latency_ms: time the check took.
    """

    action: Action
    categories: tuple[str, ...] = ()
    scores: Mapping[str, float] = field(default_factory=dict)
    spans: tuple[Span, ...] = ()
    redacted_text: str | None = None
    latency_ms: float = 0.0

    def __post_init__(self) -> None:
        if self.action not in _ACTIONS:
            raise ConfigError(f"verdict action {self.action!r} is not one of {_ACTIONS}")

    def to_dict(self) -> dict[str, Any]:
        """The stable JSON shape (``edgeward safety check --json``)."""
        return {"action": self.action, "categories": list(self.categories),
                "scores": dict(self.scores), "redacted_text": self.redacted_text,
                "spans": [s.__dict__ for s in self.spans], "latency_ms": self.latency_ms}


@dataclass(frozen=True)
class StreamStep:
    """What to do after feeding one generated piece to an :class:`OutputStream`.

    Attributes:
        emit: text that may be sent to the client now (possibly redacted; possibly empty while
            text is held back to check it with what follows).
        stop: generation must stop now (the output was blocked).
        verdict: the decision that caused a redaction or a stop, if any.
    """

    emit: str
    stop: bool = False
    verdict: Verdict | None = None


class OutputStream(Protocol):
    """Checks one response's output as it is generated."""

    def feed(self, piece: str) -> StreamStep:
        """Take the next generated piece; say what may be emitted and whether to stop."""
        ...

    def finish(self) -> StreamStep:
        """Generation ended: release (checked) held-back text."""
        ...


class SafetyFilter(Protocol):
    """What the agent needs from a safety filter."""

    def check(self, text: str, *, stage: Stage = "prompt",
              context: Mapping[str, Any] | None = None,
              pseudonyms: Pseudonyms | None = None) -> Verdict:
        """Check a whole text (a prompt, or a finished output); ``pseudonyms``: the
        conversation's placeholders, for a policy that numbers them."""
        ...

    def output_stream(self, *, context: Mapping[str, Any] | None = None,
                      pseudonyms: Pseudonyms | None = None) -> OutputStream:
        """A checker for one streamed response (``pseudonyms``: as for :meth:`check`)."""
        ...


class _PassThroughStream:
    def feed(self, piece: str) -> StreamStep:
        return StreamStep(emit=piece)

    def finish(self) -> StreamStep:
        return StreamStep(emit="")


class PassThroughFilter:
    """Allows everything: the agent's filter when no safety policy is configured."""

    def check(self, text: str, *, stage: Stage = "prompt",
              context: Mapping[str, Any] | None = None,
              pseudonyms: Pseudonyms | None = None) -> Verdict:
        """Allow ``text``."""
        t0 = time.perf_counter()
        return Verdict(action="allow", latency_ms=(time.perf_counter() - t0) * 1000)

    def output_stream(self, *, context: Mapping[str, Any] | None = None,
                      pseudonyms: Pseudonyms | None = None) -> OutputStream:
        """A stream checker that emits every piece unchanged."""
        return _PassThroughStream()
