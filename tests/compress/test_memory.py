"""Memory prediction against what llama.cpp allocates."""

from __future__ import annotations

from pathlib import Path

import pytest

from edgeward.compress import QuantRecipe, measure_allocation, predict_memory, quantize
from edgeward.hardware_profiles import get_profile
from edgeward.runtimes import read_gguf_header


@pytest.mark.parametrize("n_ctx", [256, 512])
def test_tiny_prediction_is_close_to_the_measured_allocation(tiny_gguf: Path, n_ctx: int) -> None:
    predicted = predict_memory(read_gguf_header(tiny_gguf), n_ctx=n_ctx).total
    measured = measure_allocation(tiny_gguf, n_ctx=n_ctx)
    assert measured["total"] > 0 and "CPU KV" in measured
    # The tiny model is dominated by compute buffers, the hardest part to predict; the real
    # model's figure (integration test) is held to 10%.
    assert abs(predicted - measured["total"]) / measured["total"] < 0.15


def test_kv_cache_is_exact(tiny_gguf: Path) -> None:
    header = read_gguf_header(tiny_gguf)
    for n_ctx in (256, 512):
        kv = predict_memory(header, n_ctx=n_ctx).kv_cache
        assert kv == measure_allocation(tiny_gguf, n_ctx=n_ctx)["CPU KV"]
        # 2 layers x n_ctx x (2 KV heads x 64) x (K + V) x 2 bytes
        assert kv == 2 * n_ctx * 128 * 2 * 2


def test_kv_grows_with_context_and_repacking_depends_on_the_profile(
        tiny_gguf: Path, tmp_path: Path) -> None:
    q4 = quantize(tiny_gguf, tmp_path / "q4.gguf", QuantRecipe(type="Q4_0")).artifact
    header = read_gguf_header(q4)
    small = predict_memory(header, n_ctx=512)
    big = predict_memory(header, n_ctx=4096)
    assert big.kv_cache == 8 * small.kv_cache
    assert big.weights == small.weights
    assert predict_memory(header, n_ctx=512, profile=get_profile("core-avx2-16gb")).repacked > 0
    assert predict_memory(header, n_ctx=512, profile=get_profile("rtx-4090-24gb")).repacked == 0
    # llama.cpp logs sizes in MiB with two decimals: compare to that precision.
    assert predict_memory(header, n_ctx=512).repacked == pytest.approx(
        measure_allocation(q4, n_ctx=512).get("CPU_REPACK model", 0), abs=0.006 * 2**20)
