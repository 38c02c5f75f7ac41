"""The ONNX Runtime backend: provider choice, sampling, encoder embeddings, and the KV-cache
decode loop on a tiny causal LM exported by optimum."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from _models import export_tiny_onnx_lm, write_tiny_onnx_encoder_dir
from edgeward.errors import ArtifactError, ConfigError, RuntimeBackendError
from edgeward.hardware_profiles import get_profile
from edgeward.runtimes import OnnxRuntime, SamplingParams, artifact_format, open_runtime
from edgeward.runtimes._onnx import choose_providers, sample


@pytest.fixture(scope="module")
def encoder_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_onnx_encoder_dir(tmp_path_factory.mktemp("enc") / "tiny-encoder")


@pytest.fixture(scope="module")
def lm_dir(tiny_gguf: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    pytest.importorskip("optimum.exporters.onnx", reason="the compress extra is not installed")
    return export_tiny_onnx_lm(tiny_gguf, tmp_path_factory.mktemp("lm") / "tiny-lm-onnx")


@pytest.fixture(scope="module")
def lm(lm_dir: Path) -> Iterator[OnnxRuntime]:
    rt = open_runtime(lm_dir, context_length=128)
    assert isinstance(rt, OnnxRuntime)
    yield rt
    rt.unload()


@pytest.mark.parametrize(("backend", "available", "expected"), [
    ("cuda", ["CUDAExecutionProvider", "CPUExecutionProvider"],
     ["CUDAExecutionProvider", "CPUExecutionProvider"]),
    ("cuda", ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"],
     ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"]),
    ("cuda", ["CPUExecutionProvider"], ["CPUExecutionProvider"]),
    ("metal", ["CoreMLExecutionProvider", "CPUExecutionProvider"],
     ["CoreMLExecutionProvider", "CPUExecutionProvider"]),
    ("cpu", ["CUDAExecutionProvider", "CPUExecutionProvider"], ["CPUExecutionProvider"]),
])
def test_providers_follow_the_profile_and_the_build(backend: str, available: list[str],
                                                    expected: list[str]) -> None:
    profile = {"cuda": "rtx-4090-24gb", "metal": "apple-m2-16gb",
               "cpu": "core-avx2-16gb"}[backend]
    assert choose_providers(get_profile(profile), available) == expected


def test_sampling_rules() -> None:
    rng = np.random.default_rng(0)
    logits = np.array([0.1, 3.0, 2.9, -1.0])
    greedy = SamplingParams(temperature=0.0)
    assert sample(logits, greedy, rng, []) == 1
    assert sample(logits, SamplingParams(temperature=1.0, top_k=1), rng, []) == 1
    # A strong repeat penalty on token 1 hands the argmax to token 2.
    assert sample(logits, SamplingParams(temperature=0.0, repeat_penalty=2.0), rng, [1]) == 2
    params = SamplingParams(temperature=1.0, seed=7, min_p=0.0, top_k=0)
    a = [sample(logits, params, np.random.default_rng(7), []) for _ in range(20)]
    b = [sample(logits, params, np.random.default_rng(7), []) for _ in range(20)]
    assert a == b
    draws = [sample(logits, params, rng, []) for _ in range(300)]
    assert set(draws) >= {1, 2}  # both likely tokens come up
    # min_p drops tokens far below the best one.
    assert 3 not in {sample(logits, SamplingParams(temperature=1.0, min_p=0.2), rng, [])
                     for _ in range(200)}


def test_encoder_embeds_like_numpy(encoder_dir: Path) -> None:
    import onnx
    from onnx import numpy_helper

    rt = open_runtime(encoder_dir)
    assert rt.capabilities == frozenset({"embed"})
    out = rt.embed(["w5 w7 w9", "w5"])
    weights = {t.name: numpy_helper.to_array(t)
               for t in onnx.load(str(encoder_dir / "model.onnx")).graph.initializer}
    hidden = np.tanh(weights["embedding"][[5, 7, 9]] @ weights["proj"])
    expected = hidden.mean(axis=0)
    expected /= np.linalg.norm(expected)
    np.testing.assert_allclose(out.vectors[0], expected, rtol=1e-5, atol=1e-6)
    assert out.prompt_tokens == 4  # padding is not counted
    assert abs(np.linalg.norm(out.vectors[1]) - 1) < 1e-6
    with pytest.raises(ConfigError, match="it embeds, it does not generate"):
        rt.generate("w5").text()


def test_encoder_errors(encoder_dir: Path, tmp_path: Path) -> None:
    bare = tmp_path / "bare"
    bare.mkdir()
    (bare / "model.onnx").write_bytes((encoder_dir / "model.onnx").read_bytes())
    with pytest.raises(ArtifactError, match=r"no tokenizer\.json"):
        open_runtime(bare)
    junk = tmp_path / "junk"
    junk.mkdir()
    (junk / "model.onnx").write_bytes(b"not a protobuf")
    (junk / "tokenizer.json").write_text((encoder_dir / "tokenizer.json").read_text())
    with pytest.raises(RuntimeBackendError):
        open_runtime(junk)
    with pytest.raises(ConfigError, match="embed needs one or more strings"):
        open_runtime(encoder_dir).embed([])


def test_artifact_format(tiny_gguf: Path, encoder_dir: Path, tmp_path: Path) -> None:
    assert artifact_format(tiny_gguf) == "gguf"
    assert artifact_format(encoder_dir) == "onnx"
    assert artifact_format(encoder_dir / "model.onnx") == "onnx"
    other = tmp_path / "weights.bin"
    other.write_bytes(b"\x00" * 16)
    with pytest.raises(ArtifactError, match="neither a GGUF file nor an ONNX model"):
        artifact_format(other)
    with pytest.raises(ConfigError, match="no such model"):
        artifact_format(tmp_path / "absent")


@pytest.mark.integration
def test_causal_lm_generates_with_the_kv_cache(lm: OnnxRuntime) -> None:
    assert lm.capabilities == frozenset({"generate", "chat"})
    stream = lm.generate("the model", SamplingParams(temperature=0.0, max_tokens=12,
                                                     min_p=0.0, top_k=0))
    stream.text()
    assert stream.stats.completion_tokens <= 12
    assert stream.stats.prompt_tokens == len(lm.tokenize("the model"))
    assert stream.stats.time_to_first_token_s is not None


@pytest.mark.integration
def test_causal_lm_matches_llama_cpp_greedy(lm: OnnxRuntime, tiny_gguf: Path) -> None:
    # The same weights in two runtimes: the greedy continuation must be the same text.
    from edgeward.runtimes import LlamaCppRuntime

    params = SamplingParams(temperature=0.0, max_tokens=10, min_p=0.0, top_k=0)
    with LlamaCppRuntime() as ll:
        ll.load(tiny_gguf, context_length=128)
        expected = ll.tokenize(ll.complete("hello world", params).text, add_special=False)
    got = lm.tokenize(lm.complete("hello world", params).text, add_special=False)
    assert got == expected


@pytest.mark.integration
def test_causal_lm_chat_and_seed(lm: OnnxRuntime) -> None:
    params = SamplingParams(temperature=1.0, max_tokens=8, seed=3)
    a = lm.chat([{"role": "user", "content": "hello"}], params).text()
    b = lm.chat([{"role": "user", "content": "hello"}], params).text()
    assert a == b
    with pytest.raises(ConfigError, match="context holds 128"):
        lm.complete("the " * 300, params)
