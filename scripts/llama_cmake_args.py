"""Print the CMake arguments that build llama.cpp (llama-cpp-python) for this machine's CPU.

llama.cpp's default build uses ``-march=native``. On x86-64 machines whose CPU reports AMX
(Intel Sapphire Rapids and later) that compiles AMX tile instructions in, and in virtual
machines that do not grant AMX state to processes the first matrix multiply dies with SIGILL
("Illegal instruction"). So on Linux/x86-64 we turn the native build off and enable each
instruction set the CPU reports in /proc/cpuinfo — AVX, AVX2, FMA, F16C, BMI2, AVX-VNNI and
the AVX-512 family — and never AMX. Elsewhere (ARM, macOS) nothing is printed: the default
native build is right there.

The Makefile uses this only when CMAKE_ARGS is not already set (a CUDA or Metal build sets its
own). Usage: ``python scripts/llama_cmake_args.py`` -> ``-DGGML_NATIVE=OFF -DGGML_AVX=ON ...``
"""

from __future__ import annotations

import platform
import sys
from pathlib import Path

# GGML option -> the /proc/cpuinfo flags it needs (all of them).
OPTIONS: dict[str, tuple[str, ...]] = {
    "GGML_AVX": ("avx",),
    "GGML_AVX2": ("avx2",),
    "GGML_FMA": ("fma",),
    "GGML_F16C": ("f16c",),
    "GGML_BMI2": ("bmi2",),
    "GGML_AVX_VNNI": ("avx_vnni",),
    # ggml's AVX512 switch compiles with -mavx512f -mavx512cd -mavx512vl -mavx512dq -mavx512bw
    "GGML_AVX512": ("avx512f", "avx512cd", "avx512vl", "avx512dq", "avx512bw"),
    "GGML_AVX512_VBMI": ("avx512vbmi",),
    "GGML_AVX512_VNNI": ("avx512_vnni",),
    "GGML_AVX512_BF16": ("avx512_bf16",),
}
NEVER = ("GGML_AMX_TILE", "GGML_AMX_INT8", "GGML_AMX_BF16")


def cpu_flags(cpuinfo: str) -> set[str]:
    """The flags of the first processor in /proc/cpuinfo text."""
    for line in cpuinfo.splitlines():
        if line.startswith("flags"):
            return set(line.partition(":")[2].split())
    return set()


def cmake_args(flags: set[str]) -> list[str]:
    """The ``-D`` arguments for a CPU with ``flags``."""
    args = ["-DGGML_NATIVE=OFF"]
    for option, needs in OPTIONS.items():
        args.append(f"-D{option}={'ON' if all(f in flags for f in needs) else 'OFF'}")
    args += [f"-D{option}=OFF" for option in NEVER]
    return args


def main() -> int:
    if sys.platform != "linux" or platform.machine().lower() not in ("x86_64", "amd64"):
        return 0
    try:
        flags = cpu_flags(Path("/proc/cpuinfo").read_text())
    except OSError:
        return 0
    if not flags:
        return 0
    print(" ".join(cmake_args(flags)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
