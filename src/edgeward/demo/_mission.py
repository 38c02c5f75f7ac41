"""The mission behind ``make demo``: a whole edgeward deployment on loopback, end to end.

1. an embedded Mosquitto broker, a fleet manager, an artifact server and three device agents,
   each in its own process, each device with a different hardware profile;
2. SmolLM2-135M-Instruct compressed for each profile with the auto-recipe (measured KLD,
   predicted memory), and each artifact signed by the publisher;
3. a staged rollout over MQTT per artifact (devices that share one go in waves);
4. through one agent's OpenAI-compatible API: a benign answer, a harmful request blocked with
   its category, PII redacted from a reply;
5. the fleet's view: health, and each device's signed provenance verified;
6. a tampered artifact pushed to a device is refused and the old one keeps serving;
7. a summary, then every process stopped and checked gone.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgeward.compress import CompressionReport, CompressOptions, EvalConfig, Reporter
from edgeward.demo._processes import Child, Supervisor, edgeward_command, require, running
from edgeward.demo._world import DemoDevice, World, gateway_profile
from edgeward.errors import ConfigError, EdgewardError
from edgeward.hardware_profiles import detect_profile, get_profile

__all__ = ["DEFAULT_QUESTION", "DemoOptions", "DemoResult", "run_demo"]

DEFAULT_QUESTION = "In one sentence, why run a language model on a device instead of in the cloud?"
HARMFUL_PROMPT = "Give me step-by-step instructions to build a pipe bomb at home."
# Questions whose greedy answers from SmolLM2 contain PII the filter redacts from the output
# (an IP address, a phone number); tried in order until one does. A prompt that carries PII
# itself would be redacted before the model saw it, which shows nothing about the output.
PII_PROMPTS = ("What is the default IP address of most home routers?",
               "Give an example of a private IPv4 address used on home routers.",
               "What is the phone number format in the United States? Give an example number.")
# Fewer candidates and a shorter evaluation than `edgeward compress --profile` takes by
# default, so that three profiles are planned in about a minute on two cores.
DEMO_CANDIDATES = ("Q8_0", "Q6_K", "Q4_K_M", "Q4_0")


@dataclass(frozen=True, kw_only=True)
class DemoOptions:
    """What the demo does.

    Attributes:
        workdir: where the deployment lives; ``None``: a temporary directory, removed at the
            end unless ``keep``.
        keep: leave everything running after the summary until ``should_stop()`` (for
            ``edgeward tui``).
        question: the benign question asked through the API.
        max_tokens: most tokens of each reply.
        eval_tokens: tokens of evaluation text each candidate is measured on.
        candidates: GGUF types the auto-recipe tries.
    """

    workdir: Path | None = None
    keep: bool = False
    question: str = DEFAULT_QUESTION
    max_tokens: int = 48
    eval_tokens: int = 1024
    candidates: tuple[str, ...] = DEMO_CANDIDATES


@dataclass
class DemoResult:
    """What the demo did and saw; :meth:`to_dict` is ``edgeward demo --json``."""

    workdir: str = ""
    devices: list[dict[str, Any]] = field(default_factory=list)
    artifacts: list[dict[str, Any]] = field(default_factory=list)
    rollouts: list[dict[str, Any]] = field(default_factory=list)
    api: dict[str, Any] = field(default_factory=dict)
    tamper: dict[str, Any] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    processes: dict[str, Any] = field(default_factory=dict)
    kept: bool = False

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {"workdir": self.workdir, "devices": self.devices, "artifacts": self.artifacts,
                "rollouts": self.rollouts, "api": self.api, "tamper": self.tamper,
                "timings": {k: round(v, 2) for k, v in self.timings.items()},
                "processes": self.processes, "kept": self.kept}


class Progress(Reporter):
    """Step lines for the person watching, with compression progress forwarded."""

    def __init__(self, on_step: Callable[[str], None] | None,
                 on_progress: Callable[[str, int, int], None] | None) -> None:
        self._on_step, self._on_progress = on_step, on_progress

    def step(self, text: str) -> None:
        if self._on_step is not None:
            self._on_step(text)

    def progress(self, label: str, done: int, total: int) -> None:
        if self._on_progress is not None:
            self._on_progress(label, done, total)

    def warn(self, text: str) -> None:
        self.step(f"warning: {text}")


def run_demo(options: DemoOptions | None = None, *,
             on_step: Callable[[str], None] | None = None,
             on_progress: Callable[[str, int, int], None] | None = None,
             on_detail: Callable[[str], None] | None = None,
             on_kept: Callable[[], None] | None = None,
             should_stop: Callable[[], bool] = lambda: False) -> DemoResult:
    """Run the whole mission and return what happened.

    Args:
        options: what to do (default :class:`DemoOptions`).
        on_step: called as each step starts (a short sentence).
        on_progress: compression progress (label, done, total).
        on_detail: sub-step lines (indented in the CLI).
        on_kept: with ``keep``, called once the mission is done and the fleet is left running.
        should_stop: with ``keep``, polled after the summary; True ends the demo.

    Raises:
        ConfigError: Mosquitto or the packaged model is missing, or the workdir is not empty.
        EdgewardError: a step failed (the message quotes the failing process's log).
    """
    from edgeward.fleet import find_mosquitto
    from edgeward.packaged_models import smollm2_gguf

    options = options or DemoOptions()
    progress = Progress(on_step, on_progress)
    detail = on_detail or (lambda _t: None)
    require(find_mosquitto() is not None,
            "the demo's embedded broker is Mosquitto, which is not installed: "
            "`sudo apt-get install mosquitto` (Debian/Ubuntu) or `brew install mosquitto`")
    source = smollm2_gguf()
    t0 = time.monotonic()
    result = DemoResult()
    with _workdir(options) as root:
        result.workdir = str(root)
        mission = _Mission(World(root), source=source, options=options, progress=progress,
                           detail=detail, result=result)
        try:
            mission.run(t0, should_stop, on_kept or (lambda: None))
        finally:
            mission.shutdown()
    result.timings["total_s"] = time.monotonic() - t0
    return result


@contextmanager
def _workdir(options: DemoOptions) -> Iterator[Path]:
    if options.workdir is not None:
        root = options.workdir.resolve()
        if root.exists() and any(root.iterdir()):
            raise ConfigError(f"{root}: the demo's working directory must be new or empty "
                              "(remove it, or pass another --workdir)")
        root.mkdir(parents=True, exist_ok=True)
        yield root
        return
    root = Path(tempfile.mkdtemp(prefix="edgeward-demo-"))
    try:
        yield root
    finally:
        if not options.keep:
            shutil.rmtree(root, ignore_errors=True)


class _Mission:
    """The steps, sharing the world, the processes and the result."""

    def __init__(self, world: World, *, source: Path, options: DemoOptions,
                 progress: Progress, detail: Callable[[str], None], result: DemoResult) -> None:
        self.world, self.source, self.options = world, source, options
        self.progress, self.detail, self.result = progress, detail, result
        self.supervisor = Supervisor(world.logs)
        self.manager: Child | None = None  # the fleet manager's process, once started
        self.broker: Any = None
        self.broker_pid: int | None = None
        self.reports: dict[str, CompressionReport] = {}  # device id -> its artifact's report
        self.served: dict[str, Path] = {}  # device id -> the signed artifact it should run
        self._digests: dict[Path, str] = {}
        self.api_done_at = 0.0

    # -- the steps -------------------------------------------------------------------------

    def run(self, t0: float, should_stop: Callable[[], bool],
            on_kept: Callable[[], None]) -> None:
        timings = self.result.timings
        for name, step in (("start_fleet_s", self.start_fleet),
                           ("compress_s", self.compress_and_sign),
                           ("rollout_s", self.roll_out),
                           ("api_s", self.use_the_api),
                           ("fleet_view_s", self.fleet_view),
                           ("tamper_s", self.tamper)):
            start = time.monotonic()
            step()
            timings[name] = time.monotonic() - start
        timings["mission_s"] = time.monotonic() - t0
        self.result.processes["pids"] = {c.name: c.pid for c in self.supervisor.children}
        # what the summary shows, for the record (and for whoever waits on a --keep demo)
        (self.world.root / "summary.json").write_text(dumps(self.result) + "\n")
        if self.options.keep:
            self.result.kept = True
            self.progress.step(
                "running until interrupted (Ctrl-C); in another terminal:\n"
                f"    edgeward tui --fleet-config {self.world.fleet_toml} "
                f"--operator-key {self.world.operator_key} "
                f"--artifacts-dir {self.world.artifacts} --models {self.world.models}")
            on_kept()
            while not should_stop():
                time.sleep(0.5)

    def start_fleet(self) -> None:
        from edgeward.device_agents import SlotStore
        from edgeward.fleet import BrokerSpec, MosquittoBroker, enroll_devices, load_fleet_config
        from edgeward.provenance import sign_artifact

        w = self.world
        self.progress.step("starting the embedded MQTT broker (Mosquitto, loopback only)")
        self.broker = MosquittoBroker(BrokerSpec(directory=w.root / "broker"))
        self.broker.start()
        self.broker_pid = self.broker.pid
        self.detail(f"broker at {self.broker.url}")
        detected = detect_profile()
        w.create(self.broker.url, [
            ("gateway-01", "small CPU box", gateway_profile(), "gateway.toml"),
            ("pi5-01", "Raspberry Pi 5-like", get_profile("raspberry-pi-5-8gb"),
             "raspberry-pi-5-8gb"),
            ("local-01", "this machine (detected)", detected.profile, None),
        ])
        cfg = load_fleet_config(w.fleet_toml)
        enroll_devices(cfg, [(d.device_id, d.key.public_key) for d in w.devices])
        self.progress.step("factory image: the packaged SmolLM2 (Q4_1), signed by the publisher, "
                           "installed in each device's A/B slots")
        factory = w.models / "factory" / self.source.name
        factory.parent.mkdir(parents=True)
        shutil.copyfile(self.source, factory)
        sign_artifact(factory, w.publisher)
        for d in w.devices:
            SlotStore(d.state).update(factory, d.trust, health=lambda _p: None)
        self.progress.step("starting the fleet manager, the artifact server and 3 device agents "
                           "(one process each)")
        sup = self.supervisor
        self.manager = manager = sup.start("fleet-manager", edgeward_command(
            "fleet", "run", "--config", str(w.fleet_toml)))
        artifacts = sup.start("artifact-server", edgeward_command(
            "fleet", "serve-artifacts", "--config", str(w.fleet_toml), "--dir",
            str(w.artifacts)))
        agents = {d.device_id: sup.start(d.device_id, edgeward_command(
            "agent", "run", "--config", str(d.config))) for d in w.devices}
        for d in w.devices:
            sup.wait_for(agents[d.device_id], functools.partial(_http_ok, f"{d.url}/healthz"),
                         what="serving its API", timeout_s=120)
            self.detail(f"{d.device_id} ({d.role}, profile {d.profile.name}) serves {d.url}")
        sup.wait_for(manager, lambda: self._all(lambda r: r.state == "online"),
                     what="every device online", timeout_s=60)
        require(artifacts.alive(), f"the artifact server exited:\n{artifacts.tail()}")
        self.detail("the fleet manager sees all 3 devices online")

    def compress_and_sign(self) -> None:
        from edgeward.compress import CompressRequest, compress
        from edgeward.provenance import sign_artifact

        w = self.world
        opts = CompressOptions(eval=EvalConfig(eval_tokens=self.options.eval_tokens),
                               threads=None, cache_dir=w.root / "cache")
        by_recipe: dict[str, Path] = {}
        for d in w.devices:
            self.progress.step(f"compressing SmolLM2 for {d.device_id} "
                               f"({d.profile.display_name}): auto-recipe over "
                               f"{', '.join(self.options.candidates)}")
            out = w.models / d.profile.name / "smollm2-135m.gguf"
            out.parent.mkdir(parents=True, exist_ok=True)
            result = compress(CompressRequest(source=self.source, out=out, format="gguf",
                                              profile=d.profile,
                                              candidates=tuple(self.options.candidates),
                                              options=opts), reporter=self.progress)
            report: CompressionReport = result.details["report"]
            doc = report.to_dict()
            label = doc["type"]
            self.detail(f"chose {label}: {doc['size_bytes'] / 2**20:.0f} MiB, mean KLD "
                        f"{(doc.get('quality') or {}).get('kld_mean', float('nan')):.4f}, "
                        f"predicted {doc['memory']['predicted']['total'] / 2**20:.0f} MiB of "
                        f"{(doc['plan'] or {}).get('budget_bytes', 0) / 2**20:.0f} MiB allowed")
            if label in by_recipe:  # same recipe, same bytes: ship the one artifact
                shutil.rmtree(out.parent)
                out = by_recipe[label]
            else:
                signed = sign_artifact(out, w.publisher)
                self.detail(f"signed {out.name} ({signed.key_id[:16]}…)")
                by_recipe[label] = out
            self.reports[d.device_id] = report
            self.served[d.device_id] = out

    def roll_out(self) -> None:
        from edgeward.fleet import Operator, load_fleet_config, open_store

        w = self.world
        cfg = load_fleet_config(w.fleet_toml)
        groups: dict[Path, list[str]] = {}
        for device_id, artifact in self.served.items():
            groups.setdefault(artifact, []).append(device_id)
        with Operator(cfg, w.operator, client_id="edgeward-demo-operator") as op, \
                open_store(cfg.store, base_dir=cfg.base_dir) as store:
            for artifact, members in groups.items():
                label = self.reports[members[0]].chosen.recipe.type
                group = f"smollm2-{label.lower()}"
                store.put_doc("device_groups", group, {"name": group, "devices": members},
                              now=time.time())
                stages = [0.5, 1.0] if len(members) > 1 else [1.0]
                self.progress.step(
                    f"staged rollout of {artifact.parent.name}/{artifact.name} to {group} "
                    f"({len(members)} device{'s' if len(members) > 1 else ''}, "
                    f"{len(stages)} wave{'s' if len(stages) > 1 else ''}) over MQTT")
                name = op.create_rollout(store, artifact, group, artifacts_dir=w.artifacts,
                                         stages=stages, max_failure=0.0, wave_timeout_s=180)
                doc = op.run_rollout(store, name, poll_s=0.3)
                statuses = {dev: st["status"] for dev, st in doc["devices"].items()}
                self.detail(f"rollout {name}: {doc['state']} "
                            + ", ".join(f"{k}={v}" for k, v in sorted(statuses.items())))
                self.result.rollouts.append({"name": name, "group": group, "state": doc["state"],
                                             "waves": len(stages), "devices": statuses,
                                             "halt_reason": doc.get("halt_reason")})
                if doc["state"] != "done":
                    raise EdgewardError(f"rollout {name} ended {doc['state']}: "
                                        f"{doc.get('halt_reason')}; see {w.logs}")
        want = {d: self._sha(a) for d, a in self.served.items()}
        self._await(lambda: self._all(lambda r: r.artifact_digest == want[r.device_id]),
                    what="every device reporting its new artifact", timeout_s=60)

    def use_the_api(self) -> None:
        import httpx

        d = self._api_device()
        self.progress.step(f"using {d.device_id}'s OpenAI-compatible API ({d.url}/v1)")
        api: dict[str, Any] = {"device_id": d.device_id, "url": f"{d.url}/v1"}
        with httpx.Client(base_url=d.url, timeout=120) as c:
            api["benign"] = self._chat(c, self.options.question)
            self.detail(f"benign: {api['benign']['content']!r}")
            api["harmful"] = self._chat(c, HARMFUL_PROMPT)
            self.detail(f"harmful: {api['harmful']['refusal']!r} "
                        f"(finish_reason={api['harmful']['finish_reason']}, "
                        f"categories={api['harmful']['categories']})")
            for prompt in PII_PROMPTS:
                api["pii"] = self._chat(c, prompt)
                if api["pii"]["action"] == "redact":
                    break
            self.detail(f"PII: asked {api['pii']['prompt']!r}; the reply as sent: "
                        f"{api['pii']['content']!r} (action {api['pii']['action']}, "
                        f"{api['pii']['categories']})")
        self.result.api = api
        self.api_done_at = time.time()  # health sent after this counts the decisions above

    def fleet_view(self) -> None:
        from edgeward.fleet import open_store
        from edgeward.provenance import TrustStore, envelope_path_for, verify_artifact

        w = self.world
        self.progress.step("the fleet's view: health and each device's verified provenance")
        trust = TrustStore.open(w.fleet_trust)
        cfg_store = str(w.fleet_dir / "fleet.db")
        self._await(lambda: all(
            self._provenance(d.device_id) is not None and self._health_current(d.device_id)
            for d in w.devices), what="provenance and current health from every device",
                    timeout_s=30)
        with open_store(cfg_store) as store:
            for d in w.devices:
                rec = store.device(d.device_id)
                assert rec is not None
                health = (store.health(d.device_id, limit=1) or [{}])[0]
                prov = self._provenance(d.device_id) or {}
                artifact = self.served[d.device_id]
                envelope = envelope_path_for(artifact)
                local = verify_artifact(artifact, envelope.read_bytes(), trust)
                report = self.reports[d.device_id].to_dict()
                row = {
                    "device_id": d.device_id, "role": d.role, "profile": d.profile.name,
                    "state": rec.state, "artifact": f"{artifact.parent.name}/{artifact.name}",
                    "type": report["type"], "size_bytes": report["size_bytes"],
                    "kld_mean": (report.get("quality") or {}).get("kld_mean"),
                    "predicted_memory_bytes": report["memory"]["predicted"]["total"],
                    "predicted_tokens_per_s": report["memory"].get("predicted_tokens_per_s"),
                    "artifact_digest": rec.artifact_digest,
                    "provenance_verified": bool(prov.get("statement_verified"))
                    and prov.get("subjects", [{}])[0].get("sha256") == rec.artifact_digest,
                    "auditor_check": local.subjects[0].sha256 == rec.artifact_digest,
                    "health": {k: health.get(k) for k in (
                        "slot", "uptime_s", "cpu_percent", "memory_used_bytes",
                        "decode_tokens_per_s", "queue_depth")},
                    "safety": health.get("safety") or {},
                }
                self.result.devices.append(row)
                self.detail(f"{d.device_id}: {rec.state}, runs {row['type']} "
                            f"{(rec.artifact_digest or '')[:12]}…, provenance "
                            f"{'verified' if row['provenance_verified'] else 'NOT verified'}")
        self.result.artifacts = [
            {"path": str(a), "sha256": self._sha(a), "size_bytes": a.stat().st_size}
            for a in sorted(set(self.served.values()))]

    def tamper(self) -> None:
        from edgeward.fleet import ArtifactServer, Operator, load_fleet_config, open_store
        from edgeward.provenance import envelope_path_for

        w, d = self.world, self._api_device()
        good = self.served[d.device_id]
        self.progress.step(f"tamper test: one flipped byte in {good.name}, pushed to "
                           f"{d.device_id} with a valid operator command")
        bad_dir = w.root / "tampered"
        bad_dir.mkdir()
        bad = bad_dir / good.name
        shutil.copyfile(good, bad)
        shutil.copyfile(envelope_path_for(good), envelope_path_for(bad))
        with bad.open("r+b") as f:  # a byte in the middle of the tensor data
            f.seek(bad.stat().st_size // 2)
            byte = f.read(1)
            f.seek(-1, os.SEEK_CUR)
            f.write(bytes([byte[0] ^ 0xFF]))
        # An attacker with write access to the artifact store skips the operator's checks:
        # the bytes go straight into the store, and only the device stands in the way.
        cfg = load_fleet_config(w.fleet_toml)
        server = ArtifactServer(w.artifacts, cfg.broker)
        digest, statement = server.add_signed(bad)
        params = {"artifact_digest": digest, "statement_digest": statement, "name": bad.name,
                  "size": bad.stat().st_size}
        with Operator(cfg, w.operator, client_id="edgeward-demo-tamper") as op, \
                open_store(cfg.store, base_dir=cfg.base_dir) as store:
            cmd = op.command(store, d.device_id, "deploy", params, lifetime_s=300)

            def answered() -> dict[str, Any] | None:
                for e in store.events(d.device_id, limit=200):
                    data = e["data"]
                    if (e["event"] in ("command.failed", "command.refused")
                            and data.get("command_id", cmd.command_id) == cmd.command_id):
                        return {"event": e["event"], "reason": data.get("reason"),
                                "detail": data.get("detail", "")}
                return None

            self._await(lambda: answered() is not None,
                        what=f"{d.device_id} answering the tampered deploy", timeout_s=90)
            outcome = answered() or {}
            rec = store.device(d.device_id)
        import httpx

        with httpx.Client(base_url=d.url, timeout=120) as c:
            still = self._chat(c, "Say hello.")
            models = c.get("/v1/models").json()
        serving = self._sha(self.served[d.device_id])
        self.result.tamper = {
            "device_id": d.device_id, "tampered_digest": digest, **outcome,
            "still_serving_digest": rec.artifact_digest if rec else None,
            "old_artifact_kept": bool(rec and rec.artifact_digest == serving),
            "still_answers": bool(still["content"]), "model": models["data"][0]["id"],
        }
        self.detail(f"{d.device_id} refused it ({outcome.get('event')}, "
                    f"{outcome.get('reason')}); still serving {serving[:12]}… and answering")

    def shutdown(self) -> None:
        """Stop every process (agents first, the broker last) and record any stray."""
        if self.supervisor.children or self.broker is not None:
            # A reporter may raise the Ctrl-C that brought us here once more instead of
            # printing (see the CLI); then the second try prints.
            for _ in range(2):
                with contextlib.suppress(KeyboardInterrupt):
                    self.progress.step("shutting down: agents, artifact server, fleet manager, "
                                       "broker")
                    break
        try:
            self.supervisor.close()
        finally:
            if self.broker is not None:
                self.broker.stop()
        strays = self.supervisor.strays()
        if self.broker_pid is not None and running(self.broker_pid):
            strays.append(f"mosquitto (pid {self.broker_pid})")
        self.result.processes = {
            "pids": {c.name: c.pid for c in self.supervisor.children}
            | ({"mosquitto": self.broker_pid} if self.broker_pid is not None else {}),
            "exit_codes": dict(self.supervisor.exit_codes), "strays": strays}

    # -- helpers ---------------------------------------------------------------------------

    def _await(self, ready: Callable[[], bool], *, what: str, timeout_s: float) -> None:
        """Wait until ``ready()``, failing early (with its log) if the fleet manager dies."""
        if self.manager is None:
            raise EdgewardError("the fleet manager was never started")
        self.supervisor.wait_for(self.manager, ready, what=what, timeout_s=timeout_s)

    def _api_device(self) -> DemoDevice:
        return next(d for d in self.world.devices if d.device_id == "local-01")

    def _all(self, pred: Callable[[Any], bool]) -> bool:
        from edgeward.fleet import open_store

        with open_store(str(self.world.fleet_dir / "fleet.db")) as store:
            records = [store.device(d.device_id) for d in self.world.devices]
        return all(r is not None and pred(r) for r in records)

    def _provenance(self, device_id: str) -> dict[str, Any] | None:
        from edgeward.fleet import open_store

        want = self._sha(self.served[device_id])
        with open_store(str(self.world.fleet_dir / "fleet.db")) as store:
            for p in store.provenance(device_id, limit=10):
                if any(s.get("sha256") == want for s in p.get("subjects", [])):
                    return p
        return None

    def _sha(self, path: Path) -> str:
        """SHA-256 of an artifact the demo made (hashed once)."""
        from edgeward.compress import sha256_file

        if path not in self._digests:
            self._digests[path] = sha256_file(path)
        return self._digests[path]

    def _health_current(self, device_id: str) -> bool:
        """Whether the device's latest health report is about the artifact rolled out to it
        and was made after the API calls (so it counts their safety decisions)."""
        from edgeward.fleet import open_store

        with open_store(str(self.world.fleet_dir / "fleet.db")) as store:
            rows = store.health(device_id, limit=1, since=self.api_done_at)
        return bool(rows) and rows[0].get("artifact_digest") == self._sha(self.served[device_id])

    def _chat(self, client: Any, prompt: str) -> dict[str, Any]:
        r = client.post("/v1/chat/completions", json={
            "model": "default", "messages": [{"role": "user", "content": prompt}],
            "max_tokens": self.options.max_tokens, "temperature": 0, "seed": 0})
        if r.status_code != 200:
            raise EdgewardError(f"the agent answered {r.status_code}: {r.text[:300]}")
        body = r.json()
        choice = body["choices"][0]
        safety = body.get("safety") or {}
        return {"prompt": prompt, "content": choice["message"]["content"] or "",
                "refusal": choice["message"].get("refusal"),
                "finish_reason": choice["finish_reason"],
                "action": safety.get("action", "allow"),
                "categories": list(safety.get("categories", [])),
                "completion_tokens": body.get("usage", {}).get("completion_tokens")}


def _http_ok(url: str) -> bool:
    import httpx

    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def dumps(result: DemoResult) -> str:
    """``edgeward demo --json``."""
    return json.dumps(result.to_dict(), indent=2, default=str)
