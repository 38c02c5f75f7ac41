"""Evaluate a filter on labelled JSONL: detection per label and source, PII per entity type.

Two formats, told apart by their fields (those of ``../shared/data/safety/``):

- prompts (``id``, ``text``, ``label`` in harmful/jailbreak/injection/benign, ``source``,
  ``split``): a row counts as *detected* when the filter blocks it. Reports detection per label
  and per source, the false-positive rate on benign rows, precision/recall/F1 of "unsafe",
  a confusion table (true label x predicted label) and latency percentiles;
- PII (``text``, ``spans`` of ``start``/``end``/``type``, Presidio's entity names): precision
  and recall per entity type, micro precision/recall/F1/F2, the same per ``source``; a
  predicted span matches a gold span of the mapped type when the two overlap. Any detector
  can be scored this way (``detect=``), so a benchmark runs another tool through this scorer.

Also :func:`benign_false_redactions`: PII spans found in prompts labelled benign, per 100
prompts, overall and per source.
"""

from __future__ import annotations

import json
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from edgeward.errors import ConfigError
from edgeward.safety._filter import BundledFilter
from edgeward.safety._hazards import HAZARD_NAMES
from edgeward.safety._normalise import normalise
from edgeward.safety._pii import PII_TYPES, find_pii
from edgeward.safety._policy import Policy

__all__ = ["PRESIDIO_TYPES", "Detection", "Detector", "benign_false_redactions",
           "edgeward_detector", "evaluate", "evaluate_pii", "evaluate_prompts",
           "labelled_types", "read_jsonl", "scored_type"]

LABELS = ("harmful", "jailbreak", "injection", "benign")
# Presidio entity type -> edgeward PII type; None: no edgeward counterpart, not scored. Covers
# the gold types of Presidio's synthetic data and what Presidio's analyzer predicts.
PRESIDIO_TYPES: dict[str, str | None] = {
    "EMAIL_ADDRESS": "EMAIL", "PHONE_NUMBER": "PHONE", "CREDIT_CARD": "CARD", "IBAN_CODE": "IBAN",
    "US_SSN": "SSN", "IP_ADDRESS": "IP", "DOMAIN_NAME": "URL", "URL": "URL",
    "STREET_ADDRESS": "ADDRESS", "ZIP_CODE": "ADDRESS", "PERSON": "NAME", "DATE_TIME": "DATE",
    "AGE": "AGE", "MEDICAL_LICENSE": "LICENSE", "US_DRIVER_LICENSE": "LICENSE",
    "US_BANK_NUMBER": "ACCOUNT", "UK_NHS": "MRN", "MAC_ADDRESS": "DEVICE",
    "ORGANIZATION": None, "GPE": None, "NRP": None, "TITLE": None, "LOCATION": None,
    "US_ITIN": None, "US_PASSPORT": None, "CRYPTO": None, "UUID": None}
# Sub-type -> the type it is scored as: a date of birth is a date.
_SUPERTYPES = {"DOB": "DATE"}
_SCORED = frozenset(_SUPERTYPES.get(t, t) for t in PII_TYPES)

Detection = tuple[int, int, str]  # (start, end, type), end exclusive
Detector = Callable[[str], Sequence[Detection]]


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


def edgeward_detector(types: Iterable[str] | None = None, *, policy: Policy | None = None
                      ) -> Detector:
    """edgeward's own PII detection as a :data:`Detector`: normalise, ``find_pii``, map back.

    Args:
        types: the PII types to look for (default: all of :data:`PII_TYPES`, every name the
            name model finds, every age).
        policy: detect as this policy does instead: its types, ``[pii.patterns]``, name mode
            and ``age_over``.

    Returns:
        A callable from a text to ``(start, end, type)`` in that text's own offsets.
    """
    wanted = tuple(types) if types else PII_TYPES
    options: dict[str, Any] = {}
    if policy is not None:
        wanted = tuple(policy.pii_types)
        options = {"patterns": policy.pii_patterns, "names": policy.pii_names,
                   "age_over": policy.pii_age_over}

    def detect(text: str) -> list[Detection]:
        norm = normalise(text)
        return [(*norm.original_span(s.start, s.end), s.type)
                for s in find_pii(norm.text, wanted, **options)]

    return detect


def scored_type(kind: str) -> str | None:
    """The type a span of ``kind`` (an edgeward or a Presidio name) is scored as, or None.

    Presidio's names go through :data:`PRESIDIO_TYPES`, sub-types to their type
    (``_SUPERTYPES``: a ``DOB`` is a ``DATE``); None for a type edgeward has no detector
    for (``ORGANIZATION``, ``GPE``, ...).
    """
    mapped = PRESIDIO_TYPES.get(kind, kind)
    if mapped is None:
        return None
    mapped = _SUPERTYPES.get(mapped, mapped)
    return mapped if mapped in _SCORED else None


def _ratio(num: int, den: int) -> float | None:
    return round(num / den, 4) if den else None


def _micro(tp: int, support: int, tp_pred: int, predicted: int) -> dict[str, Any]:
    """Micro precision, recall, F1 and F2 from summed counts (None where undefined)."""
    p = tp_pred / predicted if predicted else None
    r = tp / support if support else None

    def f(beta: float) -> float | None:
        if p is None or r is None:
            return None
        b2 = beta * beta
        return round((1 + b2) * p * r / (b2 * p + r), 4) if p + r else 0.0

    return {"support": support, "predicted": predicted, "precision": _ratio(tp_pred, predicted),
            "recall": _ratio(tp, support), "f1": f(1.0), "f2": f(2.0)}


class _Tally:
    """Counts of one table (all rows, or one source): gold spans found, predictions that hit."""

    def __init__(self) -> None:
        self.tp: Counter[str] = Counter()  # gold spans found
        self.fn: Counter[str] = Counter()
        self.tp_pred: Counter[str] = Counter()  # predicted spans that hit a gold span
        self.fp: Counter[str] = Counter()
        self.rows = 0

    def add(self, gold: Sequence[Detection], pred: Sequence[Detection]) -> None:
        self.rows += 1
        for gs, ge, gt in gold:
            hit = any(pt == gt and ps < ge and gs < pe for ps, pe, pt in pred)
            (self.tp if hit else self.fn)[gt] += 1
        for ps, pe, pt in pred:
            hit = any(pt == gt and ps < ge and gs < pe for gs, ge, gt in gold)
            (self.tp_pred if hit else self.fp)[pt] += 1

    def by_type(self) -> dict[str, dict[str, Any]]:
        out = {}
        for t in sorted(set(self.tp) | set(self.fn) | set(self.tp_pred) | set(self.fp)):
            support, predicted = self.tp[t] + self.fn[t], self.tp_pred[t] + self.fp[t]
            out[t] = {"support": support, "predicted": predicted,
                      "recall": _ratio(self.tp[t], support),
                      "precision": _ratio(self.tp_pred[t], predicted)}
        return out

    def micro(self) -> dict[str, Any]:
        return _micro(sum(self.tp.values()), sum(self.tp.values()) + sum(self.fn.values()),
                      sum(self.tp_pred.values()),
                      sum(self.tp_pred.values()) + sum(self.fp.values()))


def labelled_types(rows: Iterable[dict[str, Any]]) -> dict[str, frozenset[str]]:
    """Per ``source``, the scored types that its gold spans use (what its annotators label).

    A source that labels only some types (WNUT-17: people, places, organisations) says nothing
    about the others; see ``labelled`` of :func:`evaluate_pii`.
    """
    seen: dict[str, set[str]] = defaultdict(set)
    for row in rows:
        kinds = (scored_type(span["type"]) for span in row.get("spans", []))
        seen[str(row.get("source", "?"))].update(k for k in kinds if k is not None)
    return {src: frozenset(kinds) for src, kinds in sorted(seen.items())}


def evaluate_pii(rows: Sequence[dict[str, Any]], *, types: Iterable[str] | None = None,
                 detect: Detector | None = None,
                 labelled: Mapping[str, Collection[str]] | None = None) -> dict[str, Any]:
    """Precision and recall of PII detection against gold spans, per type and per source.

    A predicted span matches a gold span of the same scored type that it overlaps; sub-types
    count as their type (a ``DOB`` is a ``DATE``). Gold types with no edgeward counterpart
    (Presidio's ``ORGANIZATION``, ``GPE``, ``NRP``, ``TITLE``) are counted in
    ``unscored_types``, not scored; so are predictions of such types.

    Args:
        rows: PII rows (``text``, ``spans`` of ``start``/``end``/``type``, ``source``).
        types: the PII types edgeward's detector looks for (default: all); ignored with
            ``detect``.
        detect: the detector to score (text -> ``(start, end, type)`` in the text's offsets),
            default :func:`edgeward_detector`; lets a benchmark score another tool the same way.
        labelled: per source, the types its rows are labelled for (:func:`labelled_types`);
            when given, a prediction of another type in that source's rows is set aside
            (``unlabelled_predicted``) rather than counted as a false positive. Default: every
            prediction counts.

    Returns:
        ``by_type`` {support, predicted, recall, precision}, ``micro`` {precision, recall, f1,
        f2} over scored types, ``by_source`` (the same per ``source``), ``unscored_types``,
        ``latency_ms`` (of ``detect``, per row).
    """
    detect = detect or edgeward_detector(types)
    total = _Tally()
    per_source: dict[str, _Tally] = defaultdict(_Tally)
    unscored: Counter[str] = Counter()  # gold types edgeward has no detector for
    unscored_pred: Counter[str] = Counter()
    unlabelled: Counter[str] = Counter()
    latencies: list[float] = []
    for row in rows:
        source = str(row.get("source", "?"))
        t0 = time.perf_counter()
        found = detect(row["text"])
        latencies.append((time.perf_counter() - t0) * 1000)
        pred = []
        for s, e, kind in found:
            scored = scored_type(kind)
            if scored is None:
                unscored_pred[kind] += 1
            elif labelled is not None and scored not in labelled.get(source, ()):
                unlabelled[scored] += 1
            else:
                pred.append((s, e, scored))
        gold = []
        for span in row.get("spans", []):
            scored = scored_type(span["type"])
            if scored is None:
                unscored[span["type"]] += 1
            else:
                gold.append((int(span["start"]), int(span["end"]), scored))
        total.add(gold, pred)
        per_source[source].add(gold, pred)
    return {"n": len(rows), "by_type": total.by_type(), "micro": total.micro(),
            "by_source": {src: {"n": t.rows, "by_type": t.by_type(), "micro": t.micro()}
                          for src, t in sorted(per_source.items())},
            "match": "overlap", "type_map": PRESIDIO_TYPES, "supertypes": _SUPERTYPES,
            "unscored_types": dict(sorted(unscored.items())),
            "unscored_predicted": dict(sorted(unscored_pred.items())),
            **({} if labelled is None else {
                "labelled": {k: sorted(v) for k, v in sorted(labelled.items())},
                "unlabelled_predicted": dict(sorted(unlabelled.items()))}),
            "latency_ms": _percentiles(latencies)}


def benign_false_redactions(rows: Sequence[dict[str, Any]], *, types: Iterable[str] | None = None,
                            detect: Detector | None = None, examples: int = 10
                            ) -> dict[str, Any]:
    """PII found in prompts labelled benign, which carry none: every span is a false redaction.

    Args:
        rows: labelled prompts (``text``, ``label``, ``source``); rows not labelled ``benign``
            are skipped.
        types: the PII types edgeward's detector looks for (default: all); ignored with
            ``detect``.
        detect: the detector, as for :func:`evaluate_pii`.
        examples: how many ``(source, type, snippet)`` examples to keep for inspection, the
            first of each source and type.

    Returns:
        ``n`` prompts, ``spans``, ``per_100_prompts`` (spans per 100 prompts),
        ``prompt_rate`` (share of prompts with any span), the same ``by_source``,
        ``by_type`` (span counts) and ``examples``.
    """
    detect = detect or edgeward_detector(types)
    counts: dict[str, Counter[str]] = defaultdict(Counter)
    by_type: Counter[str] = Counter()
    kept: list[dict[str, str]] = []
    seen: set[tuple[str, str]] = set()
    for row in rows:
        if row.get("label") != "benign":
            continue
        text, source = row["text"], str(row.get("source", "?"))
        found = detect(text)
        for c in (counts["all"], counts[f"source:{source}"]):
            c["n"] += 1
            c["spans"] += len(found)
            c["prompts_with_spans"] += int(bool(found))
        for s, e, kind in found:
            by_type[kind] += 1
            if len(kept) < examples and (source, kind) not in seen:  # varied, for inspection
                seen.add((source, kind))
                kept.append({"source": source, "type": kind,
                             "snippet": text[max(0, s - 20):e + 20].replace("\n", " ")})

    def cell(c: Counter[str]) -> dict[str, Any]:
        return {"n": c["n"], "spans": c["spans"],
                "per_100_prompts": round(100 * c["spans"] / c["n"], 3) if c["n"] else None,
                "prompt_rate": _ratio(c["prompts_with_spans"], c["n"])}

    return {**cell(counts["all"]),
            "by_source": {k.split(":", 1)[1]: cell(v) for k, v in sorted(counts.items())
                          if k.startswith("source:")},
            "by_type": dict(by_type.most_common()), "examples": kept}


def evaluate(path: Path, flt: BundledFilter, *, split: str | None = None) -> dict[str, Any]:
    """Evaluate ``flt`` on a JSONL file, prompts or PII (told apart by a ``spans`` field).

    Raises:
        ConfigError: unreadable file, or no rows (after the split filter).
    """
    rows = read_jsonl(path, split=split)
    if not rows:
        raise ConfigError(f"{path}: no rows" + (f" with split {split!r}" if split else ""))
    kind = "pii" if "spans" in rows[0] else "prompts"
    result = ({**evaluate_pii(rows, detect=edgeward_detector(policy=flt.policy)),
               "policy": flt.policy.name} if kind == "pii" else evaluate_prompts(rows, flt))
    return {"file": str(path), "split": split, "kind": kind, **result}
