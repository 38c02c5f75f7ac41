"""Evaluate a filter on labelled JSONL: detection per label and source, PII per entity type.

Two formats, told apart by their fields (those of ``../shared/data/safety/``):

- prompts (``id``, ``text``, ``label`` in harmful/jailbreak/injection/benign, ``source``,
  ``split``): a row counts as *detected* when the filter blocks it. Reports detection per label
  and per source, the false-positive rate on benign rows, precision/recall/F1 of "unsafe",
  a confusion table (true label x predicted label) and latency percentiles;
- PII (``text``, ``spans`` of ``start``/``end``/``type``, Presidio's entity names): precision
  and recall per entity type, a predicted span matching a gold span of the mapped type when the
  two overlap.
"""

from __future__ import annotations

import json
import time
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from edgeward.errors import ConfigError
from edgeward.safety._filter import BundledFilter
from edgeward.safety._hazards import HAZARD_NAMES
from edgeward.safety._normalise import normalise
from edgeward.safety._pii import PII_TYPES, find_pii

__all__ = ["PRESIDIO_TYPES", "evaluate", "evaluate_pii", "evaluate_prompts", "read_jsonl"]

LABELS = ("harmful", "jailbreak", "injection", "benign")
# Presidio entity type -> edgeward PII type (types with no counterpart are not scored).
PRESIDIO_TYPES = {"EMAIL_ADDRESS": "EMAIL", "PHONE_NUMBER": "PHONE", "CREDIT_CARD": "CARD",
                  "IBAN_CODE": "IBAN", "US_SSN": "SSN", "IP_ADDRESS": "IP",
                  "STREET_ADDRESS": "ADDRESS", "PERSON": "NAME", "DATE_TIME": "DOB"}


def read_jsonl(path: Path, *, split: str | None = None) -> list[dict[str, Any]]:
    """Rows of a JSONL file, optionally only those of one ``split``.

    Raises:
        ConfigError: missing file, a line that is not a JSON object, or no ``text`` field.
    """
    if not path.is_file():
        raise ConfigError(f"{path}: no such file")
    rows = []
    with path.open(encoding="utf-8") as f:
        for n, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                raise ConfigError(f"{path}:{n}: not JSON ({e.msg})") from e
            if not isinstance(row, dict) or not isinstance(row.get("text"), str):
                raise ConfigError(f"{path}:{n}: expected an object with a 'text' string")
            if split is None or row.get("split") == split:
                rows.append(row)
    return rows


def _percentiles(values: Sequence[float]) -> dict[str, float]:
    if not values:
        return {"p50": 0.0, "p90": 0.0, "p99": 0.0, "mean": 0.0, "max": 0.0}
    s = sorted(values)

    def q(p: float) -> float:
        return round(s[min(len(s) - 1, int(p * len(s)))], 3)

    return {"p50": q(0.50), "p90": q(0.90), "p99": q(0.99),
            "mean": round(sum(s) / len(s), 3), "max": round(s[-1], 3)}


def _predicted(categories: Iterable[str]) -> str:
    cats = set(categories)
    for label in ("injection", "jailbreak"):
        if label in cats:
            return label
    return "harmful" if cats & set(HAZARD_NAMES) else "benign"


def evaluate_prompts(rows: Sequence[dict[str, Any]], flt: BundledFilter) -> dict[str, Any]:
    """Detection figures of ``flt`` on labelled prompts (see the module docstring).

    Raises:
        ConfigError: a row's label is not one of harmful/jailbreak/injection/benign.
    """
    by_label: dict[str, Counter[str]] = defaultdict(Counter)
    by_source: dict[str, Counter[str]] = defaultdict(Counter)
    confusion: dict[str, Counter[str]] = {lab: Counter() for lab in LABELS}
    latencies: list[float] = []
    t0 = time.perf_counter()
    for row in rows:
        label = row.get("label")
        if label not in LABELS:
            raise ConfigError(f"row {row.get('id', '?')}: label {label!r} is not one of "
                              f"{list(LABELS)}")
        verdict = flt.check(row["text"])
        latencies.append(verdict.latency_ms)
        detected = verdict.action == "block"
        predicted = _predicted(verdict.categories) if detected else "benign"
        key = f"{row.get('source', '?')}/{label}"
        for c, k in ((by_label, label), (by_source, key)):
            c[k]["n"] += 1
            c[k]["detected"] += int(detected)
        confusion[label][predicted] += 1
    wall = time.perf_counter() - t0
    unsafe = [lab for lab in LABELS if lab != "benign"]
    empty: Counter[str] = Counter()
    tp = sum(by_label.get(lab, empty)["detected"] for lab in unsafe)
    positives = sum(by_label.get(lab, empty)["n"] for lab in unsafe)
    fp = by_label.get("benign", empty)["detected"]
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / positives if positives else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0

    def table(c: dict[str, Counter[str]]) -> dict[str, dict[str, Any]]:
        return {k: {"n": v["n"], "detected": v["detected"],
                    "rate": round(v["detected"] / v["n"], 4) if v["n"] else 0.0}
                for k, v in sorted(c.items())}

    benign_n = by_label.get("benign", empty)["n"]
    return {"n": len(rows), "threshold": flt.threshold, "policy": flt.policy.name,
            "by_label": table(by_label), "by_source": table(by_source),
            "benign_fpr": round(fp / benign_n, 4) if benign_n else None,
            "precision": round(precision, 4), "recall": round(recall, 4), "f1": round(f1, 4),
            "confusion": {lab: dict(confusion[lab]) for lab in LABELS if confusion[lab]},
            "latency_ms": _percentiles(latencies),
            "prompts_per_s": round(len(rows) / wall, 1) if wall > 0 else None}


def evaluate_pii(rows: Sequence[dict[str, Any]], *, types: Iterable[str] | None = None
                 ) -> dict[str, Any]:
    """Per-type precision and recall of PII detection against gold spans (overlap match).

    Gold types with no edgeward counterpart (Presidio's ``ORGANIZATION``, ``GPE``, ``AGE``,
    ...) are counted in ``unscored_types``, not scored.
    """
    tp: Counter[str] = Counter()  # gold spans found
    fn: Counter[str] = Counter()
    tp_pred: Counter[str] = Counter()  # predicted spans that hit a gold span
    fp: Counter[str] = Counter()
    unscored: Counter[str] = Counter()  # gold types edgeward has no detector for
    latencies: list[float] = []
    wanted = tuple(types) if types else None
    for row in rows:
        text = row["text"]
        t0 = time.perf_counter()
        norm = normalise(text)
        pred = [(*norm.original_span(s.start, s.end), s.type)
                for s in (find_pii(norm.text, wanted) if wanted else find_pii(norm.text))]
        latencies.append((time.perf_counter() - t0) * 1000)
        gold = []
        for s in row.get("spans", []):
            kind = PRESIDIO_TYPES.get(s["type"], s["type"])
            if kind in PII_TYPES:
                gold.append((int(s["start"]), int(s["end"]), kind))
            else:
                unscored[kind] += 1
        for gs, ge, gt in gold:
            hit = any(pt == gt and ps < ge and gs < pe for ps, pe, pt in pred)
            (tp if hit else fn)[gt] += 1
        for ps, pe, pt in pred:
            hit = any(pt == gt and ps < ge and gs < pe for gs, ge, gt in gold)
            (tp_pred if hit else fp)[pt] += 1
    out: dict[str, dict[str, Any]] = {}
    for t in sorted(set(tp) | set(fn) | set(tp_pred) | set(fp)):
        support, predicted = tp[t] + fn[t], tp_pred[t] + fp[t]
        out[t] = {"support": support, "predicted": predicted,
                  "recall": round(tp[t] / support, 4) if support else None,
                  "precision": round(tp_pred[t] / predicted, 4) if predicted else None}
    return {"n": len(rows), "by_type": out, "match": "overlap",
            "type_map": PRESIDIO_TYPES, "unscored_types": dict(sorted(unscored.items())),
            "latency_ms": _percentiles(latencies)}


def evaluate(path: Path, flt: BundledFilter, *, split: str | None = None) -> dict[str, Any]:
    """Evaluate ``flt`` on a JSONL file, prompts or PII (told apart by a ``spans`` field).

    Raises:
        ConfigError: unreadable file, or no rows (after the split filter).
    """
    rows = read_jsonl(path, split=split)
    if not rows:
        raise ConfigError(f"{path}: no rows" + (f" with split {split!r}" if split else ""))
    kind = "pii" if "spans" in rows[0] else "prompts"
    result = (evaluate_pii(rows, types=flt.policy.pii_types) if kind == "pii"
              else evaluate_prompts(rows, flt))
    return {"file": str(path), "split": split, "kind": kind, **result}
