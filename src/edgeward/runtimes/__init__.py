"""Runtimes: one :class:`Runtime` interface over the inference backends.

A runtime loads an artifact for a hardware profile and generates, chats and tokenizes; each call
reports its figures (prompt and completion tokens, time to first token, decode tokens/s, peak
memory). Backend exceptions never escape: they become
:class:`~edgeward.errors.RuntimeBackendError`. ::

    from edgeward.runtimes import LlamaCppRuntime, SamplingParams

    with LlamaCppRuntime() as rt:
        rt.load(path_to_gguf, profile)
        stream = rt.chat([{"role": "user", "content": "Hi"}], SamplingParams(temperature=0))
        for piece in stream:
            print(piece, end="")
        print(stream.stats.decode_tokens_per_s)

Backends: :class:`LlamaCppRuntime` (GGUF) and :class:`OnnxRuntime` (ONNX directories as optimum
exports them: encoders embed, causal LMs exported with past key values generate).
:func:`open_runtime` picks the backend from the artifact's format and loads it.
This package depends on :mod:`edgeward.hardware_profiles` (for the profile type) and
:mod:`edgeward.errors`.
"""

from edgeward.runtimes._base import (
    ChatMessage,
    Completion,
    Embeddings,
    GenerationStats,
    PositionScores,
    Runtime,
    SamplingParams,
    TokenStream,
)
from edgeward.runtimes._gguf_header import (
    GGUFHeader,
    GGUFTensorInfo,
    parse_gguf_header,
    read_gguf_header,
)
from edgeward.runtimes._llama_cpp import (
    LlamaCppRuntime,
    check_backend,
    llama_backends,
    llama_cpp_version,
)
from edgeward.runtimes._memory import MemoryPrediction, predict_memory
from edgeward.runtimes._offload import (
    BlockBytes,
    block_bytes,
    block_index,
    fit_gpu_layers,
    split_bytes,
)
from edgeward.runtimes._onnx import OnnxRuntime, choose_providers
from edgeward.runtimes._select import artifact_format, open_runtime

__all__ = [
    "BlockBytes",
    "ChatMessage",
    "Completion",
    "Embeddings",
    "GGUFHeader",
    "GGUFTensorInfo",
    "GenerationStats",
    "LlamaCppRuntime",
    "MemoryPrediction",
    "OnnxRuntime",
    "PositionScores",
    "Runtime",
    "SamplingParams",
    "TokenStream",
    "artifact_format",
    "block_bytes",
    "block_index",
    "check_backend",
    "choose_providers",
    "fit_gpu_layers",
    "llama_backends",
    "llama_cpp_version",
    "open_runtime",
    "parse_gguf_header",
    "predict_memory",
    "read_gguf_header",
    "split_bytes",
]
