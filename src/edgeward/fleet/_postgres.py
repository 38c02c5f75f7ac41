"""The PostgreSQL store (``postgresql://`` URLs), for fleets beyond one machine's SQLite.

Needs the ``postgres`` extra (psycopg 3). The same schema and migrations as SQLite; the
exactly-once insert is one ``INSERT ... SELECT FROM unnest(...) ON CONFLICT DO NOTHING
RETURNING`` per batch, so a batch costs one round trip for its keys.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from edgeward.errors import ConfigError
from edgeward.fleet._migrations import LATEST, POSTGRES
from edgeward.fleet._sqlstore import SqlStore, TelemetryRow

__all__ = ["PostgresStore"]

_CONNECT_TIMEOUT_S = 10  # seconds


class PostgresStore(SqlStore):
    """A PostgreSQL database (the tables live in the connection's ``search_path`` schema).

    Args:
        url: ``postgresql://USER@HOST:PORT/DB`` (libpq syntax; ``?options=-csearch_path=S``
            selects a schema).
        target_version: migrate only up to this schema version (tests of migrations).

    Raises:
        ConfigError: psycopg is not installed (``pip install 'edgeward[postgres]'``).
        StoreError: the server cannot be reached, or the schema is newer than this edgeward.
    """

    dialect = POSTGRES

    def __init__(self, url: str, *, target_version: int = LATEST) -> None:
        super().__init__()
        try:
            import psycopg
        except ImportError as e:
            raise ConfigError("a postgresql:// store needs psycopg: pip install "
                              "'edgeward[postgres]'") from e
        self._driver_errors = (psycopg.Error,)
        self.where = _redact(url)

        def open_db() -> Any:
            conn = psycopg.connect(url, autocommit=True, connect_timeout=_CONNECT_TIMEOUT_S)
            conn.execute("CREATE TABLE IF NOT EXISTS schema_version "
                         "(version INTEGER PRIMARY KEY, applied_at DOUBLE PRECISION NOT NULL)")
            return conn

        self._conn = self._guard("connecting", open_db)
        self._guard("migrating", self._migrate, target_version)

    def _begin(self, *, migration: bool = False) -> None:
        self._conn.execute("BEGIN")
        if migration:
            self._conn.execute("LOCK TABLE schema_version IN ACCESS EXCLUSIVE MODE")

    def _insert_telemetry(self, rows: Sequence[TelemetryRow]) -> list[tuple[str, int]]:
        if not rows:
            return []
        cols = list(zip(*rows, strict=True))
        cur = self._conn.execute(
            "INSERT INTO telemetry (device_id, seq, kind, device_time, received_at, stored_at, "
            "manager, envelope) SELECT * FROM unnest(%s::text[], %s::bigint[], %s::text[], "
            "%s::double precision[], %s::double precision[], %s::double precision[], "
            "%s::text[], %s::bytea[]) ON CONFLICT (device_id, seq) DO NOTHING "
            "RETURNING device_id, seq", [list(c) for c in cols])
        return [(r[0], int(r[1])) for r in cur.fetchall()]

    def _close(self) -> None:
        self._conn.close()


def _redact(url: str) -> str:
    """The URL without a password, for messages."""
    head, sep, tail = url.partition("@")
    if not sep or ":" not in head.split("//", 1)[-1]:
        return url
    scheme, _, creds = head.partition("//")
    return f"{scheme}//{creds.split(':', 1)[0]}:***@{tail}"
