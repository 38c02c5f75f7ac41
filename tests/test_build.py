"""The build: llama.cpp's CMake arguments for this CPU, and the Makefile agreeing with
pyproject.toml on the llama-cpp-python range."""

from __future__ import annotations

import importlib.util
import re
import tomllib
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parent.parent


def _script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("llama_cmake_args",
                                                  ROOT / "scripts" / "llama_cmake_args.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


SAPPHIRE_RAPIDS = ("flags\t\t: fpu sse2 avx f16c fma bmi1 avx2 bmi2 avx512f avx512dq avx512cd "
                   "avx512bw avx512vl avx_vnni avx512_bf16 avx512vbmi avx512_vnni amx_bf16 "
                   "amx_tile amx_int8\n")


def test_amx_is_never_enabled_and_the_native_build_is_off() -> None:
    s = _script()
    args = s.cmake_args(s.cpu_flags("processor\t: 0\n" + SAPPHIRE_RAPIDS))
    assert "-DGGML_NATIVE=OFF" in args
    assert {"-DGGML_AMX_TILE=OFF", "-DGGML_AMX_INT8=OFF", "-DGGML_AMX_BF16=OFF"} <= set(args)
    assert not any("AMX" in a and a.endswith("=ON") for a in args)
    assert {"-DGGML_AVX512=ON", "-DGGML_AVX2=ON", "-DGGML_AVX512_VNNI=ON"} <= set(args)


def test_only_what_the_cpu_reports_is_enabled() -> None:
    s = _script()
    avx2_only = s.cmake_args(s.cpu_flags("flags : sse2 avx avx2 fma f16c bmi2\n"))
    assert "-DGGML_AVX2=ON" in avx2_only and "-DGGML_AVX512=OFF" in avx2_only
    # AVX-512 needs the whole family ggml compiles with, not avx512f alone
    partial = s.cmake_args(s.cpu_flags("flags : avx avx2 avx512f avx512cd\n"))
    assert "-DGGML_AVX512=OFF" in partial
    assert s.cpu_flags("no flags line here\n") == set()


def test_makefile_builds_the_llama_cpp_python_range_pyproject_asks_for() -> None:
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    (wanted,) = [d for d in deps if d.startswith("llama-cpp-python")]
    makefile = (ROOT / "Makefile").read_text()
    m = re.search(r"^LLAMA_CPP\s*:=\s*(\S+)\s*$", makefile, re.MULTILINE)
    assert m is not None and m.group(1) == wanted.replace(" ", "")
