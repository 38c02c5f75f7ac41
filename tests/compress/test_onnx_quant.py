"""ONNX Runtime quantization of the real MiniLM encoder (exported by optimum): every kind
writes a loadable model directory, smaller than fp32 where it should be, with its quality
against fp32 measured (cosine, nearest neighbours); bad input is refused with nothing left."""

from __future__ import annotations

from pathlib import Path

import pytest

from edgeward.compress._onnx_eval import encoder_quality
from edgeward.compress._onnx_quant import quantize_onnx, reduce_range_for
from edgeward.errors import ArtifactError, ConfigError
from edgeward.hardware_profiles import resolve_profile
from edgeward.runtimes import open_runtime

CALIBRATION = ["The quick brown fox jumps over the lazy dog.",
               "Edge devices run small language models locally.",
               "A signed artifact is verified before it is loaded.",
               "Rain is expected in the afternoon.",
               "Quantization trades precision for size and speed."] * 2

# kind -> (size at most this fraction of fp32, mean cosine at least); int4 quantizes the
# MatMul weights only (int8-static its MatMuls but those after a GELU), and half of MiniLM is
# its (fp32) word-embedding table
EXPECT = {"int8-dynamic": (0.40, 0.98), "int8-static": (0.80, 0.98), "int8-weight": (0.75, 0.99),
          "int4": (0.70, 0.95), "fp16": (0.60, 0.999)}


@pytest.mark.parametrize("kind", sorted(EXPECT))
def test_each_kind_is_smaller_and_close_to_fp32(kind: str, minilm_onnx: Path,
                                                tmp_path: Path) -> None:
    out = quantize_onnx(minilm_onnx, tmp_path / kind, kind,  # type: ignore[arg-type]
                        calibration_texts=CALIBRATION)
    assert (out / "tokenizer.json").is_file()
    ratio = (out / "model.onnx").stat().st_size / (minilm_onnx / "model.onnx").stat().st_size
    max_ratio, min_cos = EXPECT[kind]
    assert ratio <= max_ratio, ratio
    q = encoder_quality(minilm_onnx, out)
    assert q["cosine_mean"] >= min_cos, q
    assert q["nearest_neighbour_agreement"] >= 0.85, q
    rt = open_runtime(out)
    try:
        assert rt.embed(["hello"]).vectors
    finally:
        rt.unload()


def test_bad_input_is_refused_and_leaves_nothing(minilm_onnx: Path, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not an ONNX type"):
        quantize_onnx(minilm_onnx, tmp_path / "x", "int3")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="calibration"):
        quantize_onnx(minilm_onnx, tmp_path / "x", "int8-static")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ArtifactError, match=r"no model\.onnx"):
        quantize_onnx(tmp_path / "empty", tmp_path / "x", "int8-dynamic")
    (tmp_path / "taken").mkdir()
    with pytest.raises(ConfigError, match="--force"):
        quantize_onnx(minilm_onnx, tmp_path / "taken", "int8-dynamic")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty", "taken"]


def test_reduce_range_follows_the_cpu() -> None:
    assert reduce_range_for(None) is True
    pi = resolve_profile("raspberry-pi-5-8gb")
    assert reduce_range_for(pi) is ("neon" not in pi.cpu_features
                                    and "dotprod" not in pi.cpu_features)


def test_the_cli_compresses_onnx_and_hugging_face_directories(
        minilm_onnx: Path, minilm_dir: Path, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    import json

    from edgeward.cli import main

    capsys.readouterr()
    assert main(["compress", str(minilm_onnx), "--format", "onnx", "--type", "int8-dynamic",
                 "--out", str(tmp_path / "q8"), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["size_ratio"] < 0.4 and report["quality"]["cosine_mean"] >= 0.98
    # the encoder's embeddings fingerprint is written beside the artifact, for `edgeward sign`
    assert report.pop("fingerprint") == str(tmp_path / "q8.behaviour.json")
    assert (tmp_path / "q8.behaviour.json").is_file() and report.pop("fingerprint_note")
    assert json.loads((tmp_path / "q8" / "compression-report.json").read_text()) == report
    # a Hugging Face directory is exported first; the fp32 export is kept as the reference
    assert main(["compress", str(minilm_dir), "--format", "onnx", "--type", "fp16", "--out",
                 str(tmp_path / "h"), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["task"] == "feature-extraction" and (tmp_path / "h.fp32" / "model.onnx").is_file()
    assert report["quality"]["cosine_mean"] >= 0.999
    for bad in (["--type", "Q4_K_M"], []):
        assert main(["compress", str(minilm_onnx), "--format", "onnx", "--out",
                     str(tmp_path / "x"), *bad]) == 3
    assert main(["compress", str(minilm_onnx), "--format", "onnx", "--type", "int8-dynamic",
                 "--out", str(tmp_path / "q8")]) == 3  # exists: --force to replace


def test_a_causal_lm_is_measured_like_the_gguf_path(smollm2_onnx: Path, tmp_path: Path) -> None:
    from edgeward.compress._onnx_eval import lm_quality

    text = ("The history of bridges begins with fallen trees across streams. Stone arches "
            "carried Roman roads; iron and then steel let spans grow longer. ") * 40
    same = lm_quality(smollm2_onnx, smollm2_onnx, text, n_ctx=128, max_tokens=512)
    assert same["kld_mean"] < 1e-6 and same["top1_agreement"] == 1.0
    assert same["ppl"] == same["ppl_reference"] and same["tokens_scored"] > 100
    q8 = quantize_onnx(smollm2_onnx, tmp_path / "q8", "int8-dynamic")
    got = lm_quality(smollm2_onnx, q8, text, n_ctx=128, max_tokens=512)
    assert 0 < got["kld_mean"] < 1.0 and got["top1_agreement"] > 0.5, got
    # weight-only int8 keeps an LM far closer than dynamic int8 (activation outliers)
    w8 = quantize_onnx(smollm2_onnx, tmp_path / "w8", "int8-weight")
    close = lm_quality(smollm2_onnx, w8, text, n_ctx=128, max_tokens=512)
    assert close["kld_mean"] < min(0.05, got["kld_mean"] / 4), (close, got)
    assert close["top1_agreement"] > 0.9, close
    with pytest.raises(ConfigError, match="less than one chunk"):
        lm_quality(smollm2_onnx, q8, "too short", n_ctx=128)


def test_int4_keeps_the_lm_head_float_unless_asked(smollm2_onnx: Path, tmp_path: Path) -> None:
    import onnx

    def head_op(d: Path) -> str:
        m = onnx.load(str(d / "model.onnx"), load_external_data=False)
        producer = {o: n for n in m.graph.node for o in n.output}
        return producer["logits"].op_type

    assert head_op(quantize_onnx(smollm2_onnx, tmp_path / "a", "int4")) == "MatMul"
    # the tied head reads the transposed embedding: folded to a constant, then quantized
    both = quantize_onnx(smollm2_onnx, tmp_path / "b", "int4", lm_head=True, block_size=64)
    assert head_op(both) == "MatMulNBits"
    with pytest.raises(ConfigError, match="power of two"):
        quantize_onnx(smollm2_onnx, tmp_path / "c", "int4", block_size=48)
