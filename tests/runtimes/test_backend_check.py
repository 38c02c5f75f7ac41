"""A GPU profile on a llama.cpp build without its backend: refused, or a loud CPU fallback."""

from __future__ import annotations

from pathlib import Path

import pytest

from edgeward.errors import RuntimeBackendError
from edgeward.hardware_profiles import HardwareProfile, get_profile
from edgeward.runtimes import LlamaCppRuntime, check_backend, llama_backends, open_runtime


def test_this_build_has_the_cpu_backend() -> None:
    assert "cpu" in llama_backends()


def test_a_cpu_profile_or_none_needs_nothing() -> None:
    assert check_backend(None) is None
    assert check_backend(get_profile("raspberry-pi-5-8gb"), backends=frozenset({"cpu"})) is None


def test_a_missing_gpu_backend_is_refused_with_the_fix() -> None:
    gpu = get_profile("rtx-4090-24gb")
    with pytest.raises(RuntimeBackendError) as e:
        check_backend(gpu, backends=frozenset({"cpu"}))
    msg = str(e.value)
    assert "cuda" in msg and "-DGGML_CUDA=on" in msg and "--allow-cpu-fallback" in msg
    warning = check_backend(gpu, backends=frozenset({"cpu"}), allow_cpu_fallback=True)
    assert warning is not None and "running on the CPU" in warning
    assert check_backend(gpu, backends=frozenset({"cpu", "cuda"})) is None
    metal = get_profile("apple-m2-16gb")
    with pytest.raises(RuntimeBackendError, match="-DGGML_METAL=on"):
        check_backend(metal, backends=frozenset({"cpu", "cuda"}))


@pytest.mark.skipif("cuda" in llama_backends(), reason="this build has CUDA")
def test_loading_for_a_gpu_profile_without_its_backend(tiny_gguf: Path) -> None:
    gpu = get_profile("rtx-4090-24gb")
    with pytest.raises(RuntimeBackendError, match="cuda backend"):
        open_runtime(tiny_gguf, gpu, context_length=64)
    rt = open_runtime(tiny_gguf, gpu, context_length=64, allow_cpu_fallback=True)
    try:
        assert isinstance(rt, LlamaCppRuntime)
        assert any("running on the CPU" in w for w in rt.load_warnings)
    finally:
        rt.unload()


def test_threads_beyond_this_machines_cores_are_capped(tiny_gguf: Path) -> None:
    many = HardwareProfile(name="many-cores", display_name="a big box", memory_bytes=2**33,
                           bandwidth_gbps=100.0, cores=4096, default_context=256)
    rt = open_runtime(tiny_gguf, many, context_length=64)
    try:
        assert isinstance(rt, LlamaCppRuntime)
        assert any("4096 threads" in w for w in rt.load_warnings)
        assert rt._threads < 4096
    finally:
        rt.unload()
