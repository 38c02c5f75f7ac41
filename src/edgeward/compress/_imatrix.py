"""Importance matrices: which input columns of each weight matter, measured on calibration text.

llama.cpp's low-bit types (IQ2_XXS, IQ3_XXS, IQ1_S, Q2_K_S ...) refuse to quantize without one,
and every other type gets better with one. llama-cpp-python cannot compute it, so it is
computed here the way ``llama-imatrix`` does: run chunks of calibration text through the
model, and for every matrix multiplication ``W @ x`` add ``x[j]**2`` to column ``j``'s sum.
The quantizer wants the mean per column (sum / tokens).

The matrix is saved in the GGUF format of current llama.cpp's ``llama-imatrix``, so
``llama-quantize --imatrix FILE`` and ``llama-imatrix --in-file FILE`` read it::

    general.type        = "imatrix"
    imatrix.datasets    = [str, ...]          (what it was computed on)
    imatrix.chunk_count = u32, imatrix.chunk_size = u32 (tokens per chunk)
    <tensor>.in_sum2    F32 [n_cols, 1]        (sums of squared inputs)
    <tensor>.counts     F32 [1, 1]             (tokens accumulated)

Only dense tensors are supported (one count per tensor); per-expert (MoE) entries are rejected.
"""

from __future__ import annotations

import ctypes
import errno
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

import numpy as np

from edgeward.compress._hf import (
    calibration_chunks,
    decoder_layers,
    hf_to_gguf_name,
    load_hf_model,
    run_chunks,
)
from edgeward.errors import ArtifactError, ConfigError, ResourceError

if TYPE_CHECKING:
    import torch
    from transformers import PreTrainedModel

__all__ = ["ImportanceMatrix", "compute_imatrix", "imatrix_from_model", "quantize_imatrix_data"]

Progress = Callable[[int, int], None]

_SUMS, _COUNTS = ".in_sum2", ".counts"
_KEY_DATASETS, _KEY_CHUNK_COUNT, _KEY_CHUNK_SIZE = (
    "imatrix.datasets", "imatrix.chunk_count", "imatrix.chunk_size")
_U32_MAX = 2**32 - 1


@dataclass(frozen=True, eq=False)
class ImportanceMatrix:
    """Sums of squared input activations per column of each weight tensor.

    Attributes:
        sums: GGUF tensor name (``blk.0.attn_q.weight``) -> float32 array, one entry per input
            column: the sum over all tokens of that column's input squared.
        counts: GGUF tensor name -> the number of tokens (rows) summed. Stored as float32 in
            the file, as llama.cpp does: exact up to 2**24 tokens.
        datasets: names of the calibration texts (at least one).
        chunk_count: chunks of text evaluated.
        chunk_size: tokens per chunk (the context length used).
    """

    sums: Mapping[str, np.ndarray]
    counts: Mapping[str, int]
    datasets: tuple[str, ...]
    chunk_count: int
    chunk_size: int

    def __post_init__(self) -> None:
        if set(self.sums) != set(self.counts):
            odd = sorted(set(self.sums) ^ set(self.counts))
            raise ConfigError(f"importance matrix: sums and counts name different tensors: {odd}")
        if not self.sums:
            raise ConfigError("importance matrix: no tensors")
        sums: dict[str, np.ndarray] = {}
        for name in sorted(self.sums):
            sums[name] = _checked_sums(name, self.sums[name])
        counts: dict[str, int] = {}
        for name in sorted(self.counts):
            count = self.counts[name]
            if isinstance(count, bool) or not isinstance(count, int | np.integer) or count < 0:
                raise ConfigError(f"importance matrix: count of {name!r} must be an integer "
                                  f">= 0, got {count!r}")
            counts[name] = int(count)
        datasets = tuple(self.datasets)
        if not datasets or not all(isinstance(d, str) and d for d in datasets):
            raise ConfigError(f"importance matrix: datasets must name at least one text, "
                              f"got {self.datasets!r}")
        for label, value in (("chunk_count", self.chunk_count), ("chunk_size", self.chunk_size)):
            if not isinstance(value, int) or not 0 <= value <= _U32_MAX:
                raise ConfigError(f"importance matrix: {label} must be an integer in "
                                  f"[0, 2**32), got {value!r}")
        object.__setattr__(self, "sums", MappingProxyType(sums))
        object.__setattr__(self, "counts", MappingProxyType(counts))
        object.__setattr__(self, "datasets", datasets)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ImportanceMatrix):
            return NotImplemented
        return (self.datasets == other.datasets and self.chunk_count == other.chunk_count
                and self.chunk_size == other.chunk_size and dict(self.counts) == dict(other.counts)
                and all(np.array_equal(a, other.sums[n]) for n, a in self.sums.items()))

    __hash__ = None  # type: ignore[assignment]  # arrays inside: compare, don't hash

    @property
    def names(self) -> tuple[str, ...]:
        """The GGUF tensor names, sorted."""
        return tuple(self.sums)

    def values(self, name: str) -> np.ndarray:
        """The importance of each input column of ``name``: sum / count (what the quantizer
        takes); all ones for an entry that saw no tokens, as ``llama-quantize`` does.

        Raises:
            ConfigError: no entry for ``name``.
        """
        try:
            sums, count = self.sums[name], self.counts[name]
        except KeyError:
            raise ConfigError(f"importance matrix has no entry for {name!r}") from None
        if count == 0:
            return np.ones_like(sums)
        return sums / np.float32(count)  # float32, as llama-quantize divides: same values

    def save(self, path: Path) -> None:
        """Write the matrix as a GGUF imatrix file (llama.cpp's ``llama-imatrix`` format).

        Written to a temporary file beside ``path`` and renamed, so a reader never sees half.

        Raises:
            ConfigError: the path cannot be written.
            ResourceError: the disk is full.
        """
        import gguf

        class _Writer(gguf.GGUFWriter):
            def add_architecture(self) -> None:
                pass  # llama-imatrix stores no general.architecture

        path = Path(path)
        tmp = path.with_name(f".{path.name}.tmp")
        try:
            writer = _Writer(str(tmp), arch="")
            writer.add_type(gguf.GGUFType.IMATRIX)
            writer.add_array(_KEY_DATASETS, list(self.datasets))
            writer.add_uint32(_KEY_CHUNK_COUNT, self.chunk_count)
            writer.add_uint32(_KEY_CHUNK_SIZE, self.chunk_size)
            for name in sorted(self.sums):  # llama-imatrix sorts too: a deterministic file
                writer.add_tensor(name + _SUMS, self.sums[name].reshape(1, -1))
                writer.add_tensor(name + _COUNTS,
                                  np.array([[self.counts[name]]], dtype=np.float32))
            writer.write_header_to_file()
            writer.write_kv_data_to_file()
            writer.write_tensors_to_file()
            writer.close()
            tmp.replace(path)
        except OSError as e:
            tmp.unlink(missing_ok=True)
            if e.errno == errno.ENOSPC:
                raise ResourceError(f"{path}: no space left for the importance matrix") from e
            raise ConfigError(f"{path}: cannot write the importance matrix "
                              f"({e.strerror or e})") from e

    @classmethod
    def load(cls, path: Path) -> ImportanceMatrix:
        """Read a GGUF imatrix file (written by :meth:`save` or by ``llama-imatrix``).

        Tensors other than ``*.in_sum2``/``*.counts`` (newer tools add ``*.in_sum``) are
        ignored, as llama.cpp does.

        Raises:
            ConfigError: the file does not exist.
            ArtifactError: it is not a GGUF imatrix file, lacks the metadata llama-quantize
                requires, or holds unpaired, mistyped or per-expert entries.
        """
        import gguf

        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"{path}: no such importance matrix file")
        try:
            reader = gguf.GGUFReader(str(path))
        except (ValueError, OSError, IndexError, KeyError) as e:
            raise ArtifactError(
                f"{path}: not a GGUF importance matrix file ({e}); a legacy imatrix.dat can be "
                "converted with: llama-imatrix --in-file OLD.dat -o NEW.gguf") from e
        # A model file need not say general.type; one with an architecture is a model.
        arch = _field(reader, "general.architecture", default="")
        kind = _field(reader, "general.type", default="model" if arch else "imatrix")
        if kind != "imatrix":
            raise ArtifactError(f"{path}: is a GGUF {kind!r} file, not an importance matrix "
                                "(general.type must be 'imatrix')")
        datasets = _field(reader, _KEY_DATASETS, path=path)
        chunk_count = _field(reader, _KEY_CHUNK_COUNT, path=path)
        chunk_size = _field(reader, _KEY_CHUNK_SIZE, path=path)
        if isinstance(datasets, str):
            datasets = [datasets]
        if not isinstance(chunk_count, int) or not isinstance(chunk_size, int):
            raise ArtifactError(f"{path}: imatrix.chunk_count/chunk_size must be integers")
        sums, counts = _read_entries(reader, path)
        try:
            return cls(sums=sums, counts=counts, datasets=tuple(datasets),
                       chunk_count=chunk_count, chunk_size=chunk_size)
        except ConfigError as e:
            raise ArtifactError(f"{path}: {e}") from e


def _checked_sums(name: str, value: Any) -> np.ndarray:
    if not isinstance(name, str) or not name:
        raise ConfigError(f"importance matrix: tensor names must be non-empty, got {name!r}")
    arr = np.array(value, dtype=np.float32)  # a copy: the caller's array may change later
    if arr.ndim != 1 or arr.size == 0:
        raise ConfigError(f"importance matrix: sums of {name!r} must be a non-empty 1-D "
                          f"array, got shape {arr.shape}")
    bad = ~np.isfinite(arr) | (arr < 0)
    if bad.any():
        i = int(np.argmax(bad))
        raise ConfigError(f"importance matrix: sums of {name!r} must be finite and >= 0; "
                          f"column {i} is {float(arr[i])!r}")
    arr.flags.writeable = False
    return arr


_MISSING = object()


def _field(reader: Any, key: str, *, default: Any = _MISSING, path: Path | None = None) -> Any:
    f = reader.get_field(key)
    if f is None:
        if default is _MISSING:
            raise ArtifactError(f"{path}: not an importance matrix llama-quantize accepts: "
                                f"the key {key!r} is missing")
        return default
    value = f.contents()
    return int(value) if isinstance(value, np.integer) else value


def _read_entries(reader: Any, path: Path) -> tuple[dict[str, np.ndarray], dict[str, int]]:
    import gguf

    sums: dict[str, np.ndarray] = {}
    counts_raw: dict[str, np.ndarray] = {}
    for t in reader.tensors:
        for suffix, into in ((_SUMS, sums), (_COUNTS, counts_raw)):
            if t.name.endswith(suffix):
                if t.tensor_type != gguf.GGMLQuantizationType.F32:
                    raise ArtifactError(f"{path}: tensor {t.name!r} is {t.tensor_type.name}, "
                                        "llama.cpp expects F32")
                into[t.name.removesuffix(suffix)] = np.array(t.data, dtype=np.float32).ravel()
    if not sums and not counts_raw:
        raise ArtifactError(f"{path}: holds no importance entries (no *{_SUMS} tensors)")
    unpaired = sorted(set(sums) ^ set(counts_raw))
    if unpaired:
        raise ArtifactError(f"{path}: mismatched sums and counts for {unpaired[0]!r}")
    counts: dict[str, int] = {}
    for name, c in counts_raw.items():
        if c.size != 1:
            raise ArtifactError(f"{path}: {name!r} has {c.size} per-expert counts; "
                                "per-expert (MoE) entries are not supported")
        if not math.isfinite(float(c[0])) or c[0] < 0:
            raise ArtifactError(f"{path}: {name!r} has count {float(c[0])!r}")
        counts[name] = round(float(c[0]))
    return sums, counts


def quantize_imatrix_data(imatrix: ImportanceMatrix) -> Any:
    """The matrix as llama.cpp's quantizer takes it: a ctypes array of
    ``llama_model_imatrix_data`` (name, data, size), one per tensor, ended by an entry whose
    name is NULL (llama-quant.cpp reads ``for (p = params->imatrix; p->name != nullptr; p++)``).

    Args:
        imatrix: the matrix.

    Returns:
        The array; pass it (or a pointer cast from it) as ``llama_model_quantize_params.imatrix``.
        It holds the name bytes and value arrays it points into, so they live as long as it
        does; keep it alive until ``llama_model_quantize`` returns (llama.cpp copies the values).
    """
    import llama_cpp

    names = imatrix.names
    array = (llama_cpp.llama_model_imatrix_data * (len(names) + 1))()
    keep: list[Any] = []
    for i, name in enumerate(names):
        encoded = name.encode("utf-8")
        values = np.ascontiguousarray(imatrix.values(name), dtype=np.float32)
        keep += [encoded, values]
        array[i].name = encoded
        array[i].data = values.ctypes.data_as(ctypes.POINTER(ctypes.c_float))
        array[i].size = values.size
    array[len(names)].name = None  # the terminator llama.cpp stops at
    array[len(names)].data = ctypes.POINTER(ctypes.c_float)()
    array[len(names)].size = 0
    array.edgeward_buffers = keep  # type: ignore[attr-defined]  # what the pointers point into
    return array


def compute_imatrix(model_path: Path, text: str, *, text_name: str, n_ctx: int = 512,
                    max_tokens: int = 8192, progress: Progress | None = None,
                    process_output: bool = False) -> ImportanceMatrix:
    """Compute an importance matrix for a GGUF model from calibration text.

    The model's weights are dequantized into torch (float32); the text is tokenized by
    llama.cpp and evaluated in chunks of ``n_ctx`` tokens, each on its own, as
    ``llama-imatrix`` does. The result is deterministic for the same inputs and core count.

    Args:
        model_path: the GGUF model (the source of the quantization).
        text: calibration text; never the text quality is evaluated on.
        text_name: what the text is called in the matrix's ``datasets`` (a path or a label).
        n_ctx: tokens per chunk.
        max_tokens: at most this many tokens of the text are used (whole chunks only).
        progress: called with ``(chunks_done, chunks_total)``, first with 0 done.
        process_output: also collect the output projection (``llama-imatrix
            --process-output``): ``output.weight``, or ``token_embd.weight`` when the model
            ties its embeddings (SmolLM2 has no ``output.weight``). Off by default, as there.

    Returns:
        The matrix: one entry per linear weight of every block (attn_q/k/v/output,
        ffn_gate/up/down), counts = chunks x ``n_ctx``.

    Raises:
        ConfigError: bad sizes, too little text, torch/transformers missing, model not found.
        ArtifactError: the model is not a GGUF, or its architecture is not supported.
    """
    chunks = calibration_chunks(model_path, text, n_ctx=n_ctx, max_tokens=max_tokens)
    model = load_hf_model(model_path)
    return imatrix_from_model(model, chunks, text_name=text_name, progress=progress,
                              process_output=process_output)


def imatrix_from_model(model: PreTrainedModel, chunks: list[list[int]], *, text_name: str,
                       progress: Progress | None = None,
                       process_output: bool = False) -> ImportanceMatrix:
    """:func:`compute_imatrix` on a model already loaded with
    :func:`~edgeward.compress._hf.load_hf_model` and chunks from
    :func:`~edgeward.compress._hf.calibration_chunks` (all of the same length).

    Raises:
        ConfigError: no chunks, or chunks of different lengths.
        ArtifactError: the architecture is not supported.
    """
    import torch

    if not chunks or len({len(c) for c in chunks}) != 1:
        raise ConfigError("imatrix: give one or more chunks, all of the same length")
    decoder_layers(model)  # ArtifactError for an architecture we cannot name tensors of
    tied = bool(getattr(model.config, "tie_word_embeddings", False))
    sums: dict[str, torch.Tensor] = {}
    counts: dict[str, int] = {}
    handles = []

    def hook_for(gguf_name: str) -> Callable[..., None]:
        def hook(module: torch.nn.Module, args: tuple[Any, ...]) -> None:
            x = args[0].detach().reshape(-1, args[0].shape[-1]).to(torch.float64)
            acc = sums.get(gguf_name)
            square_sum = (x * x).sum(dim=0)
            sums[gguf_name] = square_sum if acc is None else acc + square_sum
            counts[gguf_name] = counts.get(gguf_name, 0) + x.shape[0]
        return hook

    for module_name, module in model.named_modules():
        gguf_name = hf_to_gguf_name(module_name)
        if gguf_name is None or not isinstance(module, torch.nn.Linear):
            continue
        if gguf_name == "output.weight":
            if not process_output:
                continue
            if tied:  # as current llama-imatrix: the shared matrix is token_embd.weight
                gguf_name = "token_embd.weight"
        handles.append(module.register_forward_pre_hook(hook_for(gguf_name)))
    # Without the output tensor the logits are not needed: run the decoder stack only.
    runner = model if process_output else model.get_decoder()  # type: ignore[no-untyped-call]
    total = len(chunks)
    try:
        run_chunks(runner, chunks, progress)
    finally:
        for handle in handles:
            handle.remove()
    return ImportanceMatrix(
        sums={n: s.to(torch.float32).numpy() for n, s in sums.items()},
        counts=counts, datasets=(text_name,), chunk_count=total, chunk_size=len(chunks[0]))
