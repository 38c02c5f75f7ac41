"""The agent replays the signed behavioural fingerprint through the model it serves.

When a loaded artifact's signed statement carries a fingerprint (``ARTIFACT.behaviour.json``
beside it, its digest a subject of the statement), the agent checks the *loaded* model against
it before serving it and then on a schedule. A check runs on the generation worker (which owns
the model) only while no request waits: between two probes the worker serves whatever arrived,
so a request waits at most one probe (~0.3 s for SmolLM2 on 2 cores). The schedule keeps the
checks' CPU time within ``cpu_budget`` of wall time by stretching the interval.

The result goes into signed health (``behaviour``), ``/metrics`` and, on a change of verdict, a
signed ``behaviour.drift`` / ``behaviour.ok`` event; ``on_drift`` decides what follows: ``alert``
(report only), ``stop`` (model requests get 503 ``behaviour_drift`` until a reload or a deploy)
or ``rollback`` (back to the other A/B slot, which is checked in turn; without slots: stop).
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edgeward.behaviour import CheckResult, Fingerprint, check_behaviour
from edgeward.device_agents._behaviour_config import BehaviourConfig
from edgeward.device_agents._log import log_event
from edgeward.errors import EdgewardError
from edgeward.provenance import Envelope, Statement

if TYPE_CHECKING:
    from edgeward.device_agents._verified import LoadedModel

__all__ = ["BehaviourConfig", "BehaviourWatch"]

def signed_fingerprint(envelope: bytes | None, artifact: Path) -> tuple[str, Fingerprint | None,
                                                                        str | None]:
    """The fingerprint a verified artifact's statement signs: ``(status, fingerprint, detail)``.

    Status ``unchecked`` (the statement signs none, or the artifact was not verified),
    ``missing`` (signed, but the file is not beside the artifact), ``error`` (the file is not
    the signed one, or unreadable), or ``pending`` (loaded; not yet checked).
    """
    if envelope is None:
        return "unchecked", None, "the artifact carries no signed statement"
    try:
        statement = Statement.from_dict(json.loads(Envelope.from_json(envelope).payload))
    except (EdgewardError, ValueError) as e:
        return "unchecked", None, f"no edgeward statement ({e})"
    subject = statement.fingerprint_subject
    if subject is None:
        return "unchecked", None, "the signed statement carries no behavioural fingerprint"
    path = artifact.parent / subject.name
    if not path.is_file():
        return "missing", None, f"{path}: the signed fingerprint is not on this device"
    try:
        return "pending", Fingerprint.load(path, sha256=subject.sha256), None
    except EdgewardError as e:
        return "error", None, str(e)


class BehaviourWatch:
    """Schedules fingerprint checks of the served model and acts on their verdicts.

    Args:
        config: the ``[behaviour]`` settings.
        run_idle: hands a task to the generation worker, to run while no request waits (the
            worker passes it the runtime and a ``between`` callback that serves waiting jobs).
        report_event: publishes a signed event (never raises).
        on_action: carries out ``stop`` / ``rollback`` (called off the worker thread).
        metrics: the agent's metrics (gauges ``edgeward_behaviour_*``).
        audit: appends a ``behaviour_check`` record to the agent's tamper-evident audit log.
    """

    def __init__(self, config: BehaviourConfig, *,
                 run_idle: Callable[[Callable[..., Any], bool], None],
                 report_event: Callable[[str, dict[str, Any], str], None],
                 on_action: Callable[[str, CheckResult], None], metrics: Any,
                 audit: Callable[[dict[str, Any]], None] | None = None) -> None:
        self.config = config
        self._audit = audit
        self._run_idle, self._report, self._act = run_idle, report_event, on_action
        self._metrics = metrics
        self._lock = threading.Lock()
        self._fp: Fingerprint | None = None
        self._digest: str | None = None
        self._status = "unchecked"
        self._detail: str | None = None
        self._last: CheckResult | None = None
        self._checked_at: str | None = None
        self._checks = 0
        self._pending = False
        self._last_elapsed = 0.0
        self._next_due = float("inf")
        self._stop = threading.Event()
        self._timer = threading.Thread(target=self._tick, name="edgeward-behaviour",
                                       daemon=True)
        self._timer_started = False

    # -- what is served ---------------------------------------------------------------------

    def attach(self, model: LoadedModel, source: Path) -> None:
        """A model was loaded from ``source`` (the slot or configured path): find its signed
        fingerprint and, with ``check_on_load``, check it before it serves."""
        status, fp, detail = signed_fingerprint(model.envelope, Path(source))
        with self._lock:
            self._fp, self._digest = fp, model.info.sha256
            self._status, self._detail, self._last, self._checked_at = status, detail, None, None
            self._next_due = (time.monotonic() + self.config.check_interval_s
                              if fp is not None and self.config.check_interval_s else
                              float("inf"))
        if status in ("missing", "error"):
            log_event(logging.WARNING if status == "missing" else logging.ERROR,
                      "behaviour_fingerprint_" + status, sha256=model.info.sha256, detail=detail)
            self._report("behaviour.fingerprint_" + status,
                         {"artifact_digest": model.info.sha256, "detail": (detail or "")[:500]},
                         "warning" if status == "missing" else "error")
        self._gauges()
        if fp is not None and self.config.check_on_load:
            self.request(first=True)

    def start(self) -> None:
        """Start the schedule."""
        if not self._timer_started:
            self._timer_started = True
            self._timer.start()

    def stop(self) -> None:
        self._stop.set()

    # -- checks -----------------------------------------------------------------------------

    def request(self, *, first: bool = False) -> bool:
        """Queue one check (at most one waits). ``first`` runs it before queued requests (the
        check of a newly loaded model, before it serves). False when there is nothing to check
        or one is already pending."""
        with self._lock:
            if self._fp is None or self._pending:
                return False
            self._pending = True
            fp, digest = self._fp, self._digest
        self._run_idle(lambda runtime, between: self._check(runtime, between, fp, digest), first)
        return True

    def _check(self, runtime: Any, between: Callable[[], None], fp: Fingerprint,
               digest: str | None) -> None:
        t0 = time.process_time()
        wall = time.perf_counter()
        try:
            result = check_behaviour(runtime, fp, between=between)
        except EdgewardError as e:
            with self._lock:
                self._pending = False
                self._status, self._detail = "error", str(e)
            log_event(logging.ERROR, "behaviour_check_failed", sha256=digest, reason=e.kind,
                      detail=str(e))
            self._gauges()
            return
        finally:
            elapsed = max(time.process_time() - t0, 0.0)
        self.record(result, digest, cpu_s=elapsed, wall_s=time.perf_counter() - wall)

    def record(self, result: CheckResult, digest: str | None, *, cpu_s: float = 0.0,
               wall_s: float = 0.0) -> None:
        """Take a check's verdict: health, metrics, events on a change, the drift action."""
        with self._lock:
            self._pending = False
            if digest != self._digest:
                return  # the model changed while it ran: that model's verdict is moot
            before = self._status
            self._status, self._last = result.status, result
            self._detail = "; ".join(result.reasons) or None
            self._checked_at = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
            self._checks += 1
            self._last_elapsed = max(cpu_s, wall_s)
            if self.config.check_interval_s:
                self._next_due = time.monotonic() + self.config.next_interval(self._last_elapsed)
        self._metrics.observe("edgeward_behaviour_check_seconds", wall_s)
        self._gauges()
        log_event(logging.INFO if result.status == "ok" else logging.ERROR, "behaviour_checked",
                  sha256=digest, status=result.status, distance=f"{result.distance:.3g}",
                  threshold=f"{result.threshold:.3g}", top1=f"{result.top1_agreement:.3f}",
                  seconds=f"{wall_s:.2f}")
        data = {"artifact_digest": digest, "distance": result.distance,
                "threshold": result.threshold, "top1_agreement": result.top1_agreement,
                "continuation_agreement": result.continuation_agreement,
                "reasons": list(result.reasons), "action": self.config.on_drift}
        if self._audit is not None:
            self._audit({**data, "status": result.status,
                         "probe_set": self._fp.probe_set if self._fp else None,
                         "runtime_match": result.runtime_match})
        if result.status == "drift" and before != "drift":
            self._report("behaviour.drift", data, "error")
            if self.config.on_drift != "alert":
                threading.Thread(target=self._act, args=(self.config.on_drift, result),
                                 name="edgeward-behaviour-action", daemon=True).start()
        elif result.status == "ok" and before == "drift":
            self._report("behaviour.ok", data, "info")

    def _tick(self) -> None:
        while not self._stop.wait(1.0):
            with self._lock:
                due = self._fp is not None and time.monotonic() >= self._next_due
            if due:
                self.request()

    # -- reporting ----------------------------------------------------------------------------

    @property
    def status(self) -> str:
        return self._status

    def health(self) -> dict[str, Any]:
        """The health report's ``behaviour`` object."""
        with self._lock:
            r = self._last
            return {"status": self._status,
                    "distance": round(r.distance, 8) if r else None,
                    "threshold": r.threshold if r else None,
                    "top1_agreement": round(r.top1_agreement, 6) if r else None,
                    "checked_at": self._checked_at, "checks": self._checks,
                    "probe_set": self._fp.probe_set if self._fp else None,
                    "detail": (self._detail or "")[:300] or None}

    def _gauges(self) -> None:
        h = self.health()
        drift = 1.0 if h["status"] == "drift" else 0.0
        self._metrics.replace("edgeward_behaviour_drift", drift)
        if h["distance"] is not None:
            self._metrics.replace("edgeward_behaviour_distance", float(h["distance"]))
            self._metrics.replace("edgeward_behaviour_threshold", float(h["threshold"]))
