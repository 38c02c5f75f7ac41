"""Alerts: a device that goes ``lost``, whose health regresses, or whose model no longer
behaves as signed (its own check says drift, or it disagrees with the devices that run the
same bytes: "same bytes, different behaviour").

Rules are edge-triggered per device and kind: an alert fires when a condition starts and again
only after it cleared, so a device that stays hot raises one alert, not one per report.
"""

from __future__ import annotations

import statistics
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from edgeward.errors import ConfigError
from edgeward.fleet._store import Accepted, Alert
from edgeward.fleet.protocol import (
    DeviceState,
    EventMessage,
    HealthReport,
    ProvenanceReport,
    StateMessage,
)

__all__ = ["DRIFT_EVENTS", "AlertEngine", "AlertRules", "behaviour_outliers",
           "behaviour_overview"]

#: Device events that are alerts in themselves.
DRIFT_EVENTS = ("behaviour.drift", "safety.drift")


def behaviour_outliers(rows: Iterable[tuple[str, str, float, float]]) -> set[str]:
    """Devices whose distance is above their threshold while the median of the other devices
    on the same artifact digest is within it (``rows``: device, digest, distance, threshold;
    at least two peers needed)."""
    by_digest: dict[str, list[tuple[str, float, float]]] = {}
    for device, digest, distance, threshold in rows:
        by_digest.setdefault(digest, []).append((device, distance, threshold))
    flagged = set()
    for members in by_digest.values():
        for device, distance, threshold in members:
            peers = [dist for dev, dist, _ in members if dev != device]
            if len(peers) >= 2 and distance > threshold >= statistics.median(peers):
                flagged.add(device)
    return flagged


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
        # device -> (artifact digest, distance, threshold) of its last behavioural check
        self._behaviour: dict[str, tuple[str, float, float]] = {}

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
            elif isinstance(m, EventMessage) and m.event in DRIFT_EVENTS:
                d = m.data
                detail = (f"{m.event}: " + "; ".join(str(r) for r in d.get("reasons", ()))
                          if m.event == "behaviour.drift" else
                          f"{m.event}: {d.get('family')} block rate {d.get('rate')} "
                          f"(expected {d.get('expected')}, a {d.get('direction')})")
                out.append(Alert(m.device_id, m.event, detail[:500], a.received_at))
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
        out += self._behaviour_rules(m, t)
        return out

    def _behaviour_rules(self, m: HealthReport, t: float) -> list[Alert]:
        """The device's own verdict, and how it compares with its peers on the same bytes."""
        b, d = m.metrics.behaviour, m.device_id
        if not b or b.get("distance") is None or not m.metrics.artifact_digest:
            return []
        digest, distance = m.metrics.artifact_digest, float(b["distance"])
        threshold = float(b.get("threshold") or 0.0)
        self._behaviour[d] = (digest, distance, threshold)
        out = self._edge(d, "behaviour", b.get("status") == "drift",
                         f"model drifted from its signed fingerprint: distance {distance:.3g} "
                         f"> threshold {threshold:.3g} ({digest[:12]}…)", t)
        peers = [dist for dev, (dg, dist, _) in self._behaviour.items()
                 if dg == digest and dev != d]
        outlier = False
        median = None
        if len(peers) >= 2:
            median = statistics.median(peers)
            outlier = distance > threshold >= median
        out += self._edge(d, "behaviour_outlier", outlier,
                          f"same bytes, different behaviour: distance {distance:.3g} on "
                          f"{digest[:12]}… while its {len(peers)} peers' median is "
                          f"{median if median is None else f'{median:.3g}'} "
                          f"(threshold {threshold:.3g})", t)
        return out

    def behaviour_table(self) -> dict[str, tuple[str, float, float]]:
        """The last behavioural figures per device (for ``fleet behaviour``)."""
        return dict(self._behaviour)


def behaviour_overview(store: Any, *, digest: str | None = None) -> list[dict[str, Any]]:
    """Per device, its last reported behavioural check and whether it is an outlier among the
    devices on the same artifact digest (``fleet behaviour``), sorted by digest and device."""
    rows = []
    for record in store.devices():
        latest = store.health(record.device_id, limit=1)
        if not latest:
            continue
        h = latest[0]
        b = h.get("behaviour") or {}
        if digest is not None and not str(h.get("artifact_digest") or "").startswith(digest):
            continue
        rows.append({"device_id": record.device_id, "artifact_digest": h.get("artifact_digest"),
                     "status": b.get("status", "not reported"), "distance": b.get("distance"),
                     "threshold": b.get("threshold"), "top1_agreement": b.get("top1_agreement"),
                     "checked_at": b.get("checked_at"), "checks": b.get("checks", 0),
                     "reported_at": h.get("device_time")})
    flagged = behaviour_outliers(
        (r["device_id"], r["artifact_digest"], float(r["distance"]), float(r["threshold"] or 0))
        for r in rows if r["distance"] is not None and r["artifact_digest"])
    for r in rows:
        r["outlier"] = r["device_id"] in flagged
    return sorted(rows, key=lambda r: (str(r["artifact_digest"]), r["device_id"]))
