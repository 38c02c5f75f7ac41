"""Local detection: parsing of /proc and nvidia-smi, and a real detect on this machine."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from edgeward.hardware_profiles import detect_profile
from edgeward.hardware_profiles._detect import (
    measure_bandwidth_gbps,
    parse_cpuinfo,
    parse_nvidia_smi,
)

X86 = """processor\t: 0
vendor_id\t: GenuineIntel
model name\t: Intel(R) Xeon(R) Platinum 8480+
flags\t\t: fpu sse4_2 avx avx2 fma f16c avx512f avx512bw avx512_vnni amx_tile amx_int8 avx_vnni
processor\t: 1
model name\t: Intel(R) Xeon(R) Platinum 8480+
"""
ARM = """processor\t: 0
Features\t: fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid asimddp
CPU implementer\t: 0x41
"""


def test_parse_cpuinfo_x86() -> None:
    model, features = parse_cpuinfo(X86)
    assert model == "Intel(R) Xeon(R) Platinum 8480+"
    assert features == {"sse4_2", "avx", "avx2", "fma", "f16c", "avx512f", "avx512bw",
                        "avx512_vnni", "amx", "avx_vnni"}


def test_parse_cpuinfo_arm() -> None:
    _, features = parse_cpuinfo(ARM)
    assert features == {"neon", "fp16", "dotprod"}


def test_parse_nvidia_smi() -> None:
    out = "NVIDIA GeForce RTX 4090, 24564, 8.9\nNVIDIA GeForce RTX 3060, 12288, 8.6\ngarbage\n"
    gpus = parse_nvidia_smi(out)
    assert [g["name"] for g in gpus] == ["NVIDIA GeForce RTX 4090", "NVIDIA GeForce RTX 3060"]
    assert gpus[0]["memory_bytes"] == 24564 * 2**20
    assert gpus[1]["compute_capability"] == "8.6"


def test_detect_reads_this_machine() -> None:
    detected = detect_profile(measure_bandwidth=False)
    p = detected.profile
    assert p.cores is not None
    assert 1 <= p.cores <= len(os.sched_getaffinity(0))
    meminfo = Path("/proc/meminfo").read_text().split("\n")[0].split()
    assert 0 < p.memory_bytes <= int(meminfo[1]) * 1024
    assert {"cores", "memory_bytes", "cpu_features"} <= set(detected.measured)
    assert "bandwidth_gbps" not in detected.measured  # skipped, so not claimed as measured
    d = detected.to_dict()
    assert d["cores"] == p.cores and "measured" in d and "from_spec" in d


def test_bandwidth_measurement_is_bounded_and_plausible() -> None:
    t0 = time.perf_counter()
    gbps = measure_bandwidth_gbps(threads=2, budget_s=0.3)
    elapsed = time.perf_counter() - t0
    assert 0.5 < gbps < 2000
    assert elapsed < 5  # a generous bound: the budget is 0.3 s plus setup


def test_detect_with_a_fake_gpu_takes_bandwidth_from_the_catalog(
        monkeypatch: pytest.MonkeyPatch) -> None:
    from edgeward.hardware_profiles import _detect

    monkeypatch.setattr(_detect, "_nvidia_gpus", lambda: parse_nvidia_smi(
        "NVIDIA GeForce RTX 3060, 12288, 8.6"))
    detected = detect_profile(measure_bandwidth=False)
    p = detected.profile
    assert p.backend == "cuda"
    assert p.memory_bytes == 12288 * 2**20
    assert p.system_memory_bytes is not None
    assert p.bandwidth_gbps == 360.0
    assert detected.from_spec == ("bandwidth_gbps",)
    assert p.gpu_compute_capability == "8.6"


def test_peak_flops_per_cycle_follows_the_widest_vector() -> None:
    from edgeward.hardware_profiles import cpu_flops_per_cycle

    assert cpu_flops_per_cycle({"avx512f", "avx2", "fma"}) == 64
    assert cpu_flops_per_cycle({"avx2", "fma"}) == 32
    assert cpu_flops_per_cycle({"avx2"}) == 8  # no FMA: no fused multiply-add pipes
    assert cpu_flops_per_cycle(("neon", "dotprod")) == 16


def test_the_detected_cpu_has_a_compute_figure() -> None:
    from edgeward.hardware_profiles import detect_profile

    d = detect_profile(measure_bandwidth=False)
    if d.profile.backend == "cpu":
        assert d.profile.compute_tflops is not None and d.profile.compute_tflops > 0
        assert "compute_method" in d.details
