"""The shipped classifier: a linear model over hashed word and character n-grams.

Four labels (``benign``, ``harmful``, ``jailbreak``, ``injection``), softmax over
``x @ W + b`` where ``x`` is the L2-normalised, idf-weighted, sublinear term-frequency vector
of the text's hashed n-grams (:mod:`edgeward.safety._features`). Inference is numpy only and
takes a fraction of a millisecond for a 2,000-character prompt.

The weights (``model/classifier.npz``) ship with a record (``model/classifier.json``) of what
they were trained on: the digest of the data file and of the train split, the row counts, the
training parameters, and the dev-split figures used to choose the default threshold.
``python -m edgeward.safety.train`` reproduces both.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from edgeward.errors import ArtifactError, ConfigError
from edgeward.safety._features import FeatureConfig, bucket_counts

__all__ = ["LABELS", "LinearModel", "default_model", "model_dir"]

LABELS = ("benign", "harmful", "jailbreak", "injection")
WEIGHTS_FILE = "classifier.npz"
RECORD_FILE = "classifier.json"


def model_dir() -> Path:
    """The directory of the shipped weights inside the installed package."""
    return Path(str(resources.files("edgeward.safety") / "model"))


@dataclass(frozen=True)
class LinearModel:
    """Weights and featuriser settings of the linear classifier.

    Attributes:
        weights: ``(2**bits, 4)`` float32, one column per label of :data:`LABELS`.
        bias: ``(4,)`` float32.
        idf: ``(2**bits,)`` float32 inverse document frequencies.
        features: the featuriser settings the weights were trained with.
        record: the training record (data digests, parameters, dev figures).
    """

    weights: npt.NDArray[np.float32]
    bias: npt.NDArray[np.float32]
    idf: npt.NDArray[np.float32]
    features: FeatureConfig
    record: dict[str, Any]

    def __post_init__(self) -> None:
        n = 2**self.features.bits
        if self.weights.shape != (n, len(LABELS)) or self.idf.shape != (n,) \
                or self.bias.shape != (len(LABELS),):
            raise ArtifactError(f"classifier weights have shapes {self.weights.shape}, "
                                f"{self.idf.shape}, {self.bias.shape}; expected ({n}, 4), "
                                f"({n},), (4,)")

    @property
    def threshold(self) -> float:
        """The unsafe-score threshold chosen on the dev split when the model was trained."""
        return float(self.record.get("threshold", 0.5))

    def logits(self, text: str) -> npt.NDArray[np.float64]:
        """Unnormalised scores of the four labels for a (normalised) text."""
        idx, tf = bucket_counts(text, self.features)
        if len(idx) == 0:
            return self.bias.astype(np.float64)
        rows = self._table[idx]  # one gather for weights and idf: the cost is cache misses
        v = tf * rows[:, -1]
        norm = float(np.sqrt(v @ v))
        if norm > 0:
            v = v / norm
        return (v @ rows[:, :-1]).astype(np.float64) + self.bias

    @property
    def _table(self) -> npt.NDArray[np.float32]:
        """``[weights | idf]``, built once."""
        table = self.__dict__.get("_table_cache")
        if table is None:
            table = np.ascontiguousarray(np.concatenate([self.weights, self.idf[:, None]],
                                                        axis=1), dtype=np.float32)
            object.__setattr__(self, "_table_cache", table)
        return table

    def save(self, directory: Path) -> tuple[Path, Path]:
        """Write ``classifier.npz`` (float16 weights) and ``classifier.json`` to ``directory``.

        Returns:
            The two paths.
        """
        directory.mkdir(parents=True, exist_ok=True)
        npz = directory / WEIGHTS_FILE
        with npz.open("wb") as f:
            np.savez_compressed(f, weights=self.weights.astype(np.float16),
                                bias=self.bias.astype(np.float32),
                                idf=self.idf.astype(np.float16))
        rec = directory / RECORD_FILE
        record = dict(self.record, features=self.features.to_dict(), labels=list(LABELS))
        rec.write_text(json.dumps(record, indent=2, sort_keys=True) + "\n", encoding="utf-8")
        return npz, rec

    @classmethod
    def load(cls, directory: Path) -> LinearModel:
        """Read the weights and record written by :meth:`save`.

        Raises:
            ConfigError: the files are missing.
            ArtifactError: they are unreadable or inconsistent.
        """
        npz, rec = directory / WEIGHTS_FILE, directory / RECORD_FILE
        if not npz.is_file() or not rec.is_file():
            raise ConfigError(f"{directory}: no classifier here ({WEIGHTS_FILE} and "
                              f"{RECORD_FILE}); train one with `python -m edgeward.safety.train`")
        try:
            record = json.loads(rec.read_text(encoding="utf-8"))
            with np.load(npz) as data:
                weights = data["weights"].astype(np.float32)
                bias = data["bias"].astype(np.float32)
                idf = data["idf"].astype(np.float32)
        except (OSError, ValueError, KeyError) as e:
            raise ArtifactError(f"{directory}: unreadable classifier ({e})") from e
        if list(record.get("labels", LABELS)) != list(LABELS):
            raise ArtifactError(f"{rec}: labels {record.get('labels')!r} are not {list(LABELS)}")
        return cls(weights, bias, idf, FeatureConfig.from_dict(record.get("features", {})),
                   record)


@lru_cache(maxsize=1)
def default_model() -> LinearModel:
    """The classifier shipped inside the package (loaded once)."""
    return LinearModel.load(model_dir())
