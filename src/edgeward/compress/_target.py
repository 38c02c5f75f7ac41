"""What a target does with a GGUF artifact: where its layers go, and how fast it decodes.

**Placement** follows llama.cpp's offload rules: ``n_gpu_layers`` offloads the *last* blocks
(with their KV cache); the output layer goes with a full offload; the token embeddings stay in
host memory. A discrete GPU (a profile with ``system_memory_bytes``) budgets VRAM and host RAM
separately and offloads as many blocks as fit in VRAM, the rest run from host RAM, as
``llama.cpp --fit`` does; shared memory (Apple Metal, Jetson) budgets one pool, with the GPU's
part capped by its working set (Metal's ``recommendedMaxWorkingSetSize``).

**Speed** is a roofline per token, per device: the slower of reading the bytes (weights and the
KV cache) at the memory bandwidth and doing the arithmetic at the backend's compute, plus a
fixed cost per block (graph launch and thread synchronisation). llama.cpp's decode kernels reach
only a fraction of the peak compute a catalog lists, and the fraction depends on the weight
type (block unpacking, repacked layouts); those fractions and the fixed costs were calibrated on
a 2-core AMD EPYC VM (``benchmarks/compress_gguf.py``, section ``speed``, prints predicted ÷
measured) and are estimates elsewhere. Plans label the figure an estimate.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from edgeward.hardware_profiles import HardwareProfile
from edgeward.hardware_profiles import cpu_flops_per_cycle as _flops_per_cycle
from edgeward.runtimes import (
    GGUFHeader,
    MemoryPrediction,
    block_bytes,
    block_index,
    predict_memory,
    split_bytes,
)

__all__ = ["Placement", "SpeedEstimate", "estimate_decode", "place"]


#: Fraction of the bandwidth a decode step reaches (calibrated: F16 SmolLM2 on the EPYC VM
#: read its weights at 0.8 of the numpy-copy bandwidth that ``profile detect`` measures).
MEMORY_EFFICIENCY = 0.8
#: Fraction of a CPU's peak FP32 FMA throughput llama.cpp's mat-vec kernels reach, by weight
#: type (calibrated on the EPYC VM, AVX-512, 2 threads, nothing else running: the ratios
#: between types from decode runs of SmolLM2 at F16, Q8_0, Q6_K, Q4_K_M, Q4_0 and Q4_1, the
#: scale from quiet runs at Q8_0 and Q4_K_M; other types take the default).
CPU_KERNEL_EFFICIENCY = {
    "F32": 0.19, "F16": 0.19, "BF16": 0.15, "Q8_0": 0.127, "Q4_0": 0.24, "Q4_K": 0.14,
    "Q5_0": 0.14, "Q5_K": 0.127, "Q6_K": 0.114, "Q4_1": 0.076, "Q5_1": 0.10,
}
_CPU_DEFAULT_EFFICIENCY = 0.10
#: Fraction of a GPU's peak FP32 throughput its mat-vec kernels reach (they are memory-bound
#: for all but the smallest models; this matters little).
GPU_KERNEL_EFFICIENCY = 0.25
#: Fixed cost per block and token: CPU thread barriers between graph nodes; a GPU's kernel
#: launches (with CUDA graphs).
CPU_BLOCK_OVERHEAD_S = 33e-6
GPU_BLOCK_OVERHEAD_S = 40e-6
#: Host CPU clock assumed when a profile has no compute figure of its own (GHz).
_ASSUMED_CLOCK_GHZ = 3.0


@dataclass(frozen=True)
class Placement:
    """Where an artifact's memory goes on a profile.

    Attributes:
        backend: the llama.cpp backend the artifact needs (``cpu``, ``cuda``, ``metal``, ...).
        n_layer: transformer blocks in the model.
        gpu_layers: blocks offloaded to the GPU (0 on a CPU; ``n_layer`` is a full offload,
            output layer included).
        gpu_bytes: predicted allocation in GPU memory.
        host_bytes: predicted allocation in host memory.
        gpu_budget_bytes: what the GPU may use (after headroom).
        host_budget_bytes: what host memory may hold (after headroom; for shared memory,
            the pool less the GPU's part).
        fits: both parts are within their budgets.
    """

    backend: str
    n_layer: int
    gpu_layers: int
    gpu_bytes: int
    host_bytes: int
    gpu_budget_bytes: int
    host_budget_bytes: int
    fits: bool

    @property
    def offload(self) -> str:
        """``"none"``, ``"partial"`` or ``"full"``."""
        if self.gpu_layers == 0:
            return "none"
        return "full" if self.gpu_layers >= self.n_layer else "partial"

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {"backend": self.backend, "offload": self.offload,
                "gpu_layers": self.gpu_layers, "n_layer": self.n_layer,
                "gpu_bytes": self.gpu_bytes, "host_bytes": self.host_bytes,
                "gpu_budget_bytes": self.gpu_budget_bytes,
                "host_budget_bytes": self.host_budget_bytes, "fits": self.fits}


@dataclass(frozen=True)
class SpeedEstimate:
    """Predicted decode speed and what bounds it (seconds per token by part)."""

    tokens_per_s: float
    memory_s: float
    compute_s: float
    overhead_s: float
    bound: str  # "memory", "compute" or "overhead"

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {"tokens_per_s": round(self.tokens_per_s, 1), "estimate": True,
                "bound": self.bound, "memory_ms": round(self.memory_s * 1e3, 3),
                "compute_ms": round(self.compute_s * 1e3, 3),
                "overhead_ms": round(self.overhead_s * 1e3, 3)}


def place(header: GGUFHeader, profile: HardwareProfile, *, n_ctx: int,
          headroom: float = 0.0, memory: MemoryPrediction | None = None) -> Placement:
    """Decide how many blocks go to the GPU and whether the rest fits in host memory.

    Args:
        header: the artifact's GGUF header.
        profile: the target.
        n_ctx: context length in tokens.
        headroom: fraction of each memory kept free.
        memory: the whole-model prediction, if already computed.
    """
    memory = memory or predict_memory(header, n_ctx=n_ctx, profile=profile)
    parts = block_bytes(header)
    n_layer = parts.n_layer
    pool = int(profile.memory_bytes * (1.0 - headroom))
    if profile.backend == "cpu":
        return Placement("cpu", n_layer, 0, 0, memory.total, 0, pool, memory.total <= pool)

    discrete = profile.discrete_gpu
    gpu_budget = int(profile.gpu_memory_bytes * (1.0 - headroom)) if discrete else \
        min(int(profile.gpu_memory_bytes * (1.0 - headroom)), pool)
    host_cap = int((profile.system_memory_bytes or 0) * (1.0 - headroom)) if discrete else pool
    k = n_layer
    while k > 0 and split_bytes(parts, memory, k)[0] > gpu_budget:
        k -= 1
    gpu, host = split_bytes(parts, memory, k)
    host_budget = host_cap if discrete else max(0, pool - gpu)
    return Placement(profile.backend, n_layer, k, gpu, host, gpu_budget, host_budget,
                     gpu <= gpu_budget and host <= host_budget)


def estimate_decode(header: GGUFHeader, profile: HardwareProfile, placement: Placement, *,
                    n_past: int, threads: int | None = None) -> SpeedEstimate:
    """Predicted decode tokens/s with ``n_past`` tokens already in the KV cache.

    Args:
        header: the artifact's GGUF header.
        profile: the target.
        placement: from :func:`place`.
        n_past: tokens in the KV cache when the token is generated (its keys and values are
            read once per token).
        threads: CPU threads (None: the profile's).
    """
    n_layer = placement.n_layer
    k = placement.gpu_layers
    n_embd = int(header.arch_value("embedding_length", 0) or 0)
    n_head = int(header.arch_value("attention.head_count", 1) or 1)
    n_head_kv = int(header.arch_value("attention.head_count_kv", n_head) or n_head)
    head = n_embd // max(n_head, 1)
    kv_read = 2 * n_past * n_head_kv * head * 2  # K and V, F16, per block
    attn_flops = 4 * n_past * n_head * head  # QK^T and softmax(.)V, per block

    gpu_peak = (profile.compute_tflops or 0.0) * 1e12 * GPU_KERNEL_EFFICIENCY
    host_peak = _host_peak_flops(profile, threads)
    dev_bytes, dev_compute = _weight_work(header, placement, gpu_peak, host_peak)
    dev_bytes["gpu"] += kv_read * k
    dev_bytes["host"] += kv_read * (n_layer - k)
    if gpu_peak:
        dev_compute["gpu"] += attn_flops * k / gpu_peak
    dev_compute["host"] += attn_flops * (n_layer - k) / (host_peak * _CPU_DEFAULT_EFFICIENCY)

    gpu_bw = profile.bandwidth_gbps * 1e9 * MEMORY_EFFICIENCY
    if profile.backend == "cpu" or not profile.discrete_gpu:
        host_bw = gpu_bw  # one memory
    else:
        host_bw = (profile.system_bandwidth_gbps or profile.bandwidth_gbps / 10) * 1e9 \
            * MEMORY_EFFICIENCY
    mem_s = {"gpu": dev_bytes["gpu"] / gpu_bw, "host": dev_bytes["host"] / host_bw}
    overhead = k * GPU_BLOCK_OVERHEAD_S + (n_layer - k) * CPU_BLOCK_OVERHEAD_S
    memory_s = compute_s = 0.0
    total = overhead
    for dev in ("gpu", "host"):
        total += max(mem_s[dev], dev_compute[dev])
        memory_s += mem_s[dev]
        compute_s += dev_compute[dev]
    bound = max((("memory", memory_s), ("compute", compute_s), ("overhead", overhead)),
                key=lambda p: p[1])[0]
    return SpeedEstimate(1.0 / max(total, 1e-9), memory_s, compute_s, overhead, bound)


def _weight_work(header: GGUFHeader, placement: Placement, gpu_peak: float,
                 host_peak: float) -> tuple[dict[str, int], dict[str, float]]:
    """Bytes of weights read, and seconds of arithmetic, per token on each device (peaks in
    FLOP/s, the GPU's already scaled by its kernel efficiency)."""
    n_layer, k = placement.n_layer, placement.gpu_layers
    dev_bytes = {"gpu": 0, "host": 0}
    dev_compute = {"gpu": 0.0, "host": 0.0}
    tied = header.tensor("output.weight") is None
    for t in header.tensors:
        i = block_index(t.name)
        if i is not None:
            dev = "gpu" if i >= n_layer - k else "host"
        elif t.name == "output.weight" or (t.name == "token_embd.weight" and tied):
            dev = "gpu" if k >= n_layer else "host"  # tied embeddings are the output too
        else:
            continue  # the embedding lookup and the norms: negligible
        if not _is_matrix(t.shape):
            continue
        dev_bytes[dev] += t.n_bytes
        flops = 2.0 * t.n_elements
        if dev == "gpu":
            dev_compute["gpu"] += flops / gpu_peak if gpu_peak else 0.0
        else:
            eff = CPU_KERNEL_EFFICIENCY.get(t.type_name, _CPU_DEFAULT_EFFICIENCY)
            dev_compute["host"] += flops / (host_peak * eff)
    return dev_bytes, dev_compute


def _host_peak_flops(profile: HardwareProfile, threads: int | None) -> float:
    cores = profile.cores or 1
    used = min(threads or profile.effective_threads or cores, cores)
    if profile.backend == "cpu" and profile.compute_tflops:
        return profile.compute_tflops * 1e12 * used / cores
    return used * _ASSUMED_CLOCK_GHZ * 1e9 * _flops_per_cycle(profile.cpu_features)


def _is_matrix(shape: tuple[int, ...]) -> bool:
    return len(shape) >= 2 and shape[1] > 1
