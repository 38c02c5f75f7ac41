"""The GPU check: does a CUDA build of llama.cpp run edgeward's GPU profiles as planned?

Run on a machine with an NVIDIA GPU and llama-cpp-python built with ``-DGGML_CUDA=on`` (or its
libraries named by ``LLAMA_CPP_LIB_PATH``). It prints one JSON object:

- ``backends``: what :func:`edgeward.runtimes.llama_backends` finds (``cuda`` must be there);
- ``speed``: for generated llama models of two sizes (random weights; speed does not depend on
  the values) at F16, Q8_0 and Q4_K_M, decode tokens/s measured with every layer on the GPU
  through edgeward's runtime, beside the plan's estimate for a profile of this GPU, and their
  ratio (predicted / measured);
- ``plan``: ``plan_gguf`` for ``rtx-4090-24gb`` on the larger model (no quality measurement):
  the backend, layers offloaded and budgets per candidate;
- ``runtime``: the runtime on ``rtx-4090-24gb`` loads without a CPU fallback.

    python scripts/gpu_check.py [--work DIR] [--gpu-bandwidth GBPS] [--gpu-tflops T]

Nothing here needs a model download: the models are written by ``tests/_models.py``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import traceback
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))


def _decode_tps(path: Path, profile: Any, n: int = 64) -> float:
    from llama_cpp import Llama

    llm = Llama(model_path=str(path), n_ctx=512, n_gpu_layers=-1, n_threads=4,
                n_threads_batch=4, verbose=False)
    tok = [1, 100, 101, 102, 103, 104, 105, 106]
    llm.eval(tok)
    for _ in range(8):
        llm.eval([tok[-1]])
    t0 = time.perf_counter()
    for _ in range(n):
        llm.eval([tok[-1]])
    dt = time.perf_counter() - t0
    llm.close()
    return n / dt


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--work", type=Path, default=Path("/tmp/edgeward-gpu-check"))
    # NVIDIA H200 (SXM) datasheet: 4.8 TB/s HBM3e; FP32 67 TFLOPS.
    ap.add_argument("--gpu-bandwidth", type=float, default=4800.0)
    ap.add_argument("--gpu-tflops", type=float, default=67.0)
    ap.add_argument("--gpu-memory-gib", type=int, default=141)
    ap.add_argument("--quick", action="store_true", help="the small model only (a smoke run)")
    args = ap.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    out: dict[str, Any] = {}

    def section(name: str, fn: Any) -> None:
        t0 = time.perf_counter()
        try:
            out[name] = fn()
        except Exception as e:  # a check reports what failed and goes on
            out[name] = {"error": f"{type(e).__name__}: {e}",
                         "traceback": traceback.format_exc()[-2000:]}
        print(f"[{name}] {time.perf_counter() - t0:.1f} s", file=sys.stderr, flush=True)

    import llama_cpp

    from edgeward.compress import QuantRecipe, estimate_decode, place, plan_gguf, quantize
    from edgeward.compress._pipeline import CompressOptions
    from edgeward.hardware_profiles import HardwareProfile, get_profile
    from edgeward.runtimes import llama_backends, open_runtime, read_gguf_header

    out["system_info"] = llama_cpp.llama_print_system_info().decode("utf-8", "replace")
    out["backends"] = sorted(llama_backends())

    from _models import TinyLlamaSpec, write_tiny_gguf

    models = {
        # SmolLM2-135M's block shapes (576 wide, 30 blocks), a small vocabulary
        "small": TinyLlamaSpec(n_embd=576, n_ff=1536, n_layer=30, n_head=9, n_head_kv=3,
                               context_length=2048),
        # Llama-3.2-1B's block shapes (2048 wide, 16 blocks)
        "large": TinyLlamaSpec(n_embd=2048, n_ff=8192, n_layer=16, n_head=32, n_head_kv=8,
                               context_length=2048),
    }
    if args.quick:
        del models["large"]
    gpu = HardwareProfile(
        name="this-gpu", display_name="this machine's GPU", backend="cuda",
        gpu_compute_capability="9.0", memory_bytes=args.gpu_memory_gib * 2**30,
        bandwidth_gbps=args.gpu_bandwidth, compute_tflops=args.gpu_tflops,
        system_memory_bytes=128 * 2**30, system_bandwidth_gbps=200.0, cores=16,
        default_context=512)
    files: dict[str, Path] = {}

    def build() -> dict[str, Any]:
        info = {}
        for name, spec in models.items():
            f32 = write_tiny_gguf(args.work / f"{name}-f32.gguf", spec)
            for t in ("F16", "Q8_0", "Q4_K_M"):
                dst = args.work / f"{name}-{t}.gguf"
                r = quantize(f32, dst, QuantRecipe(type=t), force=True, durable=False)
                files[f"{name}-{t}"] = dst
                info[f"{name}-{t}"] = {"size_bytes": r.size_bytes, "seconds": round(r.seconds, 2)}
        return info

    def speed() -> list[dict[str, Any]]:
        rows = []
        for key, path in files.items():
            header = read_gguf_header(path)
            placement = place(header, gpu, n_ctx=512)
            est = estimate_decode(header, gpu, placement, n_past=16)
            measured = max(_decode_tps(path, gpu) for _ in range(2))
            rows.append({"model": key, "size_mib": round(header.file_size / 2**20, 1),
                         "gpu_layers": placement.gpu_layers, "measured_tps": round(measured, 1),
                         "predicted_tps": round(est.tokens_per_s, 1),
                         "ratio": round(est.tokens_per_s / measured, 3),
                         "estimate": est.to_dict()})
        return rows

    def plan() -> dict[str, Any]:
        src = files["large-F16" if "large-F16" in files else "small-F16"]
        p = plan_gguf(src, get_profile("rtx-4090-24gb"), types=("F16", "Q8_0", "Q4_K_M"),
                      options=CompressOptions(evaluate=False), work_dir=args.work)
        return p.to_dict()

    def runtime() -> dict[str, Any]:
        rt = open_runtime(files["small-Q8_0"], get_profile("rtx-4090-24gb"),
                          context_length=512)
        warnings = list(getattr(rt, "load_warnings", []))
        rt.unload()
        return {"loaded": True, "load_warnings": warnings}

    section("build", build)
    section("speed", speed)
    section("plan", plan)
    section("runtime", runtime)
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
