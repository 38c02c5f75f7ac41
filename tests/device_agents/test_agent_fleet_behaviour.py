"""Three agents run the same signed bytes; one computes differently (a steering vector applied
to its loaded model, as an adapter at load would). Through a real Mosquitto and a fleet manager,
only that device is flagged: "same bytes, different behaviour"."""

from __future__ import annotations

import ctypes
import shutil
import threading
from pathlib import Path

import numpy as np
import pytest
from _agent_helpers import until

from edgeward.behaviour import fingerprint_artifact, statement_record
from edgeward.device_agents import Agent, config_from_dict
from edgeward.fleet import FleetManager, behaviour_overview, enroll_devices, load_fleet_config
from edgeward.fleet._broker import MosquittoBroker
from edgeward.fleet._store import open_store
from edgeward.provenance import Role, TrustStore, generate_key, sign_artifact, write_key_pair

pytestmark = pytest.mark.integration




def _steer(agent: Agent, strength: float = 0.5) -> None:
    """Add a steering vector to the residual stream of the agent's loaded model."""
    import llama_cpp

    llm = agent.engine.model.runtime._llm  # type: ignore[attr-defined]
    n_embd, n_layer = int(llm.n_embd()), int(llama_cpp.llama_model_n_layer(llm._model.model))
    data = np.random.default_rng(1).standard_normal((n_layer, n_embd)).astype(np.float32)
    data *= strength * np.sqrt(n_embd) / np.linalg.norm(data, axis=1, keepdims=True)
    buf = (ctypes.c_float * data.size)(*data.ravel())
    assert llama_cpp.llama_set_adapter_cvec(llm._ctx.ctx, buf, data.size, n_embd, 1,
                                            n_layer) == 0


def test_only_the_device_that_computes_differently_is_flagged(
        tmp_path: Path, broker: MosquittoBroker, tiny_gguf: Path) -> None:
    model = tmp_path / "model"
    model.mkdir()
    art = model / "tiny.gguf"
    shutil.copyfile(tiny_gguf, art)
    made = fingerprint_artifact(art, calibrated=False)
    publisher = generate_key()
    TrustStore.open(model / "trust", create=True).add(publisher.public_key, [Role.PUBLISHER])
    sign_artifact(art, publisher, fingerprint=made.path,
                  behaviour=statement_record(made, made.path.name))
    (tmp_path / "fleet.toml").write_text(f'broker = "{broker.url}"\nstore = "fleet.db"\n')
    fleet = load_fleet_config(tmp_path / "fleet.toml")
    devices = {f"pi-0{i}": generate_key() for i in (1, 2, 3)}
    enroll_devices(fleet, [(d, k.public_key) for d, k in devices.items()])
    manager = FleetManager(fleet)
    stop, ready = threading.Event(), threading.Event()
    threading.Thread(target=lambda: manager.run(stop=stop, on_ready=ready.set),
                     daemon=True).start()
    assert ready.wait(15)
    agents = []
    try:
        for device, key in devices.items():
            files = write_key_pair(key, tmp_path / f"key-{device}")
            agent = Agent(config_from_dict({
                "artifact": str(art), "trust_store": str(model / "trust"),
                "listen": "127.0.0.1:0", "state_dir": str(tmp_path / f"state-{device}"),
                "device_id": device, "device_key": str(files.private_key_path),
                "behaviour": {"check_on_load": False},
                "telemetry": {"broker": broker.url, "health_interval_s": 0.2,
                              "reconnect_min_s": 0.2, "reconnect_max_s": 1.0}}))
            agent.start()
            agents.append(agent)
        _steer(agents[2])  # pi-03: same bytes, different computation
        for agent in agents:
            assert agent.behaviour is not None and agent.behaviour.request()
        assert until(lambda: all(a.behaviour.health()["checks"] == 1 for a in agents))
        assert [a.behaviour.health()["status"] for a in agents] == ["ok", "ok", "drift"]

        def flagged() -> list[tuple[str, str, bool]]:
            with open_store(str(tmp_path / "fleet.db")) as s:
                return [(r["device_id"], r["status"], r["outlier"])
                        for r in behaviour_overview(s)]

        want = [("pi-01", "ok", False), ("pi-02", "ok", False), ("pi-03", "drift", True)]
        assert until(lambda: flagged() == want), flagged()
        with open_store(str(tmp_path / "fleet.db")) as s:
            assert until(lambda: {(a.device_id, a.kind) for a in s.alerts(limit=100)} >= {
                ("pi-03", "behaviour"), ("pi-03", "behaviour_outlier"),
                ("pi-03", "behaviour.drift")})
            kinds = {(a.device_id, a.kind) for a in s.alerts(limit=100)}
        assert not any(d != "pi-03" and k.startswith("behaviour") for d, k in kinds), kinds
    finally:
        for agent in agents:
            agent.close()
        stop.set()
