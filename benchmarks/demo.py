"""Benchmark: how long `make demo`'s mission takes after the install step (target: 5 minutes).

Runs `edgeward demo --json` as a user does, in a fresh working directory, and reports the wall
time to the summary table and to the end of the shutdown, the demo's own step timings, and
each phase's share of the total (the shares are what to compare between machines). Also
checks that every child process is gone afterwards. Prints JSON.

    .venv/bin/python benchmarks/demo.py [--runs 1]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

LIMIT_S = 300.0  # the figure: under 5 minutes after the install step


def one_run() -> dict[str, object]:
    with tempfile.TemporaryDirectory(prefix="edgeward-bench-demo-") as tmp:
        t0 = time.perf_counter()
        proc = subprocess.run([sys.executable, "-m", "edgeward", "demo", "--json", "--workdir",
                               str(Path(tmp) / "w")], capture_output=True, text=True,
                              check=False, timeout=1800)
        wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"edgeward demo failed ({proc.returncode}): {proc.stderr[-2000:]}")
    doc = json.loads(proc.stdout)
    timings = doc["timings"]
    phases = {k: v for k, v in timings.items() if k not in ("mission_s", "total_s")}
    return {
        "wall_s": round(wall, 1),
        "to_summary_s": timings["mission_s"],
        "timings_s": timings,
        "phase_share": {k: round(v / timings["mission_s"], 3) for k, v in phases.items()},
        "strays": doc["processes"]["strays"],
        "choices": {d["device_id"]: d["type"] for d in doc["devices"]},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=1)
    args = parser.parse_args()
    runs = [one_run() for _ in range(args.runs)]
    walls = [float(r["wall_s"]) for r in runs]  # type: ignore[arg-type]
    print(json.dumps({
        "benchmark": "demo",
        "machine": {"platform": platform.platform(), "cpus": len(os.sched_getaffinity(0)),
                    "python": platform.python_version()},
        "runs": runs,
        "wall_s_median": round(statistics.median(walls), 1),
        "limit_s": LIMIT_S,
        "within_limit": max(walls) <= LIMIT_S,
        "no_strays": all(not r["strays"] for r in runs),
    }, indent=2))


if __name__ == "__main__":
    main()
