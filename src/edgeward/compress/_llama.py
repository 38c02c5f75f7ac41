"""The boundary with llama.cpp for compression: the quantize call, log capture, eval models.

Everything llama-cpp-python raises or reports is turned into edgeward's errors here.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import re
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgeward.errors import RuntimeBackendError

__all__ = [
    "LogCapture",
    "QuantizeCall",
    "available_cores",
    "buffer_sizes_mib",
    "capture_llama_log",
    "load_for_eval",
    "run_quantize",
]

_capture_lock = threading.Lock()


class LogCapture:
    """Lines llama.cpp logged while a :func:`capture_llama_log` block ran."""

    def __init__(self) -> None:
        self.parts: list[str] = []

    @property
    def text(self) -> str:
        """Everything logged, joined."""
        return "".join(self.parts)

    def lines(self) -> list[str]:
        """Logged text split into lines."""
        return self.text.splitlines()


@contextlib.contextmanager
def capture_llama_log() -> Iterator[LogCapture]:
    """Route llama.cpp's log into a :class:`LogCapture` (and not to stderr) for the block.

    llama.cpp has one process-wide log callback; it is restored to llama-cpp-python's own
    afterwards. Blocks are serialised.
    """
    import llama_cpp
    from llama_cpp import _logger

    capture = LogCapture()

    @llama_cpp.llama_log_callback  # type: ignore[untyped-decorator]
    def callback(level: int, text: bytes, user_data: ctypes.c_void_p) -> None:
        capture.parts.append(text.decode("utf-8", "replace"))

    with _capture_lock:
        llama_cpp.llama_log_set(callback, ctypes.c_void_p(0))
        try:
            yield capture
        finally:
            llama_cpp.llama_log_set(_logger.llama_log_callback, ctypes.c_void_p(0))


@dataclass
class QuantizeCall:
    """Arguments of one ``llama_model_quantize`` call, in llama.cpp's own terms.

    Attributes:
        ftype: the ``llama_ftype`` value.
        threads: quantization threads (<= 0: all cores).
        allow_requantize: allow a quantized source.
        output_tensor_type / token_embedding_type: ggml type or -1 for the recipe default.
        pure: every tensor gets the main type (no k-quant mixture).
        tensor_overrides: ``(regex pattern, ggml type)`` pairs.
        imatrix: a ctypes array of ``llama_model_imatrix_data`` (NULL-name terminated), or None.
        prune_layers: block indices to drop.
    """

    ftype: int
    threads: int = 0
    allow_requantize: bool = False
    output_tensor_type: int = -1
    token_embedding_type: int = -1
    pure: bool = False
    tensor_overrides: Sequence[tuple[str, int]] = ()
    imatrix: Any = None
    prune_layers: Sequence[int] = ()


def run_quantize(src: Path, dst: Path, call: QuantizeCall) -> LogCapture:
    """Call ``llama_model_quantize`` and return what it logged.

    Raises:
        RuntimeBackendError: llama.cpp returned an error (its last log lines are quoted).
    """
    import llama_cpp

    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = call.ftype
    params.nthread = call.threads
    params.allow_requantize = call.allow_requantize
    params.pure = call.pure
    if call.output_tensor_type >= 0:
        params.output_tensor_type = call.output_tensor_type
    if call.token_embedding_type >= 0:
        params.token_embedding_type = call.token_embedding_type
    keep: list[Any] = []  # ctypes buffers must outlive the call
    if call.tensor_overrides:
        overrides = (llama_cpp.llama_model_tensor_override * (len(call.tensor_overrides) + 1))()
        for i, (pattern, ggml_type) in enumerate(call.tensor_overrides):
            encoded = pattern.encode("utf-8")
            keep.append(encoded)
            overrides[i].pattern = encoded
            overrides[i].type = ggml_type
        overrides[len(call.tensor_overrides)].pattern = None  # terminator
        keep.append(overrides)
        params.tt_overrides = ctypes.cast(overrides,
                                          ctypes.POINTER(llama_cpp.llama_model_tensor_override))
    if call.imatrix is not None:
        params.imatrix = ctypes.cast(call.imatrix,
                                     ctypes.POINTER(llama_cpp.llama_model_imatrix_data))
    if call.prune_layers:
        layers = (ctypes.c_int32 * (len(call.prune_layers) + 1))(*call.prune_layers, -1)
        keep.append(layers)
        params.prune_layers = ctypes.cast(layers, ctypes.POINTER(ctypes.c_int32))
    with capture_llama_log() as log:
        try:
            rc = llama_cpp.llama_model_quantize(str(src).encode(), str(dst).encode(),
                                                ctypes.byref(params))
        except Exception as e:
            raise RuntimeBackendError(f"llama.cpp quantize failed: {e}") from e
    if rc != 0:
        tail = " | ".join(line.strip() for line in log.lines()[-4:] if line.strip())
        raise RuntimeBackendError(f"llama.cpp quantize failed (code {rc}): {tail}")
    return log


_BUFFER_LINE = re.compile(r"(\S+)\s+buffer size\s*=\s*([\d.]+)\s*MiB")


@contextlib.contextmanager
def load_for_eval(path: Path, *, n_ctx: int, threads: int | None = None,
                  logits_all: bool = True) -> Iterator[tuple[Any, LogCapture]]:
    """A llama.cpp model that returns logits for every position, and its load log.

    Raises:
        RuntimeBackendError: llama.cpp could not load the file.
    """
    from llama_cpp import Llama

    threads = threads or available_cores()
    with capture_llama_log() as log:
        try:
            llm = Llama(model_path=str(path), n_ctx=n_ctx, n_batch=min(n_ctx, 512),
                        n_threads=threads, n_threads_batch=threads, logits_all=logits_all,
                        use_mmap=True, verbose=False)
        except Exception as e:
            raise RuntimeBackendError(f"llama.cpp could not load {path}: {e}") from e
    try:
        yield llm, log
    finally:
        llm.close()


def buffer_sizes_mib(log: LogCapture) -> dict[str, float]:
    """``{"model": ..., "KV": ..., "compute": ..., ...}`` MiB from llama.cpp's load log."""
    sizes: dict[str, float] = {}
    for line in log.lines():
        if "matches expectation" in line:
            continue
        m = _BUFFER_LINE.search(line)
        if m is None:
            continue
        label = line.split(":", 1)[1] if ":" in line else line
        key = label.split("buffer size")[0].strip()
        sizes[key] = sizes.get(key, 0.0) + float(m.group(2))
    return sizes


def available_cores() -> int:
    """CPU cores this process may use."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1
