"""Target-aware plans: where an artifact's layers go on a profile, and its predicted speed."""

from __future__ import annotations

from pathlib import Path

import pytest

from _models import TinyLlamaSpec, write_tiny_gguf
from edgeward.compress import estimate_decode, place
from edgeward.errors import ProfileError
from edgeward.hardware_profiles import HardwareProfile, get_profile
from edgeward.runtimes import read_gguf_header


@pytest.fixture(scope="module")
def wide_gguf(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Eight 512-wide blocks in F32: about 8 MiB of weights per block of the model."""
    spec = TinyLlamaSpec(n_embd=512, n_ff=1024, n_layer=8, n_head=8, n_head_kv=4)
    return write_tiny_gguf(tmp_path_factory.mktemp("target") / "wide.gguf", spec)


def _gpu(vram_mib: int, *, host_mib: int | None = 4096, working_set_mib: int | None = None,
         backend: str = "cuda") -> HardwareProfile:
    return HardwareProfile(
        name="test-gpu", display_name="test GPU", backend=backend,  # type: ignore[arg-type]
        gpu_compute_capability="8.9" if backend == "cuda" else None,
        memory_bytes=vram_mib * 2**20, bandwidth_gbps=500.0, compute_tflops=20.0,
        system_memory_bytes=None if host_mib is None else host_mib * 2**20,
        system_bandwidth_gbps=50.0, cores=4,
        gpu_working_set_bytes=None if working_set_mib is None else working_set_mib * 2**20,
        default_context=256)


def _cpu(memory_mib: int, *, compute: float | None = 0.3) -> HardwareProfile:
    return HardwareProfile(name="test-cpu", display_name="test CPU",
                           memory_bytes=memory_mib * 2**20, bandwidth_gbps=20.0,
                           cpu_features=("avx2", "fma"), cores=2, compute_tflops=compute,
                           default_context=256)


def test_a_cpu_profile_keeps_everything_in_ram(wide_gguf: Path) -> None:
    h = read_gguf_header(wide_gguf)
    p = place(h, _cpu(4096), n_ctx=256)
    assert (p.backend, p.gpu_layers, p.offload, p.gpu_bytes) == ("cpu", 0, "none", 0)
    assert p.fits and p.host_bytes > h.tensor_bytes
    assert not place(h, _cpu(1), n_ctx=256).fits


def test_a_card_with_room_takes_every_layer(wide_gguf: Path) -> None:
    h = read_gguf_header(wide_gguf)
    p = place(h, _gpu(4096), n_ctx=256)
    assert p.offload == "full" and p.gpu_layers == p.n_layer == 8 and p.fits
    # the token embeddings stay on the host; the rest moved to the GPU
    assert p.gpu_bytes > p.host_bytes


def test_a_small_card_offloads_what_fits_and_the_rest_runs_from_ram(wide_gguf: Path) -> None:
    h = read_gguf_header(wide_gguf)
    full = place(h, _gpu(4096), n_ctx=256)
    vram = full.gpu_bytes // 2 // 2**20  # about half the model's GPU part
    p = place(h, _gpu(vram), n_ctx=256)
    assert p.offload == "partial" and 0 < p.gpu_layers < p.n_layer
    assert p.gpu_bytes <= p.gpu_budget_bytes and p.fits
    assert p.host_bytes > full.host_bytes  # the blocks that did not fit are in host RAM
    # ... and without room on the host either, it does not fit
    assert not place(h, _gpu(vram, host_mib=1), n_ctx=256).fits


def test_headroom_applies_to_each_memory(wide_gguf: Path) -> None:
    h = read_gguf_header(wide_gguf)
    p = place(h, _gpu(1000, host_mib=2000), n_ctx=256, headroom=0.25)
    assert p.gpu_budget_bytes == int(1000 * 2**20 * 0.75)
    assert p.host_budget_bytes == int(2000 * 2**20 * 0.75)


def test_metal_budgets_the_working_set_not_all_of_unified_memory(wide_gguf: Path) -> None:
    h = read_gguf_header(wide_gguf)
    gpu_part = place(h, _gpu(4096), n_ctx=256).gpu_bytes
    mib = gpu_part // 2**20
    # unified memory of 3x the model, but a working set of half of it: not all layers go
    p = place(h, _gpu(3 * mib, host_mib=None, working_set_mib=mib // 2, backend="metal"),
              n_ctx=256)
    assert p.offload == "partial" and p.gpu_bytes <= p.gpu_budget_bytes
    # shared memory: the host's part is what the pool has left after the GPU's
    assert p.host_budget_bytes == int(3 * mib * 2**20) - p.gpu_bytes
    m2 = get_profile("apple-m2-16gb")
    assert m2.gpu_memory_bytes == m2.gpu_working_set_bytes < m2.memory_bytes


def test_a_bad_working_set_is_refused() -> None:
    with pytest.raises(ProfileError, match="gpu_working_set_bytes"):
        _gpu(100, working_set_mib=200, host_mib=None, backend="metal")
    with pytest.raises(ProfileError, match="compute_tflops"):
        _cpu(100, compute=-1.0)


def test_speed_is_bounded_by_the_slower_of_memory_and_compute(wide_gguf: Path) -> None:
    h = read_gguf_header(wide_gguf)
    fast = _cpu(4096, compute=10.0)
    slow = _cpu(4096, compute=0.01)
    e_fast = estimate_decode(h, fast, place(h, fast, n_ctx=256), n_past=16)
    e_slow = estimate_decode(h, slow, place(h, slow, n_ctx=256), n_past=16)
    assert e_fast.bound == "memory" and e_slow.bound == "compute"
    assert e_slow.tokens_per_s < e_fast.tokens_per_s
    # never faster than the bandwidth alone allows
    assert e_fast.tokens_per_s < fast.bandwidth_gbps * 1e9 / (h.tensor_bytes * 0.9)
    d = e_fast.to_dict()
    assert d["estimate"] is True and d["tokens_per_s"] > 0


def test_a_partial_offload_is_slower_than_a_full_one(wide_gguf: Path) -> None:
    h = read_gguf_header(wide_gguf)
    big, small = _gpu(4096), _gpu(place(h, _gpu(4096), n_ctx=256).gpu_bytes // 2 // 2**20)
    e_full = estimate_decode(h, big, place(h, big, n_ctx=256), n_past=16)
    e_part = estimate_decode(h, small, place(h, small, n_ctx=256), n_past=16)
    assert e_part.tokens_per_s < e_full.tokens_per_s
    # a longer context reads more of the KV cache per token
    e_long = estimate_decode(h, big, place(h, big, n_ctx=256), n_past=4096)
    assert e_long.memory_s > e_full.memory_s


def test_the_catalog_gpus_have_compute_figures() -> None:
    for name in ("rtx-4090-24gb", "rtx-3060-12gb", "apple-m2-16gb", "jetson-orin-nano-8gb",
                 "raspberry-pi-5-8gb"):
        assert (get_profile(name).compute_tflops or 0) > 0, name
    assert get_profile("rtx-4090-24gb").discrete_gpu
    assert not get_profile("jetson-orin-nano-8gb").discrete_gpu


def test_the_runtime_offloads_what_the_plan_says_fits(wide_gguf: Path) -> None:
    from edgeward.runtimes import check_backend, fit_gpu_layers

    h = read_gguf_header(wide_gguf)
    assert fit_gpu_layers(h, _gpu(4096), n_ctx=256, headroom=0.0) == 8  # all of them
    half = place(h, _gpu(4096), n_ctx=256).gpu_bytes // 2 // 2**20
    plan = place(h, _gpu(half), n_ctx=256)
    assert 0 < plan.gpu_layers < 8
    assert fit_gpu_layers(h, _gpu(half), n_ctx=256, headroom=0.0) == plan.gpu_layers
    assert fit_gpu_layers(h, _cpu(4096), n_ctx=256) == 0
    # a GPU profile that offloads nothing needs no GPU backend
    import dataclasses

    none = dataclasses.replace(_gpu(half), gpu_layers=0)
    assert check_backend(none, backends=frozenset({"cpu"})) is None


def test_an_untied_output_layer_that_stays_on_the_host_is_counted(tmp_path: Path) -> None:
    import gguf
    import numpy as np

    # the same shapes and type as the embeddings: it must not be taken for a tied copy
    path = tmp_path / "untied.gguf"
    w = gguf.GGUFWriter(str(path), "llama")
    w.add_block_count(2)
    w.add_embedding_length(256)
    w.add_head_count(4)
    w.add_feed_forward_length(512)
    w.add_context_length(512)
    rng = np.random.default_rng(0)
    w.add_tensor("token_embd.weight", rng.standard_normal((300, 256), dtype=np.float32))
    w.add_tensor("output.weight", rng.standard_normal((300, 256), dtype=np.float32))
    for i in range(2):
        w.add_tensor(f"blk.{i}.attn_q.weight", rng.standard_normal((256, 256), dtype=np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    h = read_gguf_header(path)
    from edgeward.runtimes import block_bytes

    parts = block_bytes(h)
    assert not parts.tied and parts.output == parts.embd
    no_room = place(h, _gpu(0 + 1), n_ctx=256)  # 1 MiB of VRAM: nothing offloaded
    assert no_room.gpu_layers == 0
    assert no_room.host_bytes >= parts.embd + parts.output
