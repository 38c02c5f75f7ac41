"""What llama.cpp actually allocates when it loads an artifact (the prediction itself is
:func:`edgeward.runtimes.predict_memory`, re-exported here)."""

from __future__ import annotations

from pathlib import Path

from edgeward.compress._llama import buffer_sizes_mib, load_for_eval
from edgeward.runtimes import MemoryPrediction, predict_memory

__all__ = ["MemoryPrediction", "measure_allocation", "predict_memory"]


def measure_allocation(path: Path, *, n_ctx: int, threads: int | None = None) -> dict[str, int]:
    """Load ``path`` with llama.cpp at ``n_ctx`` and return the buffers it allocated (bytes).

    Keys are llama.cpp's buffer labels (``"CPU_Mapped model"``, ``"CPU KV"``,
    ``"CPU compute"``, ...) plus ``"total"``.

    Raises:
        RuntimeBackendError: llama.cpp could not load the file.
    """
    with load_for_eval(path, n_ctx=n_ctx, threads=threads, logits_all=False) as (_, log):
        sizes = buffer_sizes_mib(log)
    out = {k: int(v * 2**20) for k, v in sizes.items()}
    out["total"] = sum(out.values())
    return out
