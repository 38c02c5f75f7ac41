"""Benchmark: the bundled safety filter on the dev split, its latency on one core, PII, streaming.

Prints JSON:

- ``prompts``: the default pipeline on the **dev** split of ``prompts.jsonl`` (never trained
  on): detection per label and per source, benign false-positive rate, precision/recall/F1,
  the confusion table; plus the same on ``copyright.jsonl`` (dev) for information;
- ``latency``: the default pipeline on **one core** (the process is pinned to one CPU and
  numpy to one thread) for prompts of exactly 2,000 characters, made by joining dev prompts
  of one label until the length is reached: wall-clock p50/p90/p99 per prompt (``ms``) and
  prompts/s, overall and per label; the thread's CPU time per prompt (``cpu_ms``, which other
  processes on a busy machine do not inflate) and the load average during the run; and the
  wall-clock latency on the dev prompts as they are;
- ``pii``: precision and recall per type on ``pii.jsonl``, dev and all rows (the PII
  detectors are hand-written, not trained on this file);
- ``stream``: the streamed-output check's cost per token on a benign 2,000-token output, and
  the throughput ratio (filter on / off) it implies at 20 and 100 tokens/s;
- ``leave_sources_out``: the yardstick of generalisation: the train split's sources in 5
  folds, a classifier fitted per fold without its sources, each held-out source scored at the
  shipped threshold (recall of unsafe rows, false-positive rate of benign rows), the macro
  mean per label and the worst source. The fast stage (n-gram classifier and rules) is always
  measured (fold models cached in ``~/.cache/edgeward/safety-folds``); the whole pipeline
  with the encoder stage too when fold encoders exist (``--encoder-folds DIR``, made by
  ``scripts/train_safety_encoder.py --folds 5 --out DIR``);
- ``look_alikes``: the benign sources whose prompts sound dangerous (NotInject, MedQuAD,
  CyberSecEval FRR), dev, each on its own;
- ``targets``: each target of the issue with the measured value and whether it is met.

    .venv/bin/python benchmarks/safety.py [--data DIR] [--latency-prompts N] [--no-folds]
        [--encoder-folds DIR]
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")

import argparse
import json
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from edgeward.safety import BundledFilter, evaluate_folds
from edgeward.safety._classifier import default_model
from edgeward.safety._encoder import default_encoder
from edgeward.safety._eval import evaluate_pii, evaluate_prompts, read_jsonl

REPO = Path(__file__).resolve().parent.parent
DEFAULT_DATA = REPO.parent / "shared" / "data" / "safety"
LENGTH = 2000  # characters per latency prompt
LOOK_ALIKES = ("notinject", "medquad", "cyberseceval_frr")
FOLD_CACHE = Path.home() / ".cache" / "edgeward" / "safety-folds"


def _pct(values: list[float]) -> dict[str, float]:
    s = sorted(values)
    return {"p50": round(s[len(s) // 2], 3), "p90": round(s[int(0.9 * len(s))], 3),
            "p99": round(s[min(len(s) - 1, int(0.99 * len(s)))], 3),
            "mean": round(statistics.fmean(s), 3)}


def _long_prompts(rows: list[dict[str, Any]], n: int) -> list[tuple[str, str]]:
    """``n`` prompts of exactly LENGTH characters, each made of dev prompts of one label."""
    by_label: dict[str, list[str]] = {}
    for r in rows:
        by_label.setdefault(r["label"], []).append(r["text"])
    out = []
    labels = sorted(by_label)
    for i in range(n):
        label = labels[i % len(labels)]
        texts = by_label[label]
        parts, j = [], i
        while sum(len(p) + 1 for p in parts) < LENGTH:
            parts.append(texts[j % len(texts)])
            j += 7
        out.append((label, " ".join(parts)[:LENGTH]))
    return out


def bench_latency(flt: BundledFilter, rows: list[dict[str, Any]], n: int) -> dict[str, Any]:
    prompts = _long_prompts(rows, n)
    for _, text in prompts[:20]:
        flt.check(text)  # warm up: regex compilation, caches
    per_label: dict[str, list[float]] = {}
    times, cpu = [], []
    t0 = time.perf_counter()
    for label, text in prompts:
        t, c = time.perf_counter(), time.thread_time()
        flt.check(text)
        cpu.append((time.thread_time() - c) * 1000)
        ms = (time.perf_counter() - t) * 1000
        times.append(ms)
        per_label.setdefault(label, []).append(ms)
    wall = time.perf_counter() - t0
    natural = []
    for r in rows:
        t = time.perf_counter()
        flt.check(r["text"])
        natural.append((time.perf_counter() - t) * 1000)
    return {"chars": LENGTH, "prompts": len(prompts), "ms": _pct(times), "cpu_ms": _pct(cpu),
            "prompts_per_s": round(len(prompts) / wall, 1),
            "load_average_1m": round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg")
            else None,
            "per_label_ms": {k: _pct(v) for k, v in sorted(per_label.items())},
            "dev_as_is_ms": _pct(natural)}


def bench_stream(flt: BundledFilter, rows: list[dict[str, Any]]) -> dict[str, Any]:
    text = " ".join(r["text"] for r in rows if r["label"] == "benign")[:8000]
    tokens = [text[i:i + 4] for i in range(0, len(text), 4)][:2000]
    runs = []
    for _ in range(3):
        stream = flt.output_stream()
        t0 = time.perf_counter()
        stopped = False
        for tok in tokens:
            if stream.feed(tok).stop:
                stopped = True
                break
        stream.finish()
        runs.append((time.perf_counter() - t0) / len(tokens) * 1e6)
    per_token_us = min(runs)

    def ratio(tps: float) -> float:
        t_tok = 1e6 / tps
        return round(t_tok / (t_tok + per_token_us), 4)

    return {"tokens": len(tokens), "chars_per_token": 4, "us_per_token": round(per_token_us, 1),
            "stopped_benign_output": stopped,
            "throughput_ratio": {"at_20_tok_s": ratio(20), "at_100_tok_s": ratio(100)}}


def _pin_one_core() -> int | None:
    if hasattr(os, "sched_setaffinity"):
        cpu = sorted(os.sched_getaffinity(0))[0]
        os.sched_setaffinity(0, {cpu})
        return cpu
    return None


def _targets(p: dict[str, Any], lat: dict[str, Any], pii: dict[str, Any],
             lso: dict[str, Any] | None, size: int) -> list[dict[str, Any]]:
    bl = p["by_label"]
    rows: list[tuple[str, Any, bool]] = [
        ("dev recall harmful >= 0.95", bl["harmful"]["rate"], bl["harmful"]["rate"] >= 0.95),
        ("dev recall jailbreak >= 0.95", bl["jailbreak"]["rate"], bl["jailbreak"]["rate"] >= 0.95),
        ("dev recall injection >= 0.93", bl["injection"]["rate"], bl["injection"]["rate"] >= 0.93),
        ("dev benign FPR <= 0.025", p["benign_fpr"], p["benign_fpr"] <= 0.025),
        ("latency p50 <= 5 ms (2,000 chars, one core, whole pipeline)", lat["ms"]["p50"],
         lat["ms"]["p50"] <= 5.0),
        ("latency p99 <= 40 ms (2,000 chars, one core, whole pipeline)", lat["ms"]["p99"],
         lat["ms"]["p99"] <= 40.0),
        ("size of what ships for the filter <= 30 MB", size, size <= 30_000_000)]
    if lso is not None:
        for label in ("harmful", "jailbreak", "injection"):
            m, w = lso["macro"].get(label), lso["worst"].get(label, {}).get("rate")
            rows.append((f"leave-sources-out macro recall {label} >= 0.90", m,
                         m is not None and m >= 0.90))
            rows.append((f"leave-sources-out worst-source recall {label} >= 0.75", w,
                         w is not None and w >= 0.75))
        fpr_m, fpr_w = lso["macro"].get("benign"), lso["worst"].get("benign", {}).get("rate")
        rows.append(("leave-sources-out benign FPR macro <= 0.03", fpr_m,
                     fpr_m is not None and fpr_m <= 0.03))
        rows.append(("leave-sources-out benign FPR every source <= 0.05", fpr_w,
                     fpr_w is not None and fpr_w <= 0.05))
    for t in ("EMAIL", "PHONE", "CARD", "IBAN", "SSN", "IP"):
        r = pii["by_type"].get(t, {}).get("recall")
        rows.append((f"PII recall {t} >= 0.90 (all rows)", r, r is not None and r >= 0.90))
    return [{"target": name, "value": value, "met": bool(met)} for name, value, met in rows]


def _shipped_size() -> int:
    from edgeward.safety._classifier import model_dir

    return sum(p.stat().st_size for p in model_dir().rglob("*") if p.is_file())


def _folds(data: Path, encoder_folds: Path | None) -> dict[str, Any]:
    def progress(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    out = {"fast_stage": evaluate_folds(data, cache_dir=FOLD_CACHE, progress=progress)}
    if encoder_folds is not None:
        out["whole_pipeline"] = evaluate_folds(data, cache_dir=FOLD_CACHE,
                                               encoder_root=encoder_folds, progress=progress)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--latency-prompts", type=int, default=1000)
    ap.add_argument("--no-folds", action="store_true", help="skip the leave-sources-out run")
    ap.add_argument("--encoder-folds", type=Path, default=None,
                    help="fold encoders (DIR/fold-1 ..) for the whole pipeline's "
                         "leave-sources-out figures")
    args = ap.parse_args()
    if not (args.data / "prompts.jsonl").is_file():
        print(json.dumps({"error": f"{args.data}/prompts.jsonl not found; pass --data"}))
        return 2
    cpu = _pin_one_core()
    flt = BundledFilter()
    dev = read_jsonl(args.data / "prompts.jsonl", split="dev")
    prompts = evaluate_prompts(dev, flt)
    copyright_path = args.data / "copyright.jsonl"
    extra = (evaluate_prompts(read_jsonl(copyright_path, split="dev"), flt)["by_label"]
             if copyright_path.is_file() else None)
    latency = bench_latency(flt, dev, args.latency_prompts)
    pii_rows = read_jsonl(args.data / "pii.jsonl")
    pii_all = evaluate_pii(pii_rows)
    pii_dev = evaluate_pii([r for r in pii_rows if r.get("split") == "dev"])
    stream = bench_stream(BundledFilter(), dev)
    look = {k: v for k, v in prompts["by_source"].items() if k.split("/")[0] in LOOK_ALIKES}
    folds = None if args.no_folds else _folds(args.data / "prompts.jsonl", args.encoder_folds)
    lso = None if folds is None else folds.get("whole_pipeline", folds["fast_stage"])
    model = default_model()
    encoder = default_encoder()
    result = {
        "machine": {"python": platform.python_version(), "cpu": platform.processor() or
                    platform.machine(), "pinned_cpu": cpu},
        "model": {"threshold": model.threshold, "train_digest":
                  model.record["data"]["train_digest"], "features": model.features.to_dict(),
                  "training": model.record["training"],
                  "encoder": None if encoder is None else {
                      "training": encoder.record.get("training"), "base": encoder.record.get(
                          "base"), "max_tokens": encoder.max_tokens},
                  "stages": [c for c in flt.policy.checks if c != "pii"],
                  "shipped_bytes": _shipped_size()},
        "prompts": {k: v for k, v in prompts.items() if k != "latency_ms"},
        "copyright_dev": extra,
        "latency": latency,
        "pii": {"dev": pii_dev["by_type"], "all": pii_all["by_type"], "match": "overlap"},
        "stream": stream,
        "look_alikes": look,
        "leave_sources_out": folds,
        "targets": _targets(prompts, latency, pii_all, lso, _shipped_size()),
    }
    json.dump(result, sys.stdout, indent=2)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
