"""Train the shipped name model: ``python -m edgeward.safety.train_names``.

Reproducible (no randomness: full-batch L-BFGS from zero) and numpy only. Reads

- the name lexicons of ``../shared/data/names/`` (SSA first names with birth counts, Census
  surnames with ranks),
- the English prose of ``../shared/data/text/`` (how often each word occurs, and how often in
  lower case: "will" and "grant" mostly are, "Darcy" never is),
- the PII rows of ``../shared/data/safety/pii.jsonl``, **train split only**, whose ``PERSON``
  spans label the tokens; each row is also seen in lower case and in upper case, so that the
  model learns to lean on the lexicon when the shape says nothing.

The threshold is chosen without the dev split: each source is scored by a model fitted on the
other sources only (leave one source out), and the threshold is the one with the best F1 over
those held-out scores at precision of at least ``--min-precision``. Writes ``lexicon.tsv.gz``
(frequency buckets per word, no row of the data) and ``names.json`` (the record: data digests,
parameters, weights, threshold, held-out and dev figures) into ``model/names/`` or ``--out``.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import json
import math
import re
import sys
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from edgeward.errors import ConfigError, EdgewardError
from edgeward.safety._fit import fit_lbfgs, rows_from
from edgeward.safety._names import (
    LEXICON_FILE,
    MODEL_DIR,
    MODEL_FILE,
    Doc,
    NameModel,
    Token,
    _spans,
    name_features,
)
from edgeward.safety._scan import Scan

__all__ = ["build_lexicon", "main", "train"]

SHARED = Path("../shared/data")
_FORMAT = 1
_TEXTS = ("text/eval/wikitext-2-test.txt", "text/calibration/austen-pride-and-prejudice.txt",
          "text/calibration/darwin-origin-of-species.txt", "text/calibration/rust-book.txt")
_WORD = re.compile(r"[A-Za-z]+")
_MIN_FIRST = 20  # births: rarer first names are left out of the table
_MAX_SURNAME_RANK = 60_000
_L2 = 1e-4
_ITER = 300
_MIN_FEATURE_COUNT = 2


# Templates written for this model (not from any dataset): where people's names occur in the
# text a deployment sees: clinical notes, messages, forms, tickets, chat. {N} is a full name,
# {F} a first name, {L} a surname, {T} a title; {X} a capitalised word that is not a name.
_TEMPLATES = (
    "Pt {N} seen in clinic today, c/o chest pain.",
    "Patient: {N}\nReferring physician: Dr. {L}\nReason: follow-up",
    "{N} was admitted with pneumonia and discharged home with her daughter {F}.",
    "Hi {F}, thanks for getting back to me so quickly.",
    "Dear {T} {L},\nYour appointment has been moved to next week.",
    "Best regards,\n{N}",
    "Thanks,\n{F}",
    "Can you forward this to {N} and {N}?",
    "I spoke with {F} yesterday and she said {F} would call back.",
    "The meeting was attended by {N}, {N}, {N} and me.",
    "my name is {N} and i need to change my booking",
    "This is {N} from accounts, calling about invoice 2291.",
    "Signed: {N}",
    "Nurse {F} checked the IV line at 14:00; Dr. {N} was paged.",
    "{T} {L} reports that her husband {F} has had a cough for two weeks.",
    "Emergency contact: {N} (son)",
    "{L}, {F} - allergies: penicillin",
    "Author: {N}; reviewer: {N}",
    "Ask {F} whether the {X} report is ready.",
    "Lunch with {F} and {F} on Friday?",
    "{N} (born in {X}) moved here as a child.",
    "Assigned to {N}. Status: open. Reporter: {N}.",
    "Please let {T} {L} know the results are normal.",
    "According to {N}, the {X} team has finished the audit.",
    "{F}'s mother, {N}, signed the consent form.",
    "@{F} did you see what {N} posted?",
    "Interview notes - candidate: {N}, interviewer: {F} {L}.",
    "Mr {L} and Mrs {L} attended with their lawyer, {N}.",
    "The tenant, {N}, has paid the deposit.",
    "{N} is the son of {N}.",
    "Prescribed by {N}, MD",
    "Hey it's {F} again, is {F} around?",
)
_NEGATIVES = (
    "The {X} Orchestra plays in {X} every summer.",
    "We flew from {X} to {X} with {X} Airlines.",
    "Install {X} and restart {X} before the update.",
    "The {X} River floods every spring near {X}.",
    "Is {X} better than {X} for data analysis?",
    "Summarise chapter 3 of {X} for my class.",
    "{X} Inc. and {X} Group announced a merger.",
    "Write a haiku about {X} in autumn.",
    "The {X} Museum opens at nine on Sundays.",
    "Translate this into {X}: where is the station?",
    "Will it rain in {X} on Monday?",
    "May I ask how the {X} protocol works?",
    "Grant access to the {X} folder for the new hire.",
    "How do I kill a process in {X}?",
    "The patient was given {X} for the infection.",
    "Hope you enjoyed the trip to {X}.",
)
_NOT_NAMES = (
    "Python", "Linux", "Windows", "Excel", "Docker", "Kubernetes", "Paris", "Berlin", "Kenya",
    "Amazon", "Google", "Spotify", "Toyota", "Monday", "Friday", "January", "October", "Spanish",
    "Mandarin", "Ibuprofen", "Metformin", "Amoxicillin", "Everest", "Nile", "Danube", "Andes",
    "Sahara", "Oracle", "Apple", "Mercury", "Jupiter", "Christmas", "Ramadan", "Diwali", "Chrome",
    "Firefox", "Rust", "Java", "React", "Tesla", "Boeing", "Siemens", "Nokia", "Samsung", "Adobe",
    "Medicare", "Medicaid", "Harvard", "Stanford", "Oxford", "Cambridge", "Ohio", "Texas",
    "Bluetooth", "Wikipedia", "Netflix", "Lego", "Nintendo", "Olympics", "Marxism", "Bitcoin")
# Names the US lexicons barely know: so the model does not learn that a name must be in them.
_WORLD_FIRST = (
    "Aiyana", "Oluwaseun", "Chidi", "Ngozi", "Thandiwe", "Kwame", "Yaw", "Amara", "Bongani",
    "Siddharth", "Priya", "Ananya", "Rohan", "Meenakshi", "Xiaoming", "Wei", "Yuki", "Haruto",
    "Sakura", "Minjun", "Jiwoo", "Thi", "Nguyen", "Arjun", "Farhan", "Ayesha", "Zainab", "Omar",
    "Leila", "Dariusz", "Małgorzata", "Zbigniew", "Jiří", "Zdeňka", "Björn", "Sigríður",
    "Guðmundur", "Åsa", "Søren", "Jürgen", "Anneliese", "Joaquín", "Inés", "Begoña", "João",
    "Conceição", "Ioana", "Răzvan", "Dmitri", "Svetlana", "Oksana", "Taras", "Mehmet", "Ayşe",
    "Eero", "Aino", "Tiihu", "Kaito", "Tupac", "Itzel", "Nahuel", "Mirela", "Dragan", "Vesna")
_WORLD_LAST = (
    "Okonkwo", "Adeyemi", "Mensah", "Dlamini", "Nkosi", "Chaudhary", "Raghunathan",
    "Venkataraman", "Zhang", "Xu", "Takahashi", "Watanabe", "Kim", "Park", "Tran", "Hosseini",
    "Rahimi", "Al-Hashimi", "bin Rashid", "Kowalczyk", "Wiśniewski", "Dvořák", "Novotná",
    "Guðmundsdóttir", "Sigurðsson", "Lindqvist", "Østergaard", "Schäfer", "Müller-Lüdenscheidt",
    "de la Fuente", "van der Berg", "van Dijk", "O'Brien", "McAllister", "Ó Súilleabháin",
    "Fitzgerald-Hayes", "dos Santos", "Gonçalves", "Popescu", "Ionescu", "Kuznetsova", "Petrenko",
    "Yılmaz", "Virtanen", "Korhonen", "Quispe", "Mamani", "Huaman", "Petrović", "Horvat")
_TITLES = ("Mr.", "Mrs.", "Ms.", "Dr.", "Prof.", "Mr", "Ms", "Miss", "Dr")
_N_SYNTH = 2500


def synthetic_rows(shared: Path, n: int = _N_SYNTH, seed: int = 0) -> list[dict[str, Any]]:
    """``n`` rows from the templates above, names drawn from the lexicons (by frequency, and
    uniformly among rarer ones) and from the world lists, spans labelled ``PERSON``."""
    import random

    rng = random.Random(seed)
    first: list[tuple[str, int]] = []
    with (shared / "names/first_names.txt").open(encoding="utf-8") as f:
        next(f)
        first = [(a, int(c)) for a, _s, c in (line.rstrip("\n").split("\t") for line in f)]
    with (shared / "names/surnames.txt").open(encoding="utf-8") as f:
        next(f)
        last = [line.split("\t")[0].title() for line in f][:40_000]
    common_first = [a for a, c in first[:2000]]
    rare_first = [a for a, c in first[2000:40_000]]

    def pick_first() -> str:
        r = rng.random()
        return rng.choice(_WORLD_FIRST) if r < 0.2 else \
            rng.choice(common_first) if r < 0.7 else rng.choice(rare_first)

    def pick_last() -> str:
        r = rng.random()
        return rng.choice(_WORLD_LAST) if r < 0.2 else \
            rng.choice(last[:3000]) if r < 0.6 else rng.choice(last)

    def full() -> str:
        r = rng.random()
        if r < 0.6:
            return f"{pick_first()} {pick_last()}"
        if r < 0.75:
            return f"{pick_first()} {rng.choice('ABCDEFGHJKLMNPRSTW')}. {pick_last()}"
        if r < 0.85:
            return f"{pick_first()}-{pick_first()} {pick_last()}"
        return f"{pick_first()} {pick_last()}-{pick_last()}"

    out = []
    for k in range(n):
        negative = rng.random() < 0.3
        template = rng.choice(_NEGATIVES if negative else _TEMPLATES)
        text, spans = "", []
        for part in re.split(r"(\{[NFLTX]\})", template):
            if part in ("{N}", "{F}", "{L}"):
                value = full() if part == "{N}" else pick_first() if part == "{F}" else pick_last()
                spans.append({"start": len(text), "end": len(text) + len(value), "type": "PERSON"})
                text += value
            elif part == "{T}":
                text += rng.choice(_TITLES)
            elif part == "{X}":
                text += rng.choice(_NOT_NAMES)
            else:
                text += part
        out.append({"id": f"synthetic:{k}", "text": text, "spans": spans, "source": "synthetic",
                    "split": "train"})
    return out


def _digest(paths: Sequence[Path]) -> str:
    h = hashlib.sha256()
    for p in paths:
        h.update(p.read_bytes())
    return "sha256:" + h.hexdigest()


def _fn_bucket(count: int) -> int:
    return 0 if count <= 0 else min(7, 1 + int(math.log10(count)))


def _sn_bucket(rank: int) -> int:
    if rank <= 0:
        return 0
    return 5 if rank <= 100 else 4 if rank <= 1000 else 3 if rank <= 10_000 else \
        2 if rank <= 30_000 else 1


def build_lexicon(shared: Path) -> dict[str, tuple[int, int, int, int]]:
    """Word -> ``(first-name, surname, prose frequency, lower-case share)`` buckets.

    Raises:
        ConfigError: a data file is missing or malformed.
    """
    first: Counter[str] = Counter()
    surname: dict[str, int] = {}
    try:
        with (shared / "names/first_names.txt").open(encoding="utf-8") as f:
            next(f)
            for line in f:
                name, _sex, count = line.rstrip("\n").split("\t")
                first[name.lower()] += int(count)
        with (shared / "names/surnames.txt").open(encoding="utf-8") as f:
            next(f)
            for line in f:
                name, _freq, _cum, rank = line.rstrip("\n").split("\t")
                surname.setdefault(name.lower(), int(rank))
        lower: Counter[str] = Counter()
        upper: Counter[str] = Counter()  # capitalised, not at a sentence start
        prompts = "\n".join(r["text"] for r in _rows(shared / "safety/prompts.jsonl")
                             if r.get("split") == "train")
        for text in [(shared / rel).read_text(encoding="utf-8") for rel in _TEXTS] + [prompts]:
            prev_end = 0
            for m in _WORD.finditer(text):
                w = m.group()
                before = text[max(prev_end, m.start() - 3):m.start()]
                prev_end = m.end()
                if w.islower():
                    lower[w] += 1
                elif w[0].isupper() and (w[1:].islower() or len(w) == 1) \
                        and not any(c in ".!?\n\"“" for c in before) and m.start() > 0:
                    upper[w.lower()] += 1
    except (OSError, ValueError, StopIteration) as e:
        raise ConfigError(f"{shared}: cannot read the name lexicons or texts ({e}); pass "
                          "--shared DIR (the shared data directory)") from e
    table: dict[str, tuple[int, int, int, int]] = {}
    words = {w for w, c in first.items() if c >= _MIN_FIRST} \
        | {w for w, r in surname.items() if r <= _MAX_SURNAME_RANK} \
        | {w for w in lower.keys() | upper.keys() if lower[w] + upper[w] >= 2}
    for w in sorted(words):
        total = lower[w] + upper[w]
        lr = 0 if total < 3 else 1 + min(3, int(4 * lower[w] / total))
        fn = _fn_bucket(first[w]) if first[w] >= _MIN_FIRST else 0
        sn = _sn_bucket(surname.get(w, 0)) if surname.get(w, 0) <= _MAX_SURNAME_RANK else 0
        table[w] = (fn, sn, _fn_bucket(lower[w]), lr)
    return table


def _rows(path: Path) -> list[dict[str, Any]]:
    try:
        with path.open(encoding="utf-8") as f:
            return [json.loads(line) for line in f if line.strip()]
    except (OSError, ValueError) as e:
        raise ConfigError(f"{path}: cannot read the PII rows ({e})") from e


def _labelled(row: dict[str, Any], variant: str) -> tuple[str, list[tuple[int, int]]]:
    text = row["text"]
    text = text.lower() if variant == "lower" else text.upper() if variant == "upper" else text
    gold = [(s["start"], s["end"]) for s in row["spans"] if s["type"] == "PERSON"]
    return text, gold


def _examples(rows: Sequence[dict[str, Any]], model: NameModel, variants: Sequence[str]
              ) -> tuple[list[list[str]], list[int]]:
    """Token features and labels. Rows without ``spans`` are benign prompts: weak negatives,
    whose capitalised words outside both name lexicons count as not names (the rest, which
    may be names of people the prompt is about, are left out)."""
    feats: list[list[str]] = []
    labels: list[int] = []
    for row in rows:
        weak = "spans" not in row
        for variant in ("orig",) if weak else variants:
            text, gold = (row["text"], []) if weak else _labelled(row, variant)
            doc = Doc(Scan(text), model)
            for i, t in enumerate(doc.toks):
                if not doc.candidate(i):
                    continue
                if weak and (doc.bk(i)[:2] != (0, 0) or t.word.isupper()):
                    continue
                feats.append(name_features(doc, i))
                labels.append(int(any(s < t.end and t.start < e for s, e in gold)))
    return feats, labels


def _fit(feats: list[list[str]], labels: list[int]) -> tuple[dict[str, float], float]:
    counts = Counter(f for fs in feats for f in set(fs))
    vocab = {f: i for i, f in enumerate(sorted(f for f, c in counts.items()
                                                if c >= _MIN_FEATURE_COUNT))}
    pairs = []
    for fs in feats:
        idx = np.array(sorted({vocab[f] for f in fs if f in vocab}), dtype=np.int64)
        pairs.append((idx, np.ones(len(idx), dtype=np.float32)))
    y = np.array(labels, dtype=np.int64)
    pos = max(1, int(y.sum()))
    sw = np.where(y == 1, len(y) / (2 * pos), len(y) / (2 * max(1, len(y) - pos)))
    w, b = fit_lbfgs(rows_from(pairs), y, len(vocab), 2, l2=_L2, iterations=_ITER,
                     sample_weight=sw.astype(np.float64))
    diff = w[:, 1] - w[:, 0]
    weights = {f: round(float(diff[i]), 4) for f, i in vocab.items() if abs(diff[i]) >= 1e-3}
    return weights, float(b[1] - b[0])


def span_scores(rows: Sequence[dict[str, Any]], model: NameModel, variant: str = "orig"
                ) -> list[tuple[list[tuple[int, int]], list[tuple[Token, float]]]]:
    """Per row: the gold PERSON spans and every token with its score."""
    out = []
    for row in rows:
        text, gold = _labelled(row, variant)
        doc = Doc(Scan(text), model)
        out.append((gold, list(zip(doc.toks, doc.scores(), strict=True))))
    return out


def figures(scored: Sequence[tuple[list[tuple[int, int]], list[tuple[Token, float]]]],
            threshold: float) -> dict[str, float]:
    """Overlap-matched span precision, recall and F1 at ``threshold``."""
    tp = fn = tpp = fp = 0
    for gold, toks in scored:
        pred = list(_spans([t for t, _ in toks], [s for _, s in toks], threshold))
        for gs, ge in gold:
            hit = any(ps < ge and gs < pe for ps, pe in pred)
            tp += hit
            fn += not hit
        for ps, pe in pred:
            hit = any(ps < ge and gs < pe for gs, ge in gold)
            tpp += hit
            fp += not hit
    r = tp / (tp + fn) if tp + fn else 0.0
    p = tpp / (tpp + fp) if tpp + fp else 1.0
    f1 = 2 * p * r / (p + r) if p + r else 0.0
    return {"recall": round(r, 4), "precision": round(p, 4), "f1": round(f1, 4)}


def _benign_prompts(shared: Path, split: str) -> list[dict[str, Any]]:
    return [{"text": r["text"], "source": r["source"]}
            for r in _rows(shared / "safety/prompts.jsonl")
            if r.get("label") == "benign" and r.get("split") == split]


def train(shared: Path, *, min_precision: float = 0.9, synthetic: bool = True,
          benign_negatives: bool = True, log: Any = None) -> tuple[
        dict[str, tuple[int, int, int, int]], dict[str, Any]]:
    """Fit the name model; returns the lexicon table and the record (with the weights)."""
    say = log or (lambda *_: None)
    t0 = time.perf_counter()
    lexicon = build_lexicon(shared)
    say(f"lexicon: {len(lexicon)} words ({time.perf_counter() - t0:.1f} s)")
    rows = _rows(shared / "safety/pii.jsonl")
    train_rows = [r for r in rows if r.get("split") == "train"]
    synth = synthetic_rows(shared) if synthetic else []
    n_synthetic = len(synth)
    if benign_negatives:
        synth += _benign_prompts(shared, "train")
    dev_rows = [r for r in rows if r.get("split") == "dev"]
    variants = ("orig", "lower", "upper")
    probe = NameModel(lexicon, {}, 0.0, 0.5)
    sources = sorted({r["source"] for r in train_rows})
    held: list[Any] = []
    per_source: dict[str, Any] = {}
    for src in sources:
        rest = [r for r in train_rows if r["source"] != src] + synth
        w, b = _fit(*_examples(rest, probe, variants))
        m = NameModel(lexicon, w, b, 0.5)
        scored = span_scores([r for r in train_rows if r["source"] == src], m)
        held += scored
        per_source[src] = scored
        say(f"held out {src}: {figures(scored, 0.5)} at 0.5")
    grid = [round(0.05 * k, 2) for k in range(2, 19)]
    results = {t: figures(held, t) for t in grid}
    ok = [t for t in grid if results[t]["precision"] >= min_precision]
    threshold = max(ok, key=lambda t: (results[t]["f1"], t)) if ok else \
        max(grid, key=lambda t: results[t]["f1"])
    say(f"threshold {threshold}: held-out {results[threshold]}")
    weights, bias = _fit(*_examples(train_rows + synth, probe, variants))
    final = NameModel(lexicon, weights, bias, threshold)
    dev = {src: {v: figures(span_scores([r for r in dev_rows if r["source"] == src], final, v),
                            threshold) for v in variants}
           for src in sorted({r["source"] for r in dev_rows})}
    say(f"dev: {dev}")
    name_files = [shared / "names/first_names.txt", shared / "names/surnames.txt"]
    record = {
        "format": _FORMAT, "kind": "edgeward-name-model",
        "data": {"pii": _digest([shared / "safety/pii.jsonl"]), "split": "train",
                 "rows": len(train_rows), "names": _digest(name_files),
                 "texts": _digest([shared / t for t in _TEXTS]), "text_files": list(_TEXTS),
                 "prose_also": "the train split of safety/prompts.jsonl (word counts)"},
        "params": {"l2": _L2, "iterations": _ITER, "min_feature_count": _MIN_FEATURE_COUNT,
                   "min_first_name_births": _MIN_FIRST, "max_surname_rank": _MAX_SURNAME_RANK,
                   "variants": list(variants), "min_precision": min_precision,
                   "synthetic_rows": n_synthetic, "benign_negatives": benign_negatives,
                   "benign_prompts": len(synth) - n_synthetic},
        "threshold": threshold,
        "held_out": {"pooled": results[threshold],
                     "by_source": {s: figures(v, threshold) for s, v in per_source.items()}},
        "dev": dev, "bias": round(bias, 4), "weights": dict(sorted(weights.items())),
    }
    return lexicon, record


def write(out: Path, lexicon: dict[str, tuple[int, int, int, int]], record: dict[str, Any]) -> None:
    """Write ``lexicon.tsv.gz`` and ``names.json`` into ``out`` (byte-reproducible)."""
    out.mkdir(parents=True, exist_ok=True)
    body = "".join(f"{w}\t{a}\t{b}\t{c}\t{d}\n" for w, (a, b, c, d) in sorted(lexicon.items()))
    with (out / LEXICON_FILE).open("wb") as raw, \
            gzip.GzipFile(fileobj=raw, mode="wb", mtime=0, filename="") as f:
        f.write(body.encode("utf-8"))
    (out / MODEL_FILE).write_text(json.dumps(record, indent=1, sort_keys=True) + "\n",
                                  encoding="utf-8")


def main(argv: Sequence[str] | None = None) -> int:
    """Command line entry point."""
    ap = argparse.ArgumentParser(prog="python -m edgeward.safety.train_names",
                                 description=__doc__.split("\n\n")[0])
    ap.add_argument("--shared", type=Path, default=SHARED,
                    help="the shared data directory (default: ../shared/data)")
    ap.add_argument("--out", type=Path, default=MODEL_DIR,
                    help="where to write the model (default: the package's model/names)")
    ap.add_argument("--min-precision", type=float, default=0.9,
                    help="held-out precision the threshold must keep (default 0.9)")
    ap.add_argument("--no-synthetic", action="store_true",
                    help="fit without the rows made from the module's templates")
    ap.add_argument("--no-benign-negatives", action="store_true",
                    help="fit without the benign prompts' capitalised words as negatives")
    args = ap.parse_args(argv)
    try:
        lexicon, record = train(args.shared, min_precision=args.min_precision,
                                synthetic=not args.no_synthetic,
                                benign_negatives=not args.no_benign_negatives,
                                log=lambda m: print(m, file=sys.stderr))
        write(args.out, lexicon, record)
    except EdgewardError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(json.dumps({"out": str(args.out), "threshold": record["threshold"],
                      "held_out": record["held_out"], "dev": record["dev"],
                      "features": len(record["weights"])}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
