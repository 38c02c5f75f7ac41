"""The agent's on-disk telemetry outbox: store-and-forward with a bounded size and a drop policy.

Every signed health report, event and provenance report goes into this SQLite file first (its
``seq`` allocated in the same transaction, so a ``seq`` is never reused, even after a crash or a
power cut with ``durable=True``), and leaves it only when the fleet manager acknowledged that
it stored it (:class:`~edgeward.fleet.protocol.FleetAck`, :meth:`Spool.remove_seqs`; or, with
fleet acknowledgements turned off, when the broker acknowledged it: PUBACK). So telemetry made
while the broker is unreachable is delivered later, in order, and whatever a broker restart or
a connection that dies loses is sent again (the fleet stores each ``(device, seq)`` once).

The bound (``max_bytes``, ``max_messages``) is kept by this drop policy, in order:

1. the oldest health report goes first (counted; the next health report says how many);
2. then provenance reports that a newer one supersedes (the broker retains only the newest);
3. a new health report that still does not fit is dropped itself (counted);
4. events and the newest provenance report are never dropped: when they alone fill the spool,
   the new event is refused with :class:`~edgeward.errors.ResourceError`, so its caller knows.

A full *disk* is another matter: the spool keeps a reserve file next to it
(:class:`~edgeward.device_agents._reserve.DiskReserve`, ``reserve_bytes``); a write that fails
because the disk is full releases it and is tried again, so the event still lands, and
:attr:`Spool.reserve_used` counts it (the telemetry client then queues a critical
``storage.reserve_used`` event). Only when the reserve is used up too is the write refused.
"""

from __future__ import annotations

import contextlib
import sqlite3
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from edgeward.device_agents._reserve import DiskReserve, is_disk_full
from edgeward.errors import ConfigError, ResourceError
from edgeward.fleet.protocol import Kind, WireMessage

__all__ = ["Spool", "SpoolConfig", "SpooledMessage"]

_T = TypeVar("_T")

_SCHEMA_VERSION = 1
_SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    kind TEXT NOT NULL,
    topic TEXT NOT NULL,
    payload BLOB NOT NULL,
    retain INTEGER NOT NULL,
    seq INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS outbox_kind ON outbox (kind, id);
CREATE INDEX IF NOT EXISTS outbox_seq ON outbox (seq);
CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
"""


@dataclass(frozen=True, kw_only=True)
class SpoolConfig:
    """Where the outbox lives and how large it may grow.

    Attributes:
        path: the SQLite file (created, with its directory, if missing).
        max_bytes: queued payload bytes at most (about 16 000 health reports by default).
        max_messages: queued messages at most.
        durable: fsync every write (``synchronous=FULL``), so a power cut loses nothing that
            was accepted and never lets a ``seq`` be used twice; ``False`` survives crashes of
            the process only (tests).
        reserve_bytes: disk space held back in ``PATH.reserve`` for writes on a full disk
            (0: none).
    """

    path: Path
    max_bytes: int = 16 * 2**20  # bytes
    max_messages: int = 50_000  # messages
    durable: bool = True
    reserve_bytes: int = 1 << 20  # bytes

    def __post_init__(self) -> None:
        if not 0 <= self.reserve_bytes <= 1 << 30:
            raise ConfigError(f"spool reserve_bytes must be 0..{1 << 30}, got "
                              f"{self.reserve_bytes!r}")
        if self.max_bytes < 64 * 1024 or self.max_messages < 16:
            raise ConfigError(f"spool bounds too small: max_bytes={self.max_bytes!r} (at least "
                              f"65536), max_messages={self.max_messages!r} (at least 16)")


@dataclass(frozen=True)
class SpooledMessage:
    """One queued message.

    Attributes:
        id: its place in the queue (increasing).
        kind: health, events or provenance.
        seq: the device's seq it carries.
        wire: topic, payload and retain flag.
    """

    id: int
    kind: Kind
    seq: int
    wire: WireMessage


class Spool:
    """The outbox (see the module docstring); thread-safe.

    Raises (constructor):
        ResourceError: the file cannot be created or is not a spool (a corrupt file is kept
            for inspection, never silently replaced: replacing it would reuse seq numbers).
    """

    def __init__(self, config: SpoolConfig) -> None:
        self.config = config
        self._lock = threading.Lock()
        self._closed = False
        try:
            config.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(config.path, isolation_level=None,
                                       check_same_thread=False, timeout=5.0)
            self._db.execute("PRAGMA journal_mode=WAL")
            # A bounded write-ahead log: checkpointed every 128 pages (512 KiB) and cut back
            # to 512 KiB after, so it cannot take the disk's last free space by itself.
            self._db.execute("PRAGMA wal_autocheckpoint=128")
            self._db.execute("PRAGMA journal_size_limit=524288")
            self._db.execute(f"PRAGMA synchronous={'FULL' if config.durable else 'NORMAL'}")
            version = self._db.execute("PRAGMA user_version").fetchone()[0]
            if version > _SCHEMA_VERSION:
                raise ResourceError(f"{config.path}: spool schema {version} is newer than this "
                                    f"edgeward ({_SCHEMA_VERSION}); upgrade the agent")
            self._db.executescript(_SCHEMA + f"PRAGMA user_version={_SCHEMA_VERSION};")
            row = self._db.execute("SELECT COUNT(*), COALESCE(SUM(LENGTH(payload)), 0) "
                                   "FROM outbox").fetchone()
        except (OSError, sqlite3.Error) as e:
            raise ResourceError(f"{config.path}: cannot open the telemetry spool ({e}); move "
                                "the file aside only if you also re-enroll the device") from e
        self._count, self._bytes = int(row[0]), int(row[1])
        self._reserve = DiskReserve(config.path.with_name(config.path.name + ".reserve"),
                                    config.reserve_bytes)
        self._reserve.ensure(force=True)

    @property
    def reserve_used(self) -> int:
        """How many times a full disk made the spool use its reserve."""
        return self._reserve.released

    # -- counters --------------------------------------------------------------------------
    def _get(self, name: str) -> int:
        row = self._db.execute("SELECT value FROM counters WHERE name = ?", (name,)).fetchone()
        return int(row[0]) if row else 0

    def _set(self, name: str, value: int) -> None:
        self._db.execute("INSERT INTO counters (name, value) VALUES (?, ?) ON CONFLICT (name) "
                         "DO UPDATE SET value = excluded.value", (name, value))

    def counter(self, name: str) -> int:
        """A persisted counter: ``seq`` (the last allocated), ``session``, ``dropped_health``,
        ``dropped_provenance``."""
        with self._lock:
            return self._guard(lambda: self._get(name))

    def next_session(self) -> int:
        """Allocate the next connection session number (persisted)."""
        def run() -> int:
            self._db.execute("BEGIN IMMEDIATE")
            value = self._get("session") + 1
            self._set("session", value)
            self._db.execute("COMMIT")
            return value
        with self._lock:
            return self._guard(run)

    @property
    def depth(self) -> int:
        """Messages queued."""
        return self._count

    @property
    def size_bytes(self) -> int:
        """Payload bytes queued."""
        return self._bytes

    # -- queue -----------------------------------------------------------------------------
    def append(self, kind: Kind, build: Callable[[int], WireMessage]) -> int | None:
        """Allocate the next ``seq``, build the signed message with it, and queue it.

        Args:
            kind: health, events or provenance.
            build: makes the wire message for a given seq (signs it).

        Returns:
            The seq, or ``None`` when a health report did not fit and was dropped (counted).

        Raises:
            ResourceError: an event or provenance report does not fit because events fill the
                spool (nothing is queued and no seq is used), or the disk write failed.
        """
        with self._lock:
            return self._guard(lambda: self._append(kind, build))

    def _append(self, kind: Kind, build: Callable[[int], WireMessage]) -> int | None:
        self._db.execute("BEGIN IMMEDIATE")
        try:
            seq = self._get("seq") + 1
            wire = build(seq)
            if not self._make_room(kind, len(wire.payload)):
                self._set("seq", seq)  # the dropped report's seq stays used: no reuse
                self._set("dropped_health", self._get("dropped_health") + 1)
                self._db.execute("COMMIT")
                return None
            self._db.execute("INSERT INTO outbox (kind, topic, payload, retain, seq) "
                             "VALUES (?, ?, ?, ?, ?)",
                             (kind.value, wire.topic, wire.payload, int(wire.retain), seq))
            self._set("seq", seq)
            self._db.execute("COMMIT")
        except BaseException:
            self._rollback()  # SQLite may have rolled back itself (a full disk does)
            self._resync()
            raise
        self._count += 1
        self._bytes += len(wire.payload)
        return seq

    def _make_room(self, kind: Kind, size: int) -> bool:
        """Apply the drop policy inside the open transaction; False: drop the new health."""
        cfg = self.config
        while self._count + 1 > cfg.max_messages or self._bytes + size > cfg.max_bytes:
            victim = self._db.execute(
                "SELECT id, LENGTH(payload) FROM outbox WHERE kind = 'health' ORDER BY id "
                "LIMIT 1").fetchone()
            counter = "dropped_health"
            if victim is None:
                counter = "dropped_provenance"
                victim = self._db.execute(
                    "SELECT id, LENGTH(payload) FROM outbox WHERE kind = 'provenance' AND id < "
                    "(SELECT MAX(id) FROM outbox WHERE kind = 'provenance') ORDER BY id "
                    "LIMIT 1").fetchone()
            if victim is None:
                if kind is Kind.HEALTH:
                    return False
                raise ResourceError(
                    f"{cfg.path}: the telemetry spool is full of undelivered events "
                    f"({self._count} messages, {self._bytes} bytes); events are never dropped, "
                    "so this one was refused. Check the broker connection")
            self._db.execute("DELETE FROM outbox WHERE id = ?", (victim[0],))
            self._count -= 1
            self._bytes -= int(victim[1])
            self._set(counter, self._get(counter) + 1)
        return True

    def oldest_seq(self) -> int | None:
        """The lowest ``seq`` queued (``None`` when the spool is empty)."""
        def run() -> int | None:
            row = self._db.execute("SELECT MIN(seq) FROM outbox").fetchone()
            return None if row[0] is None else int(row[0])
        with self._lock:
            return self._guard(run)

    def peek(self, after_id: int, limit: int) -> list[SpooledMessage]:
        """The oldest ``limit`` queued messages with an id above ``after_id``, in order."""
        def run() -> list[SpooledMessage]:
            rows = self._db.execute(
                "SELECT id, kind, seq, topic, payload, retain FROM outbox WHERE id > ? "
                "ORDER BY id LIMIT ?", (after_id, limit)).fetchall()
            return [SpooledMessage(r[0], Kind(r[1]), r[2], WireMessage(r[3], r[4], bool(r[5])))
                    for r in rows]
        with self._lock:
            return self._guard(run)

    def fetch(self, ids: Iterable[int]) -> list[SpooledMessage]:
        """The queued messages with these ids, in order (ids no longer queued are skipped)."""
        wanted = sorted(set(ids))
        if not wanted:
            return []

        def run() -> list[SpooledMessage]:
            rows = []
            for i in range(0, len(wanted), 500):
                part = wanted[i:i + 500]
                rows += self._db.execute(
                    "SELECT id, kind, seq, topic, payload, retain FROM outbox WHERE id IN "
                    f"({','.join('?' * len(part))}) ORDER BY id", part).fetchall()
            return [SpooledMessage(r[0], Kind(r[1]), r[2], WireMessage(r[3], r[4], bool(r[5])))
                    for r in rows]
        with self._lock:
            return self._guard(run)

    def remove(self, ids: Iterable[int]) -> None:
        """Remove delivered messages (ids already gone, e.g. dropped, are ignored)."""
        wanted = list(ids)
        if not wanted:
            return

        def run() -> None:
            self._db.execute("BEGIN IMMEDIATE")
            gone = [self._db.execute("DELETE FROM outbox WHERE id = ? RETURNING LENGTH(payload)",
                                     (i,)).fetchone() for i in wanted]
            self._db.execute("COMMIT")
            for row in gone:
                if row is not None:
                    self._count -= 1
                    self._bytes -= int(row[0])
        with self._lock:
            self._guard(run)

    def remove_seqs(self, ranges: Iterable[tuple[int, int]]) -> list[int]:
        """Remove the messages whose ``seq`` lies in one of the inclusive ``ranges`` (the
        fleet stored them).

        Returns:
            The ids of the messages removed (seqs not queued, e.g. already removed, are
            ignored).
        """
        wanted = list(ranges)
        if not wanted:
            return []

        def run() -> list[int]:
            self._db.execute("BEGIN IMMEDIATE")
            gone = [row for first, last in wanted for row in self._db.execute(
                "DELETE FROM outbox WHERE seq BETWEEN ? AND ? RETURNING id, LENGTH(payload)",
                (first, last)).fetchall()]
            self._db.execute("COMMIT")
            for _, size in gone:
                self._count -= 1
                self._bytes -= int(size)
            return [int(i) for i, _ in gone]
        with self._lock:
            return self._guard(run)

    def _resync(self) -> None:
        row = self._db.execute("SELECT COUNT(*), COALESCE(SUM(LENGTH(payload)), 0) "
                               "FROM outbox").fetchone()
        self._count, self._bytes = int(row[0]), int(row[1])

    def _guard(self, run: Callable[[], _T]) -> _T:
        if self._closed:
            raise ResourceError(f"{self.config.path}: the telemetry spool is closed")
        try:
            # On a full disk: fold the write-ahead log into the file and cut it (it holds
            # many copies of the same pages), and try again; then give back the reserve.
            for remedy in (self._checkpoint, self._reserve.release):
                try:
                    return run()
                except sqlite3.Error as e:
                    self._rollback()
                    if not is_disk_full(e):
                        raise
                    remedy()
                    self._checkpoint()
            return run()
        except sqlite3.Error as e:
            self._rollback()
            full = is_disk_full(e)
            hint = (" and its reserve is used up; free space on the disk (telemetry is kept "
                    "in order until then)" if full else "")
            raise ResourceError(f"{self.config.path}: telemetry spool write failed ({e})"
                                f"{'; the disk is full' if full else ''}{hint}") from e
        finally:
            if not self._reserve.held:
                self._reserve.ensure()

    def _checkpoint(self) -> bool:
        try:
            row = self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
        except sqlite3.Error:
            return False
        return row is not None and row[0] == 0

    def _rollback(self) -> None:
        if self._db.in_transaction:
            with contextlib.suppress(sqlite3.Error):
                self._db.execute("ROLLBACK")

    def close(self) -> None:
        """Close the file (further calls fail)."""
        with self._lock:
            self._closed = True
            self._db.close()
