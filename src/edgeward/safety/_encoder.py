"""The encoder stage: a small fine-tuned transformer that reads what the n-gram model cannot.

A MiniLM encoder fine-tuned as a 4-way classifier (``scripts/train_safety_encoder.py``),
exported to ONNX and int8-quantized with the project's ONNX path, and run here with ONNX
Runtime, ``tokenizers`` and numpy only (no torch on a device). Its files live in one directory
(``model.onnx``, ``tokenizer.json``, ``head.npz``: the linear head over the mean-pooled token
states, ``encoder.json``: the training record). The package ships ``model.onnx`` as a pack
over the packaged MiniLM instead (``model-delta.npz.xz``, :mod:`edgeward.safety._encoder_pack`),
rebuilt byte for byte in memory at load and checked against the recorded sha256.

Long texts are never silently truncated: the token sequence is cut into windows of
``max_tokens`` that cover every token (the head, the tail, and windows spaced evenly between
them); all windows run as one batch and the most unsafe window decides. Past
``max_windows`` windows (about 16,000 characters) the windows are spread evenly over the
text with gaps between them, and :meth:`Encoder.windows` says so (``covered``).
"""

from __future__ import annotations

import hashlib
import json
import threading
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from edgeward.errors import ArtifactError, ConfigError

__all__ = ["Encoder", "default_encoder", "encoder_dir"]

_LABELS = ("benign", "harmful", "jailbreak", "injection")


def encoder_dir() -> Path:
    """The directory of the shipped encoder inside the installed package."""
    from edgeward.safety._classifier import model_dir

    return model_dir() / "encoder"


@dataclass
class Encoder:
    """A loaded encoder classifier.

    Attributes:
        directory: where its files are.
        record: its training record.
        max_windows: windows per text at most (a 2,000-character prompt needs about four; 32
            windows of 126 tokens cover about 16,000 characters).
    """

    directory: Path
    record: dict[str, Any]
    max_windows: int = 32
    model_sha256: str = ""
    _session: Any = field(default=None, repr=False)
    _tokenizer: Any = field(default=None, repr=False)
    _weight: npt.NDArray[np.float32] = field(default_factory=lambda: np.zeros((0, 4), np.float32),
                                             repr=False)
    _bias: npt.NDArray[np.float32] = field(default_factory=lambda: np.zeros(4, np.float32),
                                           repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _token_types: bool = field(default=False, repr=False)  # the graph takes token_type_ids

    @classmethod
    def load(cls, directory: Path, *, threads: int = 1) -> Encoder:
        """Load an encoder directory.

        The model is ``model.onnx`` or, where there is none, the pack that rebuilds it
        (``model-delta.npz.xz``).

        Raises:
            ConfigError: the directory lacks the encoder's files, or its pack's base model is
                not installed.
            ArtifactError: they are unreadable, or the pack rebuilds to other bytes than
                recorded.
        """
        from edgeward.safety._encoder_pack import PACK_NAME, assemble

        packed = not (directory / "model.onnx").is_file() and (directory / PACK_NAME).is_file()
        need = ("model.onnx" if not packed else PACK_NAME, "tokenizer.json", "head.npz",
                "encoder.json")
        missing = [n for n in need if not (directory / n).is_file()]
        if missing:
            raise ConfigError(f"{directory}: no safety encoder here (missing "
                              f"{', '.join(missing)}); train one with "
                              f"scripts/train_safety_encoder.py")
        try:
            import onnxruntime as ort
            from tokenizers import Tokenizer

            record = json.loads((directory / "encoder.json").read_text(encoding="utf-8"))
            model = assemble(directory, record) if packed \
                else (directory / "model.onnx").read_bytes()
            digest = "sha256:" + hashlib.sha256(model).hexdigest()
            opts = ort.SessionOptions()
            opts.intra_op_num_threads = threads
            opts.inter_op_num_threads = 1
            opts.log_severity_level = 3
            session = ort.InferenceSession(model, opts, providers=["CPUExecutionProvider"])
            del model
            tokenizer = Tokenizer.from_file(str(directory / "tokenizer.json"))
            tokenizer.no_truncation()
            tokenizer.no_padding()
            with np.load(directory / "head.npz") as head:
                weight = head["weight"].astype(np.float32)
                bias = head["bias"].astype(np.float32)
        except (OSError, ValueError, KeyError, RuntimeError) as e:
            raise ArtifactError(f"{directory}: unreadable safety encoder ({e})") from e
        if weight.shape[1] != len(_LABELS) or list(record.get("labels", _LABELS)) != list(_LABELS):
            raise ArtifactError(f"{directory}: the encoder's labels are not {list(_LABELS)}")
        token_types = any(i.name == "token_type_ids" for i in session.get_inputs())
        return cls(directory, record, model_sha256=digest, _session=session,
                   _tokenizer=tokenizer, _weight=weight, _bias=bias, _token_types=token_types)

    @property
    def max_tokens(self) -> int:
        """Tokens per window, [CLS] and [SEP] included."""
        return int(self.record.get("max_tokens", 128))

    def windows(self, text: str) -> list[list[int]]:
        """The token windows of a text: head, tail and evenly spaced ones between, covering
        every token unless more than ``max_windows`` would be needed."""
        return self._windows(text)[0]

    def _windows(self, text: str) -> tuple[list[list[int]], bool]:
        tok = self._tokenizer
        ids = tok.encode(text, add_special_tokens=False).ids
        body = self.max_tokens - 2
        cls_id, sep_id = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
        if len(ids) <= body:
            starts = [0]
        else:
            n = min(self.max_windows, -(-len(ids) // body))
            last = len(ids) - body
            starts = sorted({(i * last) // (n - 1) for i in range(n)})
        covered = len(ids) <= len(starts) * body
        return [[cls_id, *ids[s:s + body], sep_id] for s in starts], covered

    def logits(self, text: str) -> npt.NDArray[np.float64]:
        """The label logits of the most unsafe window (lowest benign probability)."""
        wins = self.windows(text)
        width = max(len(w) for w in wins)
        ids = np.zeros((len(wins), width), dtype=np.int64)
        mask = np.zeros((len(wins), width), dtype=np.int64)
        for i, w in enumerate(wins):
            ids[i, :len(w)] = w
            mask[i, :len(w)] = 1
        feeds = {"input_ids": ids, "attention_mask": mask}
        if self._token_types:
            feeds["token_type_ids"] = np.zeros_like(ids)
        with self._lock:  # one ORT session, used from the agent's threads
            hidden = self._session.run(None, feeds)[0]
        m = mask[:, :, None].astype(np.float32)
        pooled = (hidden * m).sum(axis=1) / np.maximum(m.sum(axis=1), 1.0)
        z: npt.NDArray[np.float64] = (pooled @ self._weight + self._bias).astype(np.float64)
        p_benign = np.exp(z[:, 0] - np.logaddexp.reduce(z, axis=1))
        row: npt.NDArray[np.float64] = z[int(np.argmin(p_benign))]
        return row

    def probs(self, text: str) -> dict[str, float]:
        """Label probabilities of the most unsafe window."""
        z = self.logits(text)
        p = np.exp(z - z.max())
        p /= p.sum()
        return {k: float(v) for k, v in zip(_LABELS, p, strict=True)}


@lru_cache(maxsize=1)
def default_encoder() -> Encoder | None:
    """The encoder shipped inside the package, or ``None`` if this build has none."""
    from edgeward.safety._encoder_pack import PACK_NAME

    d = encoder_dir()
    if not (d / "model.onnx").is_file() and not (d / PACK_NAME).is_file():
        return None
    return Encoder.load(d)
