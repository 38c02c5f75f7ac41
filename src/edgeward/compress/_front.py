"""The front door of compression: one typed request, one typed result, one backend per format.

::

    from edgeward.compress import CompressRequest, compress
    result = compress(CompressRequest(source=Path("m.gguf"), type="Q4_K_M",
                                      out=Path("m-q4.gguf")))
    result = compress(CompressRequest(source=hf_dir, profile=get_profile("rtx-4090-24gb"),
                                      plan_only=True))
    for row in result.rows(): ...

A request refuses contradictory options when it is made (a plan without a profile, ``--out``
missing, an importance matrix for ONNX, ...). :func:`compress` picks the backend from the
request's ``format`` or, without one, from the source (a GGUF file or a causal-LM Hugging Face
checkpoint: GGUF; an ONNX directory, or another Hugging Face model: ONNX) and returns a
:class:`CompressResult` for either: the plan (candidate rows in one shape), the report, the
artifact, and the :class:`~edgeward.provenance.BuildRecord` that provenance signs.

A new backend is one module with a class that has ``name``, ``types``, ``accepts(source)``
and ``run(request, reporter)``, registered with :func:`register_backend`.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from edgeward.compress._pipeline import CompressOptions, Plan, Reporter
from edgeward.compress._quantize import QuantRecipe
from edgeward.compress._report import CompressionReport
from edgeward.errors import ConfigError
from edgeward.hardware_profiles import HardwareProfile
from edgeward.provenance import BuildRecord

__all__ = [
    "CompressBackend",
    "CompressRequest",
    "CompressResult",
    "backends",
    "compress",
    "register_backend",
]


@dataclass(frozen=True, kw_only=True)
class CompressRequest:
    """Everything one compression needs; contradictory options are refused here.

    Attributes:
        source: a GGUF file, a Hugging Face checkpoint directory, or an ONNX directory.
        out: the artifact to write (None with ``plan_only``).
        format: ``gguf`` or ``onnx`` (None: from the source).
        profile: the target: choose the recipe for it (no ``type``), or report fit and speed.
        type: a fixed type (a GGUF type such as ``Q4_K_M``, an ONNX type such as
            ``int8-dynamic``).
        candidates: types the plan tries (None: the backend's defaults for the profile).
        recipe: GGUF refinements every candidate gets (overrides, output/embedding type,
            pure); its ``type`` is ignored.
        prune_layers: GGUF: remove this many least influential blocks (needs torch).
        imatrix: GGUF: an importance matrix file.
        calibration_text: the text pruning scores and static calibration use.
        context: context length for the memory figures (None: the profile's).
        headroom: fraction of each memory kept free.
        max_kld: only candidates with mean KLD at most this.
        target_size: only candidates at most this many bytes.
        min_cosine: ONNX encoders: the quality floor.
        options: evaluation, cache, threads, force.
        onnx: ONNX settings (block size, LM head, optimisation, FFN pruning, reference).
        plan_only: measure the candidates and choose; write nothing.
    """

    source: Path
    out: Path | None = None
    format: str | None = None
    profile: HardwareProfile | None = None
    type: str | None = None
    candidates: tuple[str, ...] | None = None
    recipe: QuantRecipe | None = None
    prune_layers: int | None = None
    imatrix: Path | None = None
    calibration_text: Path | None = None
    context: int | None = None
    headroom: float = 0.2
    max_kld: float | None = None
    target_size: int | None = None
    min_cosine: float = 0.99
    options: CompressOptions = field(default_factory=CompressOptions)
    onnx: Any = None  # OnnxOptions
    plan_only: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "source", Path(self.source))
        if self.out is not None:
            object.__setattr__(self, "out", Path(self.out))
        if self.type is None and self.profile is None:
            raise ConfigError("say what to make: --type TYPE, or --profile NAME to choose a "
                              "recipe")
        if self.plan_only and self.profile is None:
            raise ConfigError("--plan needs --profile NAME (the target to plan for)")
        if not self.plan_only and self.out is None:
            raise ConfigError("--out PATH is required (where to write the artifact)")
        if self.plan_only and self.out is not None:
            raise ConfigError("--plan writes nothing: drop --out to see the plan, or --plan to "
                              "make the artifact (it reuses the plan's measurements)")
        if self.candidates and self.type is not None and not self.plan_only:
            raise ConfigError("--candidates is for the plan (--profile without --type); with "
                              "--type the recipe is fixed")
        if not 0.0 <= self.headroom < 1.0:
            raise ConfigError(f"headroom {self.headroom} must be in [0, 1)")
        if self.format is not None and self.format not in _BACKENDS:
            raise ConfigError(f"format {self.format!r} is not one of "
                              f"{', '.join(sorted(_BACKENDS))}")
        if self.prune_layers is not None and self.prune_layers < 1:
            raise ConfigError(f"--prune-layers {self.prune_layers} must be at least 1")
        if self.imatrix is not None and self.prune_layers:
            raise ConfigError("--imatrix with --prune-layers is not supported: after pruning, "
                              "the matrix's block numbers no longer match the model's")
        if self.format is not None:
            self.check_format(self.format)

    def check_format(self, name: str) -> None:
        """Refuse the options the backend ``name`` does not take.

        Raises:
            ConfigError: which options, and what to do.
        """
        if name == "onnx":
            gguf_only = [name for name, value in (
                ("--imatrix", self.imatrix), ("--prune-layers", self.prune_layers),
                ("--override/--pure/--output-type/--embedding-type",
                 self.recipe if self.recipe is not None and _refines(self.recipe) else None),
                ("--target-size", self.target_size))
                if value is not None]
            if gguf_only:
                raise ConfigError(f"{', '.join(gguf_only)}: GGUF options; the ONNX path does "
                                  "not take them (see `edgeward compress run --help`)")
        elif name == "gguf" and self.onnx is not None and _onnx_set(self.onnx):
            raise ConfigError("--block-size, --lm-head, --optimize, --prune-ffn and "
                              "--no-keep-reference are ONNX options; add --format onnx")


def _refines(recipe: QuantRecipe) -> bool:
    return bool(recipe.overrides or recipe.pure or recipe.output_type or recipe.embedding_type)


def _onnx_set(onnx: Any) -> bool:
    return bool(getattr(onnx, "prune_ffn", None) or getattr(onnx, "optimize", None)
                or getattr(onnx, "lm_head", False) or not getattr(onnx, "keep_reference", True)
                or getattr(onnx, "block_size", 32) != 32)


@dataclass(frozen=True)
class CompressResult:
    """What :func:`compress` did, in one shape for every format.

    Attributes:
        format: the backend's name.
        plan: the plan's JSON form (candidates, choice, reason), if one was made.
        report: the report's JSON form, if an artifact was written.
        artifact: the artifact written (None for a plan).
        build: what provenance signs about the artifact (None for a plan).
        warnings: what the user should know.
        details: the backend's own objects (``plan``: a :class:`Plan`, ``report``: a
            :class:`CompressionReport`, for GGUF).
    """

    format: str
    plan: dict[str, Any] | None
    report: dict[str, Any] | None
    artifact: Path | None
    build: BuildRecord | None
    warnings: tuple[str, ...] = ()
    details: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    def to_dict(self) -> dict[str, Any]:
        """The JSON the CLI prints: the report for an artifact, else the plan."""
        if self.report is not None:
            return dict(self.report)
        return dict(self.plan or {})

    def rows(self) -> list[dict[str, Any]]:
        """The plan's candidates in one shape, for any format.

        Keys: type, size_bytes, bpw (None where not known), of_reference (size ÷ the
        reference's, ONNX), memory_bytes, fits, gpu_layers and n_layer (None without an
        offload), tokens_per_s, estimate (a roofline, or a bandwidth upper bound), kld,
        top1, quality (an encoder's cosine, as text), cached, chosen.
        """
        plan = self._plan()
        choice = plan.get("choice")
        out = []
        for r in plan.get("candidates", []):
            q = r.get("quality") or {}
            # an encoder's quality is a cosine; a language model's is its KLD
            text = f"cos {q['cosine_mean']:.4f}" if "cosine_mean" in q else None
            if not q and r.get("size_ratio") == 1.0:
                text = "reference"  # the fp32 row the others are measured against
            kld = r.get("kld_mean")
            placement = r.get("placement") or {}
            offloaded = placement.get("backend", "cpu") != "cpu"
            out.append({
                "type": r["type"], "size_bytes": r["size_bytes"], "bpw": r.get("bpw"),
                "of_reference": r.get("size_ratio"),
                "memory_bytes": r.get("predicted_memory_bytes"), "fits": r["fits"],
                "gpu_layers": placement.get("gpu_layers") if offloaded else None,
                "n_layer": placement.get("n_layer") if offloaded else None,
                "tokens_per_s": r.get("predicted_tokens_per_s"),
                "estimate": "roofline" if r.get("speed") else "bandwidth bound",
                "kld": kld if kld is not None else q.get("kld_mean"),
                "top1": q.get("top1_agreement"), "quality": text,
                "cached": bool(r.get("cached")), "chosen": r["type"] == choice})
        return out

    def plan_summary(self) -> dict[str, Any]:
        """The plan's header, for any format: profile, context, backend, budget_bytes,
        host_budget_bytes, choice, reason, reference, warnings (absent ones None/empty)."""
        plan = self._plan()
        return {"profile": plan.get("profile"), "context": plan.get("context"),
                "task": plan.get("task"), "backend": plan.get("backend", "cpu"),
                "budget_bytes": plan.get("budget_bytes", plan.get("memory_budget_bytes")),
                "host_budget_bytes": plan.get("host_budget_bytes"),
                "choice": plan.get("choice"), "reason": plan.get("reason", ""),
                "reference": plan.get("reference", ""),
                "warnings": list(plan.get("warnings") or ())}

    @property
    def reason(self) -> str:
        """Why the plan chose what it chose (empty without a plan)."""
        return str(self._plan().get("reason", ""))

    def _plan(self) -> dict[str, Any]:
        return self.plan or (self.report or {}).get("plan") or {}


class CompressBackend(Protocol):
    """One artifact format's compression."""

    name: str

    @property
    def types(self) -> tuple[str, ...]:
        """The type names it makes."""

    def accepts(self, source: Path) -> bool:
        """Whether ``source`` is something it compresses without being told the format."""

    def check_type(self, name: str) -> None:
        """Raise ConfigError (with the known types) unless it makes type ``name``."""

    def run(self, request: CompressRequest, reporter: Reporter) -> CompressResult:
        """Do the request (already checked by the request itself)."""


_BACKENDS: dict[str, CompressBackend] = {}


def register_backend(backend: CompressBackend) -> None:
    """Add (or replace) the backend for ``backend.name``."""
    _BACKENDS[backend.name] = backend


def backends() -> dict[str, CompressBackend]:
    """The registered backends by name."""
    return dict(_BACKENDS)


def compress(request: CompressRequest, *, reporter: Reporter | None = None) -> CompressResult:
    """Plan or make the artifact that ``request`` asks for.

    Raises:
        ConfigError: the source is missing or no backend takes it; a type the backend does
            not make; and what the backend raises (ArtifactError, ResourceError,
            RuntimeBackendError).
    """
    reporter = reporter or Reporter()
    src = request.source
    if not src.exists():
        raise ConfigError(f"{src}: no such model file or directory")
    if request.format is not None:
        backend = _BACKENDS[request.format]
    else:
        found = [b for b in _BACKENDS.values() if b.accepts(src)]
        if not found and src.is_file() and "gguf" in _BACKENDS:
            found = [_BACKENDS["gguf"]]  # a file that is not GGUF: the GGUF reader's error
        if not found:
            raise ConfigError(f"{src}: neither a GGUF file, a Hugging Face checkpoint nor an "
                              "ONNX model directory; say which with --format")
        backend = found[0]
        request.check_format(backend.name)
    for t in ([request.type] if request.type else []) + list(request.candidates or ()):
        backend.check_type(t)
    return backend.run(request, reporter)


class GgufBackend:
    """llama.cpp's quantizer: GGUF files and Hugging Face causal-LM checkpoints."""

    name = "gguf"

    @property
    def types(self) -> tuple[str, ...]:
        from edgeward.compress._types import QUANT_TYPES

        return tuple(QUANT_TYPES)

    def check_type(self, name: str) -> None:
        from edgeward.compress._types import quant_type

        quant_type(name)

    def accepts(self, source: Path) -> bool:
        if source.is_file():
            try:
                with source.open("rb") as f:
                    return f.read(4) == b"GGUF"
            except OSError:
                return False  # unreadable: the GGUF reader says why
        return _is_causal_lm_checkpoint(source)

    def run(self, request: CompressRequest, reporter: Reporter) -> CompressResult:
        from edgeward.compress._compress import (
            compress_auto,
            compress_gguf,
            plan_gguf,
            prune_plan,
        )

        base = request.recipe or QuantRecipe(type=request.type or "Q8_0")
        prune_info = None
        if request.prune_layers:
            gguf = request.source
            if gguf.is_dir():
                raise ConfigError("--prune-layers scores a GGUF's blocks; convert the "
                                  "checkpoint first (edgeward compress DIR --type F16 --out "
                                  "F.gguf) and prune that")
            prune_info = prune_plan(gguf, request.prune_layers,
                                    calibration=request.calibration_text, reporter=reporter)
            base = QuantRecipe(**{**_recipe_fields(base),
                                  "prune_layers": tuple(prune_info["prune_layers"])})
        base = QuantRecipe(**{**_recipe_fields(base), "type": request.type or base.type,
                              "imatrix": str(request.imatrix) if request.imatrix else None})
        common: dict[str, Any] = {"options": request.options, "context": request.context,
                                  "imatrix_path": request.imatrix, "reporter": reporter}
        if request.plan_only or (request.profile is not None and request.type is None):
            assert request.profile is not None
            types = request.candidates or ((request.type,) if request.type else None)
            limits: dict[str, Any] = {
                **common, "types": types, "headroom": request.headroom,
                "max_kld": request.max_kld, "target_size": request.target_size, "base": base}
            if request.plan_only:
                plan = plan_gguf(request.source, request.profile, **limits)
                d = plan.to_dict()
                if prune_info is not None:
                    d["pruning"] = prune_info
                return CompressResult("gguf", d, None, None, None, tuple(plan.warnings),
                                      {"plan": plan})
            assert request.out is not None
            report = compress_auto(request.source, request.out, request.profile, **limits)
        else:
            assert request.out is not None
            report = compress_gguf(request.source, request.out, base,
                                   profile=request.profile, headroom=request.headroom,
                                   **common)
        return _gguf_result(report, prune_info)


def _gguf_result(report: CompressionReport, prune_info: dict[str, Any] | None) -> CompressResult:
    d = report.to_dict()
    if prune_info is not None:
        d["pruning"] = prune_info
    plan: Plan | None = report.plan
    return CompressResult("gguf", d["plan"], d, report.artifact, report.build_record(),
                          tuple(report.warnings), {"report": report, "plan": plan})


def _recipe_fields(recipe: QuantRecipe) -> dict[str, Any]:
    return {"type": recipe.type, "output_type": recipe.output_type,
            "embedding_type": recipe.embedding_type, "overrides": recipe.overrides,
            "imatrix": recipe.imatrix, "prune_layers": recipe.prune_layers,
            "pure": recipe.pure}


def _is_causal_lm_checkpoint(path: Path) -> bool:
    """A Hugging Face directory whose config declares a causal LM (its weights may still be
    missing: the GGUF path then says what is)."""
    if not path.is_dir() or not (path / "config.json").is_file() \
            or any(path.glob("*.onnx")):
        return False
    try:
        config = json.loads((path / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    archs = config.get("architectures") if isinstance(config, dict) else None
    return isinstance(archs, list) and any(
        isinstance(a, str) and a.endswith("ForCausalLM") for a in archs)


class OnnxBackend:
    """ONNX Runtime's quantizers: ONNX directories, Hugging Face models, GGUF exports."""

    name = "onnx"

    @property
    def types(self) -> tuple[str, ...]:
        from edgeward.compress._onnx_pipeline import ONNX_TYPES

        return tuple(ONNX_TYPES)

    def check_type(self, name: str) -> None:
        if name not in self.types:
            raise ConfigError(f"--type {name!r} is not an ONNX type; use one of "
                              f"{', '.join(self.types)}")

    def accepts(self, source: Path) -> bool:
        return source.is_dir() and (any(source.glob("*.onnx"))
                                    or (source / "config.json").is_file())

    def run(self, request: CompressRequest, reporter: Reporter) -> CompressResult:
        from edgeward.compress._onnx_pipeline import OnnxOptions, compress_onnx, plan_onnx

        # the request's limits and switches are the ONNX options' too
        onnx = dataclasses.replace(
            request.onnx or OnnxOptions(), headroom=request.headroom, context=request.context,
            max_kld=request.max_kld, min_cosine=request.min_cosine,
            force=request.options.force, evaluate=request.options.evaluate)
        kinds: Sequence[str] | None = (list(request.candidates) if request.candidates else
                                       [request.type] if request.type else None)
        if request.plan_only:
            assert request.profile is not None
            reporter.step("exporting and measuring every ONNX candidate")
            plan = plan_onnx(request.source, request.profile, kinds=kinds, options=onnx)
            for row in plan["candidates"]:
                row.pop("path", None)
            return CompressResult("onnx", plan, None, None, None)
        assert request.out is not None
        reporter.step(f"making the ONNX artifact {request.out}")
        report = compress_onnx(request.source, request.out, request.type,
                               profile=request.profile, options=onnx)
        build = BuildRecord.from_dict(report["build"]) if report.get("build") else None
        return CompressResult("onnx", report.get("plan"), report, Path(report["out"]), build)


register_backend(GgufBackend())
register_backend(OnnxBackend())
