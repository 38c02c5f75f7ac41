"""The agent: verified load, the engine, the HTTP server, reload and shutdown.

Lifecycle: :meth:`Agent.start` takes the state directory's lock and loads the configured
artifact through :class:`~edgeward.device_agents._verified.ModelStore` (a refused artifact is
logged and raised: nothing serves); :meth:`Agent.serve` runs the HTTP server until shutdown;
:meth:`Agent.close` stops the worker, unloads the model and releases the lock.

Reload (SIGHUP or ``POST /admin/reload``) re-reads the config file, verifies and loads the
new artifact beside the old one, and swaps it in between two jobs only if all of that
succeeded; otherwise it logs one ``reload_refused`` line and the old model keeps serving.

Shutdown (SIGTERM or SIGINT): stop admitting, let the running and queued jobs finish until
``shutdown_deadline_s``, then cancel what is left (streams end with an error event, waiting
requests get 503), close the connections and return.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgeward.behaviour import CheckResult
from edgeward.device_agents._app import build_app
from edgeward.device_agents._behaviour import BehaviourWatch
from edgeward.device_agents._canary_watch import CanaryWatch
from edgeward.device_agents._commands import CommandGate
from edgeward.device_agents._config import SLOTS_ARTIFACT, AgentConfig, load_agent_config
from edgeward.device_agents._device import HealthSampler, LogAuditSink, audit_hmac_key
from edgeward.device_agents._engine import Engine
from edgeward.device_agents._guard import GgufGuard
from edgeward.device_agents._log import log_event
from edgeward.device_agents._metrics import Metrics
from edgeward.device_agents._policy import safety_filter_for, verify_guard
from edgeward.device_agents._probe import probe_artifact
from edgeward.device_agents._remote import apply_remote
from edgeward.device_agents._server import AgentServer, bind_socket
from edgeward.device_agents._slots import SlotStore
from edgeward.device_agents._telemetry import TelemetryClient
from edgeward.device_agents._updater import Updater
from edgeward.device_agents._verified import LoadedModel, ModelInfo, ModelStore
from edgeward.errors import (
    ConfigError,
    EdgewardError,
    RuntimeBackendError,
)
from edgeward.fleet.protocol import MAX_CATEGORIES, Command
from edgeward.hardware_profiles import resolve_profile
from edgeward.provenance import Envelope, PrivateKey, load_private_key
from edgeward.safety import PassThroughFilter, SafetyFilter

__all__ = ["Agent", "ReloadResult", "RunningAgent"]

_RESTART_ONLY = ("listen", "state_dir", "log_format", "device_id", "device_key", "audit_log",
                 "telemetry")


@dataclass(frozen=True)
class ReloadResult:
    """What a reload did.

    Attributes:
        ok: the new model was verified, loaded and swapped in.
        model: the model serving now (the new one, or the old one after a refusal).
        error: the error kind when refused (``digest_mismatch_error``, ``config_error``,
            ``reload_in_progress`` ...).
        detail: the one-line reason.
    """

    ok: bool
    model: ModelInfo
    error: str = ""
    detail: str = ""

    def to_dict(self) -> dict[str, Any]:
        """The ``/admin/reload`` response body."""
        return {"reloaded": self.ok, "model": self.model.to_dict(), "error": self.error or None,
                "detail": self.detail or None}


class Agent:
    """The device agent: one verified model behind the local OpenAI-compatible API.

    Args:
        config: what to serve and the limits.
        config_path: the file ``config`` came from; a reload re-reads it (without one, a
            reload re-verifies the same configuration).
        safety_filter: the filter to use; default the one ``config.safety_policy`` names
            (built, and its policy file verified, by :meth:`start`). An injected filter
            survives reloads.
    """

    def __init__(self, config: AgentConfig, *, config_path: Path | None = None,
                 safety_filter: SafetyFilter | None = None) -> None:
        config = apply_remote(config)  # what operators set by signed command
        self._config = config
        self._config_path = config_path
        self._injected_filter = safety_filter
        self._filter: SafetyFilter = safety_filter or PassThroughFilter()
        self.metrics = Metrics()
        self._store = ModelStore(config.state_dir, allow_cpu_fallback=config.allow_cpu_fallback)
        self._device_key: PrivateKey | None = None
        self._audit: LogAuditSink | None = None
        self._hmac_key: bytes | None = None
        self._guard: GgufGuard | None = None
        self.telemetry: TelemetryClient | None = None
        self.updater = Updater(self)
        self._engine: Engine | None = None
        self._reload_lock = threading.Lock()
        # The served model is replayed against its signed behavioural fingerprint; with
        # [behaviour] on_drift = "stop", model requests get 503 behaviour_drift until a reload.
        self.behaviour: BehaviourWatch | None = None
        self.canaries: CanaryWatch | None = None
        self.behaviour_stopped = False
        self._drift_rollbacks = 0
        self._loaded_from: Path | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: AgentServer | None = None
        self._deadline: asyncio.TimerHandle | None = None
        self.draining = False
        # The audit log cannot be written and the safety policy fails closed: requests are
        # answered 503 audit_unavailable until a reload or restart finds room on the disk.
        self.audit_closed = False
        self.shutdown_reason = ""
        self.started_at = time.monotonic()
        self.url = ""

    @property
    def config(self) -> AgentConfig:
        """The configuration in force (replaced by a successful reload)."""
        return self._config

    @property
    def safety_filter(self) -> SafetyFilter:
        """The safety filter in force (pass-through until :meth:`start` builds the
        configured one)."""
        return self._filter

    @property
    def engine(self) -> Engine:
        """The generation engine (after :meth:`start`)."""
        if self._engine is None:
            raise RuntimeBackendError("the agent is not started; call start() first")
        return self._engine

    # -- loading ---------------------------------------------------------------------------

    def start(self) -> ModelInfo:
        """Lock the state directory, verify and load the artifact, start the worker.

        Raises:
            SignatureError: the artifact was refused (logged as ``artifact_refused``).
            ConfigError, ArtifactError, RuntimeBackendError, ResourceError: see
                :meth:`ModelStore.load`.
        """
        self._store.open()
        try:
            if self._config.device_key is not None:
                self._device_key = load_private_key(self._config.device_key)
            self._filter = self._injected_filter or self._safety_filter(self._config)
            model = self._load(self._config, at="start")
        except BaseException:
            self._close_audit()
            self._store.close()
            raise
        self._engine = Engine(model, max_queue=self._config.max_queue, metrics=self.metrics)
        self.behaviour = BehaviourWatch(self._config.behaviour, run_idle=self._engine.run_idle,
                                        report_event=self._report_event,
                                        on_action=self._on_drift, metrics=self.metrics,
                                        audit=self._audit_behaviour)
        self.behaviour.attach(model, self._loaded_from or model.info.path)
        self.canaries = self._canary_watch(self._engine)
        self._engine.start()
        self.behaviour.start()
        if self.canaries is not None:
            self.canaries.start()
        self.started_at = time.monotonic()
        self._start_telemetry(model)
        return model.info

    def _canary_watch(self, engine: Engine) -> CanaryWatch | None:
        """The safety canaries, when a safety policy is in force and they are not off."""
        cfg = self._config
        if cfg.safety_policy is None or cfg.behaviour.canary_interval_s == 0:
            return None
        path = Path(cfg.behaviour.canaries) if cfg.behaviour.canaries else None
        if path is not None and not path.is_absolute() and cfg.source:
            path = Path(cfg.source).parent / path
        return CanaryWatch(cfg.behaviour.canary_interval_s, path, cfg.trust_store,
                           run_idle=engine.run_idle, safety_filter=lambda: self._filter,
                           report_event=self._report_event,
                           artifact_digest=lambda: engine.model.info.sha256)

    def _audit_behaviour(self, record: dict[str, Any]) -> None:
        if self._audit is not None:
            self._audit.append(record, kind="behaviour_check")

    def _on_drift(self, action: str, result: CheckResult) -> None:
        """Carry out ``[behaviour] on_drift`` (off the worker thread). A rollback happens once:
        when the artifact it went back to drifts as well, the agent stops serving instead of
        swapping slots back and forth."""
        cfg = self._config
        if action == "rollback" and self._drift_rollbacks >= 1:
            log_event(logging.ERROR, "behaviour_rollback_exhausted",
                      detail="the artifact a drift rolled back to drifts too; stopping")
            action = "stop"
        if action == "rollback" and cfg.artifact == SLOTS_ARTIFACT and cfg.trust_store:
            self._drift_rollbacks += 1
            try:
                outcome = SlotStore(cfg.state_dir).revert(cfg.trust_store,
                                                          health=self.health_check)
            except EdgewardError as e:
                log_event(logging.ERROR, "behaviour_rollback_failed", reason=e.kind,
                          detail=str(e))
                self._report_event("behaviour.rollback_failed", {
                    "reason": e.kind, "detail": str(e)[:500]}, "error")
            else:
                if outcome.ok and self.reload().ok:
                    log_event(logging.WARNING, "behaviour_rolled_back",
                              sha256=outcome.pointer.sha256 if outcome.pointer else None)
                    return
                log_event(logging.ERROR, "behaviour_rollback_failed",
                          reason=outcome.error or "reload", detail=outcome.detail)
            action = "stop"  # nothing verified to go back to: stop serving instead
        elif action == "rollback":
            log_event(logging.ERROR, "behaviour_rollback_unavailable",
                      detail='on_drift = "rollback" needs artifact = "@slots"; stopping instead')
            action = "stop"
        if action == "stop":
            self.behaviour_stopped = True
            log_event(logging.ERROR, "behaviour_stopped_serving",
                      distance=f"{result.distance:.3g}", threshold=f"{result.threshold:.3g}")

    def _safety_filter(self, cfg: AgentConfig) -> SafetyFilter:
        if cfg.safety_policy is None:
            return PassThroughFilter()
        if self._audit is None:  # non-allow decisions go to the tamper-evident audit log
            self._hmac_key = audit_hmac_key(self._config.state_dir)
            self._audit = LogAuditSink(
                self._config.audit_log_path, key=self._device_key,
                on_failure=self._audit_failed, on_reserve_used=lambda: self._report_event(
                    "storage.reserve_used", {"file": "audit_log"}, "critical"))
            log_event(logging.INFO, "audit_log_opened", log=str(self._audit.path),
                      signed_checkpoints=self._device_key is not None)
        kwargs: dict[str, Any] = {"audit": self._audit, "hmac_key": self._hmac_key}
        if cfg.safety_guard is not None:
            kwargs["guard"] = self._guard_for(cfg)
        return safety_filter_for(cfg.safety_policy, trust_store=cfg.trust_store,
                                 allow_unsigned=cfg.allow_unsigned, **kwargs)

    def _guard_for(self, cfg: AgentConfig) -> GgufGuard:
        """The verified guard model of ``safety_guard`` (loaded once, kept across reloads)."""
        assert cfg.safety_guard is not None
        if self._guard is None or self._guard.path != cfg.safety_guard:
            verify_guard(cfg.safety_guard, cfg.trust_store, allow_unsigned=cfg.allow_unsigned)
            if self._guard is not None:
                self._guard.close()
            self._guard = GgufGuard(cfg.safety_guard)
            log_event(logging.INFO, "safety_guard_loaded", guard=str(cfg.safety_guard))
        return self._guard

    def _audit_failed(self) -> None:
        """An audit record was not written, even in the reserve: the policy decides."""
        self.metrics.inc("edgeward_agent_audit_failures_total")
        policy = getattr(self._filter, "policy", None)
        closed = getattr(policy, "on_audit_failure", "keep_serving") == "fail_closed"
        if closed and not self.audit_closed:
            self.audit_closed = True
            log_event(logging.CRITICAL, "audit_fail_closed", log=str(self._config.audit_log_path),
                      detail="an audit record cannot be written and the safety policy fails "
                             "closed: requests are refused (503) until a reload or restart "
                             "with room on the disk")
        self._report_event("audit.write_failed", {"fail_closed": closed}, "critical")

    def _close_audit(self) -> None:
        if self._audit is not None:
            self._audit.close()
            self._audit = None

    # -- telemetry -------------------------------------------------------------------------

    def _start_telemetry(self, model: LoadedModel) -> None:
        cfg = self._config.telemetry
        if cfg is None:
            return
        assert self._device_key is not None  # AgentConfig requires it with [telemetry]
        sampler = HealthSampler(self.started_at, self.health_figures)
        on_command = None
        if self._config.trust_store is not None:  # operator keys come from the trust store
            on_command = self.updater.start(CommandGate(
                self._config.state_dir, cfg.device_id, self._config.trust_store),
                model.info.sha256)
        self.telemetry = TelemetryClient(cfg, self._device_key, health=sampler,
                                         on_command=on_command)
        self.telemetry.start()
        log_event(logging.INFO, "telemetry_started", device_id=cfg.device_id,
                  broker=cfg.broker.url, health_interval_s=cfg.health_interval_s)
        self._report_model(model, event="model.loaded")

    def health_figures(self) -> dict[str, Any]:
        """The agent's fields of the health report: decode speed, queue depth, safety
        decisions by action and category since start, the artifact being served and the A/B
        slot it came from."""
        m = self.metrics
        decisions: dict[str, int] = {}
        for name, label in (("edgeward_agent_safety_verdicts_total", "action"),
                            ("edgeward_agent_safety_categories_total", "category")):
            for labels, n in m.series(name).items():
                key = dict(labels)[label]
                decisions[key] = decisions.get(key, 0) + int(n)
        if len(decisions) > MAX_CATEGORIES:  # keep the most frequent
            decisions = dict(sorted(decisions.items(), key=lambda kv: -kv[1])[:MAX_CATEGORIES])
        engine = self._engine
        speed = m.value("edgeward_agent_decode_tokens_per_second")
        return {"decode_tokens_per_s": speed or None,
                "queue_depth": engine.queue_depth if engine is not None else 0,
                "safety_decisions": decisions,
                "artifact_digest": engine.model.info.sha256 if engine is not None else None,
                "slot": self.serving_slot(engine.model.info.sha256) if engine else None,
                "behaviour": self.behaviour.health() if self.behaviour is not None else None,
                "canaries": self.canaries.health() if self.canaries is not None else None}

    def serving_slot(self, sha256: str) -> str | None:
        """The A/B slot (``a``/``b``) the served artifact ``sha256`` came from: the active
        slot when the agent serves ``@slots`` and that slot holds these bytes, else None."""
        if self._config.artifact != SLOTS_ARTIFACT:
            return None
        try:
            pointer = SlotStore(self._config.state_dir).active()
        except EdgewardError:
            return None
        return pointer.slot if pointer is not None and pointer.sha256 == sha256 else None

    def _report_model(self, model: LoadedModel, *, event: str) -> None:
        """Tell the fleet what now runs: an event, and the signed provenance report."""
        client, info = self.telemetry, model.info
        if client is None:
            return
        try:
            client.publish_event(event, {"model": info.id, "sha256": info.sha256,
                                         "verified": info.verified, "key_id": info.key_id},
                                 severity="info" if info.verified else "warning")
            statement = _dsse_envelope(model.envelope)
            if statement is not None and info.key_id is not None:
                client.publish_provenance(statement, artifact_digest=info.sha256,
                                          slot=self.serving_slot(info.sha256),
                                          publisher_key_id=info.key_id,
                                          verified_at=info.loaded_at, loaded_at=info.loaded_at)
        except EdgewardError as e:  # telemetry must never take the model down
            log_event(logging.ERROR, "telemetry_failed", event=event, reason=e.kind,
                      detail=str(e))

    # -- commands ----------------------------------------------------------------------------

    @property
    def commands(self) -> CommandGate | None:
        """The command gate (with ``[telemetry]`` and a trust store), else ``None``."""
        return self.updater.gate

    @commands.setter
    def commands(self, gate: CommandGate | None) -> None:
        self.updater.gate = gate

    def handle_command(self, topic: str, payload: bytes) -> Command | None:
        """Admit (or refuse) one received command and apply it (see :class:`Updater`)."""
        return self.updater.handle(topic, payload)

    def apply_settings(self, cfg: AgentConfig, *, policy_changed: bool = False) -> None:
        """Put a remotely changed configuration in force now (limits; and, with
        ``policy_changed``, the safety filter of its ``safety_policy``, verified first).

        Raises:
            ConfigError, SignatureError: the new policy cannot be loaded (nothing changes).
        """
        with self._reload_lock:
            flt = self._safety_filter(cfg) if policy_changed else self._filter
            if self._engine is not None:
                self._engine.max_queue = cfg.max_queue
            self._config, self._filter = cfg, flt
        log_event(logging.INFO, "settings_applied", policy_changed=policy_changed)

    def report_event(self, event: str, data: dict[str, Any], severity: str) -> None:
        """Publish a signed event when telemetry is on (never raises)."""
        self._report_event(event, data, severity)

    def health_check(self, path: Path) -> object:
        """The health probe of a new slot: the profile, context and filter in force."""
        cfg = self._config
        profile = resolve_profile(cfg.profile) if cfg.profile else None
        return probe_artifact(path, profile=profile, context_length=cfg.context_length,
                              safety_filter=self._filter)

    def _report_event(self, event: str, data: dict[str, Any], severity: str) -> None:
        if self.telemetry is None:
            return
        try:
            self.telemetry.publish_event(event, data, severity=severity)
        except EdgewardError as e:
            log_event(logging.ERROR, "telemetry_failed", event=event, reason=e.kind,
                      detail=str(e))

    def _load(self, cfg: AgentConfig, *, at: str) -> LoadedModel:
        try:
            profile = resolve_profile(cfg.profile) if cfg.profile else None
            artifact, model_id = cfg.artifact, cfg.model_id
            if cfg.artifact == SLOTS_ARTIFACT:
                artifact = self._slot_artifact(cfg)
                model_id = cfg.model_name or artifact.name.removesuffix(".gguf")
            self._loaded_from = artifact
            model = self._store.load(artifact, trust_store=cfg.trust_store,
                                     signature=cfg.signature, allow_unsigned=cfg.allow_unsigned,
                                     profile=profile, context_length=cfg.context_length,
                                     model_id=model_id)
        except EdgewardError as e:
            self.metrics.inc("edgeward_agent_artifact_refusals_total", reason=e.kind)
            log_event(logging.ERROR, "artifact_refused", at=at, artifact=str(cfg.artifact),
                      reason=e.kind, detail=str(e))
            raise
        info = model.info
        if not info.verified:
            log_event(logging.WARNING, "UNVERIFIED_ARTIFACT_LOADED", at=at,
                      artifact=str(cfg.artifact), sha256=info.sha256,
                      reason=info.unverified_reason or "unsigned",
                      detail="allow_unsigned = true: serving a model whose provenance is NOT "
                             "verified; never do this in production")
        for warning in getattr(model.runtime, "load_warnings", ()):
            log_event(logging.WARNING, "runtime_fallback", at=at, model=info.id, detail=warning)
        log_event(logging.INFO, "model_loaded", at=at, model=info.id, artifact=str(cfg.artifact),
                  sha256=info.sha256, verified=info.verified, key_id=info.key_id,
                  signer=info.signer, format=info.format, copy=str(info.path))
        self.metrics.replace("edgeward_agent_model_info", 1.0, model=info.id, sha256=info.sha256,
                             key_id=info.key_id or "", verified=str(info.verified).lower())
        return model

    @staticmethod
    def _slot_artifact(cfg: AgentConfig) -> Path:
        """The active slot's artifact (after finishing or undoing an interrupted update)."""
        slots = SlotStore(cfg.state_dir)
        done = slots.recover()
        if done != "idle":
            log_event(logging.WARNING, "update_recovered", action=done)
        pointer = slots.active()
        if pointer is None:
            raise ConfigError(f"artifact = \"@slots\", but no artifact is installed in "
                              f"{slots.root}; install one with `edgeward bundle import`")
        return slots.artifact_path(pointer)

    def reload(self) -> ReloadResult:
        """Re-read the config, verify and load its artifact, and swap it in if all succeeded.

        Never raises for a refused artifact or config: the old model keeps serving and the
        result (and one ``reload_refused`` log line) says why.
        """
        engine = self.engine
        if not self._reload_lock.acquire(blocking=False):
            return ReloadResult(False, engine.model.info, "reload_in_progress",
                                "another reload is in progress")
        try:
            try:
                cfg = (apply_remote(load_agent_config(self._config_path))
                       if self._config_path is not None else self._config)
                flt = self._injected_filter or self._safety_filter(cfg)
                model = self._load(cfg, at="reload")
            except EdgewardError as e:
                self.metrics.inc("edgeward_agent_reloads_total", result="refused")
                log_event(logging.ERROR, "reload_refused", reason=e.kind, detail=str(e),
                          serving=engine.model.info.id, sha256=engine.model.info.sha256)
                self._report_event("model.refused", {
                    "reason": e.kind, "detail": str(e)[:1000],
                    "serving": engine.model.info.sha256}, "error")
                return ReloadResult(False, engine.model.info, e.kind, str(e))
            kept = {}
            for key in _RESTART_ONLY:
                if getattr(cfg, key) != getattr(self._config, key):
                    log_event(logging.WARNING, "restart_needed", key=key,
                              detail=f"{key} changes only on restart; keeping the running value")
                    kept[key] = getattr(self._config, key)
            cfg = dataclasses.replace(cfg, **kept) if kept else cfg
            try:
                engine.swap(model)
            except EdgewardError as e:
                model.close()
                return ReloadResult(False, engine.model.info, e.kind, str(e))
            engine.max_queue = cfg.max_queue
            self._config, self._filter = cfg, flt
            self.behaviour_stopped = False  # a newly loaded model is checked afresh
            if self.behaviour is not None:
                self.behaviour.config = cfg.behaviour
                self.behaviour.attach(model, self._loaded_from or model.info.path)
            policy = getattr(flt, "policy", None)
            if self.audit_closed and self._audit is not None and (
                    getattr(policy, "on_audit_failure", None) != "fail_closed"
                    or self._audit.reserve.ensure(force=True)):
                self.audit_closed = False  # room again (the reserve is back), or serve on
                log_event(logging.WARNING, "audit_reopened", log=str(self._audit.path))
            self.metrics.inc("edgeward_agent_reloads_total", result="ok")
            log_event(logging.INFO, "reloaded", model=model.info.id, sha256=model.info.sha256)
            if self.commands is not None:
                self.commands.deployed(model.info.sha256)
            self._report_model(model, event="model.reloaded")
            return ReloadResult(True, model.info)
        finally:
            self._reload_lock.release()

    def _reload_logged(self) -> None:
        try:
            self.reload()
        except Exception:  # a signal handler has nobody to raise to
            logging.getLogger("edgeward.agent").exception("reload failed unexpectedly")

    # -- serving ---------------------------------------------------------------------------

    async def serve(self, *, handle_signals: bool = False,
                    on_ready: Callable[[str], None] | None = None) -> None:
        """Serve HTTP until shutdown.

        Args:
            handle_signals: handle SIGTERM/SIGINT (shutdown) and SIGHUP (reload); only in the
                main thread.
            on_ready: called with the URL once the server accepts connections.

        Raises:
            ResourceError: the address cannot be bound.
        """
        self._loop = asyncio.get_running_loop()
        cfg = self._config
        sock = bind_socket(cfg.host, cfg.port)
        port = sock.getsockname()[1]
        host = f"[{cfg.host}]" if ":" in cfg.host else cfg.host
        self.url = f"http://{host}:{port}"

        def started() -> None:
            log_event(logging.INFO, "listening", url=self.url, model=self.engine.model.info.id,
                      api_key=cfg.api_key is not None, max_queue=cfg.max_queue)
            if on_ready is not None:
                on_ready(self.url)

        self._server = AgentServer(
            build_app(self), grace_s=cfg.shutdown_deadline_s + 2, on_started=started,
            on_shed=lambda reason: self.metrics.inc("edgeward_agent_rejected_total",
                                                    reason=reason))
        signals = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP) if handle_signals else ()
        for sig in signals:
            self._loop.add_signal_handler(sig, self._on_signal, sig)
        try:
            await self._server.serve(sockets=[sock])
        finally:
            for sig in signals:
                self._loop.remove_signal_handler(sig)
            if self._deadline is not None:
                self._deadline.cancel()
            sock.close()

    def _on_signal(self, sig: signal.Signals) -> None:
        if sig == signal.SIGHUP:
            log_event(logging.INFO, "reload_requested", signal="SIGHUP")
            assert self._loop is not None
            self._loop.run_in_executor(None, self._reload_logged)
        else:
            self.request_shutdown(sig.name)

    def request_shutdown(self, reason: str = "stop") -> None:
        """Begin a graceful shutdown (call on the server's event loop; see the module doc)."""
        server, loop = self._server, self._loop
        if self.draining:
            if reason == "SIGINT" and server is not None:
                server.force_exit = True  # a second Ctrl-C: stop waiting
            return
        self.draining = True
        self.shutdown_reason = reason
        engine = self.engine
        engine.stop_admitting()
        deadline = self._config.shutdown_deadline_s
        log_event(logging.INFO, "shutdown_started", reason=reason, deadline_s=deadline,
                  queued=engine.queue_depth)
        if loop is not None:
            self._deadline = loop.call_later(deadline, self._deadline_passed)
        if server is not None:
            server.should_exit = True

    def _deadline_passed(self) -> None:
        cancelled = self.engine.cancel_all("shutting_down")
        if cancelled:
            log_event(logging.WARNING, "shutdown_deadline", cancelled=cancelled,
                      deadline_s=self._config.shutdown_deadline_s)

    def close(self) -> None:
        """Stop the worker, unload the model and release the state directory."""
        self.updater.stop()  # an update may still reload: the engine must be there
        if self.behaviour is not None:
            self.behaviour.stop()
        if self.canaries is not None:
            self.canaries.stop()
        if self.telemetry is not None:  # while the model is loaded, so the last health
            self.telemetry.stop()  # report still names it; what is undelivered stays spooled
        if self._engine is not None:
            self._engine.stop(timeout=self._config.shutdown_deadline_s + 5)
            self._engine = None
        self._close_audit()
        if self._guard is not None:
            self._guard.close()
            self._guard = None
        self._store.close()
        log_event(logging.INFO, "stopped", uptime_s=round(time.monotonic() - self.started_at, 3))

    def serve_in_thread(self, *, timeout: float = 30.0) -> RunningAgent:
        """Serve on a background thread (tests, benchmarks, embedding programs).

        Raises:
            ResourceError: the address cannot be bound.
        """
        ready = threading.Event()
        box: dict[str, Any] = {}

        def on_ready(url: str) -> None:
            box["url"] = url
            ready.set()

        def run() -> None:
            try:
                asyncio.run(self.serve(on_ready=on_ready))
            except BaseException as e:  # noqa: BLE001 - handed to the caller
                box["error"] = e
                ready.set()

        thread = threading.Thread(target=run, name="edgeward-agent-http", daemon=True)
        thread.start()
        if not ready.wait(timeout):
            raise RuntimeBackendError(f"the agent did not start listening within {timeout} s")
        if "error" in box:
            raise box["error"]
        return RunningAgent(self, box["url"], thread)


@dataclass
class RunningAgent:
    """An agent serving on a background thread; :meth:`stop` shuts it down like SIGTERM."""

    agent: Agent
    url: str
    thread: threading.Thread = field(repr=False)

    @property
    def base_url(self) -> str:
        """The OpenAI ``base_url``: ``URL/v1``."""
        return self.url + "/v1"

    def stop(self, timeout: float = 30.0) -> None:
        """Shut down gracefully, wait for the server thread, close the agent."""
        loop = self.agent._loop
        if loop is not None and self.thread.is_alive():
            loop.call_soon_threadsafe(self.agent.request_shutdown, "stop")
            self.thread.join(timeout)
        self.agent.close()

    def __enter__(self) -> RunningAgent:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()



def _dsse_envelope(signature: bytes | None) -> Envelope | None:
    """The DSSE envelope of a signature file (``None`` for an OMS bundle or nothing)."""
    if not signature or b'"dsseEnvelope"' in signature:
        return None
    try:
        return Envelope.from_dict(json.loads(signature))
    except (ValueError, EdgewardError):
        return None
