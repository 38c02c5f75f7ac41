"""Benchmark: a staged rollout to 100 simulated devices with failures injected into one wave.

Mosquitto on a free loopback port, a fleet manager (SQLite) and 100 simulated devices that
answer operator commands with signed events (``edgeward.fleet._responder``); stages
5%,25%,100%, max failure 10%; 3 of the second wave's 20 devices fail their health check.
Prints JSON: the final state, devices by status per wave, whether the failing wave was rolled
back and the last wave untouched, and the time each wave took.

    .venv/bin/python benchmarks/rollout.py
"""

from __future__ import annotations

import json
import os
import platform
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from edgeward.fleet import BrokerSpec, FleetManager, MosquittoBroker, enroll_devices
from edgeward.fleet._config import fleet_config_from
from edgeward.fleet._responder import CommandResponder
from edgeward.fleet._rollout import RolloutDriver, plan_waves
from edgeward.fleet._store import open_store
from edgeward.fleet.protocol import BrokerOptions, Command, connect, encode_command
from edgeward.provenance import Role, TrustStore, generate_key

DEVICES, STAGES, MAX_FAILURE = 100, [0.05, 0.25, 1.0], 0.10
PARAMS = {"artifact_digest": "ab" * 32, "statement_digest": "cd" * 32, "name": "m.gguf",
          "size": 1000}


def main() -> None:
    result: dict[str, Any] = {"benchmark": "rollout", "devices": DEVICES, "stages": STAGES,
                              "max_failure": MAX_FAILURE,
                              "machine": {"platform": platform.platform(),
                                          "cpus": os.cpu_count()}}
    ids = [f"dev-{i:03d}" for i in range(DEVICES)]
    waves = plan_waves("bench", ids, STAGES)
    fail = set(waves[1][:3])
    with tempfile.TemporaryDirectory(prefix="edgeward-rollout-bench-") as tmp_s:
        tmp = Path(tmp_s)
        with MosquittoBroker(BrokerSpec(directory=tmp / "broker")) as broker:
            cfg = fleet_config_from({"broker": broker.url, "store": str(tmp / "fleet.db")},
                                    base_dir=tmp, where="bench")
            keys = {d: generate_key() for d in ids}
            enroll_devices(cfg, [(d, k.public_key) for d, k in keys.items()])
            operator = generate_key()
            ops = TrustStore.open(tmp / "ops", create=True)
            ops.add(operator.public_key, [Role.OPERATOR], name="ops")
            manager = FleetManager(cfg)
            responder = CommandResponder(BrokerOptions(url=broker.url), keys, ops,
                                         fail=lambda d: d in fail)
            stop, ready_m, ready_r = threading.Event(), threading.Event(), threading.Event()
            threads = [threading.Thread(target=lambda: manager.run(stop=stop,
                                                                   on_ready=ready_m.set)),
                       threading.Thread(target=responder.run,
                                        kwargs={"stop": stop, "on_ready": ready_r.set})]
            for t in threads:
                t.start()
            ready_m.wait(15)
            ready_r.wait(15)
            conn = connect(BrokerOptions(url=broker.url), client_id="rollout-bench")
            conn.client.loop_start()

            def send(cmd: Command) -> None:
                wire = encode_command(cmd, operator)
                conn.client.publish(wire.topic, wire.payload, qos=1).wait_for_publish(10)

            try:
                with open_store(str(tmp / "fleet.db")) as store:
                    deadline = time.time() + 30
                    while time.time() < deadline and not all(
                            (r := store.device(d)) is not None and r.state == "online"
                            for d in ids):
                        time.sleep(0.2)
                    driver = RolloutDriver(store, send)
                    driver.create("bench", group="all", devices=ids, params=PARAMS,
                                  stages=STAGES, max_failure=MAX_FAILURE)
                    wave_started, t0 = {0: time.perf_counter()}, time.perf_counter()
                    while True:
                        doc = driver.step("bench")
                        wave_started.setdefault(doc["wave"], time.perf_counter())
                        if doc["state"] in ("halted", "done"):
                            break
                        time.sleep(0.1)
                    total_s = time.perf_counter() - t0
            finally:
                conn.close()
                stop.set()
                for t in threads:
                    t.join(30)
    per_wave = []
    for i, wave in enumerate(doc["waves"]):
        counts: dict[str, int] = {}
        for d in wave:
            s = doc["devices"][d]["status"]
            counts[s] = counts.get(s, 0) + 1
        per_wave.append({"wave": i + 1, "size": len(wave), "status": counts,
                         "commands_received": sum(responder.received[d] for d in wave)})
    result.update(
        state=doc["state"], halt_reason=doc["halt_reason"], waves=per_wave,
        seconds=round(total_s, 2),
        failing_wave_rolled_back=all(doc["devices"][d]["status"] == "rolled_back"
                                     for d in set(waves[1]) - fail),
        other_devices_untouched=all(responder.received[d] == 0 for d in waves[2]),
        earlier_wave_kept=all(doc["devices"][d]["status"] == "succeeded" for d in waves[0]))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
