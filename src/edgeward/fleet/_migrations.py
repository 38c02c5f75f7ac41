"""The store's schema, as numbered migrations shared by SQLite and PostgreSQL.

``schema_version`` holds one row per applied migration. Opening a store applies the missing
ones in order, each in its own transaction with the version row, under a lock (SQLite's
``BEGIN IMMEDIATE``, PostgreSQL's table lock), so two managers starting at once migrate once.
A store newer than this edgeward is refused (upgrade edgeward). Never edit a released
migration: add the next one. docs/fleet.md describes the tables.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["MIGRATIONS", "POSTGRES", "SQLITE", "Dialect", "render"]


@dataclass(frozen=True)
class Dialect:
    """The few type names that differ between the backends."""

    name: str
    real: str  # 64-bit float
    int: str  # 64-bit integer
    blob: str  # bytes
    serial: str  # an auto-incrementing primary key


SQLITE = Dialect("sqlite", "REAL", "INTEGER", "BLOB", "INTEGER PRIMARY KEY AUTOINCREMENT")
POSTGRES = Dialect("postgresql", "DOUBLE PRECISION", "BIGINT", "BYTEA", "BIGSERIAL PRIMARY KEY")

# version -> statements ({real}, {int}, {blob}, {serial} are the dialect's types).
MIGRATIONS: dict[int, tuple[str, ...]] = {
    1: (
        # The registry and what the fleet last heard from each device.
        """CREATE TABLE devices (
            device_id TEXT PRIMARY KEY,
            key_id TEXT NOT NULL,
            public_key TEXT NOT NULL,
            enrolled_at {real} NOT NULL,
            state TEXT NOT NULL DEFAULT 'unknown',
            session {int} NOT NULL DEFAULT 0,
            state_rank {int} NOT NULL DEFAULT 0,
            last_seen {real},
            last_seq {int} NOT NULL DEFAULT 0,
            artifact_digest TEXT,
            slot TEXT,
            digest_seq {int} NOT NULL DEFAULT 0)""",
        """CREATE TABLE state_transitions (
            id {serial},
            device_id TEXT NOT NULL,
            session {int} NOT NULL,
            state TEXT NOT NULL,
            device_time {real} NOT NULL,
            received_at {real} NOT NULL)""",
        "CREATE INDEX state_transitions_device ON state_transitions (device_id, id)",
        # One row per sequenced message: the exactly-once key and the signed bytes.
        """CREATE TABLE telemetry (
            device_id TEXT NOT NULL,
            seq {int} NOT NULL,
            kind TEXT NOT NULL,
            device_time {real} NOT NULL,
            received_at {real} NOT NULL,
            stored_at {real} NOT NULL,
            manager TEXT NOT NULL,
            envelope {blob} NOT NULL,
            PRIMARY KEY (device_id, seq))""",
        """CREATE TABLE health (
            device_id TEXT NOT NULL,
            seq {int} NOT NULL,
            device_time {real} NOT NULL,
            uptime_s {real},
            cpu_percent {real},
            load_1m {real},
            memory_used_bytes {int},
            memory_total_bytes {int},
            temperature_c {real},
            decode_tokens_per_s {real},
            queue_depth {int},
            safety TEXT NOT NULL,
            artifact_digest TEXT,
            slot TEXT,
            spool_dropped {int} NOT NULL,
            PRIMARY KEY (device_id, seq))""",
        """CREATE TABLE events (
            device_id TEXT NOT NULL,
            seq {int} NOT NULL,
            device_time {real} NOT NULL,
            event TEXT NOT NULL,
            severity TEXT NOT NULL,
            data TEXT NOT NULL,
            PRIMARY KEY (device_id, seq))""",
        """CREATE TABLE provenance (
            device_id TEXT NOT NULL,
            seq {int} NOT NULL,
            device_time {real} NOT NULL,
            artifact_digest TEXT NOT NULL,
            slot TEXT,
            publisher_key_id TEXT NOT NULL,
            verified_at {real} NOT NULL,
            loaded_at {real} NOT NULL,
            statement_verified {int},
            statement TEXT NOT NULL,
            PRIMARY KEY (device_id, seq))""",
    ),
    2: (
        # Alerts, each manager's counters, and the time index health queries use.
        """CREATE TABLE alerts (
            id {serial},
            device_id TEXT NOT NULL,
            kind TEXT NOT NULL,
            detail TEXT NOT NULL,
            time {real} NOT NULL,
            manager TEXT NOT NULL)""",
        """CREATE TABLE manager_stats (
            manager TEXT PRIMARY KEY,
            started_at {real} NOT NULL,
            updated_at {real} NOT NULL,
            counters TEXT NOT NULL)""",
        "CREATE INDEX health_device_time ON health (device_id, device_time)",
    ),
    3: (
        # Operator commands sent to devices: the per-device version counter lives here.
        """CREATE TABLE commands (
            device_id TEXT NOT NULL,
            version {int} NOT NULL,
            command_id TEXT NOT NULL,
            action TEXT NOT NULL,
            issued_at {real} NOT NULL,
            expires_at {real} NOT NULL,
            params TEXT NOT NULL,
            PRIMARY KEY (device_id, version))""",
    ),
    4: (
        # Device groups and staged rollouts, each kept as one JSON document per key.
        """CREATE TABLE device_groups (
            name TEXT PRIMARY KEY,
            doc TEXT NOT NULL,
            updated_at {real} NOT NULL)""",
        """CREATE TABLE rollouts (
            name TEXT PRIMARY KEY,
            doc TEXT NOT NULL,
            updated_at {real} NOT NULL)""",
    ),
    5: (
        # The device's last behavioural check (a JSON object, or NULL for older agents).
        "ALTER TABLE health ADD COLUMN behaviour TEXT",
    ),
    6: (
        # The device's last safety-canary run (a JSON object, or NULL for older agents).
        "ALTER TABLE health ADD COLUMN canaries TEXT",
    ),
}
LATEST = max(MIGRATIONS)


def render(statement: str, dialect: Dialect) -> str:
    """A migration statement with the dialect's type names."""
    return statement.format(real=dialect.real, int=dialect.int, blob=dialect.blob,
                            serial=dialect.serial)
