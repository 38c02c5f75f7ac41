"""Alerts: a device that goes ``lost``, or whose health regresses.

Rules are edge-triggered per device and kind: an alert fires when a condition starts and again
only after it cleared, so a device that stays hot raises one alert, not one per report.
"""

from __future__ import annotations

import statistics
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass

from edgeward.errors import ConfigError
from edgeward.fleet._store import Accepted, Alert
from edgeward.fleet.protocol import DeviceState, HealthReport, ProvenanceReport, StateMessage

__all__ = ["AlertEngine", "AlertRules"]


@dataclass(frozen=True, kw_only=True)
class AlertRules:
    """When to alert (the ``[alerts]`` table of fleet.toml).

    Attributes:
        lost: alert when a device's Last Will marks it lost.
        tokens_drop_ratio: alert when decode tokens/s falls below this fraction of the
            median of the device's previous ``baseline_reports`` reports.
        baseline_reports: how many reports make the tokens/s baseline (at least 3 needed).
        max_temperature_c: alert above this temperature (degrees Celsius).
        max_memory_fraction: alert when used / total memory exceeds this.
        max_queue_depth: alert when more requests than this wait (requests).
    """

    lost: bool = True
    tokens_drop_ratio: float = 0.5
    baseline_reports: int = 10  # reports
    max_temperature_c: float = 85.0  # degrees Celsius
    max_memory_fraction: float = 0.95
    max_queue_depth: int = 64  # requests

    def __post_init__(self) -> None:
        if not 0 < self.tokens_drop_ratio < 1 or not 0 < self.max_memory_fraction <= 1:
            raise ConfigError(f"[alerts]: tokens_drop_ratio must be in (0, 1) and "
                              f"max_memory_fraction in (0, 1], got {self.tokens_drop_ratio!r} "
                              f"and {self.max_memory_fraction!r}")
        if self.baseline_reports < 3:
            raise ConfigError(f"[alerts]: baseline_reports must be at least 3, got "
                              f"{self.baseline_reports!r}")


class AlertEngine:
    """Turns stored messages into alerts (in memory; the manager records what it returns)."""

    def __init__(self, rules: AlertRules) -> None:
        self.rules = rules
        self._tokens: dict[str, deque[float]] = {}
        self._active: set[tuple[str, str]] = set()

    def _edge(self, device: str, kind: str, on: bool, detail: str, t: float) -> list[Alert]:
        key = (device, kind)
        if on and key not in self._active:
            self._active.add(key)
            return [Alert(device, kind, detail, t)]
        if not on:
            self._active.discard(key)
        return []

    def observe(self, stored: Iterable[Accepted]) -> list[Alert]:
        """The alerts that newly stored messages (and applied state changes) raise."""
        out: list[Alert] = []
        for a in stored:
            m = a.message
            if isinstance(m, StateMessage):
                if self.rules.lost:
                    out += self._edge(m.device_id, "lost", m.state is DeviceState.LOST,
                                      f"device lost its connection (session {m.session})",
                                      a.received_at)
            elif isinstance(m, HealthReport):
                out += self._health(m, a.received_at)
            elif isinstance(m, ProvenanceReport) and a.statement_verified is False:
                out.append(Alert(m.device_id, "provenance", "the running artifact's statement "
                                 f"does not verify or name {m.artifact_digest[:16]}…",
                                 a.received_at))
        return out

    def _health(self, m: HealthReport, t: float) -> list[Alert]:
        r, s, d = self.rules, m.metrics, m.device_id
        out: list[Alert] = []
        if s.temperature_c is not None:
            out += self._edge(d, "temperature", s.temperature_c > r.max_temperature_c,
                              f"temperature {s.temperature_c:.1f} °C above "
                              f"{r.max_temperature_c:g} °C", t)
        if s.memory_used_bytes is not None and s.memory_total_bytes:
            frac = s.memory_used_bytes / s.memory_total_bytes
            out += self._edge(d, "memory", frac > r.max_memory_fraction,
                              f"memory {frac:.0%} used", t)
        out += self._edge(d, "queue", s.queue_depth > r.max_queue_depth,
                          f"{s.queue_depth} requests waiting", t)
        if s.decode_tokens_per_s is not None:
            history = self._tokens.setdefault(d, deque(maxlen=r.baseline_reports))
            if len(history) >= 3:
                base = statistics.median(history)
                low = base > 0 and s.decode_tokens_per_s < r.tokens_drop_ratio * base
                out += self._edge(d, "tokens_per_s", low,
                                  f"decode {s.decode_tokens_per_s:.1f} tokens/s, baseline "
                                  f"{base:.1f}", t)
            history.append(s.decode_tokens_per_s)
        return out
