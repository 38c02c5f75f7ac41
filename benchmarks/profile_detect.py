"""Benchmark: how long `edgeward profile detect` takes and how stable its bandwidth figure is.

Runs detection several times in one process and, side by side, the same copy benchmark with a
single thread, so the multi-threaded figure can be read as a ratio. Prints JSON.

    .venv/bin/python benchmarks/profile_detect.py [--runs 5]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time

from edgeward.hardware_profiles import detect_profile
from edgeward.hardware_profiles._detect import measure_bandwidth_gbps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()

    detect_s, multi, single = [], [], []
    cores = 1
    cpu_model = ""
    for _ in range(args.runs):
        t0 = time.perf_counter()
        detected = detect_profile()
        detect_s.append(time.perf_counter() - t0)
        multi.append(detected.profile.bandwidth_gbps)
        cores = detected.profile.cores or 1
        cpu_model = str(detected.details.get("cpu_model", ""))
        single.append(measure_bandwidth_gbps(threads=1))

    def summary(xs: list[float]) -> dict[str, float]:
        return {
            "median": round(statistics.median(xs), 3),
            "min": round(min(xs), 3),
            "max": round(max(xs), 3),
            "cv": round(statistics.pstdev(xs) / statistics.mean(xs), 4),
        }

    print(json.dumps({
        "benchmark": "profile_detect",
        "machine": {"cpu": cpu_model, "arch": platform.machine(), "cores": cores,
                    "affinity": len(os.sched_getaffinity(0))},
        "runs": args.runs,
        "detect_seconds": summary(detect_s),
        "detect_limit_seconds": 2.0,
        "detect_within_limit": max(detect_s) <= 2.0,
        "bandwidth_gbps_all_cores": summary(multi),
        "bandwidth_gbps_one_thread": summary(single),
        "all_cores_over_one_thread": round(statistics.median(multi) / statistics.median(single), 3),
    }, indent=2))


if __name__ == "__main__":
    main()
