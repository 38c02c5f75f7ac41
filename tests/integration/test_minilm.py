"""The real all-MiniLM-L6-v2 directory loads offline and embeds (the ONNX path's source)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration


def test_minilm_embeds_offline(minilm_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")
    torch = pytest.importorskip("torch", reason="the compress extra (torch) is not installed")
    transformers = pytest.importorskip("transformers")

    tokenizer = transformers.AutoTokenizer.from_pretrained(str(minilm_dir))
    model = transformers.AutoModel.from_pretrained(str(minilm_dir))
    sentences = ["A cat sits on the mat.", "A kitten rests on a rug.", "Stock prices fell."]
    batch = tokenizer(sentences, padding=True, return_tensors="pt")
    with torch.no_grad():
        hidden = model(**batch).last_hidden_state
    mask = batch["attention_mask"].unsqueeze(-1).float()
    emb = (hidden * mask).sum(1) / mask.sum(1)
    emb = torch.nn.functional.normalize(emb, dim=1)
    assert emb.shape == (3, 384)
    sim = emb @ emb.T
    # The two cat sentences are closer to each other than to the finance one.
    assert sim[0, 1] > sim[0, 2] + 0.2
    assert os.environ["HF_HUB_OFFLINE"] == "1"
