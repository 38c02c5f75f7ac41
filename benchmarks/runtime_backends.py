"""Benchmark: decode speed of the ONNX Runtime backend against llama.cpp on the same model.

SmolLM2-135M-Instruct (the packaged GGUF, dequantized) is exported to ONNX with past key
values (fp32), and quantized with ONNX Runtime's dynamic int8 quantizer. llama.cpp runs the
same weights as F32 and as Q8_0. Every runtime generates the same number of tokens from the
same prompt, greedy, 2 threads; runs are interleaved and the median decode tokens/s is
reported with ratios to llama.cpp. Prints JSON. No target yet (issue 5 asks for the figure).

    .venv/bin/python benchmarks/runtime_backends.py [--tokens 64] [--reps 3]
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
from edgeward.compress._onnx_export import export_onnx, gguf_to_hf_dir
from edgeward.hardware_profiles import HardwareProfile
from edgeward.packaged_models import smollm2_gguf
from edgeward.runtimes import Runtime, SamplingParams, open_runtime

PROMPT = [{"role": "user", "content": "Write a short paragraph about the history of bridges."}]


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def quantize_int8(src: Path, out: Path) -> Path:
    """ONNX Runtime's dynamic int8 quantization of every MatMul weight (per channel)."""
    import shutil

    from onnxruntime.quantization import QuantType, quantize_dynamic

    shutil.copytree(src, out)
    (out / "model.onnx").unlink()
    quantize_dynamic(str(src / "model.onnx"), str(out / "model.onnx"),
                     weight_type=QuantType.QInt8, per_channel=True)
    return out


def decode_rate(rt: Runtime, tokens: int) -> dict[str, float]:
    params = SamplingParams(temperature=0.0, max_tokens=tokens, seed=0)
    stream = rt.chat(PROMPT, params)  # type: ignore[arg-type]
    stream.text()
    s = stream.stats
    return {"decode_tokens_per_s": s.decode_tokens_per_s or 0.0,
            "ttft_ms": (s.time_to_first_token_s or 0.0) * 1000,
            "completion_tokens": s.completion_tokens}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--reps", type=int, default=3)
    args = parser.parse_args()
    threads = 2
    profile = HardwareProfile(name="bench", display_name="bench", memory_bytes=1 << 34,
                              bandwidth_gbps=20.0, cpu_features=("avx2",), threads=threads,
                              default_context=1024)
    work = Path(tempfile.mkdtemp(prefix="edgeward-backends-"))
    src = smollm2_gguf()
    log("exporting SmolLM2 to ONNX (fp32) and quantizing to int8")
    onnx_fp32 = export_onnx(gguf_to_hf_dir(src, work / "hf"), work / "onnx-fp32",
                            task="text-generation-with-past")
    onnx_int8 = quantize_int8(onnx_fp32, work / "onnx-int8")
    gguf_f32 = quantize(src, work / "f32.gguf", QuantRecipe(type="F32")).artifact
    gguf_q8 = quantize(src, work / "q8_0.gguf", QuantRecipe(type="Q8_0")).artifact
    artifacts = {"llama.cpp F32": gguf_f32, "llama.cpp Q8_0": gguf_q8,
                 "onnxruntime fp32": onnx_fp32, "onnxruntime int8": onnx_int8}
    runtimes = {name: open_runtime(path, profile) for name, path in artifacts.items()}
    for rt in runtimes.values():  # warm-up: first-call allocations and page faults
        decode_rate(rt, 8)
    results: dict[str, list[dict[str, float]]] = {name: [] for name in runtimes}
    for rep in range(args.reps):
        log(f"rep {rep + 1}/{args.reps}")
        for name, rt in runtimes.items():
            results[name].append(decode_rate(rt, args.tokens))
    summary: dict[str, Any] = {}
    for name, rows in results.items():
        summary[name] = {
            "decode_tokens_per_s": round(statistics.median(r["decode_tokens_per_s"]
                                                           for r in rows), 1),
            "ttft_ms": round(statistics.median(r["ttft_ms"] for r in rows), 1),
            "size_mib": round(sum(f.stat().st_size for f in Path(artifacts[name]).rglob("*")
                                  if f.is_file()) / 2**20 if Path(artifacts[name]).is_dir()
                              else Path(artifacts[name]).stat().st_size / 2**20, 1),
        }
    ratio = {
        "onnx_fp32_over_llama_f32": round(summary["onnxruntime fp32"]["decode_tokens_per_s"]
                                          / summary["llama.cpp F32"]["decode_tokens_per_s"], 3),
        "onnx_int8_over_llama_q8_0": round(summary["onnxruntime int8"]["decode_tokens_per_s"]
                                           / summary["llama.cpp Q8_0"]["decode_tokens_per_s"],
                                           3),
    }
    print(json.dumps({"benchmark": "runtime_backends",
                      "machine": {"cores": len(os.sched_getaffinity(0)),
                                  "arch": platform.machine()},
                      "threads": threads, "tokens": args.tokens, "reps": args.reps,
                      "results": summary, "ratios": ratio}, indent=2))


if __name__ == "__main__":
    main()
