"""The agent's metrics, rendered in the Prometheus text exposition format (version 0.0.4).

Updated once per request or generation (never per token), from the server's event loop and
the generation worker, under one lock. The names and labels are listed in docs/agent.md.
"""

from __future__ import annotations

import bisect
import math
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass

__all__ = ["METRICS", "Metrics"]

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)

Labels = tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class _Spec:
    kind: str  # counter | gauge | histogram
    help: str


METRICS: dict[str, _Spec] = {
    "edgeward_agent_requests_total": _Spec(
        "counter", "HTTP requests answered, by endpoint and status code."),
    "edgeward_agent_request_duration_seconds": _Spec(
        "histogram", "Time from a request's arrival to the end of its response, by endpoint."),
    "edgeward_agent_rejected_total": _Spec(
        "counter", "Requests refused before reaching the model, by reason "
                   "(queue_full, body_too_large, unauthorized, shutting_down)."),
    "edgeward_agent_prompt_tokens_total": _Spec("counter", "Prompt tokens processed."),
    "edgeward_agent_completion_tokens_total": _Spec("counter", "Tokens generated."),
    "edgeward_agent_generations_total": _Spec(
        "counter", "Generations ended, by finish reason "
                   "(stop, length, content_filter, cancelled, error)."),
    "edgeward_agent_queue_wait_seconds": _Spec(
        "histogram", "Time a request waited in the queue before the model took it."),
    "edgeward_agent_time_to_first_token_seconds": _Spec(
        "histogram", "Time from a generation's start on the model to its first token."),
    "edgeward_agent_decode_tokens_per_second": _Spec(
        "gauge", "Decode speed of the last generation with more than one token."),
    "edgeward_agent_queue_depth": _Spec(
        "gauge", "Requests waiting for the model (not counting the one generating)."),
    "edgeward_agent_queue_capacity": _Spec("gauge", "max_queue: most requests that may wait."),
    "edgeward_agent_busy": _Spec("gauge", "1 while the model is generating, else 0."),
    "edgeward_agent_safety_verdicts_total": _Spec(
        "counter", "Safety-filter verdicts that were not 'allow', by stage and action."),
    "edgeward_agent_safety_categories_total": _Spec(
        "counter", "Categories named by those verdicts, by stage and category."),
    "edgeward_agent_audit_failures_total": _Spec(
        "counter", "Safety decisions that could not be written to the audit log."),
    "edgeward_agent_commands_total": _Spec(
        "counter", "Operator commands received, by result (accepted, refused, dropped) and "
                   "reason (the action, or why it was refused)."),
    "edgeward_agent_reloads_total": _Spec("counter", "Reloads, by result (ok, refused)."),
    "edgeward_agent_artifact_refusals_total": _Spec(
        "counter", "Artifacts refused at load, by reason (the error kind)."),
    "edgeward_agent_model_info": _Spec(
        "gauge", "The model being served (value 1), with its digest and signer."),
    "edgeward_behaviour_drift": _Spec(
        "gauge", "1 when the last behavioural check found drift from the signed fingerprint."),
    "edgeward_behaviour_distance": _Spec(
        "gauge", "Distance of the last behavioural check from the signed fingerprint."),
    "edgeward_behaviour_threshold": _Spec(
        "gauge", "The fingerprint's calibrated threshold for that distance."),
    "edgeward_behaviour_check_seconds": _Spec(
        "histogram", "Wall time of one behavioural fingerprint check."),
}


class _Histogram:
    __slots__ = ("counts", "sum")

    def __init__(self) -> None:
        self.counts = [0] * (len(_LATENCY_BUCKETS) + 1)
        self.sum = 0.0


class Metrics:
    """Counters, gauges and latency histograms, thread safe, with a Prometheus renderer."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._values: dict[str, dict[Labels, float]] = {}
        self._histograms: dict[str, dict[Labels, _Histogram]] = {}
        self._live: dict[str, Callable[[], Iterable[tuple[Labels, float]]]] = {}

    def inc(self, name: str, value: float = 1.0, **labels: str) -> None:
        """Add ``value`` to a counter."""
        key = tuple(sorted(labels.items()))
        with self._lock:
            series = self._values.setdefault(name, {})
            series[key] = series.get(key, 0.0) + value

    def set(self, name: str, value: float, **labels: str) -> None:
        """Set a gauge."""
        key = tuple(sorted(labels.items()))
        with self._lock:
            self._values.setdefault(name, {})[key] = value

    def replace(self, name: str, value: float, **labels: str) -> None:
        """Set a gauge to ``value`` under ``labels`` and drop its other label sets."""
        with self._lock:
            self._values[name] = {tuple(sorted(labels.items())): value}

    def observe(self, name: str, seconds: float, **labels: str) -> None:
        """Record one observation in a histogram."""
        key = tuple(sorted(labels.items()))
        with self._lock:
            h = self._histograms.setdefault(name, {}).get(key)
            if h is None:
                h = self._histograms[name][key] = _Histogram()
            h.counts[bisect.bisect_left(_LATENCY_BUCKETS, seconds)] += 1
            h.sum += seconds

    def live(self, name: str, read: Callable[[], Iterable[tuple[Labels, float]]]) -> None:
        """Read a gauge at scrape time from ``read`` (e.g. the queue depth)."""
        with self._lock:
            self._live[name] = read

    def value(self, name: str, **labels: str) -> float:
        """A counter's or gauge's current value (0 if never set); for tests and reports."""
        key = tuple(sorted(labels.items()))
        with self._lock:
            if name in self._live:
                return dict(self._live[name]()).get(key, 0.0)
            return self._values.get(name, {}).get(key, 0.0)

    def series(self, name: str) -> dict[Labels, float]:
        """Every label set of a counter or gauge with its value."""
        with self._lock:
            if name in self._live:
                return dict(self._live[name]())
            return dict(self._values.get(name, {}))

    def render(self) -> str:
        """The Prometheus text format of every metric."""
        with self._lock:
            values = {n: dict(s) for n, s in self._values.items()}
            histograms = {n: {k: (list(h.counts), h.sum) for k, h in s.items()}
                          for n, s in self._histograms.items()}
            live = dict(self._live)
        for name, read in live.items():
            values[name] = dict(read())
        lines: list[str] = []
        for name, spec in METRICS.items():
            lines.append(f"# HELP {name} {spec.help}")
            lines.append(f"# TYPE {name} {spec.kind}")
            if spec.kind == "histogram":
                for labels, (counts, total) in sorted(histograms.get(name, {}).items()):
                    lines.extend(_histogram_lines(name, labels, counts, total))
            else:
                for labels, v in sorted(values.get(name, {}).items()):
                    lines.append(f"{name}{_labels(labels)} {_number(v)}")
        return "\n".join(lines) + "\n"


def _histogram_lines(name: str, labels: Labels, counts: list[int], total: float) -> list[str]:
    out = []
    running = 0
    for bound, n in zip((*_LATENCY_BUCKETS, math.inf), counts, strict=True):
        running += n
        le = "+Inf" if bound == math.inf else _number(bound)
        out.append(f"{name}_bucket{_labels((*labels, ('le', le)))} {running}")
    out.append(f"{name}_sum{_labels(labels)} {_number(total)}")
    out.append(f"{name}_count{_labels(labels)} {running}")
    return out


def _labels(labels: Labels) -> str:
    if not labels:
        return ""
    inner = ",".join(f'{k}="{_escape(v)}"' for k, v in labels)
    return "{" + inner + "}"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _number(v: float) -> str:
    if v == int(v) and abs(v) < 2**53:
        return str(int(v))
    return repr(float(v))
