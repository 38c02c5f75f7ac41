"""Fleet ingest benchmark: verified-and-stored messages per second, latency, outage, hostile input.

Runs a real Mosquitto on a free loopback port (generated config), real ``edgeward fleet run``
processes (SQLite store, FULL sync), and the simulator (1,000 devices, one MQTT connection each,
messages signed before the clock starts so the simulator's CPU goes to publishing). Prints one
JSON object:

- ``ingest``: for one and for two managers on a shared subscription, the aggregate rate is
  stepped up until a step loses a message, its p99 end-to-end latency passes 1 s, or the stored
  rate falls below 95 % of the offered one; ``sustained_msgs_per_s`` is the stored rate of the
  last good step, with its p50/p99 latency (publish -> committed in the store).
- ``outage``: 50 real telemetry clients (spool, reconnect backoff) keep producing while
  Mosquitto is stopped for 30 s; after the restart every message is stored exactly once.
- ``hostile``: thousands of malformed, forged, replayed, oversize, unsigned and misaddressed
  messages: all rejected and counted by reason; the manager keeps running.

Usage: ``.venv/bin/python benchmarks/fleet_ingest.py [--quick] [--only ingest|outage|hostile|cpu]``
(``--quick``: shorter steps; ``--only`` runs the named parts).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from edgeward.fleet import BrokerSpec, MosquittoBroker, SimulationConfig, simulate
from edgeward.fleet._config import fleet_config_from
from edgeward.fleet._enroll import enroll_devices
from edgeward.fleet._simulate import device_ids, simulated_key
from edgeward.fleet.protocol import BrokerOptions, HealthReport, HealthSample, connect, encode
from edgeward.provenance import canonical_json, generate_key

ROOT = Path(__file__).resolve().parent.parent
DEVICES = 1000
MAX_P99_S = 1.0  # seconds: a step whose p99 latency passes this has broken
DRAIN_S = 10.0  # seconds to wait for the store to catch up after a step


def _cpu_info() -> dict[str, Any]:
    return {"cores": os.cpu_count(), "load_avg_at_start": [round(x, 2) for x in os.getloadavg()]}


def _write_config(path: Path, broker: str, store: Path, client_id: str) -> Path:
    path.write_text(f'broker = "{broker}"\nstore = "{store}"\nclient_id = "{client_id}"\n')
    return path


def _start_managers(configs: list[Path], log_dir: Path) -> list[subprocess.Popen[bytes]]:
    procs = []
    for i, cfg in enumerate(configs):
        err = (log_dir / f"manager-{i}.log").open("wb")
        procs.append(subprocess.Popen(
            [sys.executable, "-m", "edgeward.cli", "fleet", "run", "--config", str(cfg),
             "--json", "--log-level", "warning"], stdout=subprocess.PIPE, stderr=err))
    time.sleep(2.5)  # import, connect, subscribe
    for p in procs:
        if p.poll() is not None:
            raise SystemExit(f"manager exited early; see {log_dir}")
    return procs


def _stop_managers(procs: list[subprocess.Popen[bytes]]) -> list[dict[str, Any]]:
    reports = []
    for p in procs:
        p.send_signal(signal.SIGTERM)
    for p in procs:
        out, _ = p.communicate(timeout=60)
        reports.append(json.loads(out) if out.strip() else {"exit": p.returncode})
    return reports


def _stored(db: Path, seq_base: int) -> dict[tuple[str, int], tuple[float, str]]:
    with sqlite3.connect(db, timeout=30) as conn:
        rows = conn.execute("SELECT device_id, seq, stored_at, manager FROM telemetry "
                            "WHERE seq > ?", (seq_base,)).fetchall()
    return {(d, s): (t, m) for d, s, t, m in rows}


def _pct(values: list[float], q: float) -> float:
    return round(values[min(len(values) - 1, int(q * len(values)))], 4) if values else 0.0


def _step(broker: str, db: Path, rate: float, duration: float) -> dict[str, Any]:
    sim = simulate(SimulationConfig(broker=BrokerOptions(url=broker), devices=DEVICES,
                                    rate=rate, duration_s=duration, processes=1, presign=True,
                                    record=True, drain_s=DRAIN_S))
    deadline = time.time() + DRAIN_S
    stored = _stored(db, sim.seq_base)
    while len(stored) < sim.published and time.time() < deadline:
        time.sleep(0.5)
        stored = _stored(db, sim.seq_base)
    latencies = sorted(stored[(d, s)][0] - t for d, s, t in sim.records if (d, s) in stored)
    first = min(t for _, _, t in sim.records)
    last_stored = max((v[0] for v in stored.values()), default=first)
    per_manager: dict[str, int] = {}
    for _, m in stored.values():
        per_manager[m] = per_manager.get(m, 0) + 1
    return {"offered_msgs_per_s": rate, "published": sim.published, "broker_acked": sim.acked,
            "stored": len(stored), "lost": sim.published - len(stored),
            "stored_msgs_per_s": round(len(stored) / max(last_stored - first, 1e-9), 1),
            "latency_p50_s": _pct(latencies, 0.50), "latency_p99_s": _pct(latencies, 0.99),
            "simulator_late_p99_s": sim.late_p99_s,
            "split": sorted(per_manager.values(), reverse=True)}


def _ingest(tmp: Path, managers: int, rates: list[float], duration: float) -> dict[str, Any]:
    run = tmp / f"ingest-{managers}"
    run.mkdir()
    with MosquittoBroker(BrokerSpec(directory=run / "broker")) as broker:
        db = run / "fleet.db"
        cfgs = [_write_config(run / f"fleet-{i}.toml", broker.url, db, f"bench-manager-{i}")
                for i in range(managers)]
        config = fleet_config_from({"broker": broker.url, "store": str(db)}, base_dir=run,
                                   where="bench")
        enroll_devices(config, [(d, simulated_key(0, d).public_key)
                                for d in device_ids(DEVICES)])
        procs = _start_managers(cfgs, run)
        steps, best = [], None
        try:
            for rate in rates:
                step = _step(broker.url, db, rate, duration)
                steps.append(step)
                ok = (step["lost"] == 0 and step["latency_p99_s"] <= MAX_P99_S
                      and step["stored_msgs_per_s"] >= 0.95 * rate)
                print(f"# {managers} manager(s) {rate:>6.0f}/s: {step}", file=sys.stderr)
                if not ok:
                    break
                best = step
        finally:
            reports = _stop_managers(procs)
    return {"managers": managers, "devices": DEVICES, "step_duration_s": duration,
            "sustained_msgs_per_s": best["stored_msgs_per_s"] if best else 0.0,
            "peak_stored_msgs_per_s": max((x["stored_msgs_per_s"] for x in steps if
                                           x["lost"] == 0), default=0.0),
            "latency_p50_s": best["latency_p50_s"] if best else None,
            "latency_p99_s": best["latency_p99_s"] if best else None,
            "lost_at_sustained": best["lost"] if best else None, "steps": steps,
            "manager_counters": [r.get("counters", r) for r in reports]}


def _outage(tmp: Path, outage_s: float, agents: int = 50) -> dict[str, Any]:
    from edgeward.device_agents._spool import SpoolConfig
    from edgeward.device_agents._telemetry import TelemetryClient, TelemetryConfig

    run = tmp / "outage"
    run.mkdir()
    with MosquittoBroker(BrokerSpec(directory=run / "broker")) as broker:
        db = run / "fleet.db"
        cfg = _write_config(run / "fleet.toml", broker.url, db, "bench-outage")
        config = fleet_config_from({"broker": broker.url, "store": str(db)}, base_dir=run,
                                   where="bench")
        keys = {f"agent-{i:03d}": generate_key() for i in range(agents)}
        enroll_devices(config, [(d, k.public_key) for d, k in keys.items()])
        procs = _start_managers([cfg], run)
        clients = [TelemetryClient(
            TelemetryConfig(device_id=d, broker=BrokerOptions(url=broker.url),
                            spool=SpoolConfig(path=run / f"{d}.spool", durable=False),
                            health_interval_s=0.5, reconnect_min_s=0.5, reconnect_max_s=4.0),
            k, health=lambda: HealthSample(uptime_s=1.0)) for d, k in keys.items()]
        for c in clients:
            c.start()
        time.sleep(5)
        broker.stop()
        down = time.time()
        time.sleep(outage_s)
        queued_during = sum(c.status().queued for c in clients)
        broker.start()
        up = time.time()
        flushed = all(c.flush(120) for c in clients)
        recovered_s = round(time.time() - up, 2)
        for c in clients:
            c.stop()
        time.sleep(3)
        reports = _stop_managers(procs)
        with sqlite3.connect(db) as conn:
            rows = conn.execute("SELECT device_id, seq FROM telemetry").fetchall()
        produced, left = _produced(run, keys)
    stored: dict[str, list[int]] = {}
    for d, seq in rows:
        stored.setdefault(d, []).append(seq)
    exact = all(sorted(stored.get(d, [])) == sorted(want) for d, want in produced.items())
    counters = reports[0].get("counters", {})
    return {"agents": agents, "outage_s": outage_s, "broker_down_at": round(down, 1),
            "queued_in_spools_during_outage": queued_during, "all_spools_flushed": flushed,
            "recovery_s": recovered_s, "produced": sum(len(v) for v in produced.values()),
            "stored": len(rows), "left_in_spools": left, "stored_exactly_once": exact,
            "duplicates_rejected": counters.get("rejected.replayed", 0)
            + counters.get("rejected.duplicate", 0), "manager_counters": counters}


def _produced(run: Path, keys: dict[str, Any]) -> tuple[dict[str, set[int]], int]:
    """Each agent's seqs that left its spool (1..last seq, less what is still queued), and how
    many are still queued (made after the last drain; they go at the next start)."""
    out, left = {}, 0
    for d in keys:
        with sqlite3.connect(run / f"{d}.spool") as conn:
            last = int(conn.execute("SELECT value FROM counters WHERE name = 'seq'")
                       .fetchone()[0])
            queued = {r[0] for r in conn.execute("SELECT seq FROM outbox")}
        out[d] = set(range(1, last + 1)) - queued
        left += len(queued)
    return out, left


def _hostile(tmp: Path, count: int) -> dict[str, Any]:
    run = tmp / "hostile"
    run.mkdir()
    rng = random.Random(7)
    with MosquittoBroker(BrokerSpec(directory=run / "broker")) as broker:
        db = run / "fleet.db"
        cfg = _write_config(run / "fleet.toml", broker.url, db, "bench-hostile")
        config = fleet_config_from({"broker": broker.url, "store": str(db)}, base_dir=run,
                                   where="bench")
        key, other = generate_key(), generate_key()
        enroll_devices(config, [("dev-1", key.public_key), ("dev-2", other.public_key)])
        procs = _start_managers([cfg], run)
        pub = connect(BrokerOptions(url=broker.url), client_id="hostile")
        pub.client.loop_start()

        def health(dev: str, seq: int, k: Any) -> Any:
            return encode(HealthReport(device_id=dev, seq=seq, time=time.time(),
                                       metrics=HealthSample(uptime_s=1.0)), k)

        good = [health("dev-1", s, key) for s in range(1, 11)]
        sent: dict[str, int] = {}
        msgs: list[tuple[str, bytes]] = [(w.topic, w.payload) for w in good]
        makers = {
            "malformed": lambda: (good[0].topic, rng.randbytes(rng.randint(0, 300))),
            "oversize": lambda: (good[0].topic, b"{" + b" " * 9000 + b"}"),
            "unsigned": lambda: (good[0].topic, canonical_json(
                {"payloadType": "application/vnd.edgeward.health+json",
                 "payload": "e30=", "signatures": []})),
            "forged": lambda: (good[0].topic, health("dev-1", 10_000 + rng.randint(0, 10**6),
                                                     other).payload),
            "unknown_device": lambda: ("edgeward/v1/devices/ghost/health",
                                       health("ghost", 5, key).payload),
            "replayed": lambda: msgs[rng.randrange(len(good))],
            "bad_topic": lambda: ("edgeward/v1/devices/bad$id/health", good[0].payload),
            "unsupported_version": lambda: ("edgeward/v9/devices/dev-1/health",
                                            good[0].payload),
            "topic_mismatch": lambda: ("edgeward/v1/devices/dev-2/health",
                                       health("dev-1", 20, other).payload),
        }
        kinds = list(makers)
        for _ in range(count):
            kind = rng.choice(kinds)
            sent[kind] = sent.get(kind, 0) + 1
            msgs.append(makers[kind]())
        t = time.time()
        for topic, payload in msgs[:10]:
            pub.client.publish(topic, payload, qos=1).wait_for_publish(5)
        time.sleep(1.0)  # the good ones are stored before their replays arrive
        for topic, payload in msgs[10:]:
            pub.client.publish(topic, payload, qos=1)
        time.sleep(3.0)
        alive = all(p.poll() is None for p in procs)
        after = health("dev-1", 11, key)
        pub.client.publish(after.topic, after.payload, qos=1).wait_for_publish(5)
        time.sleep(1.0)
        pub.close()
        reports = _stop_managers(procs)
    counters = reports[0].get("counters", {})
    rejected = {k.removeprefix("rejected."): v for k, v in counters.items()
                if k.startswith("rejected.")}
    return {"hostile_sent": count, "by_kind_sent": dict(sorted(sent.items())),
            "rejected_by_reason": rejected, "rejected_total": sum(rejected.values()),
            "all_rejected_and_counted": sum(rejected.values()) == count,
            "manager_alive_after": alive, "stored_valid": counters.get("stored", 0),
            "seconds": round(time.time() - t, 1)}


def _cpu_per_message(tmp: Path, count: int = 5000) -> dict[str, Any]:
    """CPU time (not wall time) one manager spends per health report, without the network:
    check + verify + store, in process. Independent of the other jobs on the machine, it
    says what an idle core can ingest (the MQTT receive path comes on top)."""
    from edgeward.fleet import FleetManager
    from edgeward.fleet._writer import Writer

    run = tmp / "cpu"
    run.mkdir()
    config = fleet_config_from({"broker": "mqtt://127.0.0.1:1", "store": "fleet.db"},
                               base_dir=run, where="bench")
    ids = device_ids(DEVICES)
    keys = [simulated_key(0, d) for d in ids]
    enroll_devices(config, [(d, k.public_key) for d, k in zip(ids, keys, strict=True)])
    msgs = [encode(HealthReport(device_id=ids[i % DEVICES], seq=i // DEVICES + 1,
                                time=time.time(), metrics=HealthSample(uptime_s=1.0)),
                   keys[i % DEVICES]) for i in range(count)]
    manager = FleetManager(config)
    manager._writer = Writer(manager.store, manager.ingestor, manager.alerts, manager="cpu",
                             clock=time.time)
    c0 = time.process_time()
    for i, w in enumerate(msgs):
        manager.handle(w.topic, w.payload, mid=i + 1)
        if len(manager._batch.accepted) >= 500:
            manager._submit()
    manager._submit()
    manager._writer.close()
    per = (time.process_time() - c0) / count
    pub = keys[0].public_key
    sig = keys[0].sign(msgs[0].payload)
    c0 = time.process_time()
    for _ in range(2000):
        pub.verify(sig, msgs[0].payload)
    verify = (time.process_time() - c0) / 2000
    manager.store.close()
    return {"check_verify_store_us": round(per * 1e6, 1), "ed25519_verify_us": round(
        verify * 1e6, 1), "stored": manager.counters().get("stored", 0),
        "implied_msgs_per_s_per_core_without_mqtt": round(1 / per)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="Shorter steps and outage.")
    parser.add_argument("--only", choices=["ingest", "outage", "hostile", "cpu"],
                        action="append", help="Run only these parts (repeatable).")
    args = parser.parse_args()
    parts = set(args.only or ["ingest", "outage", "hostile", "cpu"])
    duration = 4.0 if args.quick else 8.0
    rates = [500.0 * i for i in range(1, 11)] + [6000.0, 7000.0, 8000.0]
    result: dict[str, Any] = {"benchmark": "fleet_ingest", "machine": _cpu_info()}
    with tempfile.TemporaryDirectory(prefix="edgeward-fleet-bench-") as tmp:
        if "ingest" in parts:
            one = _ingest(Path(tmp), 1, rates, duration)
            two = _ingest(Path(tmp), 2, rates, duration)
            ratio = two["sustained_msgs_per_s"] / max(one["sustained_msgs_per_s"], 1e-9)
            peak = two["peak_stored_msgs_per_s"] / max(one["peak_stored_msgs_per_s"], 1e-9)
            result["ingest"] = {"one_manager": one, "two_managers": two,
                                "two_over_one": round(ratio, 2),
                                "two_over_one_at_peak": round(peak, 2),
                                "targets": {"one_manager_msgs_per_s": 3000,
                                            "two_over_one": 1.6, "lost": 0}}
        if "outage" in parts:
            result["outage"] = _outage(Path(tmp), 10.0 if args.quick else 30.0)
        if "hostile" in parts:
            result["hostile"] = _hostile(Path(tmp), 3000)
        if "cpu" in parts:
            result["cpu_per_message"] = _cpu_per_message(Path(tmp))
    result["machine"]["load_avg_at_end"] = [round(x, 2) for x in os.getloadavg()]
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
