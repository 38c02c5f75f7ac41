"""The tamper-evident log: appends, checkpoints, and every kind of tampering found and named."""

from __future__ import annotations

import hashlib
import itertools
import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from edgeward.errors import ConfigError, LogTamperedError
from edgeward.provenance import (
    FsyncPolicy,
    LogConfig,
    PrivateKey,
    Role,
    TamperEvidentLog,
    TrustStore,
    canonical_json,
    verify_log,
)
from edgeward.provenance._log import GENESIS

FAST = LogConfig(fsync=FsyncPolicy.NONE, checkpoint_every=4)


@pytest.fixture
def device_store(publisher_key: PrivateKey) -> TrustStore:
    s = TrustStore()
    s.add(publisher_key.public_key, [Role.DEVICE], name="device-1")
    return s


def _write_log(path: Path, key: PrivateKey | None, n: int = 10,
               config: LogConfig = FAST) -> None:
    with TamperEvidentLog(path, key=key, config=config) as log:
        for i in range(n):
            log.append("safety_block", {"i": i, "categories": ["S1"]})


def _lines(path: Path) -> list[bytes]:
    return path.read_bytes().splitlines()


def _put(path: Path, lines: list[bytes]) -> None:
    path.write_bytes(b"".join(line + b"\n" for line in lines))


def test_appends_chain_and_checkpoints_verify(tmp_path: Path, publisher_key: PrivateKey,
                                              device_store: TrustStore) -> None:
    log = tmp_path / "audit.jsonl"
    _write_log(log, publisher_key)
    entries = [json.loads(x) for x in _lines(log)]
    assert [e["seq"] for e in entries] == list(range(len(entries)))
    assert entries[0]["prev"] == GENESIS
    for a, b in itertools.pairwise(entries):
        assert b["prev"] == hashlib.sha256(canonical_json(a)).hexdigest()
    # 10 appends, a checkpoint after every 4, and one on close: 13 entries.
    assert [e["kind"] for e in entries].count("checkpoint") == 3
    report = verify_log(log, device_store)
    assert report.ok, report.problems
    assert (report.entries, report.checkpoints, report.verified_checkpoints) == (13, 3, 3)
    assert report.unattested_tail == 0
    # Reopening continues the chain.
    _write_log(log, publisher_key, n=2)
    assert verify_log(log, device_store).ok


def _modify(lines: list[bytes]) -> list[bytes]:
    lines[2] = lines[2].replace(b'"i":2', b'"i":99')
    return lines


def _rewrite_chain(lines: list[bytes]) -> list[bytes]:
    """Edit entry 1 and recompute every later prev, as an attacker with the file could."""
    out, prev = [], GENESIS
    for i, raw in enumerate(lines):
        e = json.loads(raw)
        if i == 1:
            e["data"]["i"] = 42
        e["prev"] = prev
        line = canonical_json(e)
        prev = hashlib.sha256(line).hexdigest()
        out.append(line)
    return out


CASES: dict[str, tuple[Callable[[list[bytes]], list[bytes]], str, int]] = {
    # name: (tamper, problem kind, 1-based line it is reported at)
    "modified": (_modify, "modified", 3),
    "not-json": (lambda ls: [*ls[:5], b"garbage", *ls[6:]], "modified", 6),
    "removed": (lambda ls: ls[:3] + ls[4:], "removed", 4),
    "removed-first": (lambda ls: ls[1:], "removed", 1),
    "inserted": (lambda ls: [*ls[:3], ls[2].replace(b'"i":2', b'"i":7'), *ls[3:]],
                 "inserted", 4),
    "reordered": (lambda ls: [*ls[:2], ls[3], ls[2], *ls[4:]], "reordered", 4),
    "chain-rewritten": (_rewrite_chain, "modified", 5),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_tampered_log_names_the_entry(case: str, tmp_path: Path, publisher_key: PrivateKey,
                                      device_store: TrustStore) -> None:
    log = tmp_path / "audit.jsonl"
    _write_log(log, publisher_key)
    tamper, kind, line = CASES[case]
    _put(log, tamper(_lines(log)))
    report = verify_log(log, device_store)
    assert not report.ok
    found = [(p.kind, p.line) for p in report.problems]
    assert (kind, line) in found, found
    with pytest.raises(LogTamperedError) as info:
        report.raise_if_tampered()
    assert info.value.problems and f"line {report.problems[0].line}" in str(info.value)


def test_chain_rewrite_is_caught_only_by_the_signed_checkpoint(
        tmp_path: Path, publisher_key: PrivateKey, device_store: TrustStore) -> None:
    log = tmp_path / "audit.jsonl"
    _write_log(log, publisher_key)
    _put(log, _rewrite_chain(_lines(log)))
    report = verify_log(log, device_store)
    assert [p.kind for p in report.problems] == ["modified"]
    assert "checkpoint seq 4" in report.problems[0].detail
    assert "entries seq 0..3 were rewritten" in report.problems[0].detail
    assert report.verified_checkpoints == 0 and report.unattested_tail == 13


def test_checkpoint_by_an_untrusted_key_is_reported(tmp_path: Path, other_key: PrivateKey,
                                                    device_store: TrustStore) -> None:
    log = tmp_path / "audit.jsonl"
    _write_log(log, other_key, n=4)
    report = verify_log(log, device_store)
    assert [p.kind for p in report.problems] == ["bad_checkpoint"]
    assert report.verified_checkpoints == 0 and report.unattested_tail == 5
    # Without a trust store the chain still verifies, and the report says nothing was signed.
    plain = verify_log(log)
    assert plain.ok and not plain.signatures_checked and plain.verified_checkpoints == 0


def test_torn_last_line_is_reported_refused_and_recovered_on_the_record(
        tmp_path: Path, publisher_key: PrivateKey, device_store: TrustStore) -> None:
    log = tmp_path / "audit.jsonl"
    _write_log(log, publisher_key, n=3)
    whole = log.read_bytes()
    log.write_bytes(whole + b'{"data":{"i":3},"kind":"safety_bl')  # a crash mid-append
    report = verify_log(log, device_store)
    assert [(p.kind, p.line) for p in report.problems] == [("torn", 5)]
    with pytest.raises(LogTamperedError, match="torn"):
        TamperEvidentLog(log, key=publisher_key, config=FAST)
    with TamperEvidentLog.recover(log, key=publisher_key, config=FAST) as recovered:
        recovered.append("safety_block", {"i": 3})
    entries = [json.loads(x) for x in _lines(log)]
    assert entries[4]["kind"] == "log_recovered"
    assert entries[4]["data"]["torn_bytes"] == 33
    assert verify_log(log, device_store).ok


def test_one_writer_at_a_time_and_config_validation(tmp_path: Path) -> None:
    log = tmp_path / "a.jsonl"
    with TamperEvidentLog(log, config=FAST), pytest.raises(ConfigError,
                                                           match="another process"):
        TamperEvidentLog(log, config=FAST)
    with pytest.raises(ConfigError, match="checkpoint_every must be >= 0"):
        LogConfig(checkpoint_every=-1)
    with pytest.raises(ValueError, match="'sometimes'"):
        LogConfig(fsync="sometimes")  # type: ignore[arg-type]
    with TamperEvidentLog(log, config=FAST) as w:
        with pytest.raises(ConfigError, match="need the device key"):
            w.checkpoint()
        with pytest.raises(ConfigError, match="checkpoint"):
            w.append("checkpoint", {})


@pytest.mark.parametrize("policy", list(FsyncPolicy))
def test_every_fsync_policy_writes_a_verifiable_log(
        tmp_path: Path, policy: FsyncPolicy, publisher_key: PrivateKey,
        device_store: TrustStore) -> None:
    log = tmp_path / f"{policy}.jsonl"
    _write_log(log, publisher_key, n=5, config=LogConfig(fsync=policy, checkpoint_every=2))
    assert verify_log(log, device_store).ok


def test_an_edit_just_before_a_checkpoint_is_reported_once(
        tmp_path: Path, publisher_key: PrivateKey, device_store: TrustStore) -> None:
    log = tmp_path / "audit.jsonl"
    _write_log(log, publisher_key)
    lines = _lines(log)
    lines[3] = lines[3].replace(b'"i":3', b'"i":33')
    _put(log, lines)
    report = verify_log(log, device_store)
    assert [(p.kind, p.line, p.seq) for p in report.problems] == [("modified", 4, 3)]


_CHILD = """
import sys
from pathlib import Path
from edgeward.provenance import LogConfig, TamperEvidentLog
log = TamperEvidentLog(Path(sys.argv[1]), config=LogConfig(checkpoint_every=0))
i = 0
while True:
    log.append("event", {"i": i, "pad": "x" * 2000})
    print(i, flush=True)  # acknowledged: append() returned
    i += 1
"""


def test_acknowledged_appends_survive_a_killed_writer(tmp_path: Path) -> None:
    log = tmp_path / "crash.jsonl"
    child = subprocess.Popen([sys.executable, "-c", _CHILD, str(log)],
                             stdout=subprocess.PIPE, text=True)
    assert child.stdout is not None
    acked = [int(child.stdout.readline()) for _ in range(50)]
    child.kill()  # SIGKILL: no cleanup, possibly mid-write
    child.wait(timeout=10)
    report = verify_log(log)
    assert all(p.kind == "torn" for p in report.problems), report.problems
    seqs = [json.loads(x)["seq"] for x in log.read_bytes().split(b"\n")[:-1]]
    assert set(acked) <= set(seqs)  # every acknowledged entry is in the file, in the chain
    with TamperEvidentLog.recover(log, config=FAST) as w:
        w.append("event", {"after": "restart"})
    assert verify_log(log).ok
