"""Leave-sources-out evaluation: how the filter does on sources it was not trained on.

A dev split drawn from the same sources as the train split measures how well a model learned
those sources' style; a user's prompts come from elsewhere. This yardstick holds out *whole
sources*: the train split's sources are put into ``k`` folds (every source with at least
``min_rows`` rows is held out in exactly one fold; smaller ones always stay in training, since
a figure on a handful of rows says little), and for each fold everything that learns is fitted
on the other folds' rows only and scored on the held-out sources at a fixed threshold (the
shipped one). Reported per source and label (recall of unsafe rows, false-positive rate of
benign rows), the macro mean per label over the held-out sources, and the worst source.

The assignment is deterministic: sources are taken largest first (ties by name) and each goes
to the fold that so far holds the fewest rows of its main label, then the fewest rows, so each
fold holds out some of each label where there are enough sources.
"""

from __future__ import annotations

import hashlib
import json
import zipfile
from collections import Counter, defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from edgeward.errors import ArtifactError, ConfigError
from edgeward.safety._classifier import LinearModel
from edgeward.safety._encoder import Encoder
from edgeward.safety._eval import evaluate_prompts
from edgeward.safety._filter import BundledFilter
from edgeward.safety._policy import Policy, default_policy

__all__ = ["MIN_ROWS", "evaluate_folds", "leave_sources_out", "source_folds", "summarise_folds"]

MIN_ROWS = 50  # a source with fewer train rows is never held out
MIN_CELL = 20  # a (source, label) cell with fewer rows is reported but not the "worst"

Fit = Callable[[Sequence[dict[str, Any]]], LinearModel]


def source_folds(rows: Sequence[dict[str, Any]], k: int = 5, *, min_rows: int = MIN_ROWS
                 ) -> dict[str, int]:
    """The fold (0..k-1) each held-out source belongs to; sources not listed never are.

    Raises:
        ConfigError: ``k < 2``, or fewer than ``k`` sources have ``min_rows`` rows.
    """
    if k < 2:
        raise ConfigError(f"--folds {k}: leave-sources-out needs at least 2 folds")
    sizes: Counter[str] = Counter(str(r.get("source", "?")) for r in rows)
    main_label: dict[str, str] = {}
    for source in sizes:
        labels = Counter(r["label"] for r in rows if str(r.get("source", "?")) == source)
        unsafe = {lab: n for lab, n in labels.items() if lab != "benign"}
        main_label[source] = max(sorted(unsafe), key=lambda lab: unsafe[lab]) if unsafe \
            else "benign"
    eligible = sorted((s for s, n in sizes.items() if n >= min_rows),
                      key=lambda s: (-sizes[s], s))
    if len(eligible) < k:
        raise ConfigError(f"only {len(eligible)} source(s) have {min_rows} or more rows; "
                          f"cannot make {k} leave-sources-out folds")
    per_label: list[Counter[str]] = [Counter() for _ in range(k)]
    total = [0] * k
    folds: dict[str, int] = {}
    for source in eligible:
        label = main_label[source]
        fold = min(range(k), key=lambda i: (per_label[i][label], total[i], i))
        folds[source] = fold
        per_label[fold][label] += sizes[source]
        total[fold] += sizes[source]
    return folds


def _digest(rows: Sequence[dict[str, Any]], params: dict[str, Any]) -> str:
    h = hashlib.sha256(json.dumps(params, sort_keys=True).encode())
    for r in sorted(rows, key=lambda r: str(r["id"])):
        h.update(f"{r['id']}\t{r['label']}\t{r['text']}\n".encode())
    return h.hexdigest()[:16]


def _fold_model(fit: Fit, rows: Sequence[dict[str, Any]], cache_dir: Path | None,
                params: dict[str, Any]) -> LinearModel:
    if cache_dir is None:
        return fit(rows)
    path = cache_dir / _digest(rows, params)
    try:
        return LinearModel.load(path)
    except (ConfigError, ArtifactError, zipfile.BadZipFile):  # missing or unreadable: refit
        model = fit(rows)
        model.save(path)
        return model


def leave_sources_out(rows: Sequence[dict[str, Any]], fit: Fit, *, k: int = 5,
                      threshold: float, policy: Policy | None = None,
                      min_rows: int = MIN_ROWS, cache_dir: Path | None = None,
                      params: dict[str, Any] | None = None,
                      encoders: Mapping[int, Encoder] | None = None,
                      progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Fit on all but one fold of sources and score the held-out fold, for every fold.

    Args:
        rows: the labelled rows to fold (the train split: dev is never used here).
        fit: fits a classifier on rows (e.g. :func:`edgeward.safety.train.fit`).
        k: folds.
        threshold: the unsafe-score threshold every fold is scored at (the shipped one).
        policy: the policy (default: the shipped one); its threshold is replaced.
        min_rows: sources with fewer rows are never held out.
        cache_dir: where fold models are kept between runs, by a digest of their training
            rows and ``params`` (``None``: always fit).
        params: the fitting parameters, for the cache key and the report.
        encoders: the encoder stage fine-tuned for each fold without its sources; without
            them the encoder stage is left out (the shipped one has seen every source).
        progress: called with a line before each fold.

    Returns:
        ``{"k", "threshold", "folds": {source: fold}, "by_source": {"src/label": {...}},
        "macro": {label: rate}, "worst": {label: {"source", "rate"}}, ...}``.
    """
    folds = source_folds(rows, k, min_rows=min_rows)
    base = replace(policy or default_policy(), threshold=threshold)
    if encoders is None:
        base = replace(base, checks=tuple(c for c in base.checks if c != "encoder"))
    elif set(encoders) != set(range(k)):
        raise ConfigError(f"encoders for folds {sorted(encoders)}; need one for each of 0..{k - 1}")
    by_source: dict[str, dict[str, Any]] = {}
    for fold in range(k):
        held = {s for s, f in folds.items() if f == fold}
        train_rows = [r for r in rows if str(r.get("source", "?")) not in held]
        test_rows = [r for r in rows if str(r.get("source", "?")) in held]
        if progress is not None:
            progress(f"fold {fold + 1}/{k}: fitting on {len(train_rows)} rows, holding out "
                     f"{', '.join(sorted(held))} ({len(test_rows)} rows)")
        model = _fold_model(fit, train_rows, cache_dir, params or {})
        encoder = encoders[fold] if encoders is not None else None
        figures = evaluate_prompts(test_rows, BundledFilter(base, model=model, encoder=encoder))
        for key, cell in figures["by_source"].items():
            by_source[key] = {**cell, "fold": fold}
    return {"k": k, "threshold": threshold, "min_rows": min_rows, "params": params or {},
            "stages": [c for c in base.checks if c in ("rules", "classifier", "encoder")],
            "folds": dict(sorted(folds.items())),
            "not_held_out": sorted({str(r.get("source", "?")) for r in rows} - set(folds)),
            **summarise_folds(by_source)}


def summarise_folds(by_source: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Macro mean and worst source per label of a ``{"source/label": {n, detected, rate}}``
    table (for benign, the rate is the false-positive rate and the worst is the highest)."""
    per_label: dict[str, list[tuple[str, float, int]]] = defaultdict(list)
    for key, cell in by_source.items():
        source, label = key.rsplit("/", 1)
        per_label[label].append((source, float(cell["rate"]), int(cell["n"])))
    macro: dict[str, float] = {}
    worst: dict[str, dict[str, Any]] = {}
    for label, cells in sorted(per_label.items()):
        macro[label] = round(sum(rate for _, rate, _ in cells) / len(cells), 4)
        big = [c for c in cells if c[2] >= MIN_CELL] or cells
        pick = max(big, key=lambda c: c[1]) if label == "benign" else min(big, key=lambda c: c[1])
        worst[label] = {"source": pick[0], "rate": pick[1], "n": pick[2]}
    return {"by_source": dict(sorted(by_source.items())), "macro": macro, "worst": worst}


def evaluate_folds(path: Path, *, k: int = 5, policy: Policy | None = None,
                   threshold: float | None = None, cache_dir: Path | None = None,
                   encoder_root: Path | None = None,
                   progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Leave-sources-out figures of the shipped classifier's recipe on ``path``'s train split.

    Each fold's classifier is fitted with the shipped model's features and training
    parameters (its record), on the other folds' train rows only; the rules are the shipped
    ones; every fold is scored at ``threshold`` (default: the policy's, else the shipped
    model's). With ``encoder_root`` (``fold-1`` .. ``fold-K`` encoders made by
    ``scripts/train_safety_encoder.py --folds K``) the encoder stage is scored too; without it
    the figures are the fast stage's alone.

    Raises:
        ConfigError: unreadable data, no train split, or too few sources for ``k`` folds.
    """
    from edgeward.safety._classifier import default_model
    from edgeward.safety.train import fit, read_rows

    shipped = default_model()
    rows = [r for r in read_rows(path) if r["split"] == "train"]
    if not rows:
        raise ConfigError(f"{path}: no rows with split 'train' to fold")
    training = shipped.record.get("training", {})
    l2 = float(training.get("l2", 1e-4))
    iterations = int(training.get("iterations", 150))
    features = shipped.features
    params = {"features": features.to_dict(), "l2": l2, "iterations": iterations}
    policy = policy or default_policy()
    if threshold is None:
        threshold = policy.threshold if policy.threshold is not None else shipped.threshold

    def fit_rows(train_rows: Sequence[dict[str, Any]]) -> LinearModel:
        return fit(train_rows, features=features, l2=l2, iterations=iterations)

    encoders = None
    if encoder_root is not None:
        encoders = {f: Encoder.load(encoder_root / f"fold-{f + 1}") for f in range(k)}
    result = leave_sources_out(rows, fit_rows, k=k, threshold=threshold, policy=policy,
                               cache_dir=cache_dir, params=params, encoders=encoders,
                               progress=progress)
    return {"file": str(path), "split": "train", **result}
