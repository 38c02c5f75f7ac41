"""Staged rollouts against a real Mosquitto and a running fleet manager, with simulated devices
that answer commands: a clean rollout finishes wave by wave; failures injected into one wave
halt it and roll that wave back, and the later waves are never touched."""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from _fleet_helpers import wait_until, write_fleet_toml

from edgeward.cli import main
from edgeward.errors import ConfigError
from edgeward.fleet import FleetManager, enroll_devices, load_fleet_config
from edgeward.fleet._broker import MosquittoBroker
from edgeward.fleet._responder import CommandResponder
from edgeward.fleet._rollout import RolloutDriver, parse_fraction, parse_stages, plan_waves
from edgeward.fleet._store import Accepted, open_store
from edgeward.fleet.protocol import (
    BrokerOptions,
    DeviceState,
    EventMessage,
    StateMessage,
    connect,
    encode_command,
)
from edgeward.provenance import Role, TrustStore, generate_key

PARAMS = {"artifact_digest": "ab" * 32, "statement_digest": "cd" * 32, "name": "m.gguf",
          "size": 1000}


def test_stages_and_waves() -> None:
    assert parse_stages("5%,25%,100%") == [0.05, 0.25, 1.0]
    assert parse_fraction("2%", "x") == 0.02 and parse_fraction("0.5", "x") == 0.5
    for bad in ("25%,5%,100%", "5%,50%", "0%,100%", "abc"):
        with pytest.raises(ConfigError):
            parse_stages(bad)
    devices = [f"d{i:03d}" for i in range(100)]
    waves = plan_waves("r1", devices, [0.05, 0.25, 1.0])
    assert [len(w) for w in waves] == [5, 20, 75]
    assert sorted(d for w in waves for d in w) == devices  # every device exactly once
    assert waves == plan_waves("r1", list(reversed(devices)), [0.05, 0.25, 1.0])  # stable
    assert waves[0] != plan_waves("r2", devices, [0.05, 0.25, 1.0])[0]  # per rollout
    assert [len(w) for w in plan_waves("r", ["a", "b"], [0.05, 1.0])] == [1, 1]


class _FakeFleet:
    """A memory store with online devices, a clock, and a way to play device answers."""

    def __init__(self, devices: list[str]) -> None:
        from edgeward.fleet._memstore import MemoryStore

        self.store = MemoryStore()
        self.now = 1_750_000_000.0
        self.sent: list[Any] = []
        self.seq = dict.fromkeys(devices, 0)
        self.store.enroll_many([(d, generate_key().public_key) for d in devices], now=self.now)
        self.store.write([Accepted(StateMessage(device_id=d, state=DeviceState.ONLINE, session=1,
                                                time=self.now, agent_version="t"), b"",
                                   self.now) for d in devices], manager="t", now=self.now)

    def answer(self, device: str, outcome: str) -> None:
        """The device reports the outcome of the last command it was sent."""
        cmd = next(c for c in reversed(self.sent) if c.device_id == device)
        self.seq[device] += 1
        ev = EventMessage(device_id=device, seq=self.seq[device], time=self.now,
                          event=f"command.{outcome}", severity="info",
                          data={"command_id": cmd.command_id})
        self.store.write([Accepted(ev, b"", self.now)], manager="t", now=self.now)


def test_a_deploy_answered_after_the_halt_is_rolled_back_not_forgotten() -> None:
    devices = [f"d{i}" for i in range(4)]
    fake = _FakeFleet(devices)
    driver = RolloutDriver(fake.store, fake.sent.append, clock=lambda: fake.now)
    doc = driver.create("r", group="g", devices=devices, params=PARAMS, stages=[1.0],
                        max_failure=0.25, lifetime_s=60)
    doc = driver.step("r")  # every device gets its deploy
    assert {st["status"] for st in doc["devices"].values()} == {"sent"}
    a, b, c, d = devices
    fake.answer(a, "failed")
    fake.answer(b, "failed")  # 2 of 4 > 25 %: halt while c and d have not answered
    fake.answer(c, "done")
    doc = driver.step("r")
    assert doc["state"] == "halting"
    assert doc["devices"][c]["status"] == "rollback_sent"  # switched: rolled back
    assert doc["devices"][d]["status"] == "sent"  # in flight: it may still apply it
    fake.answer(d, "done")  # ... and it did, after the halt
    doc = driver.step("r")
    assert doc["devices"][d]["status"] == "rollback_sent", "a late success must be rolled back"
    fake.answer(c, "done")
    fake.answer(d, "done")
    doc = driver.step("r")
    assert doc["state"] == "halted"
    assert {doc["devices"][x]["status"] for x in (c, d)} == {"rolled_back"}
    assert [x.action for x in fake.sent if x.device_id == d] == ["deploy", "rollback"]


def test_a_deploy_never_answered_is_cancelled_once_it_expired() -> None:
    devices = ["d0", "d1", "d2"]
    fake = _FakeFleet(devices)
    driver = RolloutDriver(fake.store, fake.sent.append, clock=lambda: fake.now)
    driver.create("r", group="g", devices=devices, params=PARAMS, stages=[1.0],
                  max_failure=0.0, lifetime_s=60)
    driver.step("r")
    fake.answer("d0", "failed")
    doc = driver.step("r")
    assert doc["state"] == "halting" and doc["devices"]["d1"]["status"] == "sent"
    fake.now += 61  # the deploy expired: the device no longer accepts it
    doc = driver.step("r")
    assert doc["state"] == "halted"
    assert {doc["devices"][x]["status"] for x in ("d1", "d2")} == {"cancelled"}


@contextmanager
def _fleet(tmp: Path, broker: MosquittoBroker, n: int,
           fail: set[str]) -> Iterator[tuple[Path, CommandResponder, list[str], Any]]:
    toml = write_fleet_toml(tmp / "fleet.toml", broker.url, "fleet.db")
    keys = {f"dev-{i:03d}": generate_key() for i in range(n)}
    enroll_devices(load_fleet_config(toml), [(d, k.public_key) for d, k in keys.items()])
    operator = generate_key()
    ops = TrustStore.open(tmp / "ops-trust", create=True)
    ops.add(operator.public_key, [Role.OPERATOR], name="ops")
    manager = FleetManager(load_fleet_config(toml))
    responder = CommandResponder(BrokerOptions(url=broker.url), keys, ops,
                                 fail=lambda d: d in fail)
    stop = threading.Event()
    ready_m, ready_r = threading.Event(), threading.Event()
    threads = [threading.Thread(target=lambda: manager.run(stop=stop, on_ready=ready_m.set),
                                daemon=True),
               threading.Thread(target=responder.run,
                                kwargs={"stop": stop, "on_ready": ready_r.set}, daemon=True)]
    for t in threads:
        t.start()
    assert ready_m.wait(15) and ready_r.wait(15)
    conn = connect(BrokerOptions(url=broker.url), client_id="rollout-test")
    conn.client.loop_start()

    def send(cmd: object) -> None:
        wire = encode_command(cmd, operator)  # type: ignore[arg-type]
        conn.client.publish(wire.topic, wire.payload, qos=1).wait_for_publish(10)

    try:
        with open_store(str(tmp / "fleet.db")) as store:
            assert wait_until(lambda: all(
                (store.device(d) or object()).__getattribute__("state") == "online"
                for d in keys), 20)
        send.operator = operator  # type: ignore[attr-defined]
        yield toml, responder, sorted(keys), send
    finally:
        conn.close()
        stop.set()
        for t in threads:
            t.join(30)


@pytest.mark.integration
def test_a_clean_rollout_goes_wave_by_wave_to_done(tmp_path: Path,
                                                   broker: MosquittoBroker) -> None:
    with _fleet(tmp_path, broker, 12, set()) as (_toml, responder, devices, send), \
            open_store(str(tmp_path / "fleet.db")) as store:
        driver = RolloutDriver(store, send)  # type: ignore[arg-type]
        driver.create("v2", group="all", devices=devices, params=PARAMS,
                      stages=[0.25, 0.5, 1.0], max_failure=0.0)
        doc = driver.run("v2", poll_s=0.1)
    assert doc["state"] == "done"
    assert {st["status"] for st in doc["devices"].values()} == {"succeeded"}
    assert sorted(responder.received) == devices and set(responder.received.values()) == {1}
    # waves went in order: no device of a later wave got its command before an earlier wave
    order = [d for d, _ in responder.actions]
    rank = {d: w for w, wave in enumerate(doc["waves"]) for d in wave}
    assert [rank[d] for d in order] == sorted(rank[d] for d in order)


@pytest.mark.integration
def test_failures_in_one_wave_halt_it_and_roll_it_back(tmp_path: Path,
                                                       broker: MosquittoBroker,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    n, stages = 20, [0.1, 0.5, 1.0]
    devices = [f"dev-{i:03d}" for i in range(n)]
    waves = plan_waves("v3", devices, stages)
    fail = set(waves[1][:3])  # 3 of wave 2's 8 devices fail their health check
    with _fleet(tmp_path, broker, n, fail) as (toml, responder, devices, send), \
            open_store(str(tmp_path / "fleet.db")) as store:
        driver = RolloutDriver(store, send)  # type: ignore[arg-type]
        driver.create("v3", group="all", devices=devices, params=PARAMS, stages=stages,
                      max_failure=0.2)
        doc = driver.run("v3", poll_s=0.1)
        # it halts as soon as the failures pass 20% of 8: after the 2nd or, if the replies
        # arrive together, the 3rd; a failure still in flight at the halt is recorded too
        assert doc["state"] == "halted"
        assert re.match(r"wave 2: [23] of 8 devices failed \(limit 20%\)", doc["halt_reason"])
        status = {d: st["status"] for d, st in doc["devices"].items()}
        assert {status[d] for d in waves[0]} == {"succeeded"}  # earlier wave kept
        assert {status[d] for d in fail} == {"failed"}
        assert {status[d] for d in set(waves[1]) - fail} == {"rolled_back"}
        for d in set(waves[1]) - fail:
            assert [a for dev, a in responder.actions if dev == d] == ["deploy", "rollback"]
        for d in waves[2]:  # the last wave was never touched
            assert status[d] == "pending" and responder.received[d] == 0
            assert store.commands(d) == []
        # the state survives: a new driver (a restarted manager) sees the halted rollout
        assert RolloutDriver(store, send).step("v3")["state"] == "halted"  # type: ignore[arg-type]
    capsys.readouterr()
    assert main(["fleet", "rollouts", "--config", str(toml), "--json"]) == 0
    (row,) = json.loads(capsys.readouterr().out)
    assert row["state"] == "halted" and row["devices"]["pending"] == len(waves[2])


@pytest.mark.integration
@pytest.mark.chaos
def test_the_cli_groups_rolls_out_and_resumes(tmp_path: Path, broker: MosquittoBroker,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    from edgeward.provenance import sign_artifact, write_key_pair

    publisher = generate_key()
    artifact = tmp_path / "m.gguf"
    artifact.write_bytes(b"GGUF" + bytes(5000))
    sign_artifact(artifact, publisher)
    with _fleet(tmp_path, broker, 6, set()) as (toml, responder, devices, _send):
        # the operator key the simulated devices trust, as a key file
        key = write_key_pair(_send.operator, tmp_path / "ops-key").private_key_path
        capsys.readouterr()
        assert main(["fleet", "group", "set", "kiosks", *devices, "--config", str(toml),
                     "--json"]) == 0
        assert json.loads(capsys.readouterr().out)["devices"] == devices
        assert main(["fleet", "group", "set", "bad", "nobody", "--config", str(toml)]) == 3
        capsys.readouterr()
        code = main(["fleet", "rollout", str(artifact), "--to", "kiosks", "--stages",
                     "50%,100%", "--max-failure", "0%", "--name", "r1", "--config", str(toml),
                     "--key", str(key), "--artifacts-dir", str(tmp_path / "store"),
                     "--poll", "0.1", "--json"])
        out = json.loads(capsys.readouterr().out)
        assert code == 0 and out["state"] == "done" and out["devices"] == {"succeeded": 6}
        assert out["waves"] == [3, 3] and sorted(responder.received) == devices
        # resuming a finished rollout changes nothing; a second one with the name is refused
        assert main(["fleet", "rollout", "--resume", "r1", "--config", str(toml), "--key",
                     str(key), "--json"]) == 0
        assert json.loads(capsys.readouterr().out)["state"] == "done"
        assert main(["fleet", "rollout", str(artifact), "--to", "kiosks", "--name", "r1",
                     "--config", str(toml), "--key", str(key), "--artifacts-dir",
                     str(tmp_path / "store")]) == 3
        assert set(responder.received.values()) == {1}


def _device_says(fake: _FakeFleet, device: str, event: str, **data: object) -> None:
    fake.seq[device] += 1
    ev = EventMessage(device_id=device, seq=fake.seq[device], time=fake.now, event=event,
                      severity="info", data=data)
    fake.store.write([Accepted(ev, b"", fake.now)], manager="t", now=fake.now)


def test_the_fleet_learns_a_devices_last_version_and_retries_a_stale_refusal_once() -> None:
    from edgeward.fleet._rollout import issue_command, reported_version

    fake = _FakeFleet(["d0", "d1"])
    # another operator (another store) commanded d0 up to version 41
    _device_says(fake, "d0", "command.accepted", command_id="ab" * 8, action="deploy",
                 version=41)
    assert reported_version(fake.store, "d0") == 41 and reported_version(fake.store, "d1") == 0
    driver = RolloutDriver(fake.store, fake.sent.append, clock=lambda: fake.now)
    driver.create("r", group="g", devices=["d0", "d1"], params=PARAMS, stages=[1.0],
                  max_failure=1.0, lifetime_s=60)
    driver.step("r")
    assert {c.device_id: c.version for c in fake.sent} == {"d0": 42, "d1": 1}
    # meanwhile the other operator went to 50: d0 refuses ours, saying its last version
    first = fake.sent[-2] if fake.sent[-2].device_id == "d0" else fake.sent[-1]
    _device_says(fake, "d0", "command.refused", reason="stale_version", last_version=50,
                 command_id=first.command_id, version=first.version)
    doc = driver.step("r")
    retry = fake.sent[-1]
    assert (retry.device_id, retry.action, retry.version) == ("d0", "deploy", 51)
    assert doc["devices"]["d0"]["status"] == "sent"  # retried, not failed
    # a second stale refusal is a failure: once only
    _device_says(fake, "d0", "command.refused", reason="stale_version", last_version=60,
                 command_id=retry.command_id, version=51)
    doc = driver.step("r")
    assert doc["devices"]["d0"]["status"] == "failed"
    assert [c.version for c in fake.sent if c.device_id == "d0"] == [42, 51]
    # the operator's one-off commands learn the same way
    cmd = issue_command(fake.store, "d0", "set-config", {}, lifetime_s=60, now=fake.now)
    assert cmd.version == 61
