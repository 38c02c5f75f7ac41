"""The agent runs the signed safety canaries through its filter on a schedule.

Each run sends every canary of the set (the packaged ``edgeward-canaries/1``, or a signed set
from ``[behaviour] canaries``) through the same ``check`` a chat request's prompt goes through,
with the policy in force, on the generation worker and only while no request waits (between two
canaries the worker serves what arrived). Block rates per family are judged against the rates
the set recorded for its filter and policy: a drop (the filter stopped firing) or a jump
(over-blocking) is a signed ``safety.drift`` event per family, and health carries the
``canaries`` object. Canary decisions are not counted as user traffic in ``/metrics``; in the
audit log they carry ``client = "edgeward-canary"``.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from edgeward.behaviour import CanaryResult, CanarySet, load_canary_set, run_canaries
from edgeward.device_agents._log import log_event
from edgeward.errors import EdgewardError

__all__ = ["CanaryWatch"]

_CONTEXT = {"client": "edgeward-canary", "endpoint": "canary"}


class CanaryWatch:
    """Schedules canary runs and reports their verdicts.

    Args:
        interval_s: seconds between runs (0: never).
        canaries: a signed canary-set file (None: the packaged set).
        trust_store: verifies ``canaries``.
        run_idle: hands a task to the generation worker (see ``Engine.run_idle``).
        safety_filter: returns the filter in force now.
        report_event: publishes a signed event (never raises).
        artifact_digest: returns the digest of the model being served.
    """

    def __init__(self, interval_s: float, canaries: Path | None, trust_store: Path | None, *,
                 run_idle: Callable[[Callable[..., Any], bool], None],
                 safety_filter: Callable[[], Any],
                 report_event: Callable[[str, dict[str, Any], str], None],
                 artifact_digest: Callable[[], str | None]) -> None:
        self.interval_s = interval_s
        self._set: CanarySet = load_canary_set(canaries, trust_store=trust_store)
        self._run_idle, self._filter, self._report = run_idle, safety_filter, report_event
        self._digest = artifact_digest
        self._lock = threading.Lock()
        self._last: CanaryResult | None = None
        self._drifting: set[str] = set()
        self._checks = 0
        self._pending = False
        self._stop = threading.Event()
        self._timer = threading.Thread(target=self._tick, name="edgeward-canaries", daemon=True)

    def start(self) -> None:
        if self.interval_s > 0:
            self._timer.start()

    def stop(self) -> None:
        self._stop.set()

    def request(self) -> bool:
        """Queue one run (at most one waits)."""
        with self._lock:
            if self._pending:
                return False
            self._pending = True
        self._run_idle(lambda runtime, between: self._run(between), False)
        return True

    def _run(self, between: Callable[[], None]) -> None:
        flt = self._filter()

        def decide(text: str) -> bool:
            return bool(flt.check(text, stage="prompt", context=_CONTEXT).action == "block")

        try:
            result = run_canaries(self._set, decide, between=between)
        except EdgewardError as e:
            log_event(logging.ERROR, "canaries_failed", reason=e.kind, detail=str(e))
            return
        finally:
            with self._lock:
                self._pending = False
        self.record(result, getattr(getattr(flt, "policy", None), "digest", None))

    def record(self, result: CanaryResult, policy_digest: str | None = None) -> None:
        """Take a run's verdict: health, and a ``safety.drift`` event per newly drifting
        family."""
        with self._lock:
            self._last, self._checks = result, self._checks + 1
            now = {d.family for d in result.drifts}
            new = [d for d in result.drifts if d.family not in self._drifting]
            self._drifting = now
        log_event(logging.INFO if result.status == "ok" else logging.ERROR, "canaries_checked",
                  status=result.status, rates=result.rates)
        for d in new:
            self._report("safety.drift", d.event_payload(artifact_digest=self._digest(),
                                                         policy_digest=policy_digest), "error")

    def _tick(self) -> None:
        next_run = time.monotonic() + min(5.0, self.interval_s)
        while not self._stop.wait(1.0):
            if time.monotonic() >= next_run:
                self.request()
                next_run = time.monotonic() + self.interval_s

    def health(self) -> dict[str, Any]:
        """The health report's ``canaries`` object."""
        with self._lock:
            if self._last is None:
                return {"status": "unchecked", "checked_at": None, "rates": {},
                        "expected": dict(self._set.expected), "canary_set": self._set.id,
                        "checks": 0}
            return {**self._last.to_health(), "canary_set": self._set.id,
                    "checks": self._checks}
