"""Quality of a compressed ONNX encoder against its fp32 reference.

For a list of evaluation sentences: the cosine similarity of each sentence's embedding to the
reference's (mean and minimum), and a retrieval check — for each sentence, is its nearest
neighbour among the others the same under both models — so a change that keeps vectors close
but reorders neighbours is seen.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from edgeward.errors import ConfigError
from edgeward.runtimes import open_runtime

__all__ = ["DEFAULT_SENTENCES", "encoder_quality"]

# Evaluation sentences (varied topics, so that nearest neighbours are meaningful).
DEFAULT_SENTENCES = (
    "A man is playing a guitar on the stage.",
    "Someone performs music with a stringed instrument.",
    "The cat sleeps on the warm windowsill.",
    "A kitten is napping in the sun by the window.",
    "Interest rates were raised by the central bank.",
    "The bank increased the cost of borrowing money.",
    "Heavy rain flooded the streets of the city.",
    "The town's roads were under water after the storm.",
    "She is baking bread in a wood-fired oven.",
    "Fresh loaves come out of the hot oven.",
    "The rocket launched towards the space station.",
    "A spacecraft lifted off to dock with the orbital lab.",
    "He forgot his password and could not log in.",
    "The user was locked out after too many login attempts.",
    "Children are building a sandcastle at the beach.",
    "Kids play with sand by the sea.",
)


def encoder_quality(reference: Path, candidate: Path,
                    sentences: Sequence[str] = DEFAULT_SENTENCES) -> dict[str, Any]:
    """Cosine and nearest-neighbour agreement of ``candidate`` against ``reference``.

    Raises:
        ConfigError: fewer than 3 sentences; ArtifactError, RuntimeBackendError: a model does
            not load or embed.
    """
    if len(sentences) < 3:
        raise ConfigError("encoder quality needs at least 3 sentences")
    vectors = []
    for path in (reference, candidate):
        rt = open_runtime(path)
        try:
            v = np.asarray(rt.embed(list(sentences)).vectors, dtype=np.float64)
        finally:
            rt.unload()
        vectors.append(v / np.linalg.norm(v, axis=1, keepdims=True))
    ref, cand = vectors
    cos = np.sum(ref * cand, axis=1)

    def neighbours(v: np.ndarray) -> np.ndarray:
        sim = v @ v.T
        np.fill_diagonal(sim, -np.inf)
        return np.asarray(np.argmax(sim, axis=1))

    same = neighbours(ref) == neighbours(cand)
    return {"sentences": len(sentences), "cosine_mean": round(float(cos.mean()), 6),
            "cosine_min": round(float(cos.min()), 6),
            "nearest_neighbour_agreement": round(float(same.mean()), 4)}


def lm_quality(reference: Path, candidate: Path, text: str, *, n_ctx: int = 256,
               max_tokens: int = 2048) -> dict[str, Any]:
    """PPL, KLD and top-1 agreement of an ONNX causal LM against its fp32 reference, with the
    GGUF path's definitions: chunks of ``n_ctx`` tokens, each scored on its second half
    (every position predicts the next token), KLD(reference || candidate) over the whole
    vocabulary, averaged over the scored positions.

    Raises:
        ConfigError: the text is shorter than one chunk; RuntimeBackendError: a model failed.
    """
    ref_rt, cand_rt = open_runtime(reference), open_runtime(candidate)
    try:
        tokens = ref_rt.tokenize(text)[:max_tokens]
        chunks = [tokens[i:i + n_ctx] for i in range(0, len(tokens) - n_ctx + 1, n_ctx)]
        if not chunks:
            raise ConfigError(f"{len(tokens)} tokens is less than one chunk of {n_ctx}")
        nll_ref, nll_cand, kld, top1, n = 0.0, 0.0, 0.0, 0, 0
        for chunk in chunks:
            lo, hi = n_ctx // 2, n_ctx - 1
            targets = np.asarray(chunk[lo + 1:hi + 1])
            lr = _log_softmax(ref_rt.sequence_logits(chunk)[lo:hi])  # type: ignore[attr-defined]
            lc = _log_softmax(cand_rt.sequence_logits(chunk)[lo:hi])  # type: ignore[attr-defined]
            rows = np.arange(len(targets))
            nll_ref -= float(lr[rows, targets].sum())
            nll_cand -= float(lc[rows, targets].sum())
            kld += float((np.exp(lr) * (lr - lc)).sum())
            top1 += int((lr.argmax(axis=1) == lc.argmax(axis=1)).sum())
            n += len(targets)
    finally:
        ref_rt.unload()
        cand_rt.unload()
    return {"tokens_scored": n, "ppl_reference": round(float(np.exp(nll_ref / n)), 4),
            "ppl": round(float(np.exp(nll_cand / n)), 4), "kld_mean": round(kld / n, 5),
            "top1_agreement": round(top1 / n, 4)}


def _log_softmax(logits: np.ndarray) -> np.ndarray:
    x = np.asarray(logits, dtype=np.float64)
    m = x.max(axis=1, keepdims=True)
    out: np.ndarray = x - (m + np.log(np.exp(x - m).sum(axis=1, keepdims=True)))
    return out
