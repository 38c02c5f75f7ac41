"""The auto-recipe: what fits, and the least-KLD choice among what fits."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from edgeward.compress import (
    CompressOptions,
    EvalConfig,
    choose,
    compress_auto,
    output_paths,
    plan_gguf,
)
from edgeward.errors import ConfigError, ResourceError
from edgeward.hardware_profiles import HardwareProfile


@dataclass
class _Result:
    size_bytes: int


@dataclass
class _Fake:
    fits: bool
    kld_mean: float | None
    result: _Result


def _c(fits: bool, kld: float | None, size: int) -> _Fake:
    return _Fake(fits, kld, _Result(size))


def test_choose_least_kld_among_those_that_fit() -> None:
    cands = [_c(False, 0.001, 300), _c(True, 0.05, 200), _c(True, 0.02, 250), _c(True, 0.3, 100)]
    choice, reason = choose(cands)  # type: ignore[arg-type]
    assert choice is cands[2]
    assert "least mean KLD" in reason


def test_choose_honours_max_kld_and_target_size() -> None:
    cands = [_c(True, 0.02, 250), _c(True, 0.05, 200), _c(True, 0.3, 100)]
    assert choose(cands, target_size=220)[0] is cands[1]  # type: ignore[arg-type]
    assert choose(cands, max_kld=0.01)[0] is None  # type: ignore[arg-type]
    assert choose([_c(False, 0.1, 1)])[0] is None  # type: ignore[arg-type, list-item]


def test_choose_without_measurements_takes_the_largest_that_fits() -> None:
    cands = [_c(True, None, 250), _c(True, None, 200), _c(False, None, 999)]
    choice, reason = choose(cands)  # type: ignore[arg-type]
    assert choice is cands[0]
    assert "not measured" in reason


def _box(memory_mib: int) -> HardwareProfile:
    return HardwareProfile(name=f"box-{memory_mib}", display_name="test box",
                           memory_bytes=memory_mib * 2**20, bandwidth_gbps=10.0,
                           cpu_features=("avx2",), default_context=256)


def _options(tmp_path: Path) -> CompressOptions:
    return CompressOptions(eval=EvalConfig(n_ctx=128, eval_tokens=256, top_k=64),
                           cache_dir=tmp_path / "cache")


def test_plan_on_the_tiny_model(tiny_gguf: Path, tmp_path: Path) -> None:
    plan = plan_gguf(tiny_gguf, _box(1024), types=("Q8_0", "Q4_0", "Q2_K"),
                     options=_options(tmp_path))
    d = plan.to_dict()
    assert d["profile"] == "box-1024" and d["context"] == 256
    assert [c["type"] for c in d["candidates"]] == ["Q8_0", "Q4_0", "Q2_K"]
    for c in d["candidates"]:
        assert {"type", "size_bytes", "predicted_memory_bytes", "fits", "kld_mean"} <= set(c)
        assert c["fits"] and c["kld_mean"] > 0
    best = min(d["candidates"], key=lambda c: c["kld_mean"])
    assert d["choice"] == best["type"]


def test_nothing_fits_is_a_clear_error_and_writes_nothing(tiny_gguf: Path, tmp_path: Path) -> None:
    out = tmp_path / "a.gguf"
    with pytest.raises(ResourceError, match="smallest candidate"):
        compress_auto(tiny_gguf, out, _box(1), types=("Q8_0", "Q2_K"), options=_options(tmp_path))
    assert not out.exists()
    assert not any(p.name.startswith(".edgeward-work") for p in tmp_path.iterdir())


def test_auto_installs_the_choice_with_report_card_and_chart(tiny_gguf: Path,
                                                             tmp_path: Path) -> None:
    out = tmp_path / "auto.gguf"
    report = compress_auto(tiny_gguf, out, _box(1024), types=("Q8_0", "Q2_K"),
                           options=_options(tmp_path))
    paths = output_paths(out)
    assert out.is_file() and paths["report"].is_file() and paths["card"].is_file()
    assert paths["chart"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    d = report.to_dict()
    assert d["plan"]["choice"] == d["recipe"]["type"] == "Q8_0"
    assert "Q8_0" in paths["card"].read_text()


def test_bad_headroom(tiny_gguf: Path, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="headroom"):
        plan_gguf(tiny_gguf, _box(100), headroom=1.5, options=_options(tmp_path))
