"""Train the shipped classifier: ``python -m edgeward.safety.train [--data PROMPTS.jsonl]``.

Reproducible (no randomness: hashed features, full-batch L-BFGS from zero) and numpy only.
Fits on the **train** split of the labelled prompts only; the **dev** split chooses the default
threshold (the lowest unsafe-score threshold of the whole harm score, classifier plus rules
plus the shipped encoder stage as the default policy runs it, whose benign false-positive rate
on dev is at most ``--target-fpr``) and is reported. Train the encoder first
(``scripts/train_safety_encoder.py``), since the threshold depends on it. Writes
``classifier.npz`` and ``classifier.json`` (the record of the data digest, split, row counts,
parameters and dev figures) into the package's ``model/`` directory, or ``--out``, and
``words.txt``: the word counts of the train split that split spaced-out letters back into
words (:mod:`edgeward.safety._segment`).

The data is the JSONL of ``../shared/data/safety/prompts.jsonl`` (fields ``id``, ``text``,
``label``, ``split``); no file of it is copied into the package.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import sys
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from edgeward.errors import ConfigError, EdgewardError
from edgeward.safety._classifier import LABELS, LinearModel, model_dir
from edgeward.safety._encoder import default_encoder
from edgeward.safety._features import FeatureConfig, bucket_counts
from edgeward.safety._fit import fit_idf, fit_lbfgs, rows_from, weigh
from edgeward.safety._normalise import normalise
from edgeward.safety._policy import default_policy
from edgeward.safety._score import CLASSIFIER_SCALE, Cascade, score_views
from edgeward.safety._segment import WORDS_FILE

__all__ = ["fit", "main", "read_rows", "train", "train_split_digest", "write_word_counts"]

DEFAULT_DATA = Path("../shared/data/safety/prompts.jsonl")
_FORMAT = 1
_WORD = re.compile(r"[a-z]+")
_MAX_WORDS = 30_000


def read_rows(path: Path) -> list[dict[str, Any]]:
    """The rows of a labelled-prompts JSONL file.

    Raises:
        ConfigError: the file is missing, or a row is not JSON or lacks a field.
    """
    if not path.is_file():
        raise ConfigError(f"{path}: no such data file; pass --data PROMPTS.jsonl")
    rows = []
    with path.open(encoding="utf-8") as f:
        for n, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                raise ConfigError(f"{path}:{n}: not JSON ({e})") from e
            missing = {"id", "text", "label", "split"} - set(row)
            if missing:
                raise ConfigError(f"{path}:{n}: missing field(s) {sorted(missing)}")
            if row["label"] not in LABELS:
                raise ConfigError(f"{path}:{n}: label {row['label']!r} is not one of {LABELS}")
            rows.append(row)
    return rows


def train_split_digest(rows: Sequence[dict[str, Any]]) -> str:
    """``sha256:`` of the train split's rows (id, label, text; sorted by id; canonical JSON)."""
    h = hashlib.sha256()
    for row in sorted((r for r in rows if r["split"] == "train"), key=lambda r: str(r["id"])):
        line = json.dumps({"id": row["id"], "label": row["label"], "text": row["text"]},
                          sort_keys=True, ensure_ascii=False)
        h.update(line.encode("utf-8") + b"\n")
    return "sha256:" + h.hexdigest()


def _choose_threshold(model: LinearModel, dev: Sequence[dict[str, Any]], target_fpr: float,
                      cascade: Cascade | None = None) -> tuple[float, dict[str, Any]]:
    unsafe = np.array([score_views(normalise(r["text"]).text, model, cascade=cascade)[0].unsafe
                       for r in dev])
    labels = np.array([r["label"] for r in dev])
    benign = unsafe[labels == "benign"]
    threshold = 0.95
    for t in np.round(np.arange(0.30, 0.951, 0.01), 2):
        if benign.size == 0 or float((benign >= t).mean()) <= target_fpr:
            threshold = float(t)
            break
    figures = {"rows": len(dev),
               "benign_fpr": round(float((benign >= threshold).mean()), 4) if benign.size else None,
               "recall": {lab: round(float((unsafe[labels == lab] >= threshold).mean()), 4)
                          for lab in LABELS[1:] if (labels == lab).any()}}
    return threshold, figures


def fit(train_rows: Sequence[dict[str, Any]], *, features: FeatureConfig, l2: float,
        iterations: int, data_sha256: str = "", record: dict[str, Any] | None = None
        ) -> LinearModel:
    """Fit the classifier on ``train_rows`` (all of them, whatever their split); no threshold.

    Raises:
        ConfigError: no rows.
    """
    if not train_rows:
        raise ConfigError("no rows to fit the classifier on")
    n_features = 2**features.bits
    counts = [bucket_counts(normalise(r["text"]).text, features) for r in train_rows]
    raw = rows_from(counts)
    idf = fit_idf(raw, n_features)
    y = np.array([LABELS.index(r["label"]) for r in train_rows], dtype=np.int64)
    per_label = np.bincount(y, minlength=len(LABELS)).astype(np.float64)
    sample_weight = (len(y) / (len(LABELS) * np.maximum(per_label, 1)))[y]
    weights, bias = fit_lbfgs(weigh(raw, idf), y, n_features, len(LABELS), l2=l2,
                              iterations=iterations, sample_weight=sample_weight)
    rec: dict[str, Any] = {
        "format": _FORMAT,
        "training": {"model": "multinomial logistic regression", "optimizer": "L-BFGS",
                     "l2": l2, "iterations": iterations, "class_weight": "balanced",
                     "text": "edgeward.safety normaliser (NFKC, invisibles, homoglyphs)",
                     "numpy": np.__version__},
        "data": {"file_sha256": data_sha256,
                 "train_rows": dict(Counter(r["label"] for r in train_rows)),
                 "train_sources": dict(sorted(Counter(str(r.get("source", "?"))
                                                      for r in train_rows).items()))},
    }
    rec.update(record or {})
    return LinearModel(weights, bias, idf, features, rec)


def train(rows: Sequence[dict[str, Any]], *, features: FeatureConfig, l2: float,
          iterations: int, target_fpr: float, data_sha256: str = "",
          cascade: Cascade | None = None) -> LinearModel:
    """Fit the classifier on the train rows and choose its threshold on the dev rows.

    Args:
        rows: all rows (both splits); only ``split == "train"`` rows are fitted.
        features: featuriser settings.
        l2: ridge penalty.
        iterations: L-BFGS iterations.
        target_fpr: benign false-positive rate on dev the threshold is chosen for.
        data_sha256: digest of the data file, for the record.
        cascade: the encoder stage as the shipped policy runs it: the threshold is chosen
            for the whole harm score (fast stage, rules and encoder).

    Raises:
        ConfigError: no train rows.
    """
    train_rows = [r for r in rows if r["split"] == "train"]
    dev_rows = [r for r in rows if r["split"] == "dev"]
    if not train_rows:
        raise ConfigError("no rows with split == 'train' in the data")
    model = fit(train_rows, features=features, l2=l2, iterations=iterations,
                data_sha256=data_sha256)
    record = model.record
    record["data"].update(
        split="train", train_digest=train_split_digest(rows),
        provenance="rows of the sources named in the data's SOURCES.md, each under its own "
                   "licence (LICENSES.md next to it)",
        dev_rows=dict(Counter(r["label"] for r in dev_rows)))
    record["stages"] = _stages_record(cascade)
    stages = "classifier + rules" + (" + encoder" if cascade is not None else "")
    record["threshold_rule"] = (f"lowest unsafe-score threshold ({stages}) with benign "
                                f"false-positive rate <= {target_fpr} on the dev split")
    if dev_rows:
        threshold, figures = _choose_threshold(model, dev_rows, target_fpr, cascade)
        record.update(threshold=threshold, dev=figures)
    return model


def write_word_counts(rows: Sequence[dict[str, Any]], out_dir: Path) -> Path:
    """Write ``words.txt``: the train split's ASCII words (lowercase, seen at least twice, at
    most 30,000, plus every single letter), ``word<TAB>count``, most frequent first.

    Raises:
        ConfigError: the file cannot be written.
    """
    counts: Counter[str] = Counter()
    for r in rows:
        if r["split"] == "train":
            counts.update(_WORD.findall(normalise(r["text"]).text.lower()))
    keep = sorted(((w, n) for w, n in counts.items() if n >= 2 or len(w) == 1),
                  key=lambda wn: (-wn[1], wn[0]))[:_MAX_WORDS]
    path = out_dir / WORDS_FILE
    try:
        path.write_text("".join(f"{w}\t{n}\n" for w, n in keep), encoding="utf-8")
    except OSError as e:
        raise ConfigError(f"{path}: cannot write ({e.strerror})") from e
    return path


def _stages_record(cascade: Cascade | None) -> dict[str, Any]:
    """What the threshold was chosen for: the stages and, for the encoder, its digest and how
    the policy combines it."""
    out: dict[str, Any] = {"fast": ["rules", "classifier"], "classifier_scale": CLASSIFIER_SCALE}
    if cascade is not None:
        out["encoder"] = {"model_sha256": cascade.encoder.model_sha256,
                          "band": [cascade.low, cascade.high],
                          "encoder_weight": cascade.encoder_weight,
                          "training": cascade.encoder.record.get("training", {}),
                          "data": cascade.encoder.record.get("data", {})}
    return out


def _shipped_cascade() -> Cascade | None:
    """The encoder stage as the default policy runs it, if the package ships an encoder."""
    policy = default_policy()
    encoder = default_encoder()
    if encoder is None or "encoder" not in policy.checks:
        return None
    return Cascade(encoder, low=policy.encoder_band[0], high=policy.encoder_band[1],
                   encoder_weight=policy.encoder_weight)


def main(argv: Sequence[str] | None = None) -> int:
    """The command line; returns the exit status."""
    ap = argparse.ArgumentParser(prog="python -m edgeward.safety.train", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA, help="labelled prompts (JSONL)")
    ap.add_argument("--out", type=Path, default=None,
                    help="output directory (default: the package's model/ directory)")
    ap.add_argument("--l2", type=float, default=1e-4, help="ridge penalty (default 1e-4)")
    ap.add_argument("--iterations", type=int, default=150, help="L-BFGS iterations")
    ap.add_argument("--bits", type=int, default=18, help="log2 of the hash buckets")
    ap.add_argument("--target-fpr", type=float, default=0.025,
                    help="benign false-positive rate on dev for the threshold (default 0.025)")
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    try:
        rows = read_rows(args.data)
        model = train(rows, features=FeatureConfig(bits=args.bits), l2=args.l2,
                      iterations=args.iterations, target_fpr=args.target_fpr,
                      data_sha256="sha256:" + hashlib.sha256(args.data.read_bytes()).hexdigest(),
                      cascade=_shipped_cascade())
        npz, rec = model.save(args.out or model_dir())
        words = write_word_counts(rows, args.out or model_dir())
    except EdgewardError as e:
        print(f"train: error: {e}", file=sys.stderr)
        return e.exit_code
    summary = {"weights": str(npz), "record": str(rec), "words": str(words),
               "seconds": round(time.perf_counter() - t0, 1),
               "threshold": model.record.get("threshold"), "dev": model.record.get("dev")}
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
