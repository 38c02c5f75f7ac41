"""The agent's update client: operator commands in, updates through the A/B slots.

With ``[telemetry]`` and a trust store, the agent subscribes to its command topic. Each
message's envelope and operator signature are checked as it arrives (on the network thread,
well under a millisecond): what is forged, unsigned or malformed is refused and counted there
and never takes a place in the queue, so a flood of unverified messages cannot crowd out the
operator's commands. Verified commands are queued (at most 32 waiting; more are dropped and
counted) and handled on this module's thread: admitted or refused by the
:class:`~edgeward.device_agents._commands.CommandGate` (nonce, expiry, version, downgrade),
then applied — ``deploy`` fetches the artifact and its signature over MQTT
(:class:`~edgeward.device_agents._fetch.Fetcher`) and installs them through the slots,
``rollback`` goes back to the other slot — and the agent reloads the slot. Every outcome is a
signed event (``command.refused``, ``command.accepted``, ``update.progress``, ``command.done``,
``command.failed``) and a ``/metrics`` count. A refusal carries the device's last admitted
``last_version``, so the fleet can choose its next version above it.

An admitted command is journaled (``STATE/command-inflight.json``) until its outcome is
reported; an agent killed while applying it finds the journal when it starts again and
reports ``command.failed`` with reason ``interrupted`` (or ``command.done`` when the slots had
already committed the deployed artifact), so the fleet does not wait for a timeout.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import queue
import shutil
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edgeward.device_agents._commands import CommandGate
from edgeward.device_agents._config import SLOTS_ARTIFACT
from edgeward.device_agents._fetch import Fetcher
from edgeward.device_agents._files import atomic_write
from edgeward.device_agents._log import log_event
from edgeward.device_agents._remote import load_remote, save_remote, with_settings
from edgeward.device_agents._slots import SlotStore
from edgeward.device_agents._verified import _remove_tree
from edgeward.errors import CommandRefusedError, ConfigError, EdgewardError, RejectedMessageError
from edgeward.fleet.protocol import Command, decode_command
from edgeward.provenance import TrustStore
from edgeward.safeio import parse_json, read_capped

if TYPE_CHECKING:
    from edgeward.device_agents._agent import Agent

__all__ = ["Updater"]

_QUEUE = 32  # verified commands received and not yet handled; more are dropped (and counted)
_JOURNAL = "command-inflight.json"  # the admitted command being applied
_REFUSAL_EVENTS = (20, 10.0)  # refusals reported as events per 10 s on arrival (all counted)
_DECODE_REASONS = frozenset({"bad_topic", "oversize", "malformed", "unsigned", "forged",
                             "topic_mismatch"})


class Updater:
    """Receives, admits and applies operator commands for one agent.

    Args:
        agent: the agent (its config, metrics, events, health check and reload).
    """

    def __init__(self, agent: Agent) -> None:
        self.agent = agent
        self.gate: CommandGate | None = None
        self._queue: queue.Queue[tuple[str, bytes, str] | None] = queue.Queue(_QUEUE)
        self._thread: threading.Thread | None = None
        self._serving = ""
        self._reported: list[float] = []  # times of refusal events reported on arrival
        self._queued: set[str] = set()  # nonces of verified commands waiting in the queue
        self._queued_lock = threading.Lock()
        self._report_lock = threading.Lock()

    def start(self, gate: CommandGate, serving: str) -> Callable[[str, bytes], None]:
        """Start the command thread; returns the callback the telemetry client calls with
        each message on the command topic."""
        self.gate = gate
        gate.deployed(serving)
        self._serving = serving
        self._thread = threading.Thread(target=self._run, name="edgeward-commands",
                                        daemon=True)
        self._thread.start()
        return self.receive

    def stop(self) -> None:
        """Finish the command being handled and stop the thread."""
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join(30)
            self._thread = None

    def receive(self, topic: str, payload: bytes) -> None:
        """On the network thread: check the envelope and the operator signature, then queue
        the command for the command thread; what does not verify is refused here."""
        try:
            cmd = self._precheck(topic, payload)
            self._not_a_replay(cmd)
        except CommandRefusedError as e:
            self._refused(e, None, report=self._may_report())
            return
        try:
            self._queue.put_nowait((topic, payload, cmd.nonce if cmd is not None else ""))
        except queue.Full:
            if cmd is not None:
                with self._queued_lock:
                    self._queued.discard(cmd.nonce)
            self.agent.metrics.inc("edgeward_agent_commands_total", result="dropped")
            log_event(logging.WARNING, "command_dropped", reason="queue_full")

    def _precheck(self, topic: str, payload: bytes) -> Command | None:
        """The stateless checks of :func:`decode_command` (topic, size, envelope, operator
        signature); ``None`` when they cannot be made here (the gate then decides).

        Raises:
            CommandRefusedError: the message is not a verified command.
        """
        trust = self.agent.config.trust_store
        if trust is None:
            return None
        try:
            store = TrustStore.open(trust)
        except EdgewardError:
            return None  # the gate reports a broken trust store
        try:
            return decode_command(topic, payload, store)
        except RejectedMessageError as e:
            raise CommandRefusedError(str(e), reason=e.reason) from e

    def _not_a_replay(self, cmd: Command | None) -> None:
        """Refuse, on arrival, a verified command whose nonce is queued already or that the
        gate would refuse as replayed or stale: copies of one genuine command cannot crowd
        out the next."""
        if cmd is None:
            return
        gate = self.gate
        refusal = gate.already_refused(cmd) if gate is not None else None
        if refusal is not None:
            raise refusal
        with self._queued_lock:
            if cmd.nonce in self._queued:
                raise CommandRefusedError(f"command {cmd.command_id}: a copy is already "
                                          "queued (a replay)", reason="replayed")
            self._queued.add(cmd.nonce)

    def _may_report(self) -> bool:
        """Whether a refusal on arrival is reported as an event (a flood is only counted)."""
        most, window = _REFUSAL_EVENTS
        now = time.monotonic()
        with self._report_lock:
            self._reported = [t for t in self._reported if now - t < window]
            if len(self._reported) >= most:
                return False
            self._reported.append(now)
            return True

    def _run(self) -> None:
        self._recover()
        while (item := self._queue.get()) is not None:
            topic, payload, nonce = item
            try:
                self.handle(topic, payload)
            except Exception as e:  # noqa: BLE001 -- a command must never take the agent down
                # No traceback: the input came from outside; the event says what failed.
                log_event(logging.ERROR, "command_handling_failed", error=type(e).__name__,
                          detail=str(e)[:300])
                self.agent.metrics.inc("edgeward_agent_commands_total", result="failed",
                                       reason="internal")
                self.agent.report_event("command.failed", {
                    "reason": "internal", "detail": f"{type(e).__name__}: {e}"[:1000]}, "error")
            finally:
                with self._queued_lock:
                    self._queued.discard(nonce)

    def handle(self, topic: str, payload: bytes) -> Command | None:
        """Admit (or refuse) one received command and apply it; every outcome is logged,
        counted and reported to the fleet as a signed event.

        Returns:
            The admitted command, or ``None`` when it was refused.
        """
        gate = self.gate
        if gate is None:
            return None
        try:
            cmd = gate.admit(topic, payload)
        except CommandRefusedError as e:
            self._refused(e, None if e.reason in _DECODE_REASONS
                          else self._peek(topic, payload))
            return None
        except ConfigError as e:
            log_event(logging.ERROR, "command_gate_failed", detail=str(e))
            self.agent.report_event("command.failed", {"reason": e.kind, "detail": str(e)[:1000]},
                               "error")
            return None
        self.agent.metrics.inc("edgeward_agent_commands_total", result="accepted",
                               reason=cmd.action)
        log_event(logging.INFO, "command_accepted", command_id=cmd.command_id,
                  action=cmd.action, version=cmd.version)
        self.agent.report_event("command.accepted", {"command_id": cmd.command_id,
                                                "action": cmd.action, "version": cmd.version},
                           "info")
        self._journal(cmd)
        try:
            self._apply(cmd)
        finally:
            self._journal(None)
        return cmd

    def _peek(self, topic: str, payload: bytes) -> Command | None:
        """The command the gate refused for its state (stale, replayed, expired...), for the
        refusal event's ``command_id`` and ``version``."""
        try:
            return self._precheck(topic, payload)
        except CommandRefusedError:
            return None

    def _refused(self, e: CommandRefusedError, cmd: Command | None, *,
                 report: bool = True) -> None:
        self.agent.metrics.inc("edgeward_agent_commands_total", result="refused",
                               reason=e.reason)
        if not report:
            return
        log_event(logging.WARNING, "command_refused", reason=e.reason, detail=str(e)[:300])
        data: dict[str, Any] = {"reason": e.reason, "detail": str(e)[:1000]}
        if self.gate is not None:
            data["last_version"] = self.gate.last_version
        if cmd is not None:
            data |= {"command_id": cmd.command_id, "action": cmd.action,
                     "version": cmd.version}
        self.agent.report_event("command.refused", data, "warning")

    # -- the journal of the command being applied ------------------------------------------
    def _journal(self, cmd: Command | None) -> None:
        """Record the admitted command being applied (``None``: its outcome is reported)."""
        path = self.agent.config.state_dir / _JOURNAL
        try:
            if cmd is None:
                path.unlink(missing_ok=True)
                return
            atomic_write(path, json.dumps({
                "command_id": cmd.command_id, "action": cmd.action, "version": cmd.version,
                "artifact_digest": cmd.params.get("artifact_digest"),
                "started_at": time.time()}).encode())
        except (ConfigError, OSError) as e:
            log_event(logging.WARNING, "command_journal_failed", detail=str(e)[:300])

    def _recover(self) -> None:
        """At start: report the outcome of a command an earlier run was killed applying."""
        path = self.agent.config.state_dir / _JOURNAL
        if not path.exists() and not path.is_symlink():
            return
        try:
            doc = parse_json(read_capped(path, 64 << 10, what="command journal"),
                             what="command journal")
            if not isinstance(doc, dict):
                raise ConfigError(f"{path}: not a command journal")
        except ConfigError as e:
            log_event(logging.WARNING, "command_journal_unreadable", detail=str(e)[:300])
            path.unlink(missing_ok=True)
            return
        deadline = time.monotonic() + 10.0  # the event needs the telemetry client
        while getattr(self.agent, "telemetry", True) is None and time.monotonic() < deadline:
            time.sleep(0.05)
        base = {"command_id": str(doc.get("command_id"))[:64],
                "action": str(doc.get("action"))[:32]}
        if doc.get("action") == "deploy" and doc.get("artifact_digest") == self._serving:
            log_event(logging.INFO, "command_recovered", **base)
            self.agent.report_event("command.done", base | {
                "sha256": self._serving, "recovered": True}, "info")
        else:
            log_event(logging.WARNING, "command_interrupted", **base)
            self.agent.metrics.inc("edgeward_agent_commands_total", result="failed",
                                   reason="interrupted")
            self.agent.report_event("command.failed", base | {
                "reason": "interrupted", "detail": "the agent stopped while applying it; "
                "send the command again (with a new version) to retry"}, "error")
        path.unlink(missing_ok=True)

    def _apply(self, cmd: Command) -> None:
        cfg = self.agent.config
        base = {"command_id": cmd.command_id, "action": cmd.action}
        if cmd.action in ("set-config", "set-policy"):
            try:
                done = (self._set_config(cmd) if cmd.action == "set-config"
                        else self._set_policy(cmd))
            except EdgewardError as e:
                self.agent.report_event("command.failed", base | {
                    "reason": e.kind, "detail": str(e)[:1000]}, "error")
                return
            self.agent.report_event("command.done", base | done, "info")
            return
        if cfg.artifact != SLOTS_ARTIFACT or cfg.trust_store is None:
            self.agent.report_event("command.failed", base | {
                "reason": "no_slots", "detail": f"{cmd.action} needs artifact = \"@slots\""},
                "error")
            return
        trust, health = cfg.trust_store, self.agent.health_check
        try:
            slots = SlotStore(cfg.state_dir)
            if cmd.action == "rollback":
                result = slots.revert(trust, health=health)
            else:
                with self._fetched(cmd) as artifact:
                    result = slots.update(artifact, trust, health=health)
        except EdgewardError as e:
            self.agent.report_event("command.failed", base | {"reason": e.kind,
                                                         "detail": str(e)[:1000]}, "error")
            return
        if not result.ok:
            self.agent.report_event("command.failed", base | {"reason": result.error,
                                                         "detail": result.detail[:1000]},
                               "error")
            return
        reloaded = self.agent.reload()
        self.agent.report_event("command.done" if reloaded.ok else "command.failed",
                           base | {"sha256": reloaded.model.sha256, "reload": reloaded.ok},
                           "info" if reloaded.ok else "error")

    def _set_config(self, cmd: Command) -> dict[str, Any]:
        """``set-config``: ``params.changes`` of the settable limits, validated, kept."""
        changes = cmd.params.get("changes")
        if not isinstance(changes, dict) or not changes:
            raise ConfigError("set-config needs params.changes: {key: value}")
        cfg = with_settings(self.agent.config, changes)  # the config file's own checks
        doc = load_remote(cfg.state_dir)
        doc["config"] = {**doc["config"], **changes}
        save_remote(cfg.state_dir, doc)
        self.agent.apply_settings(cfg)
        return {"changes": dict(changes)}

    def _set_policy(self, cmd: Command) -> dict[str, Any]:
        """``set-policy``: fetch a signed policy and its signature, verify, put in force."""
        p = cmd.params
        name, digest, statement = p.get("name"), p.get("policy_digest"), \
            p.get("statement_digest")
        telemetry = self.agent.config.telemetry
        if telemetry is None or not all(isinstance(v, str) for v in (name, digest, statement)) \
                or "/" in str(name) or str(name).startswith("."):
            raise ConfigError("set-policy needs [telemetry] and params name, policy_digest and "
                              "statement_digest")
        assert isinstance(name, str) and isinstance(digest, str) and isinstance(statement, str)
        fetcher = Fetcher(self.agent.config.state_dir, telemetry.broker, telemetry.device_id)
        policy, _ = fetcher.fetch(digest, deadline_s=300)
        sig, _ = fetcher.fetch(statement, deadline_s=300)
        home = self.agent.config.state_dir / "policies" / digest[:16]
        home.mkdir(mode=0o700, parents=True, exist_ok=True)
        shutil.copyfile(policy, home / name)
        shutil.copyfile(sig, home / f"{name}.edgeward.json")
        cfg = dataclasses.replace(self.agent.config, safety_policy=str(home / name))
        self.agent.apply_settings(cfg, policy_changed=True)  # verifies before anything changes
        doc = load_remote(cfg.state_dir)
        doc["safety_policy"] = str(home / name)
        save_remote(cfg.state_dir, doc)
        return {"policy_digest": digest}

    def _seed(self, fetcher: Fetcher, cmd: Command, digest: str, size: int,
              map_digest: str) -> None:
        """Delta: fill the download from the artifacts in the slots (best effort)."""
        try:
            map_path, _ = fetcher.fetch(map_digest, deadline_s=120)
            doc = json.loads(map_path.read_bytes())
            if doc.get("sha256") != digest or doc.get("size") != size:
                raise ConfigError("the chunk map is for another artifact")
            chunks = [(int(o), int(n), str(h)) for o, n, h in doc["chunks"]]
            slots = SlotStore(self.agent.config.state_dir)
            local = [slots.root / slot / name for slot in ("a", "b")
                     for name in _artifact_names(slots.root / slot)]
            reused = fetcher.seed(digest, size, chunks, local)
        except (EdgewardError, ValueError, KeyError, TypeError) as e:
            log_event(logging.WARNING, "delta_unavailable", detail=str(e)[:300])
            return  # a full download then
        self.agent.report_event("update.delta", {"command_id": cmd.command_id,
                                                 "reused_bytes": reused, "size": size}, "info")

    @contextlib.contextmanager
    def _fetched(self, cmd: Command) -> Iterator[Path]:
        """Fetch a deploy's artifact and signature over MQTT into a private install dir."""
        telemetry = self.agent.config.telemetry
        p = cmd.params
        name, digest, statement = p.get("name"), p.get("artifact_digest"), \
            p.get("statement_digest")
        if telemetry is None or not all(isinstance(v, str) for v in (name, digest, statement)) \
                or "/" in str(name) or str(name).startswith("."):
            raise ConfigError("deploy needs [telemetry] and params name, artifact_digest and "
                              "statement_digest")
        assert isinstance(name, str) and isinstance(digest, str) and isinstance(statement, str)
        fetcher = Fetcher(self.agent.config.state_dir, telemetry.broker, telemetry.device_id)
        reported = [-1]

        def progress(done: int, total: int) -> None:
            percent = 100 * done // max(total, 1)
            if percent // 10 > reported[0]:
                reported[0] = percent // 10
                self.agent.report_event("update.progress", {"command_id": cmd.command_id,
                                                       "percent": percent}, "info")

        size = p.get("size")
        size = size if isinstance(size, int) and size >= 0 else None
        map_digest = p.get("map_digest")
        if isinstance(map_digest, str) and size is not None:
            self._seed(fetcher, cmd, digest, size, map_digest)
        art, _ = fetcher.fetch(digest, size=size, progress=progress)
        sig, _ = fetcher.fetch(statement)
        fingerprint = p.get("fingerprint_digest")
        fp = fetcher.fetch(fingerprint)[0] if isinstance(fingerprint, str) else None
        install = fetcher.dir / f"install-{cmd.command_id}"
        _remove_tree(install)
        install.mkdir(mode=0o700)
        try:
            shutil.copyfile(art, install / name)
            shutil.copyfile(sig, install / f"{name}.edgeward.json")
            if fp is not None:  # the slot layer checks it against the signed statement
                shutil.copyfile(fp, install / f"{name}.behaviour.json")
            yield install / name
        finally:
            _remove_tree(install)



def _artifact_names(slot: Path) -> list[str]:
    """The artifact file names in a slot directory (not the signatures)."""
    if not slot.is_dir():
        return []
    return [p.name for p in slot.iterdir() if p.is_file() and not p.name.endswith(".json")]
