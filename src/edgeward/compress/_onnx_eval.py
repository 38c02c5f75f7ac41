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
