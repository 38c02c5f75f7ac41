"""The manager tells each device what it stored (``edgeward/v1/devices/D/ack``), against a
real Mosquitto: only after the commit, copies of stored messages again (so a device that
re-sends always gets its answer), never what it refused."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from _fleet_helpers import health, wait_until, write_fleet_toml

from edgeward.fleet import FleetManager, enroll_devices, load_fleet_config
from edgeward.fleet._broker import MosquittoBroker
from edgeward.fleet.protocol import BrokerOptions, FleetAck, ack_topic, connect, encode
from edgeward.provenance import PrivateKey

pytestmark = pytest.mark.integration


def test_stored_messages_and_their_copies_are_acknowledged_to_their_device(
        tmp_path: Path, broker: MosquittoBroker, device_key: PrivateKey,
        other_key: PrivateKey) -> None:
    toml = write_fleet_toml(tmp_path / "fleet.toml", broker.url, "fleet.db")
    enroll_devices(load_fleet_config(toml), [("pi-01", device_key.public_key)])
    manager = FleetManager(load_fleet_config(toml))
    stop, ready = threading.Event(), threading.Event()
    t = threading.Thread(target=lambda: manager.run(stop=stop, on_ready=ready.set), daemon=True)
    t.start()
    assert ready.wait(15)
    acks: list[FleetAck] = []
    device = connect(BrokerOptions(url=broker.url), client_id="pi-01")
    device.client.on_message = lambda _c, _u, m: acks.append(
        FleetAck.parse(m.topic, m.payload, device_id="pi-01"))
    device.client.subscribe(ack_topic("pi-01"), qos=1)
    device.client.loop_start()
    try:
        wire = [encode(health("pi-01", seq), device_key) for seq in (1, 2, 3)]
        forged = encode(health("pi-01", 4), other_key)  # not the device's key: refused
        for w in [*wire, forged]:
            device.client.publish(w.topic, w.payload, qos=1).wait_for_publish(5)
        assert wait_until(lambda: sorted(s for a in acks for s in a.seqs()) == [1, 2, 3])
        assert manager.counters()["rejected.forged"] == 1
        device.client.publish(wire[1].topic, wire[1].payload, qos=1)  # a re-send of seq 2
        assert wait_until(lambda: sorted(s for a in acks for s in a.seqs()) == [1, 2, 2, 3])
        assert manager.counters()["rejected.replayed"] == 1 and manager.device_acks_sent >= 2
    finally:
        device.close()
        stop.set()
        t.join(30)
