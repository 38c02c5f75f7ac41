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


def test_a_second_plan_reads_every_candidate_from_the_cache(tiny_gguf: Path,
                                                            tmp_path: Path) -> None:
    options = _options(tmp_path)
    first = plan_gguf(tiny_gguf, _box(1024), types=("Q8_0", "Q4_0"), options=options)
    assert not any(c.cached for c in first.candidates)
    other = HardwareProfile(name="other-box", display_name="another target",
                            memory_bytes=2**31, bandwidth_gbps=50.0, cpu_features=("neon",),
                            default_context=512)
    second = plan_gguf(tiny_gguf, other, types=("Q8_0", "Q4_0"), options=options)
    assert [c.to_dict()["cached"] for c in second.candidates] == [True, True]
    assert [c.kld_mean for c in second.candidates] == [c.kld_mean for c in first.candidates]
    assert [c.result.size_bytes for c in second.candidates] == \
        [c.result.size_bytes for c in first.candidates]
    # memory is predicted for the new target and context, not copied
    assert second.context == 512 and second.candidates[0].memory.n_ctx == 512
    # another evaluation text is another measurement
    text = tmp_path / "eval.txt"
    text.write_text("A different evaluation text, about a red fox and a lazy dog. " * 60)
    third = plan_gguf(tiny_gguf, other, types=("Q8_0",),
                      options=CompressOptions(eval=options.eval, cache_dir=options.cache_dir,
                                              eval_text=text))
    assert not third.candidates[0].cached


def test_out_after_plan_quantizes_only_the_choice(tiny_gguf: Path, tmp_path: Path) -> None:
    options = _options(tmp_path)
    plan_gguf(tiny_gguf, _box(1024), types=("Q8_0", "Q2_K"), options=options)
    out = tmp_path / "auto.gguf"
    report = compress_auto(tiny_gguf, out, _box(1024), types=("Q8_0", "Q2_K"), options=options)
    d = report.to_dict()
    assert all(c["cached"] for c in d["plan"]["candidates"])
    assert out.stat().st_size == d["size_bytes"] and d["quality"]["kld_mean"] > 0


def test_a_broken_cache_entry_is_measured_again(tiny_gguf: Path, tmp_path: Path) -> None:
    options = _options(tmp_path)
    plan_gguf(tiny_gguf, _box(1024), types=("Q8_0",), options=options)
    assert options.cache_dir is not None
    for record in (options.cache_dir / "candidates").glob("*/candidate.json"):
        record.write_text("{not json")
    again = plan_gguf(tiny_gguf, _box(1024), types=("Q8_0",), options=options)
    assert not again.candidates[0].cached and again.candidates[0].kld_mean is not None


def test_no_cache_dir_measures_every_time(tiny_gguf: Path, tmp_path: Path) -> None:
    options = CompressOptions(eval=EvalConfig(n_ctx=128, eval_tokens=256, top_k=64))
    for _ in range(2):
        plan = plan_gguf(tiny_gguf, _box(1024), types=("Q8_0",), options=options)
        assert not plan.candidates[0].cached


def test_refinements_reach_every_planned_candidate(tiny_gguf: Path, tmp_path: Path) -> None:
    # --prune-layers, --override and --pure with --profile were once computed and dropped
    from edgeward.compress import QuantRecipe
    from edgeward.runtimes import read_gguf_header

    out = tmp_path / "pruned.gguf"
    base = QuantRecipe(type="Q8_0", prune_layers=(1,), overrides=(("ffn_down", "Q4_0"),))
    report = compress_auto(tiny_gguf, out, _box(1024), types=("Q8_0", "Q4_0"),
                           options=_options(tmp_path), base=base)
    header = read_gguf_header(out)
    assert header.arch_value("block_count") == 1  # the tiny model has two blocks
    assert report.to_dict()["recipe"]["prune_layers"] == [1]
    assert header.tensor("blk.0.ffn_down.weight").type_name == "Q4_0"  # type: ignore[union-attr]


def test_a_gpu_profile_plans_f16_and_says_which_backend(tiny_gguf: Path, tmp_path: Path) -> None:
    from edgeward.compress import default_candidates
    from edgeward.hardware_profiles import get_profile

    gpu = get_profile("rtx-4090-24gb")
    assert default_candidates(gpu)[:2] == ("F16", "BF16")
    assert "F16" not in default_candidates(get_profile("raspberry-pi-5-8gb"))
    plan = plan_gguf(tiny_gguf, gpu, types=("F16", "Q8_0"), options=_options(tmp_path))
    d = plan.to_dict()
    assert d["backend"] == "cuda" and d["host_budget_bytes"] is not None
    assert d["budget_bytes"] == int(gpu.memory_bytes * 0.8)
    for c in d["candidates"]:
        assert c["backend"] == "cuda" and c["placement"]["offload"] == "full"
        assert c["speed"]["estimate"] is True
    assert d["choice"] == "F16"


def test_a_quantized_source_is_said_so_in_the_plan(tiny_gguf: Path, tmp_path: Path) -> None:
    from edgeward.compress import QuantRecipe, quantize

    q4 = tmp_path / "q4.gguf"
    quantize(tiny_gguf, q4, QuantRecipe(type="Q4_0"))
    plan = plan_gguf(q4, _box(1024), types=("Q8_0", "Q4_0"), options=_options(tmp_path))
    assert any("already quantized (Q4_0)" in w for w in plan.warnings)
    if plan.choice is not None and plan.choice.result.size_bytes > q4.stat().st_size:
        assert any("larger than the source" in w for w in plan.warnings)
    assert plan.to_dict()["warnings"] == plan.warnings
