"""An in-memory store with the behaviour of the SQL stores: the fake for fast tests."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any

from edgeward.fleet._migrations import LATEST
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

__all__ = ["MemoryStore"]


class MemoryStore(Store):
    """Everything in dictionaries; nothing survives :meth:`close`. Not thread-safe."""

    where = "memory:"

    def __init__(self) -> None:
        super().__init__()
        self._devices_by_id: dict[str, DeviceRecord] = {}
        self._rank: dict[str, int] = {}
        self._digest_seq: dict[str, int] = {}
        self._tables: dict[str, dict[tuple[str, int], dict[str, Any]]] = {
            "telemetry": {}, "health": {}, "events": {}, "provenance": {}}
        self._transitions: list[dict[str, Any]] = []
        self._alert_list: list[Alert] = []
        self._command_rows: dict[str, list[dict[str, Any]]] = {}
        self._docs: dict[str, dict[str, str]] = {}
        self._stat_rows: dict[str, dict[str, Any]] = {}

    def _enroll(self, new: list[DeviceRecord], replaced: list[DeviceRecord]) -> None:
        for rec in [*new, *replaced]:
            self._devices_by_id[rec.device_id] = rec
            self._digest_seq[rec.device_id] = 0

    def _devices(self) -> list[DeviceRecord]:
        return [self._devices_by_id[k] for k in sorted(self._devices_by_id)]

    def _write(self, batch: Sequence[Accepted], manager: str, now: float) -> WriteOutcome:
        new: list[Accepted] = []
        dups: list[Accepted] = []
        applied: list[Accepted] = []
        stale: list[Accepted] = []
        for a in batch:
            m = a.message
            if isinstance(m, StateMessage):
                dev = self._devices_by_id[m.device_id]
                if (dev.session, self._rank.get(m.device_id, 0)) < (m.session, m.state.rank):
                    self._devices_by_id[m.device_id] = replace(dev, state=m.state.value,
                                                               session=m.session)
                    self._rank[m.device_id] = m.state.rank
                    self._transitions.append({"device_id": m.device_id, "session": m.session,
                                              "state": m.state.value, "device_time": m.time,
                                              "received_at": a.received_at})
                    applied.append(a)
                else:
                    stale.append(a)
                continue
            assert is_sequenced(m)
            key = (m.device_id, m.seq)
            if key in self._tables["telemetry"]:
                dups.append(a)
                continue
            self._tables["telemetry"][key] = {"device_id": m.device_id, "seq": key[1],
                                              "kind": m.kind.value, "manager": manager,
                                              "received_at": a.received_at, "stored_at": now}
            self._store_kind(a, key)
            new.append(a)
        for a in [*new, *applied]:
            self._touch(a)
        return WriteOutcome(new=tuple(new), duplicates=tuple(dups),
                            stale=tuple(stale), transitions=tuple(applied))

    def _store_kind(self, a: Accepted, key: tuple[str, int]) -> None:
        m = a.message
        if isinstance(m, EventMessage):
            self._tables["events"][key] = {"device_id": m.device_id, "seq": m.seq,
                                           "device_time": m.time, "event": m.event,
                                           "severity": m.severity, "data": dict(m.data)}
        elif isinstance(m, ProvenanceReport):
            self._tables["provenance"][key] = {
                "device_id": m.device_id, "seq": m.seq, "device_time": m.time,
                "artifact_digest": m.artifact_digest, "slot": m.slot,
                "publisher_key_id": m.attestation.publisher_key_id,
                "statement_verified": a.statement_verified,
                "statement": m.statement.to_dict()}
        else:
            row = health_row(a)
            row["safety"] = json.loads(row["safety"])
            for col in ("behaviour", "canaries"):
                if row.get(col) is not None:
                    row[col] = json.loads(row[col])
            self._tables["health"][key] = row

    def _touch(self, a: Accepted) -> None:
        m = a.message
        dev = self._devices_by_id[m.device_id]
        s = getattr(m, "seq", 0)
        dev = replace(dev, last_seen=max(dev.last_seen or 0.0, a.received_at),
                      last_seq=max(dev.last_seq, s))
        digest, slot = digest_of(m)
        if digest is not None and s > self._digest_seq.get(m.device_id, 0):
            self._digest_seq[m.device_id] = s
            dev = replace(dev, artifact_digest=digest, slot=slot)
        self._devices_by_id[m.device_id] = dev

    def _rows(self, table: str, device_id: str, limit: int,
              since: float | None = None) -> list[dict[str, Any]]:
        if table == "state_transitions":
            rows = [r for r in self._transitions if r["device_id"] == device_id][::-1]
        else:
            rows = sorted((r for (d, _), r in self._tables[table].items() if d == device_id),
                          key=lambda r: -int(r["seq"]))
        if since is not None:
            rows = [r for r in rows if r["device_time"] >= since]
        out = []
        for row in rows[:limit]:
            r = dict(row)
            for k in ("device_time", "received_at"):
                if k in r:
                    r[k] = iso_time(r[k])
            out.append(r)
        return out

    def _count(self, table: str, device_id: str | None) -> int:
        if table == "state_transitions":
            rows: list[Any] = [r["device_id"] for r in self._transitions]
        else:
            rows = [d for d, _ in self._tables[table]]
        return sum(1 for d in rows if device_id is None or d == device_id)

    def _issue_command(self, device_id: str, make: Callable[[int], Command]) -> Command:
        sent = self._command_rows.setdefault(device_id, [])
        cmd = make(max((c["version"] for c in sent), default=0) + 1)
        sent.append({"device_id": cmd.device_id, "version": cmd.version,
                     "command_id": cmd.command_id, "action": cmd.action,
                     "issued_at": iso_time(cmd.issued_at),
                     "expires_at": iso_time(cmd.expires_at), "params": dict(cmd.params)})
        return cmd

    def _commands(self, device_id: str, limit: int) -> list[dict[str, Any]]:
        return self._command_rows.get(device_id, [])[::-1][:limit]

    def _put_doc(self, table: str, name: str, text: str, now: float) -> None:
        self._docs.setdefault(table, {})[name] = text

    def _get_doc(self, table: str, name: str) -> str | None:
        return self._docs.get(table, {}).get(name)

    def _doc_names(self, table: str) -> list[str]:
        return list(self._docs.get(table, {}))

    def _add_alert(self, alert: Alert, manager: str) -> None:
        self._alert_list.append(alert)

    def _alerts(self, limit: int) -> list[Alert]:
        return self._alert_list[::-1][:limit]

    def _save_stats(self, manager: str, counters: dict[str, int], started_at: float,
                    now: float) -> None:
        self._stat_rows[manager] = {"manager": manager, "started_at": iso_time(started_at),
                                    "updated_at": iso_time(now), "counters": dict(counters)}

    def _stats(self) -> list[dict[str, Any]]:
        return [self._stat_rows[k] for k in sorted(self._stat_rows)]

    def _schema_version(self) -> int:
        return LATEST

    def _close(self) -> None:
        pass
