"""Staged rollouts: deploy an artifact to a device group in waves, halt and roll back on failure.

A rollout is one JSON document in the store (table ``rollouts``), rewritten after every step,
so a manager restart resumes it where it was (``edgeward fleet rollout --resume NAME``).

The group's devices are put in a stable pseudo-random order (by sha256 of the rollout name and
the device id) and cut into waves at the cumulative stage fractions (``5%,25%,100%``). Each
:meth:`RolloutDriver.step`:

1. reads the outcome of every command in flight from the devices' signed events in the store
   (``command.done`` -> succeeded, ``command.failed`` / ``command.refused`` -> failed); a
   ``stale_version`` refusal (another operator commanded the device with higher versions) is
   sent again once, above the ``last_version`` the refusal reports;
2. sends the wave's signed deploy command to each pending device that is ``online``; a device
   that is offline stays pending and is retried (never counted as a success); a command that
   expired without an outcome is sent again;
3. after ``wave_timeout_s``, what is still pending or unanswered counts as ``timed_out``;
4. when failures (failed + timed out) exceed ``max_failure`` of the wave, the rollout halts:
   every device of the wave that already switched gets a signed ``rollback``; a device whose
   deploy is still in flight is waited for (it may yet apply it) and rolled back if it
   succeeds, or counted ``cancelled`` once its command has expired unanswered (the device no
   longer accepts it); devices not yet sent anything are ``cancelled``; devices of later waves
   are never touched; the rollout is ``halted`` when nothing of the wave is in flight;
5. when every device of the wave succeeded (or failures stayed within the threshold), the
   next wave starts; after the last one the rollout is ``done``.
"""

from __future__ import annotations

import hashlib
import itertools
import math
import time
from collections.abc import Callable, Sequence
from typing import Any

from edgeward.errors import ConfigError
from edgeward.fleet._store import Store
from edgeward.fleet.protocol import MAX_SEQ, Command, new_command

__all__ = ["RolloutDriver", "issue_command", "parse_fraction", "parse_stages", "plan_waves",
           "reported_version", "summarize"]

TABLE = "rollouts"
_RUNNING, _HALTING, _HALTED, _DONE = "running", "halting", "halted", "done"
_FAILED = ("failed", "timed_out")


def parse_fraction(text: str, what: str) -> float:
    """``"2%"`` or ``"0.02"`` -> 0.02.

    Raises:
        ConfigError: not a fraction in [0, 1].
    """
    t = text.strip()
    try:
        value = float(t[:-1]) / 100 if t.endswith("%") else float(t)
    except ValueError:
        raise ConfigError(f"{what} {text!r} is not a percentage (e.g. 5%) or a fraction") from None
    if not 0 <= value <= 1:
        raise ConfigError(f"{what} {text!r} must be between 0% and 100%")
    return value


def parse_stages(text: str) -> list[float]:
    """``"5%,25%,100%"`` -> [0.05, 0.25, 1.0] (increasing, ending at 100%).

    Raises:
        ConfigError: not increasing, or not ending at 100%.
    """
    stages = [parse_fraction(s, "stage") for s in text.split(",") if s.strip()]
    if not stages or any(b <= a for a, b in itertools.pairwise(stages)) \
            or stages[0] <= 0 or abs(stages[-1] - 1.0) > 1e-9:
        raise ConfigError(f"stages {text!r} must increase and end at 100% (e.g. 5%,25%,100%)")
    return stages


def reported_version(store: Store, device_id: str, *, limit: int = 500) -> int:
    """The highest command version ``device_id`` reported having admitted (0: none).

    A device's signed events say it: ``command.accepted`` carries the admitted ``version``, a
    ``command.refused`` the device's ``last_version``. Commands of other operators (or of
    another fleet store) raise it, so the fleet's next version must be above it.
    """
    best = 0
    for e in store.events(device_id, limit=limit):
        data = e.get("data") or {}
        value = data.get("version") if e.get("event") == "command.accepted" else \
            data.get("last_version") if e.get("event") == "command.refused" else None
        if type(value) is int and 0 <= value <= MAX_SEQ:
            best = max(best, value)
    return best


def issue_command(store: Store, device_id: str, action: str, params: dict[str, Any], *,
                  lifetime_s: float, now: float | None = None) -> Command:
    """Record and return ``device_id``'s next command: its version is one above both the
    store's last and the highest the device reported (:func:`reported_version`), so it is not
    refused ``stale_version`` after another operator's commands.

    Raises:
        ConfigError: the device is not enrolled; StoreError: the store failed.
    """
    floor = min(reported_version(store, device_id) + 1, MAX_SEQ)
    return store.issue_command(device_id, lambda v: new_command(
        device_id, action, max(v, floor), params=params, lifetime_s=lifetime_s, now=now))


def plan_waves(name: str, devices: Sequence[str], stages: Sequence[float]) -> list[list[str]]:
    """The devices in waves: a stable pseudo-random order cut at the cumulative stages."""
    order = sorted(set(devices), key=lambda d: hashlib.sha256(f"{name}/{d}".encode()).digest())
    waves, start = [], 0
    for frac in stages:
        end = max(start + 1, math.ceil(frac * len(order))) if order else 0
        end = min(end, len(order))
        if end > start:
            waves.append(order[start:end])
        start = end
    return waves


class RolloutDriver:
    """Runs rollouts against the store (see the module docstring).

    Args:
        store: the fleet store (device states, events, commands, the rollout documents).
        send: publishes a signed command (``encode_command`` + MQTT publish).
        clock: Unix seconds.
    """

    def __init__(self, store: Store, send: Callable[[Command], None], *,
                 clock: Callable[[], float] = time.time) -> None:
        self.store, self.send, self.clock = store, send, clock

    def create(self, name: str, *, group: str, devices: Sequence[str], params: dict[str, Any],
               stages: Sequence[float], max_failure: float, wave_timeout_s: float = 600.0,
               lifetime_s: float = 600.0) -> dict[str, Any]:
        """Plan and store a new rollout (nothing is sent until :meth:`step`).

        Raises:
            ConfigError: the name is taken, or the group is empty.
        """
        if self.store.get_doc(TABLE, name) is not None:
            raise ConfigError(f"rollout {name!r} exists; pick another --name or --resume it")
        waves = plan_waves(name, devices, stages)
        if not waves:
            raise ConfigError(f"group {group!r} has no devices")
        now = self.clock()
        doc = {"name": name, "group": group, "params": params, "stages": list(stages),
               "max_failure": max_failure, "wave_timeout_s": wave_timeout_s,
               "lifetime_s": lifetime_s, "state": _RUNNING, "wave": 0, "wave_started": now,
               "created_at": now, "halt_reason": None, "waves": waves,
               "devices": {d: {"wave": i, "status": "pending", "command_id": None,
                               "sent_at": None, "attempts": 0}
                           for i, wave in enumerate(waves) for d in wave}}
        self._save(doc)
        return doc

    def get(self, name: str) -> dict[str, Any]:
        """A rollout's document.

        Raises:
            ConfigError: no such rollout.
        """
        doc = self.store.get_doc(TABLE, name)
        if doc is None:
            raise ConfigError(f"no rollout {name!r} (see `edgeward fleet rollouts`)")
        return doc

    def step(self, name: str) -> dict[str, Any]:
        """One pass of the state machine; returns the document (saved)."""
        doc = self.get(name)
        if doc["state"] in (_HALTED, _DONE):
            return doc
        now = self.clock()
        self._collect(doc)
        states = {d: doc["devices"][d] for d in doc["waves"][doc["wave"]]}
        if doc["state"] == _HALTING:
            self._unwind(doc, states, now)
        else:
            self._dispatch(doc, states, now)
            self._judge(doc, states, now)
        self._save(doc)
        return doc

    def _dispatch(self, doc: dict[str, Any], states: dict[str, Any], now: float) -> None:
        """Send to pending online devices (and again where a command expired unanswered);
        past the wave's timeout, what is unanswered is ``timed_out``."""
        for device, st in states.items():
            expired = st["status"] == "sent" and now > st["sent_at"] + doc["lifetime_s"]
            if (st["status"] == "pending" or expired) and self._online(device):
                self._send(doc, device, "deploy", now)
        if now - doc["wave_started"] > doc["wave_timeout_s"]:
            for st in states.values():
                if st["status"] in ("pending", "sent"):
                    st["status"] = "timed_out"

    def _unwind(self, doc: dict[str, Any], states: dict[str, Any], now: float) -> None:
        """While halting: roll back devices that answered success after the halt; give up on
        deploys that expired unanswered; halted once nothing of the wave is in flight."""
        for device, st in states.items():
            if st["status"] == "succeeded":
                self._send(doc, device, "rollback", now)
            elif st["status"] == "sent" and now > st["sent_at"] + doc["lifetime_s"]:
                st["status"] = "cancelled"
        if not any(s["status"] in ("rollback_sent", "sent") for s in states.values()):
            doc["state"] = _HALTED

    def _judge(self, doc: dict[str, Any], states: dict[str, Any], now: float) -> None:
        """Halt (rolling the wave back), move to the next wave, or finish."""
        failures = sum(st["status"] in _FAILED for st in states.values())
        if failures > doc["max_failure"] * len(states):
            doc["state"] = _HALTING
            doc["halt_reason"] = (f"wave {doc['wave'] + 1}: {failures} of {len(states)} "
                                  f"devices failed (limit {doc['max_failure']:.0%})")
            for st in states.values():
                if st["status"] == "pending":
                    st["status"] = "cancelled"
            self._unwind(doc, states, now)
        elif all(st["status"] in ("succeeded", *_FAILED) for st in states.values()):
            if doc["wave"] + 1 < len(doc["waves"]):
                doc["wave"] += 1
                doc["wave_started"] = now
            else:
                doc["state"] = _DONE

    def run(self, name: str, *, poll_s: float = 1.0,
            should_stop: Callable[[], bool] = lambda: False) -> dict[str, Any]:
        """Step until the rollout is done or halted (or ``should_stop``)."""
        while True:
            doc = self.step(name)
            if doc["state"] in (_HALTED, _DONE) or should_stop():
                return doc
            time.sleep(poll_s)

    # -- helpers ---------------------------------------------------------------------------
    def _online(self, device: str) -> bool:
        rec = self.store.device(device)
        return rec is not None and rec.state == "online"

    def _send(self, doc: dict[str, Any], device: str, action: str, now: float) -> None:
        params = doc["params"] if action == "deploy" else {
            "artifact_digest": doc["params"].get("artifact_digest"), "rollout": doc["name"]}
        cmd = issue_command(self.store, device, action, params, lifetime_s=doc["lifetime_s"],
                            now=now)
        self.send(cmd)
        st = doc["devices"][device]
        st.update(command_id=cmd.command_id, sent_at=now, attempts=st["attempts"] + 1,
                  status="sent" if action == "deploy" else "rollback_sent")

    def _collect(self, doc: dict[str, Any]) -> None:
        """Outcomes of the commands in flight, from the devices' events."""
        for device, st in doc["devices"].items():
            if st["status"] not in ("sent", "rollback_sent") or not st["command_id"]:
                continue
            for e in self.store.events(device, limit=200):
                data = e.get("data") or {}
                if data.get("command_id") != st["command_id"]:
                    continue
                if e["event"] == "command.done":
                    st["status"] = "succeeded" if st["status"] == "sent" else "rolled_back"
                    break
                if e["event"] == "command.refused" and data.get("reason") == "stale_version" \
                        and type(data.get("last_version")) is int \
                        and not st.get("stale_retried"):
                    # another operator's commands went above ours: once, above theirs
                    st["stale_retried"] = True
                    self._send(doc, device, "deploy" if st["status"] == "sent" else "rollback",
                               self.clock())
                    break
                if e["event"] in ("command.failed", "command.refused"):
                    st["status"] = "failed" if st["status"] == "sent" else "rollback_failed"
                    break

    def _save(self, doc: dict[str, Any]) -> None:
        doc["updated_at"] = self.clock()
        self.store.put_doc(TABLE, doc["name"], doc, now=doc["updated_at"])


def summarize(doc: dict[str, Any]) -> dict[str, Any]:
    """A rollout document in brief, as ``fleet rollouts --json`` prints it and the terminal UI
    shows it: name, state, group, wave (1-based), wave sizes, devices by status, halt reason
    and the artifact's digest."""
    counts: dict[str, int] = {}
    for st in doc.get("devices", {}).values():
        counts[st["status"]] = counts.get(st["status"], 0) + 1
    return {"name": doc.get("name"), "state": doc.get("state"), "group": doc.get("group"),
            "wave": int(doc.get("wave", 0)) + 1,
            "waves": [len(w) for w in doc.get("waves", [])],
            "halt_reason": doc.get("halt_reason"), "devices": counts,
            "artifact_digest": doc.get("params", {}).get("artifact_digest")}
