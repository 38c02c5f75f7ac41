"""The SQL store, shared by SQLite and PostgreSQL; each backend supplies its connection, its
transaction statements and its exactly-once insert (:meth:`SqlStore._insert_telemetry`)."""

from __future__ import annotations

import base64
import binascii
import json
import time
from abc import abstractmethod
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from edgeward.errors import StoreError
from edgeward.fleet._migrations import LATEST, MIGRATIONS, Dialect, render
from edgeward.fleet._store import (
    Accepted,
    Alert,
    DeviceRecord,
    Store,
    WriteOutcome,
    digest_of,
    health_row,
    is_sequenced,
    iso_time,
)
from edgeward.fleet.protocol import Command, EventMessage, ProvenanceReport, StateMessage

__all__ = ["SqlStore", "TelemetryRow"]

TelemetryRow = tuple[str, int, str, float, float, float, str, bytes]
_TIME_COLUMNS = ("device_time", "received_at", "stored_at", "verified_at", "loaded_at")
_ORDER = {"health": "seq", "events": "seq", "provenance": "seq", "state_transitions": "id"}
_CHUNK = 400  # rows per multi-row statement (SQLite allows 32766 parameters)
_DEVICE_COLUMNS = ("device_id, key_id, public_key, enrolled_at, state, session, last_seen, "
                   "last_seq, artifact_digest, slot")


class SqlStore(Store):
    """SQL behaviour common to the backends (see :class:`~edgeward.fleet._store.Store`)."""

    dialect: Dialect
    _conn: Any

    # -- backend hooks ---------------------------------------------------------------------
    @abstractmethod
    def _begin(self, *, migration: bool = False) -> None:
        """Start a write transaction (locking the schema for a migration)."""

    @abstractmethod
    def _insert_telemetry(self, rows: Sequence[TelemetryRow]) -> list[tuple[str, int]]:
        """Insert ``rows`` with ON CONFLICT DO NOTHING; return the keys actually inserted."""

    def _q(self, sql: str) -> str:
        return sql if self.dialect.name == "sqlite" else sql.replace("?", "%s")

    def _exec(self, sql: str, params: Sequence[Any] = ()) -> Any:
        return self._conn.execute(self._q(sql), params)

    def _many(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        if rows:
            self._conn.cursor().executemany(self._q(sql), rows)

    def _bulk(self, head: str, rows: Sequence[Sequence[Any]], tail: str = "") -> list[Any]:
        """``HEAD VALUES (...), (...) TAIL`` in chunks of ``_CHUNK`` rows; returns the rows
        the statements return. One statement per chunk, not per row: on the writer thread
        each statement is one release of the GIL, so this keeps the network thread busy."""
        out: list[Any] = []
        for i in range(0, len(rows), _CHUNK):
            chunk = rows[i:i + _CHUNK]
            one = "(" + ", ".join("?" * len(chunk[0])) + ")"
            cur = self._exec(f"{head} VALUES {', '.join([one] * len(chunk))} {tail}",
                             [v for r in chunk for v in r])
            if cur.description is not None:
                out += cur.fetchall()
        return out

    def _commit(self) -> None:
        self._conn.execute("COMMIT")

    def _rollback(self) -> None:
        self._conn.execute("ROLLBACK")

    # -- schema ----------------------------------------------------------------------------
    def _migrate(self, target: int = LATEST) -> None:
        """Apply the migrations up to ``target`` (see :mod:`edgeward.fleet._migrations`).

        Raises:
            StoreError: the store is newer than this edgeward, or a migration failed.
        """
        self._begin(migration=True)
        try:
            row = self._exec("SELECT MAX(version) FROM schema_version").fetchone()
            current = int(row[0] or 0)
            if current > LATEST:
                raise StoreError(f"{self.where}: schema version {current} is newer than this "
                                 f"edgeward's {LATEST}; upgrade edgeward")
            for version in range(current + 1, target + 1):
                for statement in MIGRATIONS[version]:
                    self._exec(render(statement, self.dialect))
                self._exec("INSERT INTO schema_version (version, applied_at) VALUES (?, ?)",
                           (version, _now()))
            self._commit()
        except BaseException:
            self._rollback()
            raise

    def _schema_version(self) -> int:
        return int(self._exec("SELECT MAX(version) FROM schema_version").fetchone()[0] or 0)

    # -- registry --------------------------------------------------------------------------
    def _enroll(self, new: list[DeviceRecord], replaced: list[DeviceRecord]) -> None:
        self._begin()
        try:
            self._many("INSERT INTO devices (device_id, key_id, public_key, enrolled_at) "
                       "VALUES (?, ?, ?, ?)",
                       [(r.device_id, r.key_id, r.public_key, r.enrolled_at) for r in new])
            self._many("UPDATE devices SET key_id = ?, public_key = ?, enrolled_at = ?, "
                       "last_seq = 0, digest_seq = 0 WHERE device_id = ?",
                       [(r.key_id, r.public_key, r.enrolled_at, r.device_id) for r in replaced])
            self._commit()
        except BaseException:
            self._rollback()
            raise

    def _devices(self) -> list[DeviceRecord]:
        rows = self._exec(f"SELECT {_DEVICE_COLUMNS} FROM devices ORDER BY device_id")
        return [DeviceRecord(*r) for r in rows.fetchall()]

    # -- ingest ----------------------------------------------------------------------------
    def _write(self, batch: Sequence[Accepted], manager: str, now: float) -> WriteOutcome:
        seq = sorted((a for a in batch if is_sequenced(a.message)),
                     key=lambda a: (a.message.device_id, getattr(a.message, "seq", 0)))
        states = [a for a in batch if isinstance(a.message, StateMessage)]
        self._begin()
        try:
            inserted = set(self._insert_telemetry([
                (a.message.device_id, a.message.seq, a.message.kind.value,  # type: ignore[union-attr]
                 a.message.time, a.received_at, now, manager, a.raw) for a in seq]))
            new: list[Accepted] = []
            dups: list[Accepted] = []
            for a in seq:
                key = (a.message.device_id, a.message.seq)  # type: ignore[union-attr]
                (new if key in inserted else dups).append(a)
                inserted.discard(key)  # a second copy in the same batch is a duplicate
            self._insert_kinds(new)
            applied, stale = self._apply_states(states)
            self._touch_devices([*new, *applied])
            self._commit()
        except BaseException:
            self._rollback()
            raise
        return WriteOutcome(new=tuple(new), duplicates=tuple(dups),
                            stale=tuple(stale), transitions=tuple(applied))

    def _insert_kinds(self, new: Iterable[Accepted]) -> None:
        health, events, prov = [], [], []
        for a in new:
            m = a.message
            if isinstance(m, EventMessage):
                events.append((m.device_id, m.seq, m.time, m.event, m.severity,
                               json.dumps(dict(m.data), sort_keys=True)))
            elif isinstance(m, ProvenanceReport):
                prov.append((m.device_id, m.seq, m.time, m.artifact_digest, m.slot,
                             m.attestation.publisher_key_id, m.attestation.verified_at,
                             m.attestation.loaded_at, a.statement_verified,
                             json.dumps(m.statement.to_dict(), sort_keys=True)))
            else:
                health.append(tuple(health_row(a).values()))
        self._bulk("INSERT INTO health (device_id, seq, device_time, uptime_s, cpu_percent, "
                   "load_1m, memory_used_bytes, memory_total_bytes, temperature_c, "
                   "decode_tokens_per_s, queue_depth, safety, artifact_digest, slot, "
                   "spool_dropped, behaviour, canaries)", health)
        self._bulk("INSERT INTO events (device_id, seq, device_time, event, severity, data)",
                   events)
        self._bulk("INSERT INTO provenance (device_id, seq, device_time, artifact_digest, "
                   "slot, publisher_key_id, verified_at, loaded_at, statement_verified, "
                   "statement)", prov)

    def _apply_states(self, states: Sequence[Accepted]
                      ) -> tuple[list[Accepted], list[Accepted]]:
        applied: list[Accepted] = []
        stale: list[Accepted] = []
        for a in states:
            m = a.message
            assert isinstance(m, StateMessage)
            rank = m.state.rank
            cur = self._exec(
                "UPDATE devices SET state = ?, session = ?, state_rank = ? WHERE device_id = ? "
                "AND (session < ? OR (session = ? AND state_rank < ?))",
                (m.state.value, m.session, rank, m.device_id, m.session, m.session, rank))
            if cur.rowcount == 1:
                applied.append(a)
                self._exec("INSERT INTO state_transitions (device_id, session, state, "
                           "device_time, received_at) VALUES (?, ?, ?, ?, ?)",
                           (m.device_id, m.session, m.state.value, m.time, a.received_at))
            else:
                stale.append(a)
        return applied, stale

    def _touch_devices(self, accepted: Sequence[Accepted]) -> None:
        seen: dict[str, tuple[float, int]] = {}
        digests: dict[str, tuple[int, str, str | None]] = {}
        for a in accepted:
            m = a.message
            s = getattr(m, "seq", 0)
            last_seen, last_seq = seen.get(m.device_id, (0.0, 0))
            seen[m.device_id] = (max(last_seen, a.received_at), max(last_seq, s))
            digest, slot = digest_of(m)
            if digest is not None and s > digests.get(m.device_id, (0, "", None))[0]:
                digests[m.device_id] = (s, digest, slot)
        self._bulk("WITH v (device_id, t, s) AS (", sorted(
            (d, t, s) for d, (t, s) in seen.items()), ") UPDATE devices SET last_seen = CASE "
            "WHEN devices.last_seen IS NULL OR devices.last_seen < v.t THEN v.t ELSE "
            "devices.last_seen END, last_seq = CASE WHEN devices.last_seq < v.s THEN v.s ELSE "
            "devices.last_seq END FROM v WHERE devices.device_id = v.device_id")
        self._bulk("WITH v (device_id, s, digest, slot) AS (", sorted(
            (d, s, dg, sl) for d, (s, dg, sl) in digests.items()), ") UPDATE devices SET "
            "digest_seq = v.s, artifact_digest = v.digest, slot = v.slot FROM v "
            "WHERE devices.device_id = v.device_id AND devices.digest_seq < v.s")

    # -- queries ---------------------------------------------------------------------------
    def _rows(self, table: str, device_id: str, limit: int,
              since: float | None = None) -> list[dict[str, Any]]:
        if since is None:
            cur = self._exec(f"SELECT * FROM {table} WHERE device_id = ? "
                             f"ORDER BY {_ORDER[table]} DESC LIMIT ?", (device_id, int(limit)))
        else:
            cur = self._exec(f"SELECT * FROM {table} WHERE device_id = ? AND device_time >= ? "
                             f"ORDER BY {_ORDER[table]} DESC LIMIT ?",
                             (device_id, float(since), int(limit)))
        names = [c[0] for c in cur.description]
        return [_present(dict(zip(names, r, strict=True))) for r in cur.fetchall()]

    def _count(self, table: str, device_id: str | None) -> int:
        if device_id is None:
            return int(self._exec(f"SELECT COUNT(*) FROM {table}").fetchone()[0])
        return int(self._exec(f"SELECT COUNT(*) FROM {table} WHERE device_id = ?",
                              (device_id,)).fetchone()[0])

    def _issue_command(self, device_id: str, make: Callable[[int], Command]) -> Command:
        self._begin()
        try:
            row = self._exec("SELECT MAX(version) FROM commands WHERE device_id = ?",
                             (device_id,)).fetchone()
            cmd = make(int(row[0] or 0) + 1)
            self._exec("INSERT INTO commands (device_id, version, command_id, action, "
                       "issued_at, expires_at, params) VALUES (?, ?, ?, ?, ?, ?, ?)",
                       (cmd.device_id, cmd.version, cmd.command_id, cmd.action, cmd.issued_at,
                        cmd.expires_at, json.dumps(dict(cmd.params), sort_keys=True)))
        except BaseException:
            self._rollback()
            raise
        self._commit()
        return cmd

    def _commands(self, device_id: str, limit: int) -> list[dict[str, Any]]:
        rows = self._exec("SELECT device_id, version, command_id, action, issued_at, "
                          "expires_at, params FROM commands WHERE device_id = ? "
                          "ORDER BY version DESC LIMIT ?", (device_id, int(limit))).fetchall()
        return [{"device_id": r[0], "version": int(r[1]), "command_id": r[2], "action": r[3],
                 "issued_at": iso_time(r[4]), "expires_at": iso_time(r[5]),
                 "params": json.loads(r[6])} for r in rows]

    def _put_doc(self, table: str, name: str, text: str, now: float) -> None:
        self._begin()
        self._exec(f"INSERT INTO {table} (name, doc, updated_at) VALUES (?, ?, ?) "
                   "ON CONFLICT (name) DO UPDATE SET doc = excluded.doc, "
                   "updated_at = excluded.updated_at", (name, text, now))
        self._commit()

    def _get_doc(self, table: str, name: str) -> str | None:
        row = self._exec(f"SELECT doc FROM {table} WHERE name = ?", (name,)).fetchone()
        return None if row is None else str(row[0])

    def _doc_names(self, table: str) -> list[str]:
        return [str(r[0]) for r in self._exec(f"SELECT name FROM {table}").fetchall()]

    def _add_alert(self, alert: Alert, manager: str) -> None:
        self._begin()
        self._exec("INSERT INTO alerts (device_id, kind, detail, time, manager) "
                   "VALUES (?, ?, ?, ?, ?)",
                   (alert.device_id, alert.kind, alert.detail, alert.time, manager))
        self._commit()

    def _alerts(self, limit: int) -> list[Alert]:
        rows = self._exec("SELECT device_id, kind, detail, time FROM alerts ORDER BY id DESC "
                          "LIMIT ?", (int(limit),)).fetchall()
        return [Alert(*r) for r in rows]

    def _save_stats(self, manager: str, counters: dict[str, int], started_at: float,
                    now: float) -> None:
        self._begin()
        self._exec("INSERT INTO manager_stats (manager, started_at, updated_at, counters) "
                   "VALUES (?, ?, ?, ?) ON CONFLICT (manager) DO UPDATE SET "
                   "started_at = excluded.started_at, updated_at = excluded.updated_at, "
                   "counters = excluded.counters",
                   (manager, started_at, now, json.dumps(counters, sort_keys=True)))
        self._commit()

    def _stats(self) -> list[dict[str, Any]]:
        rows = self._exec("SELECT manager, started_at, updated_at, counters FROM manager_stats "
                          "ORDER BY manager").fetchall()
        return [{"manager": r[0], "started_at": iso_time(r[1]), "updated_at": iso_time(r[2]),
                 "counters": json.loads(r[3])} for r in rows]


def _present(row: dict[str, Any]) -> dict[str, Any]:
    """A stored row as the CLI shows it: times in RFC 3339, JSON columns parsed."""
    for key in _TIME_COLUMNS:
        if key in row:
            row[key] = iso_time(row[key])
    for key in ("safety", "data", "behaviour", "canaries"):
        if key in row and row[key] is not None:
            row[key] = json.loads(row[key])
    if "statement" in row:
        env = json.loads(row["statement"])
        row["statement"] = env
        row["subjects"] = _subjects(env)
        if row.get("statement_verified") is not None:
            row["statement_verified"] = bool(row["statement_verified"])
    return row


def _subjects(envelope: dict[str, Any]) -> list[dict[str, Any]]:
    try:
        statement = json.loads(base64.b64decode(envelope["payload"]))
        return [{"name": s["name"], "sha256": s["digest"]["sha256"]}
                for s in statement["subject"]]
    except (KeyError, TypeError, ValueError, binascii.Error):
        return []


def _now() -> float:
    return time.time()
