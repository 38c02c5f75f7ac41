"""The SQLite store (the default): one file, WAL, several manager processes may share it."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from pathlib import Path

from edgeward.errors import StoreError
from edgeward.fleet._migrations import LATEST, SQLITE
from edgeward.fleet._sqlstore import SqlStore, TelemetryRow

__all__ = ["SqliteStore"]

_BUSY_TIMEOUT_S = 30.0  # seconds a writer waits for another process's transaction


class SqliteStore(SqlStore):
    """A SQLite file in WAL mode.

    Args:
        path: the database file (created with its directory).
        synchronous: ``FULL`` (default) fsyncs every commit, so a message acknowledged to the
            broker survives a power cut; ``NORMAL`` survives a crash of the process only.
        target_version: migrate only up to this schema version (tests of migrations).

    Raises:
        StoreError: the file cannot be opened, is not a database, or is newer than this
            edgeward.
    """

    dialect = SQLITE
    _driver_errors = (sqlite3.Error,)

    def __init__(self, path: Path, *, synchronous: str = "FULL",
                 target_version: int = LATEST) -> None:
        super().__init__()
        self.where = str(path)
        self.path = path
        if synchronous not in ("FULL", "NORMAL"):
            raise StoreError(f"synchronous must be FULL or NORMAL, got {synchronous!r}")

        def open_db() -> sqlite3.Connection:
            path.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(path, isolation_level=None, timeout=_BUSY_TIMEOUT_S,
                                   check_same_thread=False)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute(f"PRAGMA synchronous={synchronous}")
            conn.execute("CREATE TABLE IF NOT EXISTS schema_version "
                         "(version INTEGER PRIMARY KEY, applied_at REAL NOT NULL)")
            return conn

        try:
            self._conn = self._guard("opening", open_db)
        except StoreError:
            raise
        except OSError as e:
            raise StoreError(f"{path}: cannot create the store ({e.strerror})") from e
        self._guard("migrating", self._migrate, target_version)

    def _begin(self, *, migration: bool = False) -> None:
        self._conn.execute("BEGIN IMMEDIATE")

    def _insert_telemetry(self, rows: Sequence[TelemetryRow]) -> list[tuple[str, int]]:
        # BEGIN IMMEDIATE holds the write lock, so what this SELECT finds cannot change
        # before the INSERT: no other process can add a key in between.
        existing = set(map(tuple, self._bulk(
            "SELECT device_id, seq FROM telemetry WHERE (device_id, seq) IN (",
            [(r[0], r[1]) for r in rows], ")")))
        fresh: list[TelemetryRow] = []
        for r in rows:
            if (r[0], r[1]) not in existing:
                existing.add((r[0], r[1]))  # a second copy in the batch is a duplicate
                fresh.append(r)
        self._bulk("INSERT INTO telemetry (device_id, seq, kind, device_time, received_at, "
                   "stored_at, manager, envelope)", fresh)
        return [(r[0], r[1]) for r in fresh]

    def _close(self) -> None:
        self._conn.close()
