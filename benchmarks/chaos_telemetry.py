"""Chaos benchmark: telemetry across a broker crash and a broker restart, with a bystander.

A real Mosquitto (persistence on, a free loopback port), a real fleet manager (SQLite store,
fixed client id, so a persistent session where the broker keeps one) and N real telemetry
clients (spool, backoff, fleet acknowledgements), each producing signed health reports at R
messages per second. Another plain subscriber to ``edgeward/#`` stays connected throughout
(it reconnects at once after the broker comes back), so that the broker's "no matching
subscribers" answer never protects a message. The broker is SIGKILLed (``kill``) or stopped
(``term``) after ``before_s``, stays down ``down_s`` and runs again for ``after_s``; then the
clients stop producing and deliver what they hold. Counted from the store: every seq each
client made (``lost``: made, never stored; ``duplicated``: stored more than once).

Prints one JSON object with a result per mode. Usage::

    .venv/bin/python benchmarks/chaos_telemetry.py [--clients 16] [--rate 20] [--quick]
        [--modes kill,term]

``tests/chaos/test_chaos_telemetry.py`` runs :func:`scenario` short (8 clients x 20 msgs/s,
about 10 s, the broker down 3 s).
"""

from __future__ import annotations

import argparse
import json
import platform
import sqlite3
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from edgeward.device_agents._spool import SpoolConfig
from edgeward.device_agents._telemetry import TelemetryClient, TelemetryConfig
from edgeward.fleet import BrokerSpec, FleetManager, MosquittoBroker
from edgeward.fleet._config import FleetConfig
from edgeward.fleet._enroll import enroll_devices
from edgeward.fleet.protocol import BrokerOptions, HealthSample
from edgeward.provenance import generate_key


class Bystander:
    """A plain subscriber to ``edgeward/#`` that reconnects as soon as the broker is back."""

    def __init__(self, host: str, port: int) -> None:
        self.received = 0
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="bystander",
                                  protocol=mqtt.MQTTv5)
        self.client.reconnect_delay_set(min_delay=0.05, max_delay=0.2)
        self.client.on_connect = lambda c, _u, _f, _r, _p: c.subscribe("edgeward/#", qos=1)
        self.client.on_message = self._count
        self.client.connect(host, port, keepalive=5)
        self.client.loop_start()

    def _count(self, _c: object, _u: object, _m: object) -> None:
        self.received += 1

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def _stored(db: Path) -> dict[str, list[int]]:
    with sqlite3.connect(db) as c:
        rows = c.execute("SELECT device_id, seq FROM health").fetchall()
    out: dict[str, list[int]] = {}
    for device, seq in rows:
        out.setdefault(device, []).append(int(seq))
    return out


def scenario(directory: Path, *, mode: str = "kill", clients: int = 8, rate: float = 20.0,
             before_s: float = 3.0, down_s: float = 3.0, after_s: float = 4.0,
             bystander: bool = True, fleet_acks: bool = True,
             deliver_timeout_s: float = 60.0) -> dict[str, Any]:
    """Run one outage (see the module docstring) and count what the store holds.

    Args:
        directory: an empty working directory.
        mode: ``kill`` (SIGKILL) or ``term`` (SIGTERM, a graceful restart).
        clients / rate: telemetry clients, and health reports per second each.
        before_s / down_s / after_s: seconds before the outage, of it, and after it.
        bystander: keep another ``edgeward/#`` subscriber connected.
        fleet_acks: the clients wait for the fleet's acknowledgements (``False``: the old
            behaviour, a broker's PUBACK drops a message from the spool).
        deliver_timeout_s: how long the clients may take to deliver what they hold at the end.

    Returns:
        ``made``, ``stored``, ``lost``, ``duplicated`` (messages), ``undelivered`` (still
        spooled at the end), ``seconds`` and the settings.
    """
    if mode not in ("kill", "term"):
        raise ValueError(f"mode must be kill or term, got {mode!r}")
    broker = MosquittoBroker(BrokerSpec(directory=directory / "broker", persistence=True))
    broker.start()
    db = directory / "fleet.db"
    config = FleetConfig(broker=BrokerOptions(url=broker.url), store=str(db),
                         base_dir=directory, client_id="chaos-fleet",
                         sqlite_synchronous="NORMAL")
    keys = {f"chaos-{i:03d}": generate_key() for i in range(clients)}
    enroll_devices(config, [(d, k.public_key) for d, k in keys.items()])
    manager = FleetManager(config)
    stop, ready = threading.Event(), threading.Event()
    runner = threading.Thread(target=lambda: manager.run(stop=stop, on_ready=ready.set),
                              daemon=True)
    runner.start()
    watcher: Bystander | None = None
    agents: list[TelemetryClient] = []
    started = time.monotonic()
    try:
        if not ready.wait(20):
            raise RuntimeError("the fleet manager did not subscribe")
        watcher = Bystander(broker.spec.host, broker.port) if bystander else None
        for device, key in keys.items():
            cfg = TelemetryConfig(
                device_id=device, broker=BrokerOptions(url=broker.url),
                spool=SpoolConfig(path=directory / f"{device}.spool", durable=False),
                health_interval_s=1.0 / rate, reconnect_min_s=0.2, reconnect_max_s=1.0,
                drain_timeout_s=deliver_timeout_s, fleet_acks=fleet_acks, ack_timeout_s=2.0)
            agents.append(TelemetryClient(cfg, key, health=lambda: HealthSample(uptime_s=1.0)))
        for a in agents:
            a.start()
        time.sleep(before_s)
        broker.kill() if mode == "kill" else broker.stop()
        time.sleep(down_s)
        broker.start()
        time.sleep(after_s)
        # Stop producing and deliver what is held (up to the drain timeout), all at once:
        # one after the other, the later ones would go on producing meanwhile.
        stoppers = [threading.Thread(target=a.stop) for a in agents]
        for t in stoppers:
            t.start()
        for t in stoppers:
            t.join()
        made = {d: a.status().seq for d, a in zip(keys, agents, strict=True)}
        undelivered = sum(a.status().queued for a in agents)
        if not fleet_acks:  # nothing tells the clients what was stored: give it a moment
            time.sleep(2.0)
    finally:
        stop.set()
        runner.join(30)
        if watcher is not None:
            watcher.close()
        broker.stop()
    stored = _stored(db)
    lost = sum(len(set(range(1, n + 1)) - set(stored.get(d, []))) for d, n in made.items())
    duplicated = sum(c - 1 for v in stored.values() for c in Counter(v).values() if c > 1)
    return {"mode": mode, "clients": clients, "rate_per_client": rate, "down_s": down_s,
            "bystander": bystander, "fleet_acks": fleet_acks, "made": sum(made.values()),
            "stored": sum(len(v) for v in stored.values()), "lost": lost,
            "duplicated": duplicated, "undelivered": undelivered,
            "device_acks_sent": manager.device_acks_sent,
            "seconds": round(time.monotonic() - started, 1)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--clients", type=int, default=16)
    ap.add_argument("--rate", type=float, default=20.0, help="messages per second per client")
    ap.add_argument("--modes", default="kill,term")
    ap.add_argument("--quick", action="store_true", help="8 clients, a 3 s outage")
    ap.add_argument("--baseline", action="store_true",
                    help="also run without fleet acknowledgements (the old behaviour)")
    args = ap.parse_args()
    timing = dict(before_s=3.0, down_s=3.0, after_s=4.0) if args.quick else \
        dict(before_s=12.0, down_s=8.0, after_s=10.0)
    clients = 8 if args.quick else args.clients
    results = []
    for mode in args.modes.split(","):
        for acks in ((True, False) if args.baseline else (True,)):
            with tempfile.TemporaryDirectory(prefix="edgeward-chaos-") as tmp:
                results.append(scenario(Path(tmp), mode=mode, clients=clients,
                                        rate=args.rate, fleet_acks=acks, **timing))
    print(json.dumps({"benchmark": "chaos_telemetry",
                      "machine": {"platform": platform.platform(),
                                  "python": platform.python_version()},
                      "results": results,
                      "zero_lost_zero_duplicated": all(
                          r["lost"] == 0 and r["duplicated"] == 0
                          for r in results if r["fleet_acks"])}, indent=2))


if __name__ == "__main__":
    main()
