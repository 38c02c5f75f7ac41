"""How much memory a GGUF artifact needs on a profile at a context length, and what llama.cpp
actually allocates when it loads it.

The prediction adds up what llama.cpp allocates when it creates a context:

- **weights**: the tensor data (memory-mapped on CPU, copied to VRAM on a GPU);
- **repacked weights** (CPU backends with AVX2 or NEON): llama.cpp copies Q4_0, Q4_K and IQ4_NL
  matrices into an interleaved layout for faster kernels (the mapped originals are then not
  touched, but both are allocated, and llama.cpp reports both);
- **KV cache**: ``layers x context x (K width + V width) x 2 bytes`` (F16 cache), with the
  context rounded up to llama.cpp's 256-token padding;
- **compute buffer**: the largest live set of the graph for one micro-batch (``n_ub`` tokens):
  either the output stage, ``n_ub x (n_vocab + 2 x n_embd) x 4`` bytes, or the attention stage
  without flash attention, ``n_ub x n_kv x (n_head + 1) x 4 + 2 x n_ub x n_ff x 4`` bytes
  (the KQ matrix and its mask, plus the feed-forward activations);
- **output buffer**: the logits of one sequence, ``n_vocab x 4`` bytes.

``edgeward.compress.measure_allocation`` loads the artifact with llama.cpp and reads the
buffer sizes it logs, so the prediction can be checked on this machine
(``benchmarks/compress_gguf.py``).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from edgeward.errors import ArtifactError
from edgeward.hardware_profiles import HardwareProfile
from edgeward.runtimes._gguf_header import GGUFHeader

__all__ = ["REPACKED_TYPES", "MemoryPrediction", "predict_memory"]

_KV_PAD = 256  # llama.cpp pads the KV cache size to a multiple of this
#: Types a CPU backend with AVX2 or NEON repacks into an interleaved copy.
REPACKED_TYPES = frozenset({"Q4_0", "Q4_K", "IQ4_NL"})
_DEFAULT_BATCH = 512


@dataclass(frozen=True)
class MemoryPrediction:
    """Predicted allocation in bytes, by part."""

    n_ctx: int
    weights: int
    repacked: int
    kv_cache: int
    compute: int
    output: int

    @property
    def total(self) -> int:
        """Everything together."""
        return self.weights + self.repacked + self.kv_cache + self.compute + self.output

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form, with the total."""
        return asdict(self) | {"total": self.total}


def predict_memory(header: GGUFHeader, *, n_ctx: int, profile: HardwareProfile | None = None,
                   n_batch: int = _DEFAULT_BATCH) -> MemoryPrediction:
    """Predict what llama.cpp allocates to serve this model with ``n_ctx`` tokens of context.

    Args:
        header: the artifact's GGUF header.
        n_ctx: context length in tokens.
        profile: the target; decides whether CPU weight repacking applies (None: this kind of
            machine, a CPU with AVX2/NEON).
        n_batch: micro-batch size (llama.cpp's default is 512).

    Raises:
        ArtifactError: the header lacks the dimensions needed (not a transformer LLM).
    """
    n_layer = _dim(header, "block_count")
    n_embd = _dim(header, "embedding_length")
    n_head = _dim(header, "attention.head_count")
    n_head_kv = int(header.arch_value("attention.head_count_kv", n_head))
    n_ff = int(header.arch_value("feed_forward_length", 4 * n_embd))
    head_k = int(header.arch_value("attention.key_length", n_embd // n_head))
    head_v = int(header.arch_value("attention.value_length", n_embd // n_head))
    n_vocab = _vocab_size(header)

    n_kv = -(-n_ctx // _KV_PAD) * _KV_PAD
    n_ub = min(n_batch, n_ctx)
    kv = n_layer * n_kv * n_head_kv * (head_k + head_v) * 2
    output_stage = n_ub * (n_vocab + 2 * n_embd) * 4
    attention_stage = n_ub * n_kv * (n_head + 1) * 4 + 2 * n_ub * n_ff * 4
    repacks = profile is None or (profile.backend == "cpu" and any(
        f in profile.cpu_features for f in ("avx2", "neon")))
    repacked = sum(t.n_bytes for t in header.tensors
                   if t.type_name in REPACKED_TYPES and t.name != "token_embd.weight") \
        if repacks else 0
    return MemoryPrediction(
        n_ctx=n_ctx,
        weights=header.tensor_bytes,
        repacked=repacked,
        kv_cache=kv,
        compute=max(output_stage, attention_stage),
        output=n_vocab * 4,
    )


def _dim(header: GGUFHeader, key: str) -> int:
    value = header.arch_value(key)
    if not isinstance(value, int) or value <= 0:
        raise ArtifactError(
            f"{header.path}: no {header.architecture}.{key} in the GGUF metadata; cannot "
            "predict memory for this model"
        )
    return value


def _vocab_size(header: GGUFHeader) -> int:
    tokens = header.metadata.get("tokenizer.ggml.tokens")
    if isinstance(tokens, tuple) and len(tokens) == 2 and tokens[0] == "array":
        return int(tokens[1])
    emb = header.tensor("token_embd.weight")
    if emb is not None and len(emb.shape) == 2:
        return emb.shape[1]
    raise ArtifactError(f"{header.path}: cannot tell the vocabulary size")
