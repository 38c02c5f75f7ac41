"""Chaos (bounded): the fleet manager and the rollout driver are killed with SIGKILL in the
middle of a staged rollout, while the devices go on answering.

What must hold: nothing the devices reported is lost (the broker keeps the manager's session
and the answers are stored after its restart), the rollout's state survives in the store,
``fleet rollout --resume`` finishes it, every device ends on the artifact exactly as if
nothing had happened, and no device is sent a deploy for a wave it was not in.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from _fleet_helpers import wait_until, write_fleet_toml

from edgeward.fleet import enroll_devices, load_fleet_config
from edgeward.fleet._broker import MosquittoBroker
from edgeward.fleet._responder import CommandResponder
from edgeward.fleet._store import open_store
from edgeward.fleet.protocol import BrokerOptions
from edgeward.provenance import (
    Role,
    TrustStore,
    generate_key,
    sign_artifact,
    write_key_pair,
)

pytestmark = [pytest.mark.integration, pytest.mark.chaos]

N = 8
ANSWER_DELAY_S = 0.4  # each simulated device takes this long to install an update


def _edgeward(*args: str) -> list[str]:
    return [sys.executable, "-m", "edgeward", *args]


def _rollout(store_path: Path, name: str) -> dict[str, Any] | None:
    with open_store(str(store_path)) as store:
        return store.get_doc("rollouts", name)


def test_killing_the_manager_and_the_driver_mid_rollout_loses_nothing(
        tmp_path: Path, broker: MosquittoBroker) -> None:
    # a fixed client id: the broker keeps the manager's session (and queues for it) while
    # the process is dead
    toml = write_fleet_toml(tmp_path / "fleet.toml", broker.url, "fleet.db",
                            client_id="fleet-manager-1")
    keys = {f"dev-{i:02d}": generate_key() for i in range(N)}
    devices = sorted(keys)
    enroll_devices(load_fleet_config(toml), [(d, k.public_key) for d, k in keys.items()])
    operator, publisher = generate_key(), generate_key()
    ops_trust = TrustStore.open(tmp_path / "ops-trust", create=True)
    ops_trust.add(operator.public_key, [Role.OPERATOR], name="ops")
    op_key = write_key_pair(operator, tmp_path / "ops").private_key_path
    artifact = tmp_path / "m.gguf"
    artifact.write_bytes(b"GGUF" + bytes(4000))
    sign_artifact(artifact, publisher)

    def slow(_device: str) -> bool:
        time.sleep(ANSWER_DELAY_S)
        return False  # every update succeeds, slowly

    responder = CommandResponder(BrokerOptions(url=broker.url), keys, ops_trust, fail=slow)
    stop, ready = threading.Event(), threading.Event()
    devices_thread = threading.Thread(target=responder.run,
                                      kwargs={"stop": stop, "on_ready": ready.set}, daemon=True)
    devices_thread.start()
    assert ready.wait(15)
    logs = tmp_path / "logs"
    logs.mkdir()
    procs: list[subprocess.Popen[bytes]] = []

    def start(name: str, *args: str) -> subprocess.Popen[bytes]:
        with (logs / f"{name}.log").open("ab") as log:
            p = subprocess.Popen(_edgeward(*args), stdout=log, stderr=subprocess.STDOUT)
        procs.append(p)
        return p

    store_path = tmp_path / "fleet.db"
    try:
        manager = start("manager-1", "fleet", "run", "--config", str(toml))
        with open_store(str(store_path)) as store:
            assert wait_until(lambda: all(
                (r := store.device(d)) is not None and r.state == "online" for d in devices),
                30), (logs / "manager-1.log").read_text()[-2000:]
            store.put_doc("device_groups", "all", {"name": "all", "devices": devices},
                          now=time.time())
        driver = start("rollout-1", "fleet", "rollout", str(artifact), "--to", "all",
                       "--stages", "25%,50%,100%", "--max-failure", "0%", "--name", "r1",
                       "--config", str(toml), "--key", str(op_key), "--artifacts-dir",
                       str(tmp_path / "artifacts"), "--poll", "0.1")

        def in_wave_two_with_deploys_in_flight() -> bool:
            doc = _rollout(store_path, "r1")
            return bool(doc) and doc["wave"] == 1 and any(  # type: ignore[index]
                st["status"] == "sent" for st in doc["devices"].values())  # type: ignore[index]

        assert wait_until(in_wave_two_with_deploys_in_flight, 60, 0.02), \
            (logs / "rollout-1.log").read_text()[-2000:]
        for p in (driver, manager):
            p.send_signal(signal.SIGKILL)
            p.wait(10)
        killed_at = _rollout(store_path, "r1")
        assert killed_at is not None and killed_at["state"] == "running"
        in_flight = [d for d, st in killed_at["devices"].items() if st["status"] == "sent"]
        # the devices go on installing and reporting while nobody listens
        assert wait_until(lambda: all(responder.received[d] >= 1 for d in in_flight), 30)
        time.sleep(2 * ANSWER_DELAY_S)  # their last answers reach the broker

        start("manager-2", "fleet", "run", "--config", str(toml))
        resumed = subprocess.run(_edgeward(
            "fleet", "rollout", "--resume", "r1", "--config", str(toml), "--key", str(op_key),
            "--poll", "0.1", "--json"), capture_output=True, text=True, timeout=120,
            check=False)
        assert resumed.returncode == 0, resumed.stderr
        result = json.loads(resumed.stdout)
        assert result["state"] == "done" and result["devices"] == {"succeeded": N}, result

        doc = _rollout(store_path, "r1")
        assert doc is not None
        with open_store(str(store_path)) as store:
            for d in devices:
                assert doc["devices"][d]["status"] == "succeeded"
                # nothing lost: every answer a device sent is stored, including those sent
                # while the manager was dead
                done = [e for e in store.events(d, limit=100) if e["event"] == "command.done"]
                assert len(done) == responder.received[d], (d, len(done),
                                                             responder.received[d])
                assert done and doc["devices"][d]["command_id"] in {
                    e["data"]["command_id"] for e in done}
        # a deploy was sent again only where the driver died before recording it: the
        # devices in flight in wave 2 at most, never a device of wave 1 or 3
        waves = doc["waves"]
        for d in waves[0] + waves[2]:
            assert responder.received[d] == 1, d
        assert all(responder.received[d] in (1, 2) for d in waves[1])
        assert responder.actions.count(("dev-00", "rollback")) == 0
    finally:
        stop.set()
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
                try:
                    p.wait(15)
                except subprocess.TimeoutExpired:
                    p.kill()
        devices_thread.join(10)
