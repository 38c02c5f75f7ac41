"""The compression pipeline: quantize, evaluate, predict memory, plan and choose a recipe."""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from edgeward.compress._cache import CachedCandidate, CandidateCache, candidate_key
from edgeward.compress._eval import EvalConfig, QualityReport, compute_reference, evaluate
from edgeward.compress._memory import MemoryPrediction, predict_memory
from edgeward.compress._quantize import QuantizeResult, QuantRecipe, is_quantized, quantize
from edgeward.compress._target import Placement, SpeedEstimate, estimate_decode, place
from edgeward.compress._text import evaluation_text
from edgeward.compress._types import quant_type
from edgeward.errors import ArtifactError, ConfigError
from edgeward.hardware_profiles import HardwareProfile
from edgeward.runtimes import GGUFHeader, read_gguf_header

__all__ = [
    "DEFAULT_CANDIDATES",
    "Candidate",
    "CompressOptions",
    "Plan",
    "Reporter",
    "choose",
    "default_cache_dir",
    "evaluate_candidates",
    "make_reference",
    "materialize",
    "recipes_for",
    "reference_note",
    "sha256_file",
    "work_directory",
]

#: The candidates `--profile` tries unless told otherwise: a spread from near-lossless to
#: the smallest type that needs no importance matrix.
DEFAULT_CANDIDATES = ("Q8_0", "Q6_K", "Q5_K_M", "Q4_K_M", "Q4_0", "IQ4_XS", "Q3_K_M", "Q2_K")


class Reporter:
    """Receives progress from the pipeline; the CLI draws it, library callers may ignore it."""

    def step(self, text: str) -> None:
        """A step longer than a second starts."""

    def progress(self, label: str, done: int, total: int) -> None:
        """``done`` of ``total`` units of the current step are finished."""

    def warn(self, text: str) -> None:
        """Something the user should know."""


def default_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/edgeward`` (``~/.cache/edgeward``): reference logits and measured
    candidates are kept there."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "edgeward"


@dataclass(frozen=True, kw_only=True)
class CompressOptions:
    """Settings shared by every compression entry point.

    Attributes:
        eval_text: evaluation text file (None: the built-in text).
        evaluate: measure quality (PPL, KLD, top-1) against the reference.
        eval: chunking, token budget and top-k of the evaluation.
        threads: llama.cpp threads (None: every available core).
        cache_dir: where reference logits and measured candidates are cached (None: no
            cache).
        force: replace an existing output.
    """

    eval_text: Path | None = None
    evaluate: bool = True
    eval: EvalConfig = field(default_factory=EvalConfig)
    threads: int | None = None
    cache_dir: Path | None = None
    force: bool = False


@dataclass
class Candidate:
    """One recipe tried by the planner.

    Attributes:
        placement: where its memory goes on the profile (None without a profile).
        speed: the predicted decode speed there, an estimate (None without a profile).
        cached: its quantization and quality were read from the cache, not measured now.
    """

    recipe: QuantRecipe
    result: QuantizeResult
    memory: MemoryPrediction
    fits: bool
    predicted_tokens_per_s: float | None
    quality: QualityReport | None = None
    placement: Placement | None = None
    speed: SpeedEstimate | None = None
    cached: bool = False

    @property
    def kld_mean(self) -> float | None:
        """Measured mean KLD, if evaluated."""
        return self.quality.kld_mean if self.quality else None

    def to_dict(self) -> dict[str, Any]:
        """The row of the plan table (the stable fields first)."""
        return {
            "type": self.recipe.label,
            "size_bytes": self.result.size_bytes,
            "bpw": round(self.result.bpw, 4),
            "predicted_memory_bytes": self.memory.total,
            "fits": self.fits,
            "kld_mean": None if self.kld_mean is None else round(self.kld_mean, 6),
            "predicted_tokens_per_s": (None if self.predicted_tokens_per_s is None
                                       else round(self.predicted_tokens_per_s, 1)),
            "quality": self.quality.to_dict() if self.quality else None,
            "fallback_tensors": len(self.result.fallback_tensors),
            "backend": self.placement.backend if self.placement else "cpu",
            "cached": self.cached,
            "placement": self.placement.to_dict() if self.placement else None,
            "speed": self.speed.to_dict() if self.speed else None,
        }


@dataclass
class Plan:
    """Candidates for a profile and the one chosen.

    Attributes:
        budget_bytes: memory the model may use where it runs: the GPU's (VRAM or working
            set) on a GPU profile, else RAM; after headroom.
        host_budget_bytes: host RAM for what is not offloaded (GPU profiles; else the same
            as ``budget_bytes``).
        warnings: what the user should know about the source or the plan.
    """

    profile: HardwareProfile
    context: int
    budget_bytes: int
    headroom: float
    candidates: list[Candidate]
    choice: Candidate | None
    reason: str
    host_budget_bytes: int | None = None
    warnings: list[str] = field(default_factory=list)
    reference: str = ""  # what quality is measured against, in a sentence
    source: Path | None = None  # the GGUF planned from (a converted checkpoint's GGUF)
    source_sha256: str | None = None  # its digest
    conversion: Any = None  # ConversionInfo when the source was a Hugging Face directory

    @property
    def backend(self) -> str:
        """The llama.cpp backend the profile needs."""
        return self.profile.backend

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (``edgeward compress --plan --json``)."""
        return {
            "profile": self.profile.name,
            "backend": self.backend,
            "context": self.context,
            "budget_bytes": self.budget_bytes,
            "host_budget_bytes": self.host_budget_bytes,
            "headroom": self.headroom,
            "candidates": [c.to_dict() for c in self.candidates],
            "choice": self.choice.recipe.label if self.choice else None,
            "reason": self.reason,
            "speed_note": ("predicted tokens/s are estimates: a roofline of memory and compute "
                           "calibrated on one machine (docs/compression.md)"),
            "warnings": list(self.warnings),
            "reference": self.reference,
            "conversion": self.conversion.to_dict() if self.conversion is not None else None,
        }


def reference_note(quantized_source: bool) -> str:
    """What quality is measured against, in a sentence (plans and reports)."""
    if quantized_source:
        return "the dequantized form of the already quantized source, not the original weights"
    return "the unquantized source (F16/BF16/F32)"


def make_reference(src: Path, work_dir: Path, *, threads: int | None,
                   reporter: Reporter) -> Path:
    """The unquantized reference for quality: ``src`` itself if it is F16/F32, else its
    dequantized F16 form (written into ``work_dir``)."""
    header = read_gguf_header(src)
    if not is_quantized(header):
        return src
    ref = work_dir / "reference-f16.gguf"
    if not ref.exists():
        reporter.step(f"dequantizing {src.name} to F16 as the quality reference")
        quantize(src, ref, QuantRecipe(type="F16"), threads=threads, force=True)
    return ref


def evaluate_candidates(src: Path, recipes: Sequence[QuantRecipe], *, work_dir: Path,
                        profile: HardwareProfile | None, context: int, headroom: float,
                        options: CompressOptions, reporter: Reporter,
                        imatrix_data: Any = None, imatrix_sha256: str | None = None,
                        source_sha256: str | None = None) -> list[Candidate]:
    """Quantize every recipe into ``work_dir``, predict its memory and speed on ``profile``
    and (optionally) measure its quality.

    A candidate measured before with the same source, recipe, importance matrix, evaluation
    text and llama.cpp build is read from ``options.cache_dir`` instead (``cached``); its
    artifact is then not in ``work_dir`` (:func:`materialize` makes it). ``source_sha256``
    is the source's digest when the caller already has it (it is hashed once).

    Raises:
        ConfigError, ArtifactError, ResourceError, RuntimeBackendError: as :func:`quantize`.
    """
    text = evaluation_text(options.eval_text) if options.evaluate else None
    cache = CandidateCache(options.cache_dir / "candidates"
                           if options.cache_dir is not None and text is not None else None)
    keys: list[str | None] = [None] * len(recipes)
    hits: list[CachedCandidate | None] = [None] * len(recipes)
    if cache.root is not None and text is not None:
        src_sha = source_sha256 or sha256_file(src)
        for i, recipe in enumerate(recipes):
            keys[i] = candidate_key(src_sha, recipe, imatrix_sha256=imatrix_sha256,
                                    text_sha256=text.sha256, eval_config=options.eval)
            hits[i] = cache.load(keys[i] or "", _candidate_path(work_dir, recipe))
    ref_logits = None
    if text is not None and any(h is None for h in hits):
        ref_path = make_reference(src, work_dir, threads=options.threads, reporter=reporter)
        reporter.step(f"computing reference logits on {text.name}")
        ref_logits = compute_reference(
            ref_path, text, options.eval, cache_dir=_ref_cache(options),
            progress=lambda d, t: reporter.progress("reference", d, t))
    candidates = []
    for i, recipe in enumerate(recipes):
        hit = hits[i]
        if hit is not None:
            reporter.step(f"[{i + 1}/{len(recipes)}] {recipe.label}: measured before (cache)")
            result, header, quality = hit.result, hit.header, hit.quality
        else:
            reporter.step(f"[{i + 1}/{len(recipes)}] quantizing {recipe.label}")
            out = _candidate_path(work_dir, recipe)
            # Scratch candidates are not flushed to disk; the one installed is (see _install).
            result = quantize(src, out, recipe, imatrix_data=imatrix_data,
                              threads=options.threads, force=True, durable=False)
            header = read_gguf_header(out)
            quality = None
            if text is not None and ref_logits is not None:
                reporter.step(f"[{i + 1}/{len(recipes)}] evaluating {recipe.label}")
                quality = evaluate(out, ref_logits, text, options.eval,
                                   progress=lambda d, t: reporter.progress("evaluate", d, t))
                key = keys[i]
                if key is not None:
                    cache.save(key, result, header, quality)
        candidates.append(_candidate(recipe, result, header, quality, profile=profile,
                                     context=context, headroom=headroom,
                                     cached=hit is not None))
    return candidates


def materialize(src: Path, cand: Candidate, *, options: CompressOptions, reporter: Reporter,
                imatrix_data: Any = None) -> None:
    """Quantize a candidate read from the cache, so that its artifact exists (its quality is
    the cached one: quantization is deterministic for a llama.cpp build, which the check of
    the size confirms).

    Raises:
        ArtifactError: the new artifact differs in size from the cached measurement.
    """
    if cand.result.artifact.exists():
        return
    reporter.step(f"quantizing {cand.recipe.label} (measured before)")
    result = quantize(src, cand.result.artifact, cand.recipe, imatrix_data=imatrix_data,
                      threads=options.threads, force=True, durable=False)
    if result.size_bytes != cand.result.size_bytes:
        raise ArtifactError(
            f"{cand.recipe.label}: this quantization is {result.size_bytes} bytes but the "
            f"cached measurement was of {cand.result.size_bytes}; clear the cache "
            f"({options.cache_dir}) or pass --no-cache")
    result.warnings[:] = cand.result.warnings
    cand.result = result


def _candidate_path(work_dir: Path, recipe: QuantRecipe) -> Path:
    return work_dir / f"candidate-{recipe.label}.gguf"


def _candidate(recipe: QuantRecipe, result: QuantizeResult, header: GGUFHeader,
               quality: QualityReport | None, *, profile: HardwareProfile | None, context: int,
               headroom: float, cached: bool) -> Candidate:
    memory = predict_memory(header, n_ctx=context, profile=profile)
    if profile is None:
        return Candidate(recipe=recipe, result=result, memory=memory, fits=True,
                         predicted_tokens_per_s=None, quality=quality, cached=cached)
    placement = place(header, profile, n_ctx=context, headroom=headroom, memory=memory)
    # the target's own threads: --threads is this machine's, for quantizing and measuring
    speed = estimate_decode(header, profile, placement, n_past=context // 2)
    return Candidate(recipe=recipe, result=result, memory=memory, fits=placement.fits,
                     predicted_tokens_per_s=speed.tokens_per_s, quality=quality,
                     placement=placement, speed=speed, cached=cached)


def choose(candidates: Sequence[Candidate], *, max_kld: float | None = None,
           target_size: int | None = None) -> tuple[Candidate | None, str]:
    """The auto-recipe: among candidates that fit (and meet ``max_kld``/``target_size``), the
    one with the least measured mean KLD; without measurements, the largest that fits.

    Returns:
        The choice (None if nothing qualifies) and a sentence saying why.
    """
    ok = [c for c in candidates if c.fits]
    if not ok:
        return None, "no candidate fits the profile's memory budget"
    if target_size is not None:
        ok = [c for c in ok if c.result.size_bytes <= target_size]
        if not ok:
            return None, f"no candidate that fits is at most {target_size} bytes"
    measured = [c for c in ok if c.kld_mean is not None]
    if max_kld is not None:
        measured = [c for c in measured if c.kld_mean is not None and c.kld_mean <= max_kld]
        if not measured:
            return None, f"no candidate that fits has a mean KLD <= {max_kld}"
    if measured:
        best = min(measured, key=lambda c: (c.kld_mean, c.result.size_bytes))
        return best, (f"least mean KLD ({best.kld_mean:.4f}) among the {len(ok)} candidates "
                      "that fit")
    best = max(ok, key=lambda c: c.result.size_bytes)
    return best, "quality not measured: the largest candidate that fits"


def recipes_for(types: Sequence[str], *, base: QuantRecipe | None = None,
                has_imatrix: bool) -> list[QuantRecipe]:
    """One recipe per type, refined like ``base``; types needing a matrix are skipped
    (with a ConfigError if that leaves none)."""
    out = []
    for name in types:
        qt = quant_type(name)
        if qt.needs_imatrix and not has_imatrix:
            continue
        out.append(replace(base, type=qt.name) if base else QuantRecipe(type=qt.name))
    if not out:
        raise ConfigError("every candidate type needs an importance matrix; pass --imatrix")
    return out


@contextlib.contextmanager
def work_directory(near: Path) -> Iterator[Path]:
    """A scratch directory on the same filesystem as ``near`` (so the final move is a
    rename), removed afterwards."""
    d = Path(tempfile.mkdtemp(prefix=".edgeward-work-", dir=near))
    try:
        yield d
    finally:
        shutil.rmtree(d, ignore_errors=True)


def sha256_file(path: Path) -> str:
    """Hex SHA-256 of a file, streamed."""
    h = hashlib.sha256()
    with Path(path).open("rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            h.update(block)
    return h.hexdigest()


def _ref_cache(options: CompressOptions) -> Path | None:
    return options.cache_dir / "reference-logits" if options.cache_dir else None
