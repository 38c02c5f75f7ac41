"""The agent replays the signed behavioural fingerprint through the model it serves."""

from __future__ import annotations

import json
import shutil
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from _agent_helpers import Signed, until

from _models import scaled_copy
from edgeward.behaviour import CheckResult, fingerprint_artifact, statement_record
from edgeward.device_agents import Agent, config_from_dict
from edgeward.device_agents._behaviour import BehaviourWatch
from edgeward.device_agents._behaviour_config import BehaviourConfig
from edgeward.errors import ConfigError
from edgeward.provenance import Role, TrustStore, generate_key, sign_artifact

CHAT = {"model": "tiny", "messages": [{"role": "user", "content": "hello world"}],
        "max_tokens": 8, "temperature": 0, "seed": 3}



def _signed_with(artifact: Path, fingerprint_of: Path, workdir: Path) -> Signed:
    """``artifact`` signed with the fingerprint made from ``fingerprint_of`` (the same file
    for an honest artifact; another for a model that does not behave as its statement says)."""
    made = fingerprint_artifact(fingerprint_of, calibrated=False)
    target = artifact.with_name(artifact.name + ".behaviour.json")
    if made.path != target:
        shutil.copyfile(made.path, target)
    key = generate_key()
    store = TrustStore.open(workdir / "trust", create=True)
    store.add(key.public_key, [Role.PUBLISHER], name="publisher")
    sign_artifact(artifact, key, overwrite=True, fingerprint=target,
                  behaviour=statement_record(made, target.name))
    return Signed(artifact, workdir / "trust", key)


@pytest.fixture
def honest(tiny_gguf: Path, tmp_path: Path) -> Signed:
    (tmp_path / "m").mkdir()
    art = tmp_path / "m" / "tiny.gguf"
    shutil.copyfile(tiny_gguf, art)
    return _signed_with(art, art, tmp_path / "m")


@pytest.fixture
def patched(tiny_gguf: Path, tmp_path: Path) -> Signed:
    (tmp_path / "p").mkdir()
    ref = tmp_path / "p" / "reference.gguf"
    shutil.copyfile(tiny_gguf, ref)
    art = scaled_copy(ref, tmp_path / "p" / "tiny.gguf", "output.weight", 1.02)
    return _signed_with(art, ref, tmp_path / "p")


def _agent(signed: Signed, tmp_path: Path, **behaviour: Any) -> Agent:
    agent = Agent(config_from_dict({
        "artifact": str(signed.artifact), "trust_store": str(signed.trust),
        "listen": "127.0.0.1:0", "state_dir": str(tmp_path / "state"),
        "behaviour": behaviour}))
    agent.start()
    return agent


def test_the_model_is_checked_on_load_and_reported(honest: Signed, tmp_path: Path) -> None:
    agent = _agent(honest, tmp_path)
    try:
        with agent.serve_in_thread() as running:
            assert agent.behaviour is not None
            assert until(lambda: agent.behaviour.health()["status"] == "ok"), \
                agent.behaviour.health()
            health = agent.health_figures()["behaviour"]
            assert health["checks"] == 1 and health["distance"] <= health["threshold"]
            assert health["probe_set"] == "edgeward-probes/1"
            metrics = httpx.get(running.url + "/metrics").text
            assert "edgeward_behaviour_drift 0" in metrics
            assert "edgeward_behaviour_distance" in metrics
            body = httpx.get(running.url + "/healthz").json()
            assert body["status"] == "ok" and body["behaviour"]["status"] == "ok"
            r = httpx.post(running.base_url + "/chat/completions", json=CHAT, timeout=30)
            assert r.status_code == 200
    finally:
        agent.close()


def test_a_model_that_does_not_behave_as_signed_stops_serving(patched: Signed,
                                                               tmp_path: Path) -> None:
    agent = _agent(patched, tmp_path, on_drift="stop")
    try:
        with agent.serve_in_thread() as running:
            assert until(lambda: agent.behaviour_stopped), agent.behaviour.health()
            h = agent.behaviour.health()
            assert h["status"] == "drift" and h["distance"] > h["threshold"]
            r = httpx.post(running.base_url + "/chat/completions", json=CHAT, timeout=30)
            assert r.status_code == 503
            assert r.json()["error"]["code"] == "behaviour_drift"
            assert httpx.get(running.url + "/healthz").status_code == 503
            assert "edgeward_behaviour_drift 1" in httpx.get(running.url + "/metrics").text
    finally:
        agent.close()


def test_alert_only_keeps_serving_and_rollback_without_slots_stops(patched: Signed,
                                                                    tmp_path: Path) -> None:
    agent = _agent(patched, tmp_path / "alert", on_drift="alert")
    try:
        assert until(lambda: agent.behaviour.health()["status"] == "drift")
        time.sleep(0.2)
        assert not agent.behaviour_stopped
    finally:
        agent.close()
    agent = _agent(patched, tmp_path / "rollback", on_drift="rollback")
    try:
        assert until(lambda: agent.behaviour_stopped)  # no slots to go back to
    finally:
        agent.close()


def test_a_changed_fingerprint_file_is_refused_and_a_missing_one_reported(
        honest: Signed, tmp_path: Path) -> None:
    fp = honest.artifact.with_name(honest.artifact.name + ".behaviour.json")
    raw = bytearray(fp.read_bytes())
    raw[raw.index(b'"top_k":') + 8] = ord("9")
    fp.write_bytes(bytes(raw))
    agent = _agent(honest, tmp_path / "changed")
    try:
        h = agent.behaviour.health()
        assert h["status"] == "error" and "changed after signing" in (h["detail"] or "")
        assert h["checks"] == 0
    finally:
        agent.close()
    fp.unlink()
    agent = _agent(honest, tmp_path / "missing")
    try:
        assert agent.behaviour.health()["status"] == "missing"
    finally:
        agent.close()


def test_an_artifact_without_a_fingerprint_is_unchecked(make_agent: Any) -> None:
    running = make_agent()
    body = httpx.get(running.url + "/healthz").json()
    assert body["behaviour"]["status"] == "unchecked"


def test_a_check_gives_way_to_requests_between_probes(honest: Signed, tmp_path: Path) -> None:
    agent = _agent(honest, tmp_path, check_on_load=False)
    try:
        with agent.serve_in_thread() as running:
            served_during_task = threading.Event()
            task_running = threading.Event()
            done = threading.Event()

            def long_task(runtime: Any, between: Callable[[], None]) -> None:
                task_running.set()
                end = time.monotonic() + 20
                while time.monotonic() < end and not done.is_set():
                    between()  # what a fingerprint check calls between probes
                    time.sleep(0.01)
                served_during_task.set() if done.is_set() else None

            agent.engine.run_idle(long_task, False)
            assert task_running.wait(10)
            r = httpx.post(running.base_url + "/chat/completions", json=CHAT, timeout=30)
            done.set()
            assert r.status_code == 200
            assert served_during_task.wait(10)  # the request finished while the task ran
    finally:
        agent.close()


class _Recorder:
    def __init__(self) -> None:
        self.events: list[tuple[str, dict[str, Any], str]] = []
        self.actions: list[str] = []
        self.tasks: list[Any] = []

    def watch(self, **cfg: Any) -> BehaviourWatch:
        from edgeward.device_agents._metrics import Metrics

        return BehaviourWatch(BehaviourConfig(**cfg), run_idle=lambda t, first:
                              self.tasks.append(t),
                              report_event=lambda e, d, s: self.events.append((e, d, s)),
                              on_action=lambda a, r: self.actions.append(a), metrics=Metrics())


def _result(status: str, distance: float) -> CheckResult:
    return CheckResult(status, distance, 0.001, 1.0 if status == "ok" else 0.9, 1.0, True,  # type: ignore[arg-type]
                       True, () if status == "ok" else ("distance above threshold",))


def test_events_fire_on_a_change_of_verdict_only() -> None:
    rec = _Recorder()
    w = rec.watch(on_drift="stop")
    w._digest = "d" * 64
    for status, distance in (("ok", 0.0), ("drift", 0.5), ("drift", 0.6), ("ok", 0.0)):
        w.record(_result(status, distance), "d" * 64)
    assert [e for e, _, _ in rec.events] == ["behaviour.drift", "behaviour.ok"]
    drift = rec.events[0]
    assert drift[2] == "error" and drift[1]["action"] == "stop"
    assert drift[1]["distance"] == 0.5 and drift[1]["reasons"]
    assert until(lambda: rec.actions == ["stop"], 5)
    assert w.health()["checks"] == 4
    w.record(_result("drift", 0.9), "e" * 64)  # a verdict on a model no longer served
    assert w.health()["checks"] == 4


def test_the_schedule_keeps_to_the_cpu_budget() -> None:
    cfg = BehaviourConfig(check_interval_s=60, cpu_budget=0.01)
    assert cfg.next_interval(0.3) == 60          # 0.3 s per 60 s is 0.5 %
    assert cfg.next_interval(1.5) == pytest.approx(150)  # stretched to keep 1 %
    assert BehaviourConfig(check_interval_s=0).check_interval_s == 0


@pytest.mark.parametrize(("table", "message"), [
    ({"on_drift": "explode"}, "on_drift"), ({"cpu_budget": 0}, "cpu_budget"),
    ({"cpu_budget": 0.9}, "cpu_budget"), ({"check_interval_s": 5}, "check_interval_s"),
    ({"check_interval_s": True}, "bad value"), ({"colour": 1}, "unknown key")])
def test_bad_behaviour_tables_are_config_errors(table: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        config_from_dict({"artifact": "m.gguf", "allow_unsigned": True, "behaviour": table})


def test_checks_are_in_the_tamper_evident_audit_log(honest: Signed, tmp_path: Path) -> None:
    agent = Agent(config_from_dict({
        "artifact": str(honest.artifact), "trust_store": str(honest.trust),
        "listen": "127.0.0.1:0", "state_dir": str(tmp_path / "state"),
        "safety_policy": "default"}))
    agent.start()
    try:
        assert until(lambda: agent.behaviour.health()["status"] == "ok")
        log = agent.config.audit_log_path
    finally:
        agent.close()
    entries = [json.loads(line) for line in log.read_text().splitlines() if line.strip()]
    checks = [e for e in entries if "behaviour_check" in json.dumps(e)]
    assert checks and '"status": "ok"' in json.dumps(checks[0])
