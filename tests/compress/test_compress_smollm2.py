"""Compression of the real SmolLM2-135M-Instruct: fallbacks, memory prediction against
llama.cpp's allocation, and the auto-recipe on three deliberately small profiles."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from edgeward.cli import main
from edgeward.compress import (
    CompressOptions,
    EvalConfig,
    QuantRecipe,
    measure_allocation,
    plan_gguf,
    predict_memory,
    quantize,
)
from edgeward.hardware_profiles import HardwareProfile
from edgeward.runtimes import read_gguf_header

pytestmark = pytest.mark.integration

TYPES = ("Q8_0", "Q4_K_M", "Q3_K_M", "Q2_K")


@pytest.fixture(scope="module")
def q4km(smollm2_gguf: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("smol") / "smollm2-q4km.gguf"
    result = quantize(smollm2_gguf, out, QuantRecipe(type="Q4_K_M"))
    assert result.requantized  # the packaged model is Q4_1
    # 576-wide rows are not multiples of 256: llama.cpp falls back, and we say so.
    assert any(f.columns == 576 and f.wanted == "Q4_K" for f in result.fallback_tensors)
    return out


@pytest.mark.parametrize("n_ctx", [512, 2048, 8192])
def test_memory_prediction_within_10_percent(q4km: Path, n_ctx: int) -> None:
    predicted = predict_memory(read_gguf_header(q4km), n_ctx=n_ctx).total
    measured = measure_allocation(q4km, n_ctx=n_ctx)["total"]
    assert abs(predicted - measured) / measured < 0.10, (predicted, measured)


def _profile(name: str, budget: int) -> HardwareProfile:
    return HardwareProfile(name=name, display_name=name, memory_bytes=budget,
                           bandwidth_gbps=17.0, cpu_features=("avx2",), default_context=512)


def test_auto_recipe_picks_the_least_kld_candidate_that_fits(smollm2_gguf: Path,
                                                              tmp_path: Path) -> None:
    options = CompressOptions(eval=EvalConfig(n_ctx=128, eval_tokens=256),
                              cache_dir=tmp_path / "cache")
    # What each candidate needs (no quality measurement needed for that).
    probe = plan_gguf(smollm2_gguf, _profile("roomy", 1 << 40), types=TYPES,
                      options=CompressOptions(evaluate=False), headroom=0.0)
    need = sorted(c.memory.total for c in probe.candidates)
    assert len(set(need)) == len(TYPES)
    # Three small budgets, each between two candidates' needs: 1, 2 and 3 candidates fit.
    budgets = [(need[i] + need[i + 1]) // 2 for i in range(3)]
    for i, budget in enumerate(budgets):
        plan = plan_gguf(smollm2_gguf, _profile(f"small-{i}", budget), types=TYPES,
                         options=options, headroom=0.0)
        fitting = [c for c in plan.candidates if c.memory.total <= budget]
        assert [c.fits for c in plan.candidates] == [c.memory.total <= budget
                                                    for c in plan.candidates]
        assert len(fitting) == i + 1
        best = min(fitting, key=lambda c: c.kld_mean or 0.0)
        assert plan.choice is not None
        assert plan.choice.recipe.label == best.recipe.label
        assert plan.choice.kld_mean == min(c.kld_mean for c in fitting if c.kld_mean)


def test_cli_type_json_interface(smollm2_gguf: Path, tmp_path: Path,
                                 capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "s-q8.gguf"
    code = main(["compress", str(smollm2_gguf), "--type", "Q8_0", "--out", str(out),
                 "--eval-tokens", "512", "--json"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    d = json.loads(captured.out)
    for key in ("artifact", "size_bytes", "bpw", "type", "fallback_tensors", "quality",
                "timings"):
        assert key in d
    assert d["type"] == "Q8_0" and d["size_bytes"] == out.stat().st_size
    q = d["quality"]
    for key in ("ppl", "ppl_ref", "kld_mean", "kld_p99", "top1_agreement", "eval_tokens"):
        assert key in q
    assert 0 < q["kld_mean"] < 0.05 and q["top1_agreement"] > 0.9
    assert d["source"]["license"] == "apache-2.0"
