"""Verifying a tamper-evident log: which entry was modified, removed, inserted or reordered.

Reads the whole file once, line by line, and reports every problem it can name rather than
stopping at the first; ``LogReport.raise_if_tampered()`` turns a report with problems into a
:class:`~edgeward.errors.LogTamperedError`.

What the chain proves, and what only checkpoints prove: an edited, removed, inserted or
reordered entry breaks ``seq`` order or a ``prev`` link and is found without any key. Someone
who rewrites every line after an edit (recomputing the chain) is caught by the next signed
checkpoint, whose ``head`` no longer matches; the entries after the last valid checkpoint (the
``unattested_tail``) are protected by the chain alone, so the tail could be cut off unnoticed.
"""

from __future__ import annotations

import hashlib
import itertools
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from edgeward.errors import ConfigError, LogTamperedError, SignatureError
from edgeward.provenance._dsse import Envelope
from edgeward.provenance._log import CHECKPOINT_PAYLOAD_TYPE, CHECKPOINT_TYPE, GENESIS, LogEntry
from edgeward.provenance._trust import Role, TrustStore
from edgeward.provenance._verify import verify_envelope

__all__ = ["LogProblem", "LogReport", "verify_log"]

ProblemKind = Literal["modified", "removed", "inserted", "reordered", "torn", "bad_checkpoint"]


@dataclass(frozen=True)
class LogProblem:
    """One thing wrong with a log.

    Attributes:
        kind: ``modified``, ``removed``, ``inserted``, ``reordered``, ``torn`` or
            ``bad_checkpoint``.
        line: the 1-based line number it was found at.
        seq: the entry's seq, where known.
        detail: one sentence naming the entry.
    """

    kind: ProblemKind
    line: int
    seq: int | None
    detail: str

    def to_dict(self) -> dict[str, Any]:
        """As in ``verify-log --json``."""
        return {"kind": self.kind, "line": self.line, "seq": self.seq, "detail": self.detail}


@dataclass(frozen=True)
class LogReport:
    """The result of :func:`verify_log`.

    Attributes:
        path: the log.
        entries: lines read (including checkpoints and bad lines; not a torn tail).
        checkpoints: checkpoint entries found.
        verified_checkpoints: checkpoints whose signature verified against the trust store.
        signatures_checked: whether a trust store was given.
        unattested_tail: entries after the last verified checkpoint (chain-protected only).
        problems: what is wrong, in file order; empty when the log is intact.
    """

    path: Path
    entries: int
    checkpoints: int
    verified_checkpoints: int
    signatures_checked: bool
    unattested_tail: int
    problems: tuple[LogProblem, ...]

    @property
    def ok(self) -> bool:
        """No problem found."""
        return not self.problems

    def to_dict(self) -> dict[str, Any]:
        """The ``verify-log --json`` object."""
        return {"path": str(self.path), "ok": self.ok, "entries": self.entries,
                "checkpoints": self.checkpoints, "verified_checkpoints": self.verified_checkpoints,
                "signatures_checked": self.signatures_checked,
                "unattested_tail": self.unattested_tail,
                "problems": [p.to_dict() for p in self.problems]}

    def raise_if_tampered(self) -> None:
        """Raise when a problem was found.

        Raises:
            LogTamperedError: listing every problem.
        """
        if self.problems:
            first = self.problems[0]
            more = f" (and {len(self.problems) - 1} more)" if len(self.problems) > 1 else ""
            raise LogTamperedError(f"{self.path}: line {first.line}: {first.detail}{more}",
                                   problems=[f"line {p.line}: {p.detail}" for p in self.problems])


@dataclass
class _Rec:
    line: int
    digest: str
    entry: LogEntry | None
    seq: int  # the entry's seq, or the seq it is presumed to hold when it did not parse


def _read(path: Path) -> tuple[list[_Rec], list[LogProblem]]:
    try:
        data = path.read_bytes()
    except OSError as e:
        raise ConfigError(f"{path}: cannot read the log ({e.strerror})") from e
    lines = data.split(b"\n")
    problems: list[LogProblem] = []
    torn = lines.pop()  # b"" when the file ends with a newline
    recs: list[_Rec] = []
    for i, raw in enumerate(lines, start=1):
        digest = hashlib.sha256(raw).hexdigest()
        try:
            entry = LogEntry.from_dict(json.loads(raw))
        except (json.JSONDecodeError, UnicodeDecodeError, ConfigError) as e:
            problems.append(LogProblem("modified", i, None, f"line {i} is not a log entry "
                                       f"({str(e)[:80]}); it was modified"))
            recs.append(_Rec(i, digest, None, recs[-1].seq + 1 if recs else 0))
            continue
        recs.append(_Rec(i, digest, entry, entry.seq))
    if torn:
        problems.append(LogProblem(
            "torn", len(lines) + 1, None,
            f"the last line ({len(torn)} bytes) has no newline: an append was torn by a crash; "
            "it is not accepted (TamperEvidentLog.recover() cuts it off on the record)"))
    return recs, problems


def _drop_inserted(recs: list[_Rec], problems: list[LogProblem]) -> list[_Rec]:
    """Of entries sharing a seq, keep the one the chain links to; the others were inserted."""
    by_seq: dict[int, list[_Rec]] = {}
    for r in recs:
        by_seq.setdefault(r.seq, []).append(r)
    prevs = {r.entry.prev for r in recs if r.entry}
    dropped: set[int] = set()
    for seq, group in by_seq.items():
        if len(group) < 2:
            continue
        before = {r.digest for r in by_seq.get(seq - 1, [])} or ({GENESIS} if seq == 0 else set())

        def score(r: _Rec, before: set[str] = before) -> int:
            return int(bool(r.entry and r.entry.prev in before)) + int(r.digest in prevs)

        keep = max(group, key=score)  # ties: the first in the file
        for r in group:
            if r is not keep:
                dropped.add(r.line)
                problems.append(LogProblem("inserted", r.line, seq, (
                    f"line {r.line} repeats seq {seq} of line {keep.line} and the chain does "
                    "not link to it: it was inserted")))
    return [r for r in recs if r.line not in dropped]


def _order_and_links(recs: list[_Rec], problems: list[LogProblem]) -> list[_Rec]:
    for x, y in itertools.pairwise(recs):
        if y.seq < x.seq:
            problems.append(LogProblem("reordered", y.line, y.seq, (
                f"entry seq {y.seq} (line {y.line}) comes after seq {x.seq} (line {x.line}): "
                "entries were reordered")))
    ordered = sorted(recs, key=lambda r: r.seq)
    expected = 0
    for r in ordered:
        if r.seq > expected:
            span = f"seq {expected}" if r.seq == expected + 1 else f"seq {expected}..{r.seq - 1}"
            problems.append(LogProblem("removed", r.line, r.seq, (
                f"{span} missing before line {r.line} (seq {r.seq}): entries were removed")))
        expected = r.seq + 1
    bad = {p.line for p in problems if p.kind == "modified"}
    before: _Rec | None = None
    for rec in ordered:
        a, before = before, rec
        if rec.entry is None or (rec.seq != (a.seq + 1 if a else 0)):
            continue  # a gap (reported as removed) or a line that did not parse
        if a is None:
            if rec.entry.prev != GENESIS:
                problems.append(LogProblem("modified", rec.line, 0, (
                    f"entry seq 0 (line {rec.line}) was modified: its prev is not the genesis")))
        elif rec.entry.prev != a.digest and a.line not in bad:
            problems.append(LogProblem("modified", a.line, a.seq, (
                f"entry seq {a.seq} (line {a.line}) was modified: its digest no longer "
                f"matches the one entry seq {rec.seq} (line {rec.line}) recorded")))
    return ordered


def _checkpoints(ordered: list[_Rec], trust_store: TrustStore | None, role: Role | str,
                 problems: list[LogProblem]) -> tuple[int, int, int]:
    by_seq = {r.seq: r for r in ordered}
    found = verified = 0
    last_good = -1
    rewritten = False
    for r in ordered:
        if r.entry is None or r.entry.kind != "checkpoint":
            continue
        found += 1
        try:
            env = Envelope.from_dict(r.entry.data.get("envelope"))
            if env.payload_type != CHECKPOINT_PAYLOAD_TYPE:
                raise ConfigError(f"payloadType {env.payload_type!r}")
            body = json.loads(env.payload)
            if not isinstance(body, dict) or body.get("_type") != CHECKPOINT_TYPE:
                raise ConfigError("not a checkpoint statement")
            if trust_store is not None:
                verify_envelope(env, trust_store, role=role)
        except (SignatureError, ConfigError, json.JSONDecodeError, UnicodeDecodeError) as e:
            problems.append(LogProblem("bad_checkpoint", r.line, r.seq, (
                f"checkpoint seq {r.seq} (line {r.line}) does not verify: {e}")))
            continue
        before = by_seq.get(r.seq - 1)
        actual = before.digest if before else GENESIS
        if body.get("seq") != r.seq or body.get("head") != actual:
            modified = {p.line for p in problems if p.kind == "modified"}
            if not rewritten and (before is None or before.line not in modified):
                # (later checkpoints differ as a consequence, and an entry already found
                # modified explains its own checkpoint)
                rewritten = True
                problems.append(LogProblem("modified", r.line, r.seq, (
                    f"checkpoint seq {r.seq} (line {r.line}) signed a different history "
                    f"(head {str(body.get('head'))[:12]}…): entries seq {last_good + 1}.."
                    f"{r.seq - 1} were rewritten after it was signed")))
            continue
        if trust_store is not None and not rewritten:
            verified += 1
            last_good = r.seq
    tail = sum(1 for r in ordered if r.seq > last_good)
    return found, verified, tail


def verify_log(path: Path, trust_store: TrustStore | None = None, *,
               role: Role | str = Role.DEVICE) -> LogReport:
    """Check a tamper-evident log and say what, if anything, was done to it.

    Args:
        path: the JSONL log.
        trust_store: to verify checkpoint signatures (without it they are parsed and their
            heads compared, but not authenticated).
        role: the role the checkpoint signer must hold (default ``device``).

    Returns:
        The report; ``report.ok`` is False when any problem was found.

    Raises:
        ConfigError: the file cannot be read.
    """
    recs, problems = _read(path)
    recs = _drop_inserted(recs, problems)
    ordered = _order_and_links(recs, problems)
    found, verified, tail = _checkpoints(ordered, trust_store, role, problems)
    unique: dict[tuple[str, int], LogProblem] = {}
    for p in problems:
        unique.setdefault((p.kind, p.line), p)
    ranked = sorted(unique.values(), key=lambda p: (p.line, p.kind))
    return LogReport(path, len(recs) + sum(1 for p in ranked if p.kind == "inserted"), found,
                     verified, trust_store is not None, tail, tuple(ranked))
