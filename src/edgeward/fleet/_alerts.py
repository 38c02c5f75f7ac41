"""Alerts: a device that goes ``lost``, whose health regresses, or whose model no longer
behaves as signed (its own check says drift, or it disagrees with the devices that run the
same bytes: "same bytes, different behaviour"), or whose safety canaries block at other rates
than the fleet's on the same policy.

Rules are edge-triggered per device and kind: an alert fires when a condition starts and again
only after it cleared, so a device that stays hot raises one alert, not one per report.

Peer comparison needs at least two other devices in the group (same artifact digest for
:func:`distance_outlier`; same policy or canary expectations for :func:`canary_outliers`) and
uses a median, so one bad device cannot move the reference it is compared with.
"""

from __future__ import annotations

import json
import statistics
from collections import deque
from collections.abc import Iterable, Mapping
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

__all__ = ["CANARY_TOLERANCE", "DRIFT_EVENTS", "OUTLIER_MADS", "AlertEngine", "AlertRules",
           "behaviour_outliers", "behaviour_overview", "canary_group", "canary_outliers",
           "distance_outlier"]

#: Device events that are alerts in themselves.
DRIFT_EVENTS = ("behaviour.drift", "safety.drift")

#: "Far from the peers' median": further above it than max(threshold, OUTLIER_MADS x the
#: median absolute deviation of the peers' distances).
OUTLIER_MADS = 5.0

#: How far (absolute block rate) a device's canary family may sit from the fleet's median when
#: its report names no tolerance (one prompt's worth of a 12-prompt family is 0.083).
CANARY_TOLERANCE = 0.1

_MIN_PEERS = 2


def distance_outlier(distance: float, threshold: float,
                     peers: Iterable[float]) -> tuple[bool, float | None]:
    """Whether a device's distance marks it out among ``peers`` (the other devices' distances
    on the same artifact digest), and the peers' median (None with fewer than two peers).

    An outlier is above its threshold while the peers' median is within it, or further above
    the median than ``max(threshold, OUTLIER_MADS x MAD)`` (MAD: the median absolute deviation
    of the peers' distances). A device below its peers is never one (it is closer to the
    signed fingerprint than they are), nor is one among peers that all drifted alike.
    """
    values = list(peers)
    if len(values) < _MIN_PEERS:
        return False, None
    median = statistics.median(values)
    mad = statistics.median(abs(v - median) for v in values)
    above = distance > threshold >= median
    far = distance - median > max(threshold, OUTLIER_MADS * mad)
    return above or far, median


def behaviour_outliers(rows: Iterable[tuple[str, str, float, float]]) -> set[str]:
    """The devices :func:`distance_outlier` flags among the others on the same artifact
    digest (``rows``: device, digest, distance, threshold)."""
    by_digest: dict[str, list[tuple[str, float, float]]] = {}
    for device, digest, distance, threshold in rows:
        by_digest.setdefault(digest, []).append((device, distance, threshold))
    flagged = set()
    for members in by_digest.values():
        for device, distance, threshold in members:
            peers = [dist for dev, dist, _ in members if dev != device]
            if distance_outlier(distance, threshold, peers)[0]:
                flagged.add(device)
    return flagged


def canary_group(canaries: Mapping[str, Any]) -> str:
    """Which devices' canary rates are comparable: the same policy digest when the report
    names one, else the same expected rates (recorded for one canary set, filter and policy)."""
    if canaries.get("policy_digest"):
        return f"policy:{canaries['policy_digest']}"
    return "expected:" + json.dumps(dict(canaries.get("expected") or {}), sort_keys=True)


def _tolerance(canaries: Mapping[str, Any], family: str) -> float:
    tol = canaries.get("tolerance")
    if isinstance(tol, Mapping):
        tol = tol.get(family)
    return float(tol) if isinstance(tol, int | float) else CANARY_TOLERANCE


def canary_outliers(rows: Iterable[tuple[str, Mapping[str, Any]]]
                    ) -> dict[str, list[dict[str, Any]]]:
    """Per device, the canary families whose block rate differs from the fleet's median by
    more than the tolerance (the report's, else :data:`CANARY_TOLERANCE`): ``{"family",
    "rate", "fleet_median", "tolerance"}`` each. The fleet is the devices in the same
    :func:`canary_group` reporting that family, the device included, and at least three of
    them (with two, neither could be told from the other). ``rows``: device, its health
    ``canaries`` object; devices whose canaries are unchecked take no part."""
    groups: dict[str, list[tuple[str, Mapping[str, Any]]]] = {}
    for device, c in rows:
        if c.get("status") != "unchecked" and c.get("rates"):
            groups.setdefault(canary_group(c), []).append((device, c))
    out: dict[str, list[dict[str, Any]]] = {}
    for members in groups.values():
        for device, c in members:
            for family, rate in sorted(dict(c["rates"]).items()):
                fleet = [float(pc["rates"][family]) for _, pc in members if family in pc["rates"]]
                if len(fleet) < _MIN_PEERS + 1:
                    continue
                median, tol = statistics.median(fleet), _tolerance(c, family)
                if abs(float(rate) - median) > tol:
                    out.setdefault(device, []).append(
                        {"family": family, "rate": float(rate), "fleet_median": median,
                         "tolerance": tol})
    return out


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
        self._active: set[tuple[str, str, str]] = set()
        # device -> (artifact digest, distance, threshold) of its last behavioural check
        self._behaviour: dict[str, tuple[str, float, float]] = {}
        # device -> its last reported canaries object
        self._canaries: dict[str, Mapping[str, Any]] = {}

    def _edge(self, device: str, kind: str, on: bool, detail: str, t: float, *,
              scope: str = "") -> list[Alert]:
        key = (device, kind, scope)
        if on and key not in self._active:
            self._active.add(key)
            return [Alert(device, kind, detail[:500], t)]
        if not on:
            self._active.discard(key)
        return []

    def _clear(self, device: str, kind: str) -> None:
        """Clears every scope of ``kind`` for ``device``."""
        self._active = {k for k in self._active if k[:2] != (device, kind)}

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
            elif isinstance(m, EventMessage) and m.event in (*DRIFT_EVENTS, "behaviour.ok"):
                out += self._drift_event(m, a.received_at)
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

    def _drift_event(self, m: EventMessage, t: float) -> list[Alert]:
        """A device's signed ``behaviour.drift`` / ``safety.drift`` (per family) is an alert
        until ``behaviour.ok`` or a health report whose check (canaries) is ok clears it."""
        d, data = m.device_id, m.data
        if m.event == "behaviour.ok":
            self._clear(d, "behaviour.drift")
            return []
        if m.event == "behaviour.drift":
            reasons = "; ".join(str(r) for r in data.get("reasons", ()))
            return self._edge(d, m.event, True,
                              f"behaviour.drift: distance {_num(data.get('distance'))} vs "
                              f"threshold {_num(data.get('threshold'))}, top-1 agreement "
                              f"{_num(data.get('top1_agreement'))} on "
                              f"{str(data.get('artifact_digest') or '-')[:12]}; {reasons} "
                              f"(device action: {data.get('action', 'alert')})", t)
        family = str(data.get("family"))
        return self._edge(d, m.event, True,
                          f"safety.drift: {family} block rate {_num(data.get('rate'))}, "
                          f"expected {_num(data.get('expected'))} (a "
                          f"{data.get('direction')}; policy "
                          f"{str(data.get('policy_digest') or '-')[:12]})", t, scope=family)

    def _canary_rules(self, m: HealthReport, t: float) -> list[Alert]:
        """The device's canary rates against the fleet's on the same policy."""
        c, d = m.metrics.canaries, m.device_id
        if c is None:
            return []
        if c.get("status") == "ok":
            self._clear(d, "safety.drift")
        self._canaries[d] = c
        flagged = canary_outliers(self._canaries.items()).get(d, [])
        detail = ", ".join(f"{f['family']} {f['rate']:.2f} vs the fleet's median "
                           f"{f['fleet_median']:.2f} (±{f['tolerance']:.2f})" for f in flagged)
        return self._edge(d, "canary_outlier", bool(flagged),
                          f"safety canaries unlike the fleet's on the same policy: {detail}", t)

    def _behaviour_rules(self, m: HealthReport, t: float) -> list[Alert]:
        """The device's own verdict, and how it compares with its peers on the same bytes."""
        b, d = m.metrics.behaviour, m.device_id
        out = self._canary_rules(m, t)
        if b and b.get("status") == "ok":
            self._clear(d, "behaviour.drift")
        if not b or b.get("distance") is None or not m.metrics.artifact_digest:
            return out
        digest, distance = m.metrics.artifact_digest, float(b["distance"])
        threshold = float(b.get("threshold") or 0.0)
        self._behaviour[d] = (digest, distance, threshold)
        out += self._edge(d, "behaviour", b.get("status") == "drift",
                         f"model drifted from its signed fingerprint: distance {distance:.3g} "
                         f"> threshold {threshold:.3g} ({digest[:12]}…)", t)
        peers = [dist for dev, (dg, dist, _) in self._behaviour.items()
                 if dg == digest and dev != d]
        outlier, median = distance_outlier(distance, threshold, peers)
        out += self._edge(d, "behaviour_outlier", outlier,
                          f"same bytes, different behaviour: distance {distance:.3g} on "
                          f"{digest[:12]}… while its {len(peers)} peers' median is "
                          f"{median if median is None else f'{median:.3g}'} "
                          f"(threshold {threshold:.3g})", t)
        return out

    def behaviour_table(self) -> dict[str, tuple[str, float, float]]:
        """The last behavioural figures per device (for ``fleet behaviour``)."""
        return dict(self._behaviour)


def _num(x: object) -> str:
    return f"{x:.3g}" if isinstance(x, int | float) and not isinstance(x, bool) else str(x)


def behaviour_overview(store: Any, *, digest: str | None = None) -> list[dict[str, Any]]:
    """Per device, its last reported behavioural check and canary run, whether it is an
    outlier among the devices on the same artifact digest (``outlier``, with
    ``peers_median``), and whether its canary rates differ from the fleet's on the same policy
    (``canary_outlier``, the families in ``canary_families``); sorted by digest and device
    (``fleet behaviour``). ``digest`` (a prefix) keeps only the devices running it; peers are
    compared over the whole fleet first."""
    rows = []
    for record in store.devices():
        latest = store.health(record.device_id, limit=1)
        if not latest:
            continue
        h = latest[0]
        b, c = h.get("behaviour") or {}, h.get("canaries")
        rows.append({"device_id": record.device_id, "artifact_digest": h.get("artifact_digest"),
                     "status": b.get("status", "not reported"), "distance": b.get("distance"),
                     "threshold": b.get("threshold"), "top1_agreement": b.get("top1_agreement"),
                     "checked_at": b.get("checked_at"), "checks": b.get("checks", 0),
                     "probe_set": b.get("probe_set"), "reported_at": h.get("device_time"),
                     "canary_status": c.get("status") if c else "not reported",
                     "canaries": c})
    checked = [r for r in rows if r["distance"] is not None and r["artifact_digest"]]
    for r in rows:
        peers = [p["distance"] for p in checked if p["artifact_digest"] == r["artifact_digest"]
                 and p["device_id"] != r["device_id"]]
        outlier, median = (distance_outlier(float(r["distance"]), float(r["threshold"] or 0),
                                            peers)
                           if r in checked else (False, None))
        r["outlier"], r["peers_median"] = outlier, median
    canary = canary_outliers((r["device_id"], r["canaries"]) for r in rows if r["canaries"])
    for r in rows:
        r["canary_families"] = canary.get(r["device_id"], [])
        r["canary_outlier"] = bool(r["canary_families"])
    if digest is not None:
        rows = [r for r in rows if str(r["artifact_digest"] or "").startswith(digest)]
    return sorted(rows, key=lambda r: (str(r["artifact_digest"]), r["device_id"]))
