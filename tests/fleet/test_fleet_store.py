"""The store, on every backend (in-memory fake, SQLite, PostgreSQL): registry, exactly-once
``(device, seq)``, state ordering, queries, migrations."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest
from _fleet_helpers import DIGEST, T0, event, health, provenance, state

from edgeward.errors import ConfigError, StoreError
from edgeward.fleet._memstore import MemoryStore
from edgeward.fleet._migrations import LATEST
from edgeward.fleet._sqlite import SqliteStore
from edgeward.fleet._store import Accepted, Alert, Store, open_store
from edgeward.fleet.protocol import Message, encode
from edgeward.provenance import PrivateKey


@pytest.fixture(params=["memory", "sqlite", "postgres"])
def store(request: pytest.FixtureRequest, tmp_path: Path,
          device_key: PrivateKey) -> Iterator[Store]:
    if request.param == "memory":
        s: Store = MemoryStore()
    elif request.param == "sqlite":
        s = open_store("fleet.db", base_dir=tmp_path, sqlite_synchronous="NORMAL")
    else:
        s = open_store(request.getfixturevalue("postgres_url"))
    s.enroll("pi-01", device_key.public_key, now=T0)
    yield s
    s.close()


def _acc(msg: Message, key: PrivateKey, *, retained: bool = False) -> Accepted:
    return Accepted(msg, encode(msg, key).payload, T0 + 5, retained)


def test_enroll_is_idempotent_and_guards_keys(store: Store, device_key: PrivateKey,
                                              other_key: PrivateKey) -> None:
    assert store.enroll("pi-01", device_key.public_key, now=T0 + 9).enrolled_at == T0
    with pytest.raises(ConfigError, match="--replace"):
        store.enroll("pi-01", other_key.public_key, now=T0)
    store.write([_acc(health(seq=7), device_key)], manager="m", now=T0)
    rec = store.enroll("pi-01", other_key.public_key, now=T0, replace=True)
    assert rec.key_id == other_key.key_id
    dev = store.device("pi-01")
    assert dev is not None and dev.last_seq == 0 and dev.key_id == other_key.key_id
    with pytest.raises(ConfigError, match="bad device id"):
        store.enroll("a/b", device_key.public_key, now=T0)


def test_each_device_seq_is_stored_exactly_once(store: Store, device_key: PrivateKey) -> None:
    batch = [_acc(health(seq=s), device_key) for s in (1, 2, 3)] + [
        _acc(event(seq=4), device_key), _acc(health(seq=2), device_key)]
    first = store.write(batch, manager="m", now=T0)
    assert len(first.new) == 4 and len(first.duplicates) == 1
    again = store.write(batch, manager="m", now=T0)
    assert not again.new and len(again.duplicates) == 5
    # A health report and an event share the device's seq space.
    clash = store.write([_acc(health(seq=4), device_key)], manager="m", now=T0)
    assert len(clash.duplicates) == 1
    assert store.count("telemetry") == 4 and store.count("health") == 3
    assert store.count("events", "pi-01") == 1


def test_device_summary_follows_the_newest_message(store: Store, device_key: PrivateKey,
                                                   publisher_key: PrivateKey) -> None:
    store.write([_acc(health(seq=9), device_key), _acc(health(seq=3), device_key),
                 _acc(provenance(publisher_key, seq=5), device_key)], manager="m", now=T0)
    d = store.device("pi-01")
    assert d is not None
    assert (d.last_seq, d.artifact_digest, d.slot) == (9, DIGEST, "a")
    assert d.to_dict() == {"device_id": "pi-01", "state": "unknown",
                           "last_seen": "2025-06-15T15:06:45.000Z", "artifact_digest": DIGEST,
                           "last_seq": 9}


def test_state_moves_only_forward(store: Store, device_key: PrivateKey) -> None:
    def put(st: str, session: int) -> tuple[int, int]:
        out = store.write([_acc(state(st=st, session=session), device_key)], manager="m",
                          now=T0)
        return len(out.transitions), len(out.stale)

    assert put("online", 1) == (1, 0)
    assert put("lost", 1) == (1, 0)
    assert put("online", 1) == (0, 1)  # a replayed birth of the same session
    assert put("online", 2) == (1, 0)
    assert put("lost", 1) == (0, 1)  # a late Last Will of an older session
    d = store.device("pi-01")
    assert d is not None and (d.state, d.session) == ("online", 2)
    assert [t["state"] for t in store.transitions("pi-01")] == ["online", "lost", "online"]


def test_queries_return_json_ready_rows(store: Store, device_key: PrivateKey,
                                        publisher_key: PrivateKey) -> None:
    store.write([_acc(health(seq=1), device_key), _acc(event(seq=2), device_key),
                 _acc(provenance(publisher_key, seq=3), device_key)], manager="m", now=T0)
    (h,) = store.health("pi-01")
    assert h["seq"] == 1 and h["temperature_c"] == 51.5
    assert h["safety"] == {"S1": 2, "allow": 120}
    assert h["device_time"] == "2025-06-15T15:06:41.000Z"
    (e,) = store.events("pi-01")
    assert (e["event"], e["data"]) == ("update.progress", {"percent": 40, "slot": "b"})
    (p,) = store.provenance("pi-01")
    assert p["publisher_key_id"] == publisher_key.key_id
    assert p["statement"]["payloadType"] == "application/vnd.in-toto+json"
    store.add_alert(Alert("pi-01", "lost", "gone", T0), manager="m")
    assert store.alerts()[0].to_dict()["kind"] == "lost"
    store.save_stats("m", {"received": 3}, started_at=T0, now=T0 + 1)
    assert store.stats()[0]["counters"] == {"received": 3}
    assert store.schema_version() == LATEST


def test_health_since_keeps_the_reports_made_in_the_window(store: Store,
                                                            device_key: PrivateKey) -> None:
    # health(seq=s) is made at T0 + s
    store.write([_acc(health(seq=s), device_key) for s in (1, 5, 9, 12)], manager="m", now=T0)
    assert [r["seq"] for r in store.health("pi-01", since=T0 + 5)] == [12, 9, 5]
    assert [r["seq"] for r in store.health("pi-01", since=T0 + 5, limit=2)] == [12, 9]
    assert store.health("pi-01", since=T0 + 13) == []
    assert len(store.health("pi-01")) == 4


def test_commands_get_increasing_versions_and_documents_round_trip(store: Store) -> None:
    from edgeward.fleet.protocol import new_command

    made = [store.issue_command("pi-01", lambda v: new_command("pi-01", "deploy", v, now=T0,
                                                               params={"n": v}))
            for _ in range(3)]
    assert [c.version for c in made] == [1, 2, 3]
    rows = store.commands("pi-01")
    assert [r["version"] for r in rows] == [3, 2, 1] and rows[0]["params"] == {"n": 3}
    assert rows[0]["command_id"] == made[-1].command_id
    with pytest.raises(ConfigError, match="not enrolled"):
        store.issue_command("ghost", lambda v: new_command("ghost", "deploy", v))
    store.put_doc("rollouts", "r1", {"state": "running", "n": 1}, now=T0)
    store.put_doc("rollouts", "r1", {"state": "done", "n": 2}, now=T0 + 1)
    store.put_doc("device_groups", "g", {"devices": ["pi-01"]}, now=T0)
    assert store.get_doc("rollouts", "r1") == {"state": "done", "n": 2}
    assert store.doc_names("rollouts") == ["r1"] and store.get_doc("rollouts", "r2") is None
    with pytest.raises(ConfigError, match="no document table"):
        store.put_doc("devices", "x", {}, now=T0)


def test_sqlite_migrates_an_old_store_in_place(tmp_path: Path, device_key: PrivateKey) -> None:
    db = tmp_path / "old.db"
    old = SqliteStore(db, target_version=1)
    assert old.schema_version() == 1
    old.enroll("pi-01", device_key.public_key, now=T0)
    old.close()
    with sqlite3.connect(db) as c:
        assert not c.execute("SELECT name FROM sqlite_master WHERE name = 'alerts'").fetchall()
    new = SqliteStore(db)
    assert new.schema_version() == LATEST == 6
    assert new.doc_names("rollouts") == [] and new.commands("pi-01") == []  # tables of 3, 4
    new.write([_acc(health(seq=1), device_key)], manager="m", now=T0)  # 5, 6: behaviour, canaries
    assert new.count("health") == 1 and new.device("pi-01") is not None
    new.add_alert(Alert("pi-01", "lost", "gone", T0), manager="m")
    new.close()
    with sqlite3.connect(db) as c:
        assert c.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        c.execute("INSERT INTO schema_version VALUES (99, 0)")
    with pytest.raises(StoreError, match="newer than this edgeward"):
        SqliteStore(db)


def test_postgres_migrates_an_old_store_in_place(postgres_url: str,
                                                 device_key: PrivateKey) -> None:
    from edgeward.fleet._postgres import PostgresStore

    old = PostgresStore(postgres_url, target_version=1)
    old.enroll("pi-01", device_key.public_key, now=T0)
    old.close()
    new = PostgresStore(postgres_url)
    assert new.schema_version() == LATEST and new.device("pi-01") is not None
    new.close()


def test_two_sqlite_stores_share_one_file(tmp_path: Path, device_key: PrivateKey) -> None:
    a, b = SqliteStore(tmp_path / "f.db"), SqliteStore(tmp_path / "f.db")
    a.enroll("pi-01", device_key.public_key, now=T0)
    batch = [_acc(health(seq=s), device_key) for s in range(1, 6)]
    assert len(a.write(batch[:3], manager="a", now=T0).new) == 3
    out = b.write(batch, manager="b", now=T0)
    assert len(out.new) == 2 and len(out.duplicates) == 3
    assert a.count("telemetry") == 5
    a.close()
    b.close()


def test_store_errors_are_translated(tmp_path: Path) -> None:
    (tmp_path / "junk.db").write_bytes(b"this is not a database" * 100)
    with pytest.raises(StoreError, match=r"junk\.db"):
        SqliteStore(tmp_path / "junk.db")
    with pytest.raises(ConfigError, match="postgresql"):
        open_store("mysql://x/y")
