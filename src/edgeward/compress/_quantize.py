"""Quantize a GGUF model with llama.cpp's own quantizer, atomically, reporting fallbacks."""

from __future__ import annotations

import os
import re
import shutil
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from edgeward.compress._llama import QuantizeCall, available_cores, run_quantize
from edgeward.compress._types import QUANT_TYPES, quant_type, tensor_type
from edgeward.errors import (
    ArtifactError,
    ConfigError,
    EdgewardError,
    ResourceError,
    RuntimeBackendError,
)
from edgeward.runtimes import GGUFHeader, read_gguf_header

__all__ = [
    "FallbackTensor",
    "QuantRecipe",
    "QuantizeResult",
    "file_type_name",
    "fsync_dir",
    "fsync_file",
    "is_quantized",
    "quantize",
]

_FLOAT_TYPES = {0, 1, 30}  # F32, F16, BF16: anything else in a 2-D weight is already quantized
_FALLBACK = re.compile(
    r"(?P<name>\S+)\s+- ncols\s+(?P<cols>\d+) not divisible by (?P<block>\d+) "
    r"\(required for type\s+(?P<type>\S+)\)"
)


@dataclass(frozen=True, kw_only=True)
class QuantRecipe:
    """How to quantize: the main type and everything that refines it.

    Attributes:
        type: llama.cpp file type name (``"Q4_K_M"``).
        output_type: ggml type for ``output.weight`` (None: the recipe's choice).
        embedding_type: ggml type for ``token_embd.weight`` (None: the recipe's choice).
        overrides: ``(regex, ggml type)`` per-tensor types, first match wins.
        imatrix: path of the importance matrix used (recorded; the data is passed separately).
        prune_layers: block indices removed from the model.
        pure: every tensor gets the main type (no k-quant mixture).
    """

    type: str
    output_type: str | None = None
    embedding_type: str | None = None
    overrides: tuple[tuple[str, str], ...] = ()
    imatrix: str | None = None
    prune_layers: tuple[int, ...] = ()
    pure: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "type", quant_type(self.type).name)
        for value in (self.output_type, self.embedding_type):
            if value is not None:
                tensor_type(value)  # raises ConfigError naming the value
        for pattern, ggml_type in self.overrides:
            tensor_type(ggml_type)
            try:
                re.compile(pattern)
            except re.error as e:
                raise ConfigError(f"tensor override pattern {pattern!r} is not a regex: {e}") \
                    from e
        if any(not isinstance(i, int) or i < 0 for i in self.prune_layers) \
                or len(set(self.prune_layers)) != len(self.prune_layers):
            raise ConfigError(
                f"prune_layers has bad value {self.prune_layers!r}; expected distinct block "
                "indices >= 0"
            )

    @property
    def label(self) -> str:
        """A short name: the type plus what refines it (``Q3_K_M+imatrix``)."""
        parts = [self.type]
        if self.imatrix:
            parts.append("imatrix")
        if self.prune_layers:
            parts.append(f"prune{len(self.prune_layers)}")
        if self.overrides or self.output_type or self.embedding_type:
            parts.append("custom")
        return "+".join(parts)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        d = asdict(self)
        d["overrides"] = [list(o) for o in self.overrides]
        d["prune_layers"] = list(self.prune_layers)
        return d


@dataclass(frozen=True)
class FallbackTensor:
    """A tensor that could not take the type the recipe wanted (row size vs block size)."""

    name: str
    columns: int
    wanted: str
    got: str


@dataclass
class QuantizeResult:
    """What a quantization produced."""

    artifact: Path
    recipe: QuantRecipe
    size_bytes: int
    bpw: float
    n_params: int
    requantized: bool
    fallback_tensors: list[FallbackTensor]
    tensor_types: dict[str, int]
    seconds: float
    warnings: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "artifact": str(self.artifact),
            "recipe": self.recipe.to_dict(),
            "size_bytes": self.size_bytes,
            "bpw": round(self.bpw, 4),
            "n_params": self.n_params,
            "requantized": self.requantized,
            "fallback_tensors": [asdict(f) for f in self.fallback_tensors],
            "tensor_types": self.tensor_types,
            "seconds": round(self.seconds, 3),
            "warnings": self.warnings,
        }


def quantize(src: Path, out: Path, recipe: QuantRecipe, *, imatrix_data: Any = None,
             threads: int | None = None, force: bool = False, durable: bool = True,
             on_warning: Callable[[str], None] | None = None) -> QuantizeResult:
    """Quantize ``src`` into ``out`` following ``recipe``.

    The output is written to a temporary file in the target directory, flushed to disk, checked
    and renamed into place: an interrupted or failed run leaves no partial artifact.

    Args:
        src: a GGUF model (F32/F16/BF16, or quantized: then requantized, with a warning).
        out: the artifact to write.
        recipe: what to do.
        imatrix_data: the importance matrix as llama.cpp's ctypes array (see
            ``quantize_imatrix_data``); required by the IQ1/IQ2/IQ3_XXS types.
        threads: quantization threads (default: every available core).
        force: replace ``out`` if it exists.
        durable: flush the artifact to disk (fsync) before renaming it into place, so a power
            loss cannot leave a renamed but incomplete file. Costs one disk flush (about 0.3 s
            for 100 MB here); scratch candidates that are never shipped skip it.
        on_warning: called with each warning as it is found.

    Raises:
        ArtifactError: ``src`` is not GGUF, is truncated, or its architecture is unknown.
        ConfigError: ``out`` exists without ``force``, its directory is missing, the type
            needs an importance matrix, or a pruned layer does not exist.
        ResourceError: not enough free disk space for the output.
        RuntimeBackendError: llama.cpp failed.
    """
    src, out = Path(src), Path(out)
    header = read_gguf_header(src)
    qt = quant_type(recipe.type)
    warnings: list[str] = []

    def warn(text: str) -> None:
        warnings.append(text)
        if on_warning is not None:
            on_warning(text)

    _check_target(out, force)
    n_layer = int(header.arch_value("block_count", 0) or 0)
    bad = [i for i in recipe.prune_layers if i >= n_layer]
    if bad:
        raise ConfigError(f"cannot prune block(s) {bad}: {src.name} has {n_layer} blocks "
                          f"(0..{n_layer - 1})")
    if recipe.prune_layers and len(recipe.prune_layers) >= n_layer:
        raise ConfigError(f"cannot prune all {n_layer} blocks of {src.name}")
    if qt.needs_imatrix and imatrix_data is None:
        raise ConfigError(
            f"{qt.name} needs an importance matrix; pass --imatrix FILE "
            "(make one with `edgeward compress imatrix SRC --out FILE`)"
        )
    requantize = is_quantized(header)
    if requantize:
        warn(f"{src.name} is already quantized: it is requantized, and quality is measured "
             "against its dequantized form, not the original weights")
    _check_disk_space(out, header, qt.nominal_bpw)

    call = QuantizeCall(
        ftype=qt.ftype,
        threads=threads or available_cores(),
        allow_requantize=requantize,
        output_tensor_type=tensor_type(recipe.output_type) if recipe.output_type else -1,
        token_embedding_type=(tensor_type(recipe.embedding_type)
                              if recipe.embedding_type else -1),
        pure=recipe.pure,
        tensor_overrides=[(p, tensor_type(t)) for p, t in recipe.overrides],
        imatrix=imatrix_data,
        prune_layers=recipe.prune_layers,
    )
    tmp = out.with_name(f".{out.name}.partial-{os.getpid()}")
    t0 = time.perf_counter()
    try:
        try:
            log = run_quantize(src, tmp, call)
        except RuntimeBackendError as e:
            explained = _explain(e, src, out, header)
            if explained is e:
                raise
            raise explained from e
        seconds = time.perf_counter() - t0
        if durable:
            fsync_file(tmp)
        result_header = read_gguf_header(tmp)
        tmp.replace(out)
        if durable:
            fsync_dir(out.parent)
    finally:
        tmp.unlink(missing_ok=True)

    fallbacks = _fallbacks(log.text, result_header)
    if fallbacks:
        warn(f"{len(fallbacks)} tensor(s) fell back to other types: their row size is not a "
             f"multiple of the block size (e.g. {fallbacks[0].name}: {fallbacks[0].columns} "
             f"columns, {fallbacks[0].wanted} -> {fallbacks[0].got})")
    size = out.stat().st_size
    n_params = result_header.n_params
    return QuantizeResult(
        artifact=out,
        recipe=recipe,
        size_bytes=size,
        bpw=result_header.tensor_bytes * 8 / max(n_params, 1),
        n_params=n_params,
        requantized=requantize,
        fallback_tensors=fallbacks,
        tensor_types=dict(Counter(t.type_name for t in result_header.tensors)),
        seconds=seconds,
        warnings=warnings,
    )


def is_quantized(header: GGUFHeader) -> bool:
    """Whether any 2-D weight of the model is stored in a quantized type."""
    return any(len(t.shape) >= 2 and t.type not in _FLOAT_TYPES for t in header.tensors)


def file_type_name(header: GGUFHeader) -> str:
    """The model's file type as llama-quantize names it (``general.file_type``), else its
    most common weight type."""
    ftype = header.metadata.get("general.file_type")
    for qt in QUANT_TYPES.values():
        if qt.ftype == ftype:
            return qt.name
    counts: dict[str, int] = {}
    for t in header.tensors:
        if len(t.shape) >= 2:
            counts[t.type_name] = counts.get(t.type_name, 0) + t.n_bytes
    return max(counts, key=lambda k: counts[k]) if counts else "unknown"


def _fallbacks(log_text: str, result: GGUFHeader) -> list[FallbackTensor]:
    found: dict[str, FallbackTensor] = {}
    for m in _FALLBACK.finditer(log_text):
        name = m.group("name")
        info = result.tensor(name)
        got = info.type_name if info is not None else "?"
        found[name] = FallbackTensor(name, int(m.group("cols")), m.group("type").upper(), got)
    return sorted(found.values(), key=lambda f: f.name)


def _check_target(out: Path, force: bool) -> None:
    if out.is_dir():
        raise ConfigError(f"{out}: is a directory; give the artifact's file name")
    if out.exists() and not force:
        raise ConfigError(f"{out}: already exists; pass --force to replace it")
    if not out.parent.is_dir():
        raise ConfigError(f"{out.parent}: no such directory; create it first")


def _explain(e: RuntimeBackendError, src: Path, out: Path,
             header: GGUFHeader) -> EdgewardError:
    """A quantizer failure in words the user can act on (an unknown architecture; a write
    that failed because the disk filled), or the error itself."""
    if "unknown model architecture" in str(e):
        return ArtifactError(f"{src}: llama.cpp does not know the architecture "
                             f"{header.architecture!r}")
    if any(m in str(e) for m in _WRITE_FAILED):
        free = shutil.disk_usage(out.parent).free
        where = out.parent.parent if out.parent.name.startswith(".edgeward-work") \
            else out.parent  # the pipeline's hidden work directory: name its home
        return ResourceError(
            f"{where}: writing the artifact failed part-way: the disk is full or a file-size "
            f"limit stopped it ({free / 2**20:.0f} MiB free now); nothing was written. Free "
            "some space or write elsewhere")
    return e


# What llama.cpp's quantizer says when a write fails (its C++ streams report ENOSPC/EFBIG
# this way).
_WRITE_FAILED = ("iostream error", "No space left", "File too large")


def _check_disk_space(out: Path, header: GGUFHeader, bpw: float) -> None:
    # The output can be larger than the nominal figure (fallbacks, F32 norms): allow 25% more,
    # and never less than the source when the type is wider than it.
    needed = int(max(header.n_params * bpw / 8, 0) * 1.25) + (1 << 20)
    free = shutil.disk_usage(out.parent).free
    if free < needed:
        raise ResourceError(
            f"{out.parent}: {free / 2**20:.0f} MiB free, but the artifact needs about "
            f"{needed / 2**20:.0f} MiB; free some space or write elsewhere"
        )


def fsync_file(path: Path) -> None:
    """Flush a file's data to disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_dir(path: Path) -> None:
    """Flush a directory entry (after a rename), where the filesystem supports it."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass  # some filesystems do not support fsync on directories
    finally:
        os.close(fd)
