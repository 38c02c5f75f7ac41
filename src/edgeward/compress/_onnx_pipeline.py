"""``edgeward compress SRC --format onnx --type KIND --out DIR``: export if needed, prune if
asked, quantize, measure, report — or, with a profile and no type, plan and choose.

SRC may be an ONNX model directory (``model.onnx``), a Hugging Face model directory (exported
with optimum first: ``feature-extraction`` for encoders, ``text-generation-with-past`` for
``*ForCausalLM`` architectures), or a GGUF file (turned into a Hugging Face directory through
transformers, then exported as a causal LM). The fp32 export of the unpruned model is the
quality reference: kept beside the output (``OUT.fp32``), or with ``keep_reference=False``
made in a temporary directory and deleted after measurement (the report's ``reference_note``
says which). The report goes to ``OUT/compression-report.json`` (with ``float_tensors``: what
stays float, and why) and a model-card stub to ``OUT/model-card.md``. Everything is written
into temporary directories and renamed into place, so a failure leaves no partial ``OUT``.
Third-party warnings and logging (torch, transformers, ONNX Runtime) are kept out of the
output unless ``third_party_output=True`` (``edgeward --debug``).

The auto-recipe (a profile, no type): the candidate types in the profile's order of preference
(GPU: fp16, int8, int4; CPU: int8 dynamic then int8 static for encoders, int8 weight-only for
causal LMs, then int4) are each made and measured; the first that fits the profile's memory
(minus headroom) and meets the quality floor (encoders: mean cosine >= ``min_cosine``; causal
LMs: mean KLD <= ``max_kld`` when given) is chosen.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from edgeward.compress._onnx_eval import encoder_quality, lm_quality
from edgeward.compress._onnx_export import (
    OnnxTask,
    export_onnx,
    gguf_to_hf_dir,
    quiet_third_party,
    staged_dir,
)
from edgeward.compress._onnx_quant import ONNX_KINDS, quantize_onnx
from edgeward.compress._onnx_tensors import float_tensors
from edgeward.errors import ConfigError
from edgeward.hardware_profiles import HardwareProfile
from edgeward.provenance import BuildRecord, source_model_from
from edgeward.runtimes import choose_providers

__all__ = ["ONNX_TYPES", "OnnxOptions", "compress_onnx", "plan_onnx"]

REPORT = "compression-report.json"
CARD = "model-card.md"
ONNX_TYPES = ("fp32", *ONNX_KINDS)
_NBITS = ("int4", "int8-weight")
_RUNTIME_OVERHEAD = 64 * 2**20  # ONNX Runtime's arena and session, measured order of magnitude


@dataclass(frozen=True)
class OnnxOptions:
    """How to make an ONNX artifact (see :func:`compress_onnx`)."""

    calibration_texts: Sequence[str] | None = None
    evaluate: bool = True
    eval_text: str | None = None
    block_size: int = 32
    lm_head: bool = False
    optimize: str | None = None
    prune_ffn: float | None = None
    headroom: float = 0.2
    context: int | None = None
    max_kld: float | None = None
    min_cosine: float = 0.99
    force: bool = False
    keep_reference: bool = True  # keep the fp32 export (OUT.fp32); False: delete it after use
    third_party_output: bool = False  # show torch/transformers/ONNX Runtime warnings and logs


@dataclass
class _Sources:
    reference: Path  # the unpruned fp32 export: quality is measured against it
    base: Path  # what is quantized: the reference, or the pruned export
    task: OnnxTask
    hf_config: dict[str, Any]
    pruning: dict[str, Any] | None


def _read_config(d: Path) -> dict[str, Any]:
    try:
        config: dict[str, Any] = json.loads((d / "config.json").read_text())
    except (OSError, ValueError) as e:
        raise ConfigError(f"{d}: no readable config.json; give an ONNX or Hugging Face "
                          f"model directory, or a GGUF file ({e})") from e
    return config


def _task_of(config: dict[str, Any]) -> OnnxTask:
    archs = config.get("architectures") or []
    causal = any(str(a).endswith("ForCausalLM") for a in archs)
    return "text-generation-with-past" if causal else "feature-extraction"


def _default_eval_text() -> str:
    """The built-in evaluation text (CPython's pydoc topics, as for GGUF)."""
    from pydoc_data import topics

    return "\n\n".join(topics.topics[k] for k in sorted(topics.topics)[-60:])


def default_calibration_texts() -> list[str]:
    """The built-in calibration text, as paragraphs (the GGUF path's default source)."""
    from pydoc_data import topics

    return [topics.topics[k][:600] for k in sorted(topics.topics)[:32]]


def _dir_size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


@contextlib.contextmanager
def _sources(src: Path, reference: Path, options: OnnxOptions,
             kinds: Sequence[str]) -> Iterator[_Sources]:
    """Export (and prune) what the candidates are made from; temporary files go at exit."""
    src = Path(src)
    if (src / "model.onnx").is_file():
        if options.prune_ffn:
            raise ConfigError(f"{src}: pruning rewrites the weights before export; give the "
                              "Hugging Face directory or the GGUF, not an ONNX export")
        config = _read_config(src) if (src / "config.json").is_file() else {}
        task = _task_of(config) if config else "feature-extraction"
        _check_kinds(task, kinds)
        yield _Sources(src, src, task, config, None)
        return
    with tempfile.TemporaryDirectory(prefix="edgeward-onnx-", dir=reference.parent) as tmp_s:
        tmp = Path(tmp_s)
        if src.is_file() and src.suffix == ".gguf":
            hf_dir = gguf_to_hf_dir(src, tmp / "hf", force=True)
        elif src.is_dir():
            hf_dir = src
        else:
            raise ConfigError(f"{src}: not an ONNX or Hugging Face model directory, nor a "
                              "GGUF file")
        config = _read_config(hf_dir)
        task = _task_of(config)
        _check_kinds(task, kinds)
        export_onnx(hf_dir, reference, task=task, force=True)
        base, pruning = reference, None
        if options.prune_ffn:
            from edgeward.compress._onnx_prune import prune_ffn

            pruning = prune_ffn(hf_dir, tmp / "pruned", options.prune_ffn,
                                texts=options.calibration_texts or default_calibration_texts())
            base = export_onnx(tmp / "pruned", tmp / "pruned-onnx", task=task)
        yield _Sources(reference, base, task, config, pruning)


def _check_kinds(task: OnnxTask, kinds: Sequence[str]) -> None:
    if task != "feature-extraction" and "int8-static" in kinds:
        raise ConfigError("int8-static calibrates an encoder's activations; for a causal LM "
                          "with a KV cache use int8-dynamic or int4")


def _make(base: Path, out: Path, kind: str, profile: HardwareProfile | None,
          options: OnnxOptions) -> Path:
    if kind == "fp32":
        with staged_dir(out) as tmp:
            shutil.copytree(base, tmp, dirs_exist_ok=True)
            if options.optimize:
                from edgeward.compress._onnx_quant import optimize_onnx

                optimize_onnx(tmp / "model.onnx", options.optimize)
        return out
    return quantize_onnx(base, out, kind, profile=profile,  # type: ignore[arg-type]
                         calibration_texts=options.calibration_texts,
                         block_size=options.block_size, lm_head=options.lm_head,
                         optimize=options.optimize, force=True)


def _quality(s: _Sources, candidate: Path, options: OnnxOptions) -> dict[str, Any] | None:
    if not options.evaluate:
        return None
    if s.task == "feature-extraction":
        return encoder_quality(s.reference, candidate)
    # PPL, KLD and top-1 against fp32, as the GGUF path defines them
    return lm_quality(s.reference, candidate, options.eval_text or _default_eval_text())


def _kv_cache_bytes(config: dict[str, Any], context: int) -> int:
    """fp32 K and V for every layer at ``context`` tokens (0 for an encoder)."""
    layers = int(config.get("num_hidden_layers", 0))
    heads = int(config.get("num_attention_heads", 1))
    kv_heads = int(config.get("num_key_value_heads", heads))
    head_dim = int(config.get("head_dim") or int(config.get("hidden_size", 0)) // heads)
    return 2 * layers * kv_heads * head_dim * context * 4


def candidate_kinds(profile: HardwareProfile, task: OnnxTask) -> list[str]:
    """The profile's candidate types, most preferred first."""
    encoder = task == "feature-extraction"
    if profile.backend != "cpu":
        return ["fp16", "int8-dynamic" if encoder else "int8-weight", "int4"]
    return ["int8-dynamic", "int8-static", "int4"] if encoder else ["int8-weight", "int4"]


def _meets(row: dict[str, Any], options: OnnxOptions) -> bool:
    q = row["quality"]
    if q is None:
        return True
    if "cosine_mean" in q:
        return bool(q["cosine_mean"] >= options.min_cosine)
    return options.max_kld is None or bool(q["kld_mean"] <= options.max_kld)


def _choose(rows: list[dict[str, Any]], options: OnnxOptions) -> tuple[str | None, str]:
    fit = [r for r in rows if r["fits"]]
    if not fit:
        return None, "no candidate fits the profile's memory budget"
    for r in fit:
        if _meets(r, options):
            return r["type"], ("the profile's most preferred type that fits and meets the "
                               "quality floor")
    return None, "no candidate that fits meets the quality floor"


# every provider a profile may ask for, so the row names what the profile wants (the device's
# ONNX Runtime build decides which of them it has)
_PROVIDER_NAMES = ("TensorrtExecutionProvider", "CUDAExecutionProvider",
                   "CoreMLExecutionProvider", "CPUExecutionProvider")


def _candidates(s: _Sources, kinds: Sequence[str], work: Path, profile: HardwareProfile,
                options: OnnxOptions) -> list[dict[str, Any]]:
    context = options.context or profile.default_context
    kv = _kv_cache_bytes(s.hf_config, context) if s.task != "feature-extraction" else 0
    budget = profile.memory_bytes * (1.0 - options.headroom)
    rows = []
    for kind in ["fp32", *kinds]:
        path = s.base if kind == "fp32" else _make(s.base, work / kind, kind, profile, options)
        size = _dir_size(path)
        memory = size + kv + _RUNTIME_OVERHEAD
        rows.append({
            "type": kind, "path": str(path), "size_bytes": size,
            "size_ratio": round(size / max(_dir_size(s.reference), 1), 4),
            "predicted_memory_bytes": memory, "fits": memory <= budget,
            # a bandwidth bound only (an upper limit); the GGUF path's roofline is finer
            "predicted_tokens_per_s": (round(profile.bandwidth_gbps * 1e9 / size, 1)
                                       if s.task != "feature-extraction" else None),
            "speed_estimate": "bandwidth bound (upper limit)",
            # ONNX Runtime's execution providers for the profile, the CPU one last
            "backend": "+".join(choose_providers(profile, _PROVIDER_NAMES)),
            "cached": False,  # ONNX candidates are measured every time
            "quality": None if path == s.reference else _quality(s, path, options)})
    return rows


def plan_onnx(src: Path, profile: HardwareProfile, *, kinds: Sequence[str] | None = None,
              options: OnnxOptions = OnnxOptions(), work: Path | None = None) -> dict[str, Any]:
    """Make and measure every candidate type for ``profile``; write nothing lasting unless
    ``work`` is given (then the candidates stay there, one directory per type).

    Returns:
        ``{"profile", "task", "context", "candidates": [...], "choice", "reason"}``; fp32
        is the first row, for reference, and is never chosen.
    """
    with contextlib.ExitStack() as stack:
        stack.enter_context(quiet_third_party(not options.third_party_output))
        if work is None:
            work = Path(stack.enter_context(tempfile.TemporaryDirectory(
                prefix="edgeward-onnx-plan-")))
        probe_task: OnnxTask = "feature-extraction"
        if Path(src).is_dir() and (Path(src) / "config.json").is_file():
            probe_task = _task_of(_read_config(Path(src)))
        elif Path(src).suffix == ".gguf":
            probe_task = "text-generation-with-past"
        wanted = list(kinds) if kinds else candidate_kinds(profile, probe_task)
        s = stack.enter_context(_sources(Path(src), work / "reference", options, wanted))
        rows = _candidates(s, wanted, work, profile, options)
        choice, reason = _choose(rows[1:], options)
        return {"profile": profile.name, "task": s.task,
                "context": options.context or profile.default_context,
                "memory_budget_bytes": int(profile.memory_bytes * (1.0 - options.headroom)),
                "pruning": s.pruning, "candidates": rows, "choice": choice, "reason": reason}


def compress_onnx(src: Path, out: Path, kind: str | None, *,
                  profile: HardwareProfile | None = None,
                  options: OnnxOptions = OnnxOptions()) -> dict[str, Any]:
    """Make the ONNX artifact ``out`` of ``src`` (see the module docstring); ``kind`` None
    means the profile's auto-recipe.

    Returns:
        The report (also written to ``out/compression-report.json``).

    Raises:
        ConfigError: bad source or type, existing ``out`` without ``force``, missing extras,
            nothing that fits or meets the quality floor; ArtifactError, RuntimeBackendError:
            export, pruning, quantization or evaluation failed.
    """
    started = time.perf_counter()
    started_at = datetime.now(UTC).isoformat(timespec="seconds")
    src, out = Path(src), Path(out)
    if kind is not None and kind not in ONNX_TYPES:
        raise ConfigError(f"--type {kind!r} is not an ONNX type; use one of "
                          f"{', '.join(ONNX_TYPES)}")
    if kind is None and profile is None:
        raise ConfigError("say what to make: --type TYPE, or --profile NAME to choose a type")
    if out.exists() and not options.force:
        raise ConfigError(f"{out}: exists; pass --force to replace it")
    if not out.parent.is_dir():
        raise ConfigError(f"{out.parent}: no such directory; create it first")
    with quiet_third_party(not options.third_party_output):
        report = _compress(src, out, kind, profile, options)
    report["seconds"] = round(time.perf_counter() - started, 2)
    report["build"] = _build_record(src, report, profile, started_at).to_dict()
    (out / REPORT).write_text(json.dumps(report, indent=2) + "\n")
    (out / CARD).write_text(model_card(report))
    return report


def _compress(src: Path, out: Path, kind: str | None, profile: HardwareProfile | None,
              options: OnnxOptions) -> dict[str, Any]:
    """:func:`compress_onnx`'s work: make ``out``, measure it, return the report."""
    source_is_onnx = (src / "model.onnx").is_file()
    plan = None
    with contextlib.ExitStack() as stack:
        if source_is_onnx:
            reference = src
        elif options.keep_reference:
            reference = _reference_of(out)
        else:  # measured against, then deleted with this directory
            reference = Path(stack.enter_context(tempfile.TemporaryDirectory(
                prefix=f".{out.name}.fp32.", dir=out.parent))) / "fp32"
        if kind is None:
            assert profile is not None
            w = Path(stack.enter_context(tempfile.TemporaryDirectory(
                prefix=f".{out.name}.plan.", dir=out.parent)))
            plan = plan_onnx(src, profile, options=options, work=w)
            if plan["choice"] is None:
                raise ConfigError(f"no ONNX type for {profile.name}: {plan['reason']}")
            kind = str(plan["choice"])
            chosen = next(r for r in plan["candidates"] if r["type"] == kind)
            # the plan's unpruned fp32 export (its fp32 row is the pruned one when pruning)
            planned = src if source_is_onnx else w / "reference"
            reference_size = _dir_size(planned)
            if options.keep_reference:
                _keep_reference(planned, src, out)
            if out.exists():
                shutil.rmtree(out)
            Path(chosen["path"]).rename(out)
            quality, task, pruning = chosen["quality"], plan["task"], plan["pruning"]
        else:
            with _sources(src, reference, options, [kind]) as s:
                _make(s.base, out, kind, profile, options)
                quality, task, pruning = _quality(s, out, options), s.task, s.pruning
            reference_size = _dir_size(reference)
    kept = source_is_onnx or options.keep_reference
    report: dict[str, Any] = {
        "format": "onnx", "type": kind, "task": task, "source": str(src),
        "reference": str(reference) if kept else None, "reference_kept": kept,
        "reference_note": _reference_note(reference, reference_size, source_is_onnx, kept),
        "out": str(out), "profile": profile.name if profile else None,
        "size_bytes": _dir_size(out), "reference_size_bytes": reference_size,
        "options": {"block_size": options.block_size if kind in _NBITS else None,
                    "lm_head": options.lm_head if kind in _NBITS else None,
                    "optimize": options.optimize},
        "pruning": pruning, "quality": quality,
        "float_tensors": _float_summary(out, kind, task, options),
    }
    report["size_ratio"] = round(report["size_bytes"] / max(reference_size, 1), 4)
    if plan is not None:
        report["plan"] = {k: v for k, v in plan.items() if k != "pruning"}
        for row in report["plan"]["candidates"]:
            row.pop("path", None)
    return report


def _build_record(src: Path, report: dict[str, Any], profile: HardwareProfile | None,
                  started_at: str) -> BuildRecord:
    """What provenance signs about this build (the report's ``build``)."""
    from edgeward.compress._report import tool_versions

    # a file's sha256, or a directory's manifest digest (every file, the ONNX graphs too)
    source = replace(source_model_from(src), uri=str(src))
    recipe = {"format": "onnx", "type": report["type"], "task": report["task"],
              **{k: v for k, v in report["options"].items() if v is not None},
              "pruning": report.get("pruning")}
    hw = None if profile is None else {"name": profile.name, "backend": profile.backend}
    return BuildRecord(format="onnx", source_model=source, recipe=recipe, hardware_profile=hw,
                       quality=report.get("quality"), tool_versions=tool_versions(),
                       started_at=started_at)


def _reference_note(reference: Path, size: int, source_is_onnx: bool, kept: bool) -> str:
    """Where the fp32 reference is, in one sentence (the CLI prints it)."""
    if source_is_onnx:
        return f"fp32 reference: the source itself, {reference}"
    if kept:
        return (f"fp32 reference kept at {reference} ({size / 2**20:.1f} MiB; "
                "--no-keep-reference deletes it after measurement)")
    return "fp32 reference not kept: deleted after measurement (--no-keep-reference)"


# Why the float tensors of each kind stay float (the report's sentence).
_FLOAT_REASONS = {
    "int8-dynamic": "biases and LayerNorm weights, which dynamic quantization leaves alone",
    "int8-static": ("the MatMuls that read a GELU's output (their activations have outliers "
                    "no static 8-bit range covers), biases and LayerNorm weights"),
    "int8-weight": ("biases, LayerNorm weights and small tables: weight-only quantization "
                    "covers MatMul weights and embedding tables"),
}
_FLOAT_REASONS["int4"] = _FLOAT_REASONS["int8-weight"]


def _float_summary(out: Path, kind: str, task: str, options: OnnxOptions
                   ) -> dict[str, Any] | None:
    """What stays float in a quantized ``out`` (None for fp32 and fp16)."""
    if kind not in _FLOAT_REASONS:
        return None
    reason = _FLOAT_REASONS[kind]
    if kind in _NBITS and task != "feature-extraction" and not options.lm_head:
        reason += "; the LM head stays float unless --lm-head"
    return float_tensors(out / "model.onnx").to_dict(reason)


def _reference_of(out: Path) -> Path:
    return out.with_name(out.name + ".fp32")


def _keep_reference(planned: Path, src: Path, out: Path) -> None:
    """After a plan: keep its fp32 export beside ``out`` as the reference (moved out of the
    plan's work directory, on the same file system)."""
    if (src / "model.onnx").is_file():
        return
    ref = _reference_of(out)
    if ref.exists():
        shutil.rmtree(ref)
    planned.rename(ref)


def model_card(report: dict[str, Any]) -> str:
    """A Markdown model-card stub for an ONNX artifact: the facts, and TODOs for the rest."""
    q = report.get("quality") or {}
    if "cosine_mean" in q:
        quality = (f"mean cosine similarity to fp32 {q['cosine_mean']:.4f} (min "
                   f"{q['cosine_min']:.4f}) over {q['sentences']} sentences; nearest neighbour "
                   f"unchanged for {q['nearest_neighbour_agreement']:.0%}")
    elif "ppl" in q:
        quality = (f"perplexity {q['ppl']} (fp32 {q['ppl_reference']}), mean KLD to fp32 "
                   f"{q['kld_mean']}, top-1 agreement {q['top1_agreement']:.1%} over "
                   f"{q['tokens_scored']} tokens")
    else:
        quality = "not measured"
    prune = report.get("pruning")
    pruned = (f"{prune['fraction']} of FFN neurons ({prune['ffn_neurons_before']} → "
              f"{prune['ffn_neurons_after']} per layer)" if prune else "none")
    lines = [
        f"# {Path(report['source']).name} — ONNX {report['type']}", "",
        f"An ONNX Runtime artifact ({report['task']}) made by edgeward from "
        f"`{Path(report['source']).name}`.", "",
        "| field | value |", "|---|---|",
        f"| type | {report['type']} |",
        f"| size | {report['size_bytes']:,} bytes ({report['size_ratio']:.2f} of fp32) |",
        f"| target profile | {report.get('profile') or 'none given'} |",
        f"| pruning | {pruned} |",
        f"| quality | {quality} |", "",
        "## To fill in", "",
        "- Intended use and out-of-scope uses: TODO",
        "- Licence: TODO (the source model's licence applies)",
        "- Known limitations and evaluation beyond the figures above: TODO", "",
        "Sign it with `edgeward sign DIR` to record these bytes in a provenance statement.", ""]
    return "\n".join(lines)
