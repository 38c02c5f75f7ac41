"""The entry points behind ``edgeward compress``: one type, a plan, the auto-recipe, imatrix."""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from edgeward.compress._convert import (
    ConversionInfo,
    check_hf_checkpoint,
    converted_gguf,
    is_hf_checkpoint,
)
from edgeward.compress._pipeline import (
    DEFAULT_CANDIDATES,
    Candidate,
    CompressOptions,
    Plan,
    Reporter,
    choose,
    evaluate_candidates,
    materialize,
    recipes_for,
    reference_note,
    sha256_file,
    work_directory,
)
from edgeward.compress._quantize import (
    QuantRecipe,
    file_type_name,
    fsync_dir,
    fsync_file,
    is_quantized,
)
from edgeward.compress._report import CompressionReport
from edgeward.compress._text import calibration_text, evaluation_text
from edgeward.errors import ConfigError, ResourceError
from edgeward.hardware_profiles import HardwareProfile
from edgeward.runtimes import GGUFHeader, read_gguf_header

__all__ = [
    "compress_auto",
    "compress_gguf",
    "default_candidates",
    "make_imatrix",
    "plan_gguf",
    "prune_plan",
]

_DEFAULT_CONTEXT = 4096  # tokens, for memory figures when no profile says


def compress_gguf(src: Path, out: Path, recipe: QuantRecipe, *,
                  options: CompressOptions | None = None, profile: HardwareProfile | None = None,
                  context: int | None = None, imatrix_path: Path | None = None,
                  reporter: Reporter | None = None, headroom: float = 0.0) -> CompressionReport:
    """Quantize ``src`` with one recipe into ``out``, measure it, write the report and card.

    Args:
        src: source GGUF.
        out: artifact path (``ARTIFACT.report.json`` and ``ARTIFACT.card.md`` go beside it).
        recipe: the recipe.
        options: evaluation and I/O settings.
        profile: if given, memory fit and predicted speed are reported for it.
        context: context length for the memory figures (default: the profile's, else 4096).
        imatrix_path: an importance matrix file (GGUF imatrix format).
        reporter: progress receiver.
        headroom: fraction of the profile's memories kept free when it says whether it fits.

    Raises:
        ConfigError, ArtifactError, ResourceError, RuntimeBackendError: see :func:`quantize`.
    """
    options = options or CompressOptions()
    reporter = reporter or Reporter()
    _check_out(out, options.force)
    ctx = context or (profile.default_context if profile else _DEFAULT_CONTEXT)
    t0 = time.perf_counter()
    imatrix_data, imatrix_info = _load_imatrix(imatrix_path, recipe)
    with work_directory(out.parent) as work:
        src, conversion = _resolve_source(src, work, options, reporter)
        src_sha = sha256_file(src)  # once: the cache key and the report's source
        (cand,) = evaluate_candidates(
            src, [recipe], work_dir=work, profile=profile, context=ctx, headroom=headroom,
            options=options, reporter=reporter, imatrix_data=imatrix_data,
            imatrix_sha256=imatrix_info["sha256"] if imatrix_info else None,
            source_sha256=src_sha)
        materialize(src, cand, options=options, reporter=reporter, imatrix_data=imatrix_data)
        return _install(src, out, cand, plan=None, profile=profile, ctx=ctx, options=options,
                        t0=t0, imatrix_info=imatrix_info, reporter=reporter,
                        conversion=conversion, source_sha256=src_sha)


def default_candidates(profile: HardwareProfile) -> tuple[str, ...]:
    """The types a plan tries for ``profile``: :data:`DEFAULT_CANDIDATES`, and on a GPU also
    F16 and BF16 (a GPU has the bandwidth for them where they fit)."""
    if profile.backend == "cpu":
        return DEFAULT_CANDIDATES
    return ("F16", "BF16", *DEFAULT_CANDIDATES)


def plan_gguf(src: Path, profile: HardwareProfile, *, types: Sequence[str] | None = None,
              options: CompressOptions | None = None, context: int | None = None,
              headroom: float = 0.2, max_kld: float | None = None,
              target_size: int | None = None, imatrix_path: Path | None = None,
              base: QuantRecipe | None = None, reporter: Reporter | None = None,
              work_dir: Path | None = None) -> Plan:
    """Try every candidate type for ``profile`` and choose one (nothing is written).

    Each candidate is placed on the profile the way llama.cpp would load it (all layers on
    the GPU where they fit, the rest in host memory) and fits when both parts are within
    their budgets (``1 - headroom`` of each memory); the choice is the candidate with the
    least measured mean KLD among those that fit (and meet ``max_kld`` and ``target_size``);
    see :func:`choose`. Measurements are cached (``options.cache_dir``).

    Args:
        types: candidate types (None: :func:`default_candidates` for the profile).
        base: refinements every candidate gets (pruned blocks, overrides, output and
            embedding types, pure); its ``type`` is ignored.

    Raises:
        ConfigError: bad headroom, or no usable candidate type.
    """
    options = options or CompressOptions()
    reporter = reporter or Reporter()
    if not 0.0 <= headroom < 1.0:
        raise ConfigError(f"headroom {headroom} must be in [0, 1)")
    types = tuple(types) if types else default_candidates(profile)
    ctx = context or profile.default_context
    base = replace(base or QuantRecipe(type=types[0]), type=types[0],
                   imatrix=str(imatrix_path) if imatrix_path else None)
    imatrix_data, imatrix_info = _load_imatrix(imatrix_path, base)
    recipes = recipes_for(types, base=base, has_imatrix=imatrix_data is not None)

    def run(work: Path) -> Plan:
        gguf, conversion = _resolve_source(src, work, options, reporter)
        # hashed once, when the cache needs it; the install reuses it for the report
        src_sha = sha256_file(gguf) if options.cache_dir is not None and options.evaluate \
            else None
        cands = evaluate_candidates(gguf, recipes, work_dir=work, profile=profile, context=ctx,
                                    headroom=headroom, options=options, reporter=reporter,
                                    imatrix_data=imatrix_data,
                                    imatrix_sha256=imatrix_info["sha256"] if imatrix_info
                                    else None, source_sha256=src_sha)
        choice, reason = choose(cands, max_kld=max_kld, target_size=target_size)
        first = cands[0].placement if cands else None
        gpu = profile.backend != "cpu"
        budget = (first.gpu_budget_bytes if gpu else first.host_budget_bytes) if first else \
            int(profile.memory_bytes * (1.0 - headroom))
        host = first.host_budget_bytes if first and gpu and profile.discrete_gpu else None
        header = read_gguf_header(gguf)
        return Plan(profile, ctx, budget, headroom, cands, choice, reason,
                    host_budget_bytes=host, warnings=_plan_warnings(gguf, header, choice),
                    reference=reference_note(is_quantized(header)),
                    source=gguf, source_sha256=src_sha, conversion=conversion)

    if work_dir is not None:
        return run(work_dir)
    with work_directory(Path(os.environ.get("TMPDIR", "/tmp"))) as work:
        plan = run(work)
    plan.source = None  # it was in the scratch directory, which is gone
    return plan


def _plan_warnings(src: Path, header: GGUFHeader, choice: Candidate | None) -> list[str]:
    """What to say about the source: already quantized, or smaller than the choice."""
    if not is_quantized(header):
        return []
    ftype = file_type_name(header)
    out = [f"{src.name} is already quantized ({ftype}): quality is measured against its "
           "dequantized form, not the original weights, and requantizing can only lose "
           "quality; compress the original F16/BF16 (or Hugging Face) model if you have it"]
    if choice is not None and choice.result.size_bytes > header.file_size:
        out.append(f"the choice, {choice.recipe.label} "
                   f"({choice.result.size_bytes / 2**20:.0f} MiB), is larger than the source "
                   f"({header.file_size / 2**20:.0f} MiB): the source itself may be the "
                   "better artifact")
    return out


def compress_auto(src: Path, out: Path, profile: HardwareProfile, *,
                  types: Sequence[str] | None = None,
                  options: CompressOptions | None = None, context: int | None = None,
                  headroom: float = 0.2, max_kld: float | None = None,
                  target_size: int | None = None, imatrix_path: Path | None = None,
                  base: QuantRecipe | None = None,
                  reporter: Reporter | None = None) -> CompressionReport:
    """Plan for ``profile`` and install the chosen candidate as ``out`` with its report,
    card and size-against-KLD chart.

    Raises:
        ResourceError: no candidate fits the profile (the message gives the smallest need).
    """
    options = options or CompressOptions()
    reporter = reporter or Reporter()
    _check_out(out, options.force)
    t0 = time.perf_counter()
    with work_directory(out.parent) as work:
        plan = plan_gguf(src, profile, types=types, options=options, context=context,
                         headroom=headroom, max_kld=max_kld, target_size=target_size,
                         imatrix_path=imatrix_path, base=base, reporter=reporter,
                         work_dir=work)
        if plan.choice is None:
            smallest = min(plan.candidates, key=lambda c: c.memory.total)
            raise ResourceError(
                f"{plan.reason}: profile {profile.name} allows {plan.budget_bytes / 2**20:.0f} "
                f"MiB at {plan.context} tokens ({headroom:.0%} headroom); the smallest "
                f"candidate ({smallest.recipe.label}) needs {smallest.memory.total / 2**20:.0f} "
                "MiB. Try a shorter --context, more --candidates, or relax the limits."
            )
        imatrix_data, imatrix_info = _load_imatrix(imatrix_path, plan.choice.recipe)
        gguf = plan.source or src
        materialize(gguf, plan.choice, options=options, reporter=reporter,
                    imatrix_data=imatrix_data)
        return _install(gguf, out, plan.choice, plan=plan, profile=profile, ctx=plan.context,
                        options=options, t0=t0, imatrix_info=imatrix_info, reporter=reporter,
                        conversion=plan.conversion, source_sha256=plan.source_sha256)


def make_imatrix(src: Path, out: Path, *, calibration: Path | None = None, n_ctx: int = 512,
                 max_tokens: int = 8192, force: bool = False,
                 reporter: Reporter | None = None) -> dict[str, Any]:
    """Compute an importance matrix for ``src`` from a calibration text and save it in
    llama.cpp's GGUF imatrix format.

    Raises:
        ConfigError: ``out`` exists without ``force``; torch is not installed.
    """
    from edgeward.compress._imatrix import compute_imatrix

    reporter = reporter or Reporter()
    _check_out(out, force)
    text = calibration_text(calibration)
    read_gguf_header(src)  # a clear error for a file that is not GGUF
    reporter.step(f"computing the importance matrix on {text.name}")
    t0 = time.perf_counter()
    matrix = compute_imatrix(src, text.content, text_name=text.name, n_ctx=n_ctx,
                             max_tokens=max_tokens,
                             progress=lambda d, t: reporter.progress("imatrix", d, t))
    tmp = out.with_name(f".{out.name}.partial")
    try:
        matrix.save(tmp)
        tmp.replace(out)
    finally:
        tmp.unlink(missing_ok=True)
    return {"imatrix": str(out), "tensors": len(matrix.names),
            "calibration_text": text.name, "calibration_sha256": text.sha256,
            "seconds": round(time.perf_counter() - t0, 2)}


def prune_plan(src: Path, k: int, *, calibration: Path | None = None, n_ctx: int = 512,
               max_tokens: int = 4096, reporter: Reporter | None = None) -> dict[str, Any]:
    """Score every block's influence (ShortGPT) on a calibration text and pick the ``k``
    least influential to prune.

    Returns:
        ``{"scores": [...], "prune_layers": [...], "calibration_text": ...}``.
    """
    from edgeward.compress._layer_scores import block_influence, least_influential

    reporter = reporter or Reporter()
    text = calibration_text(calibration)
    reporter.step(f"scoring block influence on {text.name}")
    scores = block_influence(src, text.content, n_ctx=n_ctx, max_tokens=max_tokens,
                             progress=lambda d, t: reporter.progress("scores", d, t))
    return {"scores": [round(s, 6) for s in scores],
            "prune_layers": least_influential(scores, k),
            "calibration_text": text.name}


def _install(src: Path, out: Path, cand: Candidate, *, plan: Plan | None,
             profile: HardwareProfile | None, ctx: int, options: CompressOptions, t0: float,
             imatrix_info: dict[str, Any] | None, reporter: Reporter,
             conversion: ConversionInfo | None = None,
             source_sha256: str | None = None) -> CompressionReport:
    """Move the candidate into place as ``out`` and write its report and card."""
    if out.exists() and not options.force:
        raise ConfigError(f"{out}: already exists; pass --force to replace it")
    fsync_file(cand.result.artifact)
    cand.result.artifact.replace(out)
    fsync_dir(out.parent)
    cand.result.artifact = out
    reporter.step("hashing the artifact and writing the report")
    text = evaluation_text(options.eval_text) if options.evaluate else None
    report = CompressionReport(
        source=_source_info(src, conversion, source_sha256 or sha256_file(src)),
        artifact=out,
        artifact_sha256=sha256_file(out),
        chosen=cand,
        profile=profile,
        context=ctx,
        timings={"quantize_s": cand.result.seconds, "total_s": time.perf_counter() - t0},
        evaluation_text={"name": text.name, "sha256": text.sha256} if text else None,
        plan=plan,
        imatrix=imatrix_info,
        warnings=_report_warnings(src, cand, plan),
    )
    report.write()
    for w in report.warnings:
        reporter.warn(w)
    return report


def _report_warnings(src: Path, cand: Candidate, plan: Plan | None) -> list[str]:
    out = list(plan.warnings) if plan is not None else \
        _plan_warnings(src, read_gguf_header(src), cand)
    return out + [w for w in cand.result.warnings
                  if "already quantized" not in w or not out]


def _resolve_source(src: Path, work: Path, options: CompressOptions,
                    reporter: Reporter) -> tuple[Path, ConversionInfo | None]:
    """The GGUF to compress: ``src`` itself, or a Hugging Face directory converted to
    F16/BF16 with llama.cpp's converter (kept in the cache, so it is converted once)."""
    if not Path(src).is_dir():
        return src, None
    if not is_hf_checkpoint(src):
        check_hf_checkpoint(src)  # raises with what is missing
    reporter.step(f"converting {src} to GGUF with llama.cpp's converter")
    gguf, info = converted_gguf(src, cache_dir=options.cache_dir, work_dir=work,
                                progress=lambda d, t: reporter.progress("convert", d, t))
    if info.reused:
        reporter.step(f"converted before: {gguf.name} (cache)")
    return gguf, info


def _source_info(src: Path, conversion: ConversionInfo | None, sha256: str) -> dict[str, Any]:
    h = read_gguf_header(src)
    model = {
        "size_bytes": h.file_size,
        "name": h.metadata.get("general.name"),
        "architecture": h.architecture,
        "n_params": h.n_params,
        "file_type": h.metadata.get("general.file_type"),
        "license": h.metadata.get("general.license"),
    }
    if conversion is None:
        return {"path": str(src), "sha256": sha256, **model}
    # The source is what the user gave: the directory, by the digest of its files.
    return {
        "path": str(conversion.source),
        "format": "huggingface",
        "sha256": conversion.source_digest,
        "digest_method": "sha256 over the sorted (file name, sha256) of the files the "
                         "converter reads",
        "conversion": conversion.to_dict() | {"gguf_sha256": sha256},
        **model,
    }


def _load_imatrix(path: Path | None, recipe: QuantRecipe) -> tuple[Any, dict[str, Any] | None]:
    if path is None:
        return None, None
    if recipe.prune_layers:
        raise ConfigError("--imatrix with --prune-layers is not supported: after pruning, the "
                          "matrix's block numbers no longer match the model's")
    from edgeward.compress._imatrix import ImportanceMatrix, quantize_imatrix_data

    matrix = ImportanceMatrix.load(Path(path))
    return quantize_imatrix_data(matrix), {"path": str(path), "sha256": sha256_file(Path(path)),
                                           "tensors": len(matrix.names)}


def _check_out(out: Path, force: bool) -> None:
    if out.exists() and not force:
        raise ConfigError(f"{out}: already exists; pass --force to replace it")
    if out.is_dir():
        raise ConfigError(f"{out}: is a directory; give the artifact's file name")
    if not out.parent.is_dir():
        raise ConfigError(f"{out.parent}: no such directory; create it first")
