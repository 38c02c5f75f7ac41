"""The records of a red-team run: each attempt, per-family counts, the probes, the report.

Each is frozen and round-trips through ``to_dict``/``from_dict``; ``RedteamReport.to_dict`` is
what ``redteam.json`` holds (and what a signed report's envelope carries).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from edgeward.errors import ConfigError

__all__ = ["EXCERPT_CHARS", "OUTCOMES", "REDTEAM_FORMAT", "Attempt", "FamilySummary",
           "Outcome", "ProbeRun", "RedteamReport"]

REDTEAM_FORMAT = "edgeward-redteam-report/1"
Outcome = Literal["blocked", "refused", "passed_through", "skipped"]
OUTCOMES: tuple[Outcome, ...] = ("blocked", "refused", "passed_through", "skipped")
EXCERPT_CHARS = 160  # characters of an answer kept in the report


@dataclass(frozen=True)
class Attempt:
    """One request of a run and what came of it.

    Attributes:
        family, prompt_id, transform: which seed prompt went through which transformation.
        outcome: ``blocked`` (the endpoint's filter), ``refused`` (the model), ``passed_through``
            or ``skipped``.
        reason: why it was blocked (``filter:prompt``, ``filter:output``, ``http 400
            content_filter``) or skipped (``timeout``, ``http 503``, ``budget spent`` ...).
        http_status: the HTTP status, or ``None`` when none came back.
        seconds: the request's wall time.
        excerpt: the first characters of the answer (empty when blocked or skipped).
    """

    family: str
    prompt_id: str
    transform: str
    outcome: Outcome
    reason: str | None = None
    http_status: int | None = None
    seconds: float = 0.0
    excerpt: str = ""

    def to_dict(self) -> dict[str, Any]:
        """The record as JSON-able data."""
        return {"family": self.family, "prompt_id": self.prompt_id, "transform": self.transform,
                "outcome": self.outcome, "reason": self.reason, "http_status": self.http_status,
                "seconds": self.seconds, "excerpt": self.excerpt}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Attempt:
        """The inverse of :meth:`to_dict`."""
        return cls(d["family"], d["prompt_id"], d["transform"], d["outcome"], d["reason"],
                   d["http_status"], float(d["seconds"]), d["excerpt"])


@dataclass(frozen=True)
class FamilySummary:
    """Counts of one family; ``attempts`` = blocked + refused + passed_through + skipped.

    Attributes:
        skip_reasons: how many attempts were skipped for each reason.
        by_transform: the same four counts per transformation (or garak probe).
    """

    family: str
    attempts: int
    blocked: int
    refused: int
    passed_through: int
    skipped: int
    skip_reasons: dict[str, int] = field(default_factory=dict)
    by_transform: dict[str, dict[str, int]] = field(default_factory=dict)

    @property
    def block_rate(self) -> float | None:
        """Blocked ÷ answered (blocked, refused or passed through); ``None`` if none was."""
        answered = self.attempts - self.skipped
        return self.blocked / answered if answered else None

    @classmethod
    def of(cls, family: str, attempts: Sequence[Attempt]) -> FamilySummary:
        """Count ``attempts`` (those of ``family``)."""
        mine = [a for a in attempts if a.family == family]
        count = {o: sum(a.outcome == o for a in mine) for o in OUTCOMES}
        reasons: dict[str, int] = {}
        by: dict[str, dict[str, int]] = {}
        for a in mine:
            if a.outcome == "skipped":
                reasons[a.reason or "unknown"] = reasons.get(a.reason or "unknown", 0) + 1
            row = by.setdefault(a.transform, dict.fromkeys(OUTCOMES, 0))
            row[a.outcome] += 1
        return cls(family, len(mine), count["blocked"], count["refused"],
                   count["passed_through"], count["skipped"], reasons, by)

    def to_dict(self) -> dict[str, Any]:
        """The counts as JSON-able data (with ``block_rate``)."""
        rate = self.block_rate
        return {"family": self.family, "attempts": self.attempts, "blocked": self.blocked,
                "refused": self.refused, "passed_through": self.passed_through,
                "skipped": self.skipped, "skip_reasons": dict(self.skip_reasons),
                "block_rate": None if rate is None else round(rate, 6),
                "by_transform": {k: dict(v) for k, v in self.by_transform.items()}}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> FamilySummary:
        """The inverse of :meth:`to_dict`."""
        return cls(d["family"], d["attempts"], d["blocked"], d["refused"], d["passed_through"],
                   d["skipped"], dict(d["skip_reasons"]),
                   {k: dict(v) for k, v in d["by_transform"].items()})


@dataclass(frozen=True)
class ProbeRun:
    """One probe of an engine (a transformation of ours, or a garak probe): did it run?

    Attributes:
        probe: its name (``plain``, ``encoding.InjectBase64`` ...); ``family`` ours it maps to.
        ran: whether it produced attempts; ``reason`` why not (or a note when it did).
        attempts: how many attempts it produced.
    """

    probe: str
    family: str
    ran: bool
    attempts: int = 0
    reason: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """The record as JSON-able data."""
        return {"probe": self.probe, "family": self.family, "ran": self.ran,
                "attempts": self.attempts, "reason": self.reason}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ProbeRun:
        """The inverse of :meth:`to_dict`."""
        return cls(d["probe"], d["family"], bool(d["ran"]), int(d["attempts"]), d["reason"])


@dataclass(frozen=True)
class RedteamReport:
    """The result of one red-team run (``to_dict`` is what ``redteam.json`` holds)."""

    engine: str
    target: str
    model: str
    attack_set: dict[str, str]
    started_at: str
    seconds: float
    families: tuple[FamilySummary, ...]
    probes: tuple[ProbeRun, ...]
    attempts: tuple[Attempt, ...]
    settings: dict[str, Any] = field(default_factory=dict)

    def family(self, name: str) -> FamilySummary:
        """The summary of one family.

        Raises:
            KeyError: the run had no such family.
        """
        for f in self.families:
            if f.family == name:
                return f
        raise KeyError(name)

    def to_dict(self) -> dict[str, Any]:
        """The report as JSON-able data (``format`` first)."""
        return {"format": REDTEAM_FORMAT, "engine": self.engine, "target": self.target,
                "model": self.model, "attack_set": dict(self.attack_set),
                "started_at": self.started_at, "seconds": self.seconds,
                "settings": dict(self.settings),
                "families": {f.family: f.to_dict() for f in self.families},
                "probes": [p.to_dict() for p in self.probes],
                "attempts": [a.to_dict() for a in self.attempts]}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> RedteamReport:
        """The inverse of :meth:`to_dict`.

        Raises:
            ConfigError: not a red-team report of this format.
        """
        if not isinstance(d, Mapping) or d.get("format") != REDTEAM_FORMAT:
            raise ConfigError(f"not a red-team report of format {REDTEAM_FORMAT!r}")
        try:
            return cls(d["engine"], d["target"], d["model"], dict(d["attack_set"]),
                       d["started_at"], float(d["seconds"]),
                       tuple(FamilySummary.from_dict(d["families"][name])
                             for name in _family_order(d)),
                       tuple(ProbeRun.from_dict(p) for p in d["probes"]),
                       tuple(Attempt.from_dict(a) for a in d["attempts"]), dict(d["settings"]))
        except (KeyError, TypeError, ValueError, AttributeError) as e:
            raise ConfigError(f"red-team report: malformed ({type(e).__name__}: {e})") from e


_ORDER = ("harmful", "jailbreak", "injection", "benign")


def _family_order(d: Mapping[str, Any]) -> list[str]:
    """The families in report order (canonical JSON sorts the keys): harmful, jailbreak,
    injection, benign, then any other (garak's ``other``) by name."""
    names = list(d["families"])
    return sorted(names, key=lambda n: (_ORDER.index(n) if n in _ORDER else len(_ORDER), n))
