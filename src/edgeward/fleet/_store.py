"""The fleet store interface: the device registry, state, health, events, provenance, alerts.

One small base class, :class:`Store`; each public method checks its input and wraps one private
hook, translating the driver's errors into :class:`~edgeward.errors.StoreError` in one place.
Backends: SQLite (the default, WAL), PostgreSQL (``postgresql://`` URLs, the ``postgres``
extra), and an in-memory store for tests. :func:`open_store` picks one from the ``store``
setting. Exactly-once storage: a ``(device, seq)`` is written at most once, whatever arrives
twice (the write reports it as a duplicate).
"""

from __future__ import annotations

import json
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

from edgeward.errors import ConfigError, StoreError
from edgeward.fleet.protocol import (
    Command,
    EventMessage,
    HealthReport,
    Message,
    ProvenanceReport,
    check_device_id,
)
from edgeward.provenance import PublicKey

__all__ = ["Accepted", "Alert", "DeviceRecord", "Store", "WriteOutcome", "iso_time",
           "open_store"]

_T = TypeVar("_T")


def iso_time(t: float | None) -> str | None:
    """Epoch seconds as RFC 3339 UTC with milliseconds (``2025-01-31T12:00:00.123Z``)."""
    if t is None:
        return None
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


@dataclass(frozen=True)
class Accepted:
    """A message that passed every check and is ready to store.

    Attributes:
        message: the parsed, verified message.
        raw: the exact signed bytes as received (kept for audit).
        received_at: when the manager received it (epoch seconds, manager clock).
        retained: the broker delivered it as a retained message.
        token: what the caller needs to acknowledge it (the MQTT mid); not stored.
        statement_verified: for provenance, whether the publisher's statement verified
            against the manager's trust store (``None``: no publisher keys to check with).
    """

    message: Message
    raw: bytes
    received_at: float
    retained: bool = False
    token: int = field(default=0, compare=False)
    statement_verified: bool | None = None


@dataclass(frozen=True)
class WriteOutcome:
    """What one batch write did.

    Attributes:
        new: the sequenced messages stored now.
        duplicates: sequenced messages whose ``(device, seq)`` was stored before.
        stale: state messages older than the device's current state.
        transitions: the state messages that were applied.
    """

    new: tuple[Accepted, ...] = ()
    duplicates: tuple[Accepted, ...] = ()
    stale: tuple[Accepted, ...] = ()
    transitions: tuple[Accepted, ...] = ()

    @property
    def stored(self) -> int:
        """Messages stored now (applied state changes included)."""
        return len(self.new) + len(self.transitions)


@dataclass(frozen=True)
class DeviceRecord:
    """A device in the registry, with what the fleet last heard from it."""

    device_id: str
    key_id: str
    public_key: str  # PEM
    enrolled_at: float
    state: str = "unknown"
    session: int = 0
    last_seen: float | None = None
    last_seq: int = 0
    artifact_digest: str | None = None
    slot: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """The ``edgeward fleet devices --json`` object (a stable interface)."""
        return {"device_id": self.device_id, "state": self.state,
                "last_seen": iso_time(self.last_seen), "artifact_digest": self.artifact_digest,
                "last_seq": self.last_seq}


@dataclass(frozen=True)
class Alert:
    """Something an operator should look at: a device lost, or its health regressed."""

    device_id: str
    kind: str  # lost | tokens_per_s | temperature | memory | queue | provenance
    detail: str
    time: float

    def to_dict(self) -> dict[str, Any]:
        """``{"device_id", "kind", "detail", "time"}`` with an RFC 3339 time."""
        return {"device_id": self.device_id, "kind": self.kind, "detail": self.detail,
                "time": iso_time(self.time)}


def health_row(a: Accepted) -> dict[str, Any]:
    """The flat health columns of an accepted health report."""
    m = a.message
    assert isinstance(m, HealthReport)
    s = m.metrics
    return {"device_id": m.device_id, "seq": m.seq, "device_time": m.time,
            "uptime_s": s.uptime_s, "cpu_percent": s.cpu_percent, "load_1m": s.load_1m,
            "memory_used_bytes": s.memory_used_bytes,
            "memory_total_bytes": s.memory_total_bytes, "temperature_c": s.temperature_c,
            "decode_tokens_per_s": s.decode_tokens_per_s, "queue_depth": s.queue_depth,
            "safety": json.dumps(dict(s.safety_decisions), sort_keys=True),
            "artifact_digest": s.artifact_digest, "slot": s.slot,
            "spool_dropped": m.spool_dropped,
            "behaviour": (json.dumps(dict(s.behaviour), sort_keys=True)
                          if s.behaviour is not None else None),
            "canaries": (json.dumps(dict(s.canaries), sort_keys=True)
                         if s.canaries is not None else None)}


def digest_of(m: Message) -> tuple[str | None, str | None]:
    """The artifact digest and slot a message reports (health or provenance), else Nones."""
    if isinstance(m, HealthReport):
        return m.metrics.artifact_digest, m.metrics.slot
    if isinstance(m, ProvenanceReport):
        return m.artifact_digest, m.slot
    return None, None


class Store(ABC):
    """The fleet store. Use :func:`open_store`; close it when done (a context manager).

    Thread-safe: calls are serialised (the manager writes from its writer thread while its
    network thread may re-read the registry).
    """

    _driver_errors: tuple[type[BaseException], ...] = ()
    where: str = "store"

    def __init__(self) -> None:
        self._lock = threading.RLock()

    def _guard(self, what: str, run: Callable[..., _T], *args: Any) -> _T:
        with self._lock:
            try:
                return run(*args)
            except self._driver_errors as e:
                raise StoreError(f"{self.where}: {what} failed ({type(e).__name__}: {e})") \
                    from e

    # -- registry --------------------------------------------------------------------------
    def enroll(self, device_id: str, key: PublicKey, *, now: float,
               replace: bool = False) -> DeviceRecord:
        """Register ``device_id`` with its public key (idempotent for the same key).

        Args:
            device_id: the device.
            key: its device key.
            now: the enrolment time.
            replace: give an enrolled device a new key (re-imaged device); this also resets
                its ``last_seq``, since a new device key starts a new sequence.

        Raises:
            ConfigError: a bad id, or the device is enrolled with another key and ``replace``
                is off.
            StoreError: the store failed.
        """
        return self.enroll_many([(device_id, key)], now=now, replace=replace)[0]

    def enroll_many(self, devices: Sequence[tuple[str, PublicKey]], *, now: float,
                    replace: bool = False) -> list[DeviceRecord]:
        """:meth:`enroll` for many devices, in one transaction.

        Raises:
            ConfigError: as :meth:`enroll`, before anything is written.
            StoreError: the store failed.
        """
        known = {d.device_id: d for d in self.devices()}
        out: list[DeviceRecord] = []
        new: list[DeviceRecord] = []
        replaced: list[DeviceRecord] = []
        for device_id, key in devices:
            check_device_id(device_id)
            old = known.get(device_id)
            if old is not None and old.key_id == key.key_id:
                out.append(old)
                continue
            if old is not None and not replace:
                raise ConfigError(f"device {device_id!r} is enrolled with key "
                                  f"{old.key_id[:16]}…; pass --replace to give it this key "
                                  "(its seq restarts)")
            rec = DeviceRecord(device_id, key.key_id, key.to_pem().decode("ascii"), now)
            (replaced if old is not None else new).append(rec)
            known[device_id] = rec
            out.append(rec)
        if new or replaced:
            self._guard("enroll", self._enroll, new, replaced)
        return out

    def device(self, device_id: str) -> DeviceRecord | None:
        """One device, or None."""
        return next((d for d in self.devices() if d.device_id == device_id), None)

    def devices(self) -> list[DeviceRecord]:
        """Every enrolled device, by id."""
        return list(self._guard("listing devices", self._devices))

    # -- ingest ----------------------------------------------------------------------------
    def write(self, batch: Sequence[Accepted], *, manager: str, now: float) -> WriteOutcome:
        """Store a batch in one transaction: sequenced messages once per ``(device, seq)``,
        state messages only when newer than the device's state.

        Raises:
            StoreError: the transaction failed (nothing of it is stored).
        """
        if not batch:
            return WriteOutcome()
        return self._guard("writing a batch", self._write, batch, manager, now)

    # -- queries ---------------------------------------------------------------------------
    def health(self, device_id: str, *, limit: int = 100,
               since: float | None = None) -> list[dict[str, Any]]:
        """The newest ``limit`` health reports of a device, newest first; with ``since``
        (epoch seconds), only reports the device made at or after it."""
        return list(self._guard("reading health", self._rows, "health", device_id, limit,
                                since))

    def events(self, device_id: str, *, limit: int = 100) -> list[dict[str, Any]]:
        """The newest ``limit`` events of a device, newest first."""
        return list(self._guard("reading events", self._rows, "events", device_id, limit))

    def provenance(self, device_id: str, *, limit: int = 10) -> list[dict[str, Any]]:
        """The newest ``limit`` provenance reports of a device, newest first."""
        return list(self._guard("reading provenance", self._rows, "provenance", device_id,
                                limit))

    def transitions(self, device_id: str, *, limit: int = 100) -> list[dict[str, Any]]:
        """The newest ``limit`` state transitions of a device, newest first."""
        return list(self._guard("reading transitions", self._rows, "state_transitions",
                                device_id, limit))

    def count(self, table: str, device_id: str | None = None) -> int:
        """Rows in ``telemetry``, ``health``, ``events``, ``provenance`` (of one device)."""
        if table not in ("telemetry", "health", "events", "provenance", "state_transitions"):
            raise ConfigError(f"no table {table!r}")
        return int(self._guard("counting", self._count, table, device_id))

    def issue_command(self, device_id: str, make: Callable[[int], Command]) -> Command:
        """Record the device's next command: ``make`` gets the next version (one above the
        last recorded) and returns the command, which is stored before it is returned (send it
        only then, so a version is never used twice).

        Raises:
            ConfigError: the device is not enrolled; StoreError: the store failed.
        """
        if self.device(device_id) is None:
            raise ConfigError(f"device {device_id!r} is not enrolled in this fleet")
        cmd: Command = self._guard("recording a command", self._issue_command, device_id, make)
        return cmd

    def commands(self, device_id: str, *, limit: int = 100) -> list[dict[str, Any]]:
        """The newest ``limit`` commands sent to a device, newest first."""
        return list(self._guard("reading commands", self._commands, device_id, limit))

    def put_doc(self, table: str, name: str, doc: dict[str, Any], *, now: float) -> None:
        """Store a JSON document under ``name`` in ``device_groups`` or ``rollouts``."""
        _check_doc_table(table)
        self._guard("writing a document", self._put_doc, table, name,
                    json.dumps(doc, sort_keys=True), now)

    def get_doc(self, table: str, name: str) -> dict[str, Any] | None:
        """The document ``name`` of ``device_groups`` or ``rollouts``, if any."""
        _check_doc_table(table)
        text: str | None = self._guard("reading a document", self._get_doc, table, name)
        return None if text is None else dict(json.loads(text))

    def doc_names(self, table: str) -> list[str]:
        """The names in ``device_groups`` or ``rollouts``, sorted."""
        _check_doc_table(table)
        return sorted(self._guard("listing documents", self._doc_names, table))

    def add_alert(self, alert: Alert, *, manager: str) -> None:
        """Record an alert."""
        self._guard("recording an alert", self._add_alert, alert, manager)

    def alerts(self, *, limit: int = 100) -> list[Alert]:
        """The newest ``limit`` alerts, newest first."""
        return list(self._guard("reading alerts", self._alerts, limit))

    def save_stats(self, manager: str, counters: dict[str, int], *, started_at: float,
                   now: float) -> None:
        """Record a manager's counters (received, stored, rejected by reason...)."""
        self._guard("saving stats", self._save_stats, manager, counters, started_at, now)

    def stats(self) -> list[dict[str, Any]]:
        """Every manager's last saved counters."""
        return list(self._guard("reading stats", self._stats))

    def schema_version(self) -> int:
        """The schema version of the open store."""
        return int(self._guard("reading the schema version", self._schema_version))

    def close(self) -> None:
        """Close the connection."""
        self._guard("closing", self._close)

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- hooks -----------------------------------------------------------------------------
    @abstractmethod
    def _enroll(self, new: list[DeviceRecord], replaced: list[DeviceRecord]) -> None: ...
    @abstractmethod
    def _devices(self) -> list[DeviceRecord]: ...
    @abstractmethod
    def _write(self, batch: Sequence[Accepted], manager: str, now: float) -> WriteOutcome: ...
    @abstractmethod
    def _rows(self, table: str, device_id: str, limit: int,
              since: float | None = None) -> list[dict[str, Any]]: ...
    @abstractmethod
    def _count(self, table: str, device_id: str | None) -> int: ...
    @abstractmethod
    def _add_alert(self, alert: Alert, manager: str) -> None: ...
    @abstractmethod
    def _alerts(self, limit: int) -> list[Alert]: ...
    @abstractmethod
    def _save_stats(self, manager: str, counters: dict[str, int], started_at: float,
                    now: float) -> None: ...
    @abstractmethod
    def _stats(self) -> list[dict[str, Any]]: ...
    @abstractmethod
    def _schema_version(self) -> int: ...
    @abstractmethod
    def _close(self) -> None: ...
    @abstractmethod
    def _issue_command(self, device_id: str, make: Callable[[int], Command]) -> Command: ...
    @abstractmethod
    def _commands(self, device_id: str, limit: int) -> list[dict[str, Any]]: ...
    @abstractmethod
    def _put_doc(self, table: str, name: str, text: str, now: float) -> None: ...
    @abstractmethod
    def _get_doc(self, table: str, name: str) -> str | None: ...
    @abstractmethod
    def _doc_names(self, table: str) -> list[str]: ...


def _check_doc_table(table: str) -> None:
    if table not in ("device_groups", "rollouts"):
        raise ConfigError(f"no document table {table!r}")


def is_sequenced(m: Message) -> bool:
    """Health, events and provenance carry a seq; state does not."""
    return isinstance(m, HealthReport | EventMessage | ProvenanceReport)


def open_store(spec: str, *, base_dir: Path | None = None,
               sqlite_synchronous: str = "FULL") -> Store:
    """Open (creating and migrating as needed) the store a ``store`` setting names.

    Args:
        spec: a SQLite file path, ``sqlite:///PATH``, ``postgresql://...``, or ``memory:``.
        base_dir: where a relative SQLite path is taken from.
        sqlite_synchronous: ``FULL`` or ``NORMAL`` (see :class:`SqliteStore`).

    Raises:
        ConfigError: an unknown scheme, or the PostgreSQL driver is not installed.
        StoreError: the database cannot be opened or migrated.
    """
    if spec == "memory:":
        from edgeward.fleet._memstore import MemoryStore

        return MemoryStore()
    if spec.startswith(("postgresql://", "postgres://")):
        from edgeward.fleet._postgres import PostgresStore

        return PostgresStore(spec)
    if "://" in spec and not spec.startswith("sqlite://"):
        raise ConfigError(f"store {spec!r}: use a file path, sqlite:///PATH, postgresql://... "
                          "or memory:")
    path = Path(spec.removeprefix("sqlite://") if spec.startswith("sqlite://") else spec)
    if base_dir is not None and not path.is_absolute():
        path = base_dir / path
    from edgeward.fleet._sqlite import SqliteStore

    return SqliteStore(path, synchronous=sqlite_synchronous)
