"""Structured pruning (FFN neurons) and the ONNX auto-recipe/plan, on the real MiniLM and
SmolLM2: pruning really shrinks the matrices, keeps the important neurons, and reports its
quality cost; the plan's choice follows its own rule; bad input is refused with nothing left."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from edgeward.compress._onnx_eval import encoder_quality
from edgeward.compress._onnx_export import export_onnx
from edgeward.compress._onnx_pipeline import OnnxOptions, candidate_kinds, plan_onnx
from edgeward.errors import ConfigError
from edgeward.hardware_profiles import HardwareProfile, resolve_profile

pytest.importorskip("optimum.exporters.onnx", reason="the compress extra is not installed")

TEXTS = ["The quick brown fox jumps over the lazy dog near the river bank.",
         "Edge devices run small language models locally, without any cloud service.",
         "A signed artifact is verified against the trust store before it is loaded.",
         "Heavy rain is expected in the afternoon, with strong winds along the coast.",
         "Quantization trades numerical precision for a smaller and faster model."] * 3


def _onnx_bytes(d: Path) -> int:
    return sum(p.stat().st_size for p in d.glob("*.onnx*"))


def test_kept_neurons_round_up_to_a_tile() -> None:
    from edgeward.compress._onnx_prune import kept_neurons

    assert kept_neurons(1536, 0.25) == 1152
    assert kept_neurons(1536, 0.5) == 768
    assert kept_neurons(1000, 0.33) == 672  # 670 rounded up to a multiple of 16
    assert kept_neurons(20, 0.99) == 16 and kept_neurons(8, 0.5) == 8


def test_pruning_minilm_shrinks_it_and_keeps_what_matters(
        minilm_dir: Path, minilm_onnx: Path, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    from edgeward.compress import _onnx_prune

    info = _onnx_prune.prune_ffn(minilm_dir, tmp_path / "hf", 0.25, texts=TEXTS)
    assert info["ffn_neurons_before"] == 1536 and info["ffn_neurons_after"] == 1152
    assert info["parameters_after"] < info["parameters_before"]
    config = json.loads((tmp_path / "hf" / "config.json").read_text())
    assert config["intermediate_size"] == 1152
    assert (tmp_path / "hf" / "tokenizer.json").is_file()
    pruned = export_onnx(tmp_path / "hf", tmp_path / "onnx", task="feature-extraction")
    # 6 layers x (up + down) x 384 x 384 fp32 weights fewer
    gone = _onnx_bytes(minilm_onnx) - _onnx_bytes(pruned)
    assert 0.95 * (6 * 2 * 384 * 384 * 4) <= gone <= 1.05 * (6 * 2 * 384 * 384 * 4), gone
    kept = encoder_quality(minilm_onnx, pruned)
    assert kept["cosine_mean"] >= 0.85, kept
    # the ranking matters: dropping the *most* important quarter instead costs far more
    real_topk = _onnx_prune.torch_topk
    monkeypatch.setattr(_onnx_prune, "torch_topk", lambda score, k: real_topk(-score, k))
    _onnx_prune.prune_ffn(minilm_dir, tmp_path / "hf-worst", 0.25, texts=TEXTS)
    worst = export_onnx(tmp_path / "hf-worst", tmp_path / "onnx-worst",
                        task="feature-extraction")
    assert encoder_quality(minilm_onnx, worst)["cosine_mean"] < kept["cosine_mean"] - 0.05


def test_pruning_refuses_bad_input_and_leaves_nothing(minilm_dir: Path, tmp_path: Path) -> None:
    from edgeward.compress._onnx_prune import prune_ffn

    for fraction in (0.0, 1.0, -0.1):
        with pytest.raises(ConfigError, match="between 0 and 1"):
            prune_ffn(minilm_dir, tmp_path / "x", fraction, texts=TEXTS)
    other = tmp_path / "gpt2"
    other.mkdir()
    (other / "config.json").write_text(json.dumps({"model_type": "gpt2"}))
    with pytest.raises(ConfigError, match="not 'gpt2'"):
        prune_ffn(other, tmp_path / "x", 0.5, texts=TEXTS)
    (tmp_path / "taken").mkdir()
    with pytest.raises(ConfigError, match="--force"):
        prune_ffn(minilm_dir, tmp_path / "taken", 0.5, texts=TEXTS)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["gpt2", "taken"]


def test_pruning_a_causal_lm(smollm2_hf: Path, tmp_path: Path) -> None:
    from edgeward.compress._onnx_prune import prune_ffn

    info = prune_ffn(smollm2_hf, tmp_path / "hf", 0.5, texts=TEXTS[:5])
    assert info["model_type"] == "llama" and info["layers"] == 30
    assert info["ffn_neurons_after"] == info["ffn_neurons_before"] // 2
    # gate, up and down lose half their neurons in each of the 30 blocks
    hidden = json.loads((smollm2_hf / "config.json").read_text())["hidden_size"]
    removed = 3 * hidden * (info["ffn_neurons_before"] - info["ffn_neurons_after"]) * 30
    assert info["parameters_before"] - info["parameters_after"] == removed
    assert (tmp_path / "hf" / "generation_config.json").is_file()


def test_the_cli_prunes_then_exports(minilm_dir: Path, tmp_path: Path,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    from edgeward.cli import main

    capsys.readouterr()
    assert main(["compress", str(minilm_dir), "--format", "onnx", "--type", "fp32",
                 "--prune-ffn", "0.5", "--out", str(tmp_path / "p"), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["pruning"]["ffn_neurons_after"] == 768
    assert report["size_ratio"] < 0.85  # 6 layers x 2 x 384 x 768 weights gone of 22.7M
    # quality is measured against the unpruned fp32 export, kept beside the output
    assert report["reference"].endswith("p.fp32") and 0.5 < report["quality"]["cosine_mean"] < 1
    card = (tmp_path / "p" / "model-card.md").read_text()
    assert "768 per layer" in card and "cosine" in card
    # an ONNX export cannot be pruned: the weights must be rewritten before export
    assert main(["compress", str(tmp_path / "p"), "--format", "onnx", "--type", "fp32",
                 "--prune-ffn", "0.5", "--out", str(tmp_path / "q")]) == 3
    assert not (tmp_path / "q").exists()


def _tight(memory_mib: int) -> HardwareProfile:
    return HardwareProfile(name=f"tight-{memory_mib}", display_name="test",
                           memory_bytes=memory_mib * 2**20, bandwidth_gbps=10.0,
                           cpu_features=("avx2",))


def test_the_plan_measures_every_candidate_and_chooses_by_its_rule(minilm_onnx: Path) -> None:
    # fp32 (87 MiB + 64 MiB runtime) does not fit 160 MiB minus 20 %; int8 (22 + 64) does
    plan = plan_onnx(minilm_onnx, _tight(160), options=OnnxOptions(
        calibration_texts=TEXTS, min_cosine=0.95))
    types = [r["type"] for r in plan["candidates"]]
    assert types == ["fp32", *candidate_kinds(_tight(160), "feature-extraction")]
    by = {r["type"]: r for r in plan["candidates"]}
    assert not by["fp32"]["fits"] and by["int8-dynamic"]["fits"]
    for r in plan["candidates"]:
        assert r["fits"] == (r["predicted_memory_bytes"] <= plan["memory_budget_bytes"])
        assert (r["quality"] is None) == (r["type"] == "fp32")
    expected = next(r["type"] for r in plan["candidates"][1:]
                    if r["fits"] and r["quality"]["cosine_mean"] >= 0.95)
    assert plan["choice"] == expected
    # an impossible quality floor: nothing is chosen, and the reason says why
    strict = plan_onnx(minilm_onnx, _tight(160), kinds=["int8-dynamic"],
                       options=OnnxOptions(min_cosine=1.0))
    assert strict["choice"] is None and "quality floor" in strict["reason"]
    assert candidate_kinds(resolve_profile("jetson-orin-nano-8gb"),
                           "feature-extraction")[0] == "fp16"
    assert "int8-static" not in candidate_kinds(_tight(160), "text-generation-with-past")


def test_the_cli_plans_and_auto_compresses_onnx(minilm_onnx: Path, tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    from edgeward.cli import main

    profile = tmp_path / "tight.toml"
    profile.write_text('name = "tight"\ndisplay_name = "a tight box"\n'
                       f'memory_bytes = {160 * 2**20}\n'
                       'bandwidth_gbps = 10.0\ncpu_features = ["avx2"]\n')
    capsys.readouterr()
    assert main(["compress", str(minilm_onnx), "--format", "onnx", "--profile", str(profile),
                 "--plan", "--min-cosine", "0.95", "--json"]) == 0
    plan = json.loads(capsys.readouterr().out)
    assert plan["choice"] in ("int8-dynamic", "int8-static", "int4")
    assert sorted(tmp_path.iterdir()) == [profile]  # a plan writes nothing
    assert main(["compress", str(minilm_onnx), "--format", "onnx", "--profile", str(profile),
                 "--min-cosine", "0.95", "--out", str(tmp_path / "auto"), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["type"] == plan["choice"] and report["plan"]["choice"] == plan["choice"]
    assert (tmp_path / "auto" / "model.onnx").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["auto", "auto.behaviour.json",
                                                          "tight.toml"]
    shutil.rmtree(tmp_path / "auto")
    (tmp_path / "auto.behaviour.json").unlink()
    # nothing fits: a clear error, nothing written
    profile.write_text(profile.read_text().replace(str(160 * 2**20), str(50 * 2**20)))
    assert main(["compress", str(minilm_onnx), "--format", "onnx", "--profile", str(profile),
                 "--out", str(tmp_path / "auto")]) == 3
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tight.toml"]
