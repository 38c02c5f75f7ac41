"""Build a :class:`HardwareProfile` for the machine edgeward runs on.

Linux reads ``/proc/cpuinfo``, ``/proc/meminfo`` and the cgroup limits (a container's memory
and CPU quota are what a model really gets); macOS asks ``sysctl``; NVIDIA GPUs are found with
``nvidia-smi``. Memory bandwidth is measured with a short multi-threaded numpy copy. Every
figure is labelled as measured (read off this machine) or taken from a spec (the catalog entry
of a recognised GPU).
"""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgeward.hardware_profiles._catalog import catalog
from edgeward.hardware_profiles._schema import Backend, HardwareProfile

__all__ = [
    "DetectedProfile",
    "detect_profile",
    "measure_bandwidth_gbps",
    "parse_cpuinfo",
    "parse_nvidia_smi",
]

# /proc/cpuinfo flag -> our feature name. x86 lists "flags", Arm lists "Features".
_X86_FLAGS = {
    "sse4_2": "sse4_2",
    "avx": "avx",
    "avx2": "avx2",
    "fma": "fma",
    "f16c": "f16c",
    "avx_vnni": "avx_vnni",
    "avx512f": "avx512f",
    "avx512bw": "avx512bw",
    "avx512_vnni": "avx512_vnni",
    "avx512_bf16": "avx512_bf16",
    "amx_tile": "amx",
    "amx_int8": "amx",
    "amx_bf16": "amx",
}
_ARM_FLAGS = {
    "asimd": "neon",
    "asimddp": "dotprod",
    "i8mm": "i8mm",
    "sve": "sve",
    "asimdhp": "fp16",
}
_BANDWIDTH_BUDGET_S = 1.5  # the copy benchmark stops after this long (the issue allows 2 s)
_BANDWIDTH_BUFFER_BYTES = 128 * 1024 * 1024  # large enough to defeat the caches


@dataclass(frozen=True)
class DetectedProfile:
    """A profile of the local machine plus what was measured and what came from a spec.

    Attributes:
        profile: the profile itself.
        measured: names of the profile fields read off this machine.
        from_spec: names of fields taken from a catalog spec (e.g. a recognised GPU's bandwidth).
        details: raw facts behind the figures (CPU model, memory limit source, GPU list).
    """

    profile: HardwareProfile
    measured: tuple[str, ...]
    from_spec: tuple[str, ...]
    details: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        """The profile object plus ``measured``, ``from_spec`` and ``details``."""
        out = self.profile.to_dict()
        out["measured"] = list(self.measured)
        out["from_spec"] = list(self.from_spec)
        out["details"] = self.details
        return out


def detect_profile(*, measure_bandwidth: bool = True, name: str = "local") -> DetectedProfile:
    """Detect the local machine.

    Args:
        measure_bandwidth: run the memory-copy benchmark (up to ~2 s). When off, the
            bandwidth is a conservative placeholder and is not listed as measured.
        name: the slug of the resulting profile.

    Returns:
        The detected profile, with the measured fields named.
    """
    system = platform.system()
    measured: list[str] = []
    from_spec: list[str] = []
    details: dict[str, Any] = {"system": system, "machine": platform.machine()}

    if system == "Darwin":
        cpu_model, features, cores, memory = _darwin_facts()
    else:
        cpu_model, features, cores, memory, mem_source = _linux_facts()
        details["memory_limit_source"] = mem_source
    details["cpu_model"] = cpu_model
    measured += ["cpu_features", "cores", "memory_bytes"]

    bandwidth = 10.0  # GB/s; a floor used only when the benchmark is skipped
    if measure_bandwidth:
        bandwidth = measure_bandwidth_gbps(threads=cores)
        measured.append("bandwidth_gbps")
        details["bandwidth_method"] = (
            f"numpy copy, {cores} thread(s), {_BANDWIDTH_BUFFER_BYTES // 2**20} MiB buffer, "
            "best of repeated runs, (read + write) bytes / s"
        )

    backend: Backend = "cpu"
    is_apple_silicon = system == "Darwin" and platform.machine() == "arm64"
    if is_apple_silicon:
        backend = "metal"
    gpu: dict[str, Any] = {}
    spec: HardwareProfile | None = None
    gpus = _nvidia_gpus()
    details["gpus"] = gpus
    if gpus:
        gpu = gpus[0]
        backend = "cuda"
        measured += ["gpu_name", "gpu_compute_capability"]
        spec = _catalog_gpu(gpu["name"])
        if spec is not None:
            if "bandwidth_gbps" in measured:
                # What we measured is the host's RAM; the GPU reads its VRAM.
                measured.remove("bandwidth_gbps")
                details["host_bandwidth_gbps"] = round(bandwidth, 1)
            bandwidth = spec.bandwidth_gbps
            from_spec.append("bandwidth_gbps")
            details["bandwidth_spec_profile"] = spec.name

    clock_ghz = _cpu_clock_ghz()
    compute: float | None = None
    if clock_ghz is not None and not gpu:
        compute = round(cores * clock_ghz * cpu_flops_per_cycle(features) / 1000, 3)
        details["compute_method"] = (
            f"{cores} core(s) x {clock_ghz:.2f} GHz x {cpu_flops_per_cycle(features)} FP32 "
            "FLOP/cycle (from the SIMD features)")
    elif spec is not None:
        compute = spec.compute_tflops

    profile = HardwareProfile(
        name=name,
        display_name=f"this machine ({cpu_model}{', ' + gpu['name'] if gpu else ''})",
        memory_bytes=gpu["memory_bytes"] if gpu else memory,
        system_memory_bytes=memory if gpu else None,
        bandwidth_gbps=round(bandwidth, 1),
        backend=backend,
        cpu_features=tuple(sorted(features)),
        cores=cores,
        gpu_name=gpu.get("name"),
        gpu_compute_capability=gpu.get("compute_capability"),
        compute_tflops=compute,
        default_context=4096,
        notes="detected by `edgeward profile detect`",
    )
    return DetectedProfile(profile, tuple(measured), tuple(from_spec), details)


def measure_bandwidth_gbps(*, threads: int = 1, budget_s: float = _BANDWIDTH_BUDGET_S) -> float:
    """Measure memory bandwidth with a multi-threaded numpy copy.

    Each thread copies its own slice of a buffer much larger than the caches; numpy releases
    the GIL inside the copy, so the threads run in parallel. Counts read plus write bytes.

    Args:
        threads: parallel copiers (one per core reaches the bandwidth a model sees).
        budget_s: stop repeating after this many seconds.

    Returns:
        The best observed bandwidth in GB/s (10**9 bytes per second).
    """
    import numpy as np

    threads = max(1, threads)
    n = _BANDWIDTH_BUFFER_BYTES // 8
    src = np.ones(n, dtype=np.float64)
    dst = np.empty_like(src)
    bounds = [(i * n // threads, (i + 1) * n // threads) for i in range(threads)]

    def copy_slice(lo: int, hi: int) -> None:
        np.copyto(dst[lo:hi], src[lo:hi])

    def one_pass() -> float:
        workers = [threading.Thread(target=copy_slice, args=b) for b in bounds]
        t0 = time.perf_counter()
        for w in workers:
            w.start()
        for w in workers:
            w.join()
        return time.perf_counter() - t0

    one_pass()  # fault the pages in; the first pass measures the kernel, not the memory
    best = float("inf")
    deadline = time.perf_counter() + budget_s
    runs = 0
    while runs < 3 or time.perf_counter() < deadline:
        best = min(best, one_pass())
        runs += 1
        if runs >= 50:
            break
    return 2 * src.nbytes / best / 1e9


def cpu_flops_per_cycle(features: set[str] | tuple[str, ...]) -> int:
    """Peak FP32 FLOP per cycle per core from the SIMD features: two FMA pipes of the widest
    vector (AVX-512: 64, AVX2 with FMA: 32, NEON: 16, otherwise 8)."""
    if "avx512f" in features:
        return 64
    if "avx2" in features and "fma" in features:
        return 32
    if "neon" in features:
        return 16
    return 8


def _cpu_clock_ghz() -> float | None:
    """The CPU's clock in GHz: cpufreq's maximum, else /proc/cpuinfo's ``cpu MHz``."""
    top = _read_first(Path("/sys/devices/system/cpu/cpu0/cpufreq/cpuinfo_max_freq"))
    if top and top.isdigit():
        return int(top) / 1e6
    try:
        text = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip().lower() == "cpu mhz":
            try:
                return float(value) / 1000
            except ValueError:
                return None
    return None


def _linux_facts() -> tuple[str, set[str], int, int, str]:
    try:
        cpuinfo = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
    except OSError:
        cpuinfo = ""
    cpu_model, features = parse_cpuinfo(cpuinfo)
    memory, source = _linux_memory()
    return cpu_model or platform.machine(), features, _linux_cores(), memory, source


def parse_cpuinfo(text: str) -> tuple[str, set[str]]:
    """The CPU model name and our feature names from ``/proc/cpuinfo`` text (x86 or Arm)."""
    cpu_model = ""
    features: set[str] = set()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip().lower()
        if key in ("model name", "hardware") and not cpu_model:
            cpu_model = value.strip()
        elif key == "flags":
            features |= {_X86_FLAGS[f] for f in value.split() if f in _X86_FLAGS}
        elif key == "features":
            features |= {_ARM_FLAGS[f] for f in value.split() if f in _ARM_FLAGS}
    return cpu_model, features


def _linux_cores() -> int:
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cores = os.cpu_count() or 1
    quota = _read_first(Path("/sys/fs/cgroup/cpu.max"))
    if quota:
        limit, _, period = quota.partition(" ")
        if limit != "max" and period:
            cores = max(1, min(cores, int(int(limit) / int(period))))
    return cores


def _linux_memory() -> tuple[int, str]:
    total = 0
    for line in (_read_first(Path("/proc/meminfo"), whole=True) or "").splitlines():
        if line.startswith("MemTotal:"):
            total = int(line.split()[1]) * 1024
            break
    source = "/proc/meminfo MemTotal"
    for path in (Path("/sys/fs/cgroup/memory.max"),
                 Path("/sys/fs/cgroup/memory/memory.limit_in_bytes")):
        value = _read_first(path)
        if value and value.isdigit() and 0 < int(value) < total:
            total, source = int(value), str(path)
            break
    return total, source


def _darwin_facts() -> tuple[str, set[str], int, int]:
    def sysctl(key: str) -> str:
        try:
            return subprocess.run(["sysctl", "-n", key], capture_output=True, text=True,
                                  timeout=5, check=False).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return ""

    cpu_model = sysctl("machdep.cpu.brand_string") or platform.machine()
    cores = int(sysctl("hw.physicalcpu") or os.cpu_count() or 1)
    memory = int(sysctl("hw.memsize") or 0)
    features: set[str] = set()
    if platform.machine() == "arm64":
        features.add("neon")
        for key, name in (("hw.optional.arm.FEAT_DotProd", "dotprod"),
                          ("hw.optional.arm.FEAT_I8MM", "i8mm"),
                          ("hw.optional.arm.FEAT_FP16", "fp16")):
            if sysctl(key) == "1":
                features.add(name)
    else:
        flags = (sysctl("machdep.cpu.features") + " " + sysctl("machdep.cpu.leaf7_features"))
        for flag in flags.lower().replace(".", "_").split():
            if flag in _X86_FLAGS:
                features.add(_X86_FLAGS[flag])
    return cpu_model, features, cores, memory


def _nvidia_gpus(run: Callable[..., Any] = subprocess.run) -> list[dict[str, Any]]:
    """GPUs reported by ``nvidia-smi``; empty when there is none or no driver."""
    if shutil.which("nvidia-smi") is None:
        return []
    try:
        proc = run(
            ["nvidia-smi", "--query-gpu=name,memory.total,compute_cap",
             "--format=csv,noheader,nounits"],
            capture_output=True, text=True, timeout=10, check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return []
    if proc.returncode != 0:
        return []
    return parse_nvidia_smi(proc.stdout)


def parse_nvidia_smi(text: str) -> list[dict[str, Any]]:
    """Parse ``nvidia-smi --query-gpu=name,memory.total,compute_cap --format=csv,...`` output."""
    gpus = []
    for line in text.splitlines():
        parts = [p.strip() for p in line.split(",")]
        if len(parts) != 3:
            continue
        name, mem_mib, cc = parts
        try:
            memory = int(float(mem_mib)) * 2**20
        except ValueError:
            continue
        gpus.append({"name": name, "memory_bytes": memory,
                     "compute_capability": cc if cc and cc[0].isdigit() else None})
    return gpus


def _catalog_gpu(gpu_name: str) -> HardwareProfile | None:
    """The catalog profile whose GPU has this name (case- and vendor-prefix-insensitive)."""
    wanted = _normalise_gpu(gpu_name)
    matches = [p for p in catalog() if p.gpu_name and _normalise_gpu(p.gpu_name) == wanted]
    # Several profiles sharing one GPU name (the Jetson modules) do not identify a spec.
    return matches[0] if len(matches) == 1 else None


def _normalise_gpu(name: str) -> str:
    return " ".join(name.lower().replace("nvidia", "").replace("geforce", "").split())


def _read_first(path: Path, *, whole: bool = False) -> str | None:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError:
        return None
    return text if whole else text.strip()
