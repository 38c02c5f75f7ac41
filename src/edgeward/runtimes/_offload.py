"""How a GGUF model splits between a GPU and host memory when llama.cpp offloads blocks.

llama.cpp's ``n_gpu_layers = k`` puts the *last* k blocks (and their KV cache) on the GPU; a
full offload moves the output layer too; the token embeddings stay in host memory. The plan
(:func:`edgeward.compress.place`) and the runtime (a GPU profile without ``gpu_layers``) use
the same split, so an artifact the plan says fits with k blocks offloaded is loaded with k.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from edgeward.hardware_profiles import HardwareProfile
from edgeward.runtimes._gguf_header import GGUFHeader
from edgeward.runtimes._memory import REPACKED_TYPES, MemoryPrediction, predict_memory

__all__ = ["BlockBytes", "block_bytes", "block_index", "fit_gpu_layers", "split_bytes"]

_BLOCK = re.compile(r"^blk\.(\d+)\.")


def block_index(tensor_name: str) -> int | None:
    """The block a tensor belongs to (``blk.7.attn_q.weight`` -> 7), None outside a block."""
    m = _BLOCK.match(tensor_name)
    return int(m.group(1)) if m else None


@dataclass(frozen=True)
class BlockBytes:
    """A model's weight bytes by where llama.cpp can put them.

    Attributes:
        layers: weight bytes of each block.
        layer_repacked: of those, what a CPU backend also repacks (kept when on the host).
        embd: the token embeddings (always in host memory).
        output: the output layer (a copy of the embeddings when they are tied).
        other: norms and anything outside a block.
        tied: the model has no ``output.weight``: its embeddings are the output layer too.
    """

    layers: tuple[int, ...]
    layer_repacked: tuple[int, ...]
    embd: int
    output: int
    other: int
    tied: bool

    @property
    def n_layer(self) -> int:
        """Blocks in the model."""
        return len(self.layers)


def block_bytes(header: GGUFHeader) -> BlockBytes:
    """Split the header's tensors into blocks, embeddings, output and the rest."""
    value = header.arch_value("block_count")
    n_layer = value if isinstance(value, int) and value > 0 else 1
    layers = [0] * n_layer
    repacked = [0] * n_layer
    embd = output = other = 0
    for t in header.tensors:
        i = block_index(t.name)
        if i is not None and i < n_layer:
            layers[i] += t.n_bytes
            if t.type_name in REPACKED_TYPES:
                repacked[i] += t.n_bytes
        elif t.name == "token_embd.weight":
            embd = t.n_bytes
        elif t.name == "output.weight":
            output = t.n_bytes
        else:
            other += t.n_bytes
    tied = header.tensor("output.weight") is None
    if tied:  # llama.cpp duplicates the embeddings as the output layer
        output = embd
    return BlockBytes(tuple(layers), tuple(repacked), embd, output, other, tied)


def split_bytes(parts: BlockBytes, memory: MemoryPrediction, k: int) -> tuple[int, int]:
    """(GPU bytes, host bytes) with the last ``k`` blocks offloaded."""
    n_layer = parts.n_layer
    kv_layer = memory.kv_cache // n_layer
    full = k >= n_layer
    on_gpu = sum(parts.layers[n_layer - k:]) + kv_layer * k if k else 0
    gpu = on_gpu + (parts.output + parts.other + memory.compute if full else
                    (memory.compute if k else 0))
    host_compute = max(1, memory.compute // 8)  # llama.cpp's host buffer under offload
    host = (parts.embd + sum(parts.layers[:n_layer - k]) + sum(parts.layer_repacked[:n_layer - k])
            + kv_layer * (n_layer - k) + memory.output + (host_compute if k else memory.compute)
            + (0 if full or parts.tied else parts.output) + (0 if full else parts.other))
    return gpu, host


def fit_gpu_layers(header: GGUFHeader, profile: HardwareProfile, *, n_ctx: int,
                   headroom: float = 0.1) -> int:
    """The most blocks whose GPU part fits in ``1 - headroom`` of the profile's GPU memory
    (``n_layer`` for all of them; 0 for a CPU profile)."""
    if profile.backend == "cpu":
        return 0
    memory = predict_memory(header, n_ctx=n_ctx, profile=profile)
    parts = block_bytes(header)
    budget = int(profile.gpu_memory_bytes * (1.0 - headroom))
    k = parts.n_layer
    while k > 0 and split_bytes(parts, memory, k)[0] > budget:
        k -= 1
    return k
