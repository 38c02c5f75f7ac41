"""The telemetry spool: order, persistence, the documented drop policy, failures."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from pathlib import Path

import pytest

from edgeward.device_agents._spool import Spool, SpoolConfig
from edgeward.errors import ConfigError, ResourceError
from edgeward.fleet.protocol import Kind, WireMessage

KB = 1024


def _msg(kind: Kind, size: int = KB) -> Callable[[int], WireMessage]:
    return lambda seq: WireMessage(f"edgeward/v1/devices/pi-01/{kind.value}",
                                   str(seq).encode().ljust(size, b"."), kind.retained)


def _spool(tmp_path: Path, *, max_bytes: int = 64 * KB, max_messages: int = 10_000) -> Spool:
    return Spool(SpoolConfig(path=tmp_path / "spool.db", max_bytes=max_bytes,
                             max_messages=max_messages, durable=False))


def _kinds(s: Spool) -> list[tuple[str, int]]:
    return [(m.kind.value, m.seq) for m in s.peek(0, 10_000)]


def test_fifo_with_increasing_seq_and_removal(tmp_path: Path) -> None:
    s = _spool(tmp_path)
    assert [s.append(Kind.HEALTH, _msg(Kind.HEALTH)) for _ in range(3)] == [1, 2, 3]
    s.append(Kind.EVENTS, _msg(Kind.EVENTS))
    first = s.peek(0, 2)
    assert [m.seq for m in first] == [1, 2] and [m.seq for m in s.peek(first[-1].id, 9)] == [3, 4]
    s.remove([first[0].id, first[0].id, 999])
    assert s.depth == 3 and s.size_bytes == 3 * KB
    s.close()
    again = _spool(tmp_path)  # persisted: queue, seq and sizes survive a restart
    assert again.depth == 3 and again.size_bytes == 3 * KB
    assert again.append(Kind.HEALTH, _msg(Kind.HEALTH)) == 5
    assert again.next_session() == 1 and again.next_session() == 2
    again.close()
    assert _spool(tmp_path).counter("session") == 2


def test_drop_policy_oldest_health_first_never_events(tmp_path: Path) -> None:
    s = _spool(tmp_path, max_bytes=64 * KB)
    s.append(Kind.EVENTS, _msg(Kind.EVENTS, 4 * KB))
    for _ in range(60):  # 60 KiB of health into a 64 KiB spool already holding 4 KiB of event
        s.append(Kind.HEALTH, _msg(Kind.HEALTH))
    kinds = _kinds(s)
    assert kinds[0] == ("events", 1)  # the event stays
    assert [q for k, q in kinds if k == "health"] == list(range(2, 62))
    s.append(Kind.HEALTH, _msg(Kind.HEALTH))
    health = [q for k, q in _kinds(s) if k == "health"]
    assert health[0] == 3 and health[-1] == 62  # the oldest health report went
    assert s.counter("dropped_health") == 1 and s.size_bytes <= 64 * KB


def test_superseded_provenance_goes_after_health(tmp_path: Path) -> None:
    s = _spool(tmp_path, max_bytes=64 * KB)
    for _ in range(3):
        s.append(Kind.PROVENANCE, _msg(Kind.PROVENANCE, 10 * KB))
    for _ in range(30):
        s.append(Kind.EVENTS, _msg(Kind.EVENTS))
    s.append(Kind.EVENTS, _msg(Kind.EVENTS, 10 * KB))
    kinds = _kinds(s)
    assert [q for k, q in kinds if k == "provenance"] == [2, 3]  # the oldest one went
    assert s.counter("dropped_provenance") == 1


def test_when_events_fill_the_spool_health_is_dropped_and_events_refused(
        tmp_path: Path) -> None:
    s = _spool(tmp_path, max_bytes=64 * KB)
    for _ in range(64):
        s.append(Kind.EVENTS, _msg(Kind.EVENTS))
    assert s.append(Kind.HEALTH, _msg(Kind.HEALTH)) is None
    assert s.counter("dropped_health") == 1
    with pytest.raises(ResourceError, match="events are never dropped"):
        s.append(Kind.EVENTS, _msg(Kind.EVENTS))
    assert s.depth == 64 and [q for _, q in _kinds(s)] == list(range(1, 65))
    # The refused event used no seq; the dropped health report's seq is never reused.
    s.remove([s.peek(0, 1)[0].id])
    assert s.append(Kind.EVENTS, _msg(Kind.EVENTS)) == 66


def test_message_count_bound(tmp_path: Path) -> None:
    s = _spool(tmp_path, max_messages=16)
    for _ in range(20):
        s.append(Kind.HEALTH, _msg(Kind.HEALTH, 10))
    assert s.depth == 16 and s.counter("dropped_health") == 4


def test_a_failed_build_rolls_back(tmp_path: Path) -> None:
    s = _spool(tmp_path)

    def boom(seq: int) -> WireMessage:
        raise ConfigError("bad value")

    with pytest.raises(ConfigError):
        s.append(Kind.HEALTH, boom)
    assert s.depth == 0 and s.append(Kind.HEALTH, _msg(Kind.HEALTH)) == 1


def test_broken_or_newer_files_are_refused(tmp_path: Path) -> None:
    bad = tmp_path / "junk" / "spool.db"
    bad.parent.mkdir()
    bad.write_bytes(b"not sqlite" * 500)
    with pytest.raises(ResourceError, match="cannot open the telemetry spool"):
        Spool(SpoolConfig(path=bad))
    s = _spool(tmp_path)
    s.close()
    with sqlite3.connect(tmp_path / "spool.db") as c:
        c.execute("PRAGMA user_version = 9")
    with pytest.raises(ResourceError, match="newer"):
        _spool(tmp_path)
    with pytest.raises(ConfigError, match="too small"):
        SpoolConfig(path=tmp_path / "x.db", max_bytes=10)
