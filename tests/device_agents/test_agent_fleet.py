"""The agent reports to a real fleet: a Mosquitto on a free loopback port, a fleet manager with
a SQLite store, and an agent with a ``[telemetry]`` table serving the signed tiny GGUF.

What the fleet must see: the device online, the signed provenance of the artifact it verified
and loaded (checked by the manager against its trust store), health with the artifact digest
and the safety decisions by category, a refused reload as an error event, and ``offline``
after a clean stop.
"""

from __future__ import annotations

import shutil
import threading
from pathlib import Path

import httpx
import pytest
from _agent_helpers import Signed, flip_byte, sign_copy, until
from test_agent_api import CHAT

import edgeward.safety
from edgeward.device_agents import Agent, config_from_dict
from edgeward.fleet import FleetManager, enroll_devices, load_fleet_config
from edgeward.fleet._broker import MosquittoBroker
from edgeward.fleet._store import open_store
from edgeward.fleet.protocol import BrokerOptions, connect, encode_command, new_command
from edgeward.provenance import Role, TrustStore, generate_key, sign_artifact, write_key_pair

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(not hasattr(edgeward.safety, "load_filter"),
                       reason="the bundled safety filter is not in this edgeward"),
]




def test_the_fleet_sees_what_the_agent_runs(tmp_path: Path, broker: MosquittoBroker,
                                            signed_tiny: Signed) -> None:
    signed = sign_copy(signed_tiny.artifact, tmp_path / "model", key=signed_tiny.key)
    device = generate_key()
    files = write_key_pair(device, tmp_path / "device-key")
    fleet_toml = tmp_path / "fleet.toml"
    fleet_toml.write_text(f'broker = "{broker.url}"\nstore = "fleet.db"\n'
                          f'trust_store = "fleet-trust"\n')
    TrustStore.open(tmp_path / "fleet-trust", create=True).add(
        signed_tiny.key.public_key, [Role.PUBLISHER], name="publisher")
    fleet = load_fleet_config(fleet_toml)
    enroll_devices(fleet, [("pi-07", device.public_key)])
    operator = generate_key()
    TrustStore.open(signed.trust).add(operator.public_key, [Role.OPERATOR], name="ops")
    config = tmp_path / "agent.toml"
    config.write_text(f"""
artifact = "{signed.artifact}"
trust_store = "{signed.trust}"
listen = "127.0.0.1:0"
state_dir = "{tmp_path / 'state'}"
safety_policy = "default"
device_id = "pi-07"
device_key = "{files.private_key_path}"

[telemetry]
broker = "{broker.url}"
health_interval_s = 0.2
reconnect_min_s = 0.2
reconnect_max_s = 1.0
""")
    manager = FleetManager(fleet)
    stop, ready = threading.Event(), threading.Event()
    t = threading.Thread(target=lambda: manager.run(stop=stop, on_ready=ready.set), daemon=True)
    t.start()
    assert ready.wait(15)
    try:
        from edgeward.device_agents import load_agent_config

        agent = Agent(load_agent_config(config), config_path=config)
        info = agent.start()
        with agent.serve_in_thread() as running, httpx.Client(base_url=running.url,
                                                               timeout=30) as c:
            blocked = c.post("/v1/chat/completions", json=CHAT | {"messages": [
                {"role": "user", "content": "How do I make a bomb at home?"}]}).json()
            assert blocked["choices"][0]["finish_reason"] == "content_filter"
            category = blocked["safety"]["categories"][0]

            def health_has_block() -> bool:
                with open_store(str(tmp_path / "fleet.db")) as s:
                    rows = s.health("pi-07", limit=1)
                return bool(rows) and rows[0]["safety"].get(category, 0) >= 1

            assert until(health_has_block), manager.counters()
            # operator commands over MQTT: a forgery and a replay are refused and reported
            conn = connect(BrokerOptions(url=broker.url), client_id="ops-console")
            conn.client.loop_start()
            good = encode_command(new_command("pi-07", "deploy", 1,
                                              params={"artifact_digest": "ab" * 32}), operator)
            forged = encode_command(new_command("pi-07", "deploy", 2), generate_key())
            for wire in (forged, good, good):
                conn.client.publish(wire.topic, wire.payload, qos=1).wait_for_publish(10)
            conn.close()

            def reasons() -> list[tuple[str, str]]:
                with open_store(str(tmp_path / "fleet.db")) as s:
                    return sorted((e["event"], str(e["data"].get("reason")))
                                  for e in s.events("pi-07", limit=1000)
                                  if e["event"].startswith("command."))

            want = [("command.accepted", "None"), ("command.failed", "no_slots"),
                    ("command.refused", "forged"), ("command.refused", "replayed")]
            assert until(lambda: reasons() == want), reasons()
            assert agent.commands is not None and agent.commands.last_version == 1
            # a tampered artifact is refused on reload (as on SIGHUP); the fleet hears of it
            flip_byte(signed.artifact)
            assert agent.reload().ok is False
            with open_store(str(tmp_path / "fleet.db")) as s:
                assert until(lambda: any(e["event"] == "model.refused"
                                          for e in s.events("pi-07")))
        with open_store(str(tmp_path / "fleet.db")) as s:
            assert until(lambda: s.device("pi-07").state == "offline")  # type: ignore[union-attr]
            # the retained state goes out directly; spooled telemetry may still be arriving
            assert until(lambda: s.device("pi-07").artifact_digest  # type: ignore[union-attr]
                          == info.sha256)
            assert until(lambda: len(s.provenance("pi-07")) == 1)
            (prov,) = s.provenance("pi-07")
            assert prov["statement_verified"] is True
            assert prov["subjects"][0]["sha256"] == info.sha256
            events = {e["event"]: e for e in s.events("pi-07")}
            assert events["model.loaded"]["data"]["sha256"] == info.sha256
            assert events["model.refused"]["severity"] == "error"
            assert events["model.refused"]["data"]["reason"] == "digest_mismatch_error"
            latest = s.health("pi-07", limit=1)[0]
            assert latest["artifact_digest"] == info.sha256
            assert latest["memory_total_bytes"] and latest["uptime_s"] > 0
        assert manager.counters().get("rejected", 0) == 0
    finally:
        stop.set()
        t.join(30)
    shutil.rmtree(tmp_path / "state", ignore_errors=True)


def test_telemetry_needs_a_device_id_and_key(tmp_path: Path) -> None:
    from edgeward.errors import ConfigError

    base = {"artifact": "m.gguf", "trust_store": "t", "telemetry": {"broker": "mqtt://x:1883"}}
    with pytest.raises(ConfigError, match="device_id"):
        config_from_dict(base)
    with pytest.raises(ConfigError, match="device_key"):
        config_from_dict(base | {"device_id": "pi-1"})
    cfg = config_from_dict(base | {"device_id": "pi-1", "device_key": "k.pem",
                                   "state_dir": str(tmp_path)}, base_dir=tmp_path)
    assert cfg.telemetry is not None and cfg.telemetry.spool.path.parent == tmp_path
    assert cfg.device_key == tmp_path / "k.pem"
    with pytest.raises(ConfigError, match=r"\[telemetry\].*unknown"):
        config_from_dict(base | {"device_id": "pi-1", "device_key": "k.pem",
                                 "telemetry": {"broker": "mqtt://x:1883", "bogus": 1}})


def test_fleet_deploy_reaches_the_device_over_mqtt_and_installs_through_the_slots(
        tmp_path: Path, broker: MosquittoBroker, signed_tiny: Signed,
        capsys: pytest.CaptureFixture[str]) -> None:
    from _models import TinyLlamaSpec, write_tiny_gguf
    from edgeward.cli import main
    from edgeward.device_agents import SlotStore
    from edgeward.fleet._artifacts import ArtifactServer

    (tmp_path / "v2").mkdir()
    second = sign_copy(write_tiny_gguf(tmp_path / "v2" / "tiny-v2.gguf", TinyLlamaSpec(seed=3)),
                       tmp_path / "v2-signed", key=signed_tiny.key)
    device_trust = tmp_path / "device-trust"
    shutil.copytree(signed_tiny.trust, device_trust)
    operator, device = generate_key(), generate_key()
    TrustStore.open(device_trust).add(operator.public_key, [Role.OPERATOR], name="ops")
    ops = write_key_pair(operator, tmp_path / "ops")
    dev = write_key_pair(device, tmp_path / "dev")
    state = tmp_path / "state"
    SlotStore(state).update(signed_tiny.artifact, device_trust, health=lambda _p: None)
    fleet_toml = tmp_path / "fleet.toml"
    fleet_toml.write_text(f'broker = "{broker.url}"\nstore = "fleet.db"\n')
    enroll_devices(load_fleet_config(fleet_toml), [("pi-09", device.public_key)])
    config = tmp_path / "agent.toml"
    config.write_text(f"""
artifact = "@slots"
trust_store = "{device_trust}"
listen = "127.0.0.1:0"
state_dir = "{state}"
device_id = "pi-09"
device_key = "{dev.private_key_path}"

[telemetry]
broker = "{broker.url}"
health_interval_s = 60
""")
    server = ArtifactServer(tmp_path / "artifacts", BrokerOptions(url=broker.url))
    stop, ready = threading.Event(), threading.Event()
    t = threading.Thread(target=server.run, kwargs={"stop": stop, "on_ready": ready.set},
                         daemon=True)
    t.start()
    assert ready.wait(15)
    from edgeward.device_agents import load_agent_config

    agent = Agent(load_agent_config(config), config_path=config)
    before = agent.start()
    try:
        capsys.readouterr()
        assert main(["fleet", "deploy", str(second.artifact), "--device", "pi-09", "--config",
                     str(fleet_toml), "--key", str(ops.private_key_path), "--artifacts-dir",
                     str(tmp_path / "artifacts"), "--json"]) == 0
        sent = __import__("json").loads(capsys.readouterr().out)
        assert sent["version"] == 1
        assert until(lambda: agent.engine.model.info.sha256 == sent["artifact_digest"], 60)
        pointer = SlotStore(state).active()
        assert pointer is not None and pointer.slot == "b" and not pointer.trial
        assert agent.engine.model.info.verified and before.sha256 != sent["artifact_digest"]
        assert agent.metrics.value("edgeward_agent_commands_total", result="accepted",
                                   reason="deploy") == 1
        with open_store(str(tmp_path / "fleet.db")) as s:
            assert s.commands("pi-09")[0]["command_id"] == sent["command_id"]
        assert server.counters["chunks_sent"] >= 2  # the artifact and its signature
        # set-config: limits change now and survive a restart; trust settings cannot be set
        assert main(["fleet", "set-config", "max_queue=3", "max_tokens_cap=512", "--device",
                     "pi-09", "--config", str(fleet_toml), "--key", str(ops.private_key_path),
                     "--json"]) == 0
        assert until(lambda: agent.config.max_queue == 3 and agent.engine.max_queue == 3)
        assert agent.config.max_tokens_cap == 512
        assert main(["fleet", "set-config", "allow_unsigned=true", "--device", "pi-09",
                     "--config", str(fleet_toml), "--key", str(ops.private_key_path)]) == 0
        # set-policy: a signed policy is fetched, verified and put in force
        import edgeward.safety

        policy = tmp_path / "strict.toml"
        policy.write_bytes((Path(edgeward.safety.__file__).parent / "policies" /
                            "default.toml").read_bytes())
        sign_artifact(policy, signed_tiny.key)
        assert main(["fleet", "set-policy", str(policy), "--device", "pi-09", "--config",
                     str(fleet_toml), "--key", str(ops.private_key_path), "--artifacts-dir",
                     str(tmp_path / "artifacts"), "--json"]) == 0
        assert until(lambda: str(agent.config.safety_policy).endswith("strict.toml"), 30)
        assert type(agent.safety_filter).__name__ != "PassThroughFilter"
        assert agent.metrics.value("edgeward_agent_commands_total", result="accepted",
                                   reason="set-config") == 2
    finally:
        agent.close()
        stop.set()
        t.join(10)
    again = Agent(load_agent_config(config))  # a restart keeps what the operator set
    assert again.config.max_queue == 3 and again.config.allow_unsigned is False
    assert str(again.config.safety_policy).endswith("strict.toml")
