"""ONNX Runtime on the real models: MiniLM embeddings agree with transformers; SmolLM2's
ONNX export generates the same greedy text as llama.cpp on the same weights."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from edgeward.compress import QuantRecipe, quantize
from edgeward.runtimes import LlamaCppRuntime, SamplingParams, open_runtime

pytestmark = pytest.mark.integration


def test_minilm_embeddings_match_transformers(minilm_onnx: Path, minilm_dir: Path) -> None:
    torch = pytest.importorskip("torch")
    from transformers import AutoModel, AutoTokenizer

    sentences = ["A cat sits on the mat.", "A kitten rests on a rug.", "Stock prices fell."]
    ours = np.array(open_runtime(minilm_onnx).embed(sentences).vectors)
    tok = AutoTokenizer.from_pretrained(str(minilm_dir), local_files_only=True)
    model = AutoModel.from_pretrained(str(minilm_dir), local_files_only=True)
    batch = tok(sentences, padding=True, return_tensors="pt")
    with torch.no_grad():
        hidden = model(**batch).last_hidden_state
    mask = batch["attention_mask"].unsqueeze(-1).float()
    ref = ((hidden * mask).sum(1) / mask.sum(1)).numpy()
    ref /= np.linalg.norm(ref, axis=1, keepdims=True)
    cos = (ours * ref).sum(axis=1)
    assert cos.min() > 0.9999
    sim = ours @ ours.T
    assert sim[0, 1] > sim[0, 2] + 0.2


def test_smollm2_onnx_matches_llama_cpp(smollm2_onnx: Path, smollm2_gguf: Path,
                                        tmp_path: Path) -> None:
    # F32 GGUF of the same dequantized weights the ONNX export holds.
    f32 = quantize(smollm2_gguf, tmp_path / "smollm2-f32.gguf", QuantRecipe(type="F32")).artifact
    params = SamplingParams(temperature=0.0, max_tokens=16)
    question = [{"role": "user",
                 "content": "What's the capital city of France? Answer in one word."}]
    with LlamaCppRuntime() as ll:
        ll.load(f32, context_length=512)
        expected = ll.chat(question, params).text()  # type: ignore[arg-type]
    onnx = open_runtime(smollm2_onnx, context_length=512)
    stream = onnx.chat(question, params)  # type: ignore[arg-type]
    got = stream.text()
    assert "Paris" in got
    assert got == expected
    assert stream.stats.decode_tokens_per_s is not None and stream.stats.decode_tokens_per_s > 1
