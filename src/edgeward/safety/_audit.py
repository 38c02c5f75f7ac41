"""Audit records of the filter's decisions, and where they go.

Every decision other than ``allow`` becomes one record: the time, the stage, the action, the
categories and scores, the policy's digest, and a keyed hash (HMAC-SHA256) of the text, never
the text itself unless the policy says so (patient data must not land in logs by default). The
HMAC lets an auditor who holds the key confirm that a given text was the one decided on, and
lets records of the same text be linked, without the log revealing it.

The filter hands records to an :class:`AuditSink`. This package may not import the provenance
package, so the device agent adapts :class:`edgeward.provenance.TamperEvidentLog` to the sink
protocol (``sink.append(record)`` -> ``log.append("safety_decision", record)``);
:class:`MemoryAuditSink` keeps records in memory for tests and tools.
"""

from __future__ import annotations

import hashlib
import hmac
import threading
from datetime import UTC, datetime
from typing import Any, Protocol

from edgeward.safety._verdict import Stage, Verdict

__all__ = ["AUDIT_KIND", "CONTEXT_KEYS", "AuditSink", "MemoryAuditSink", "audit_record",
           "text_hmac"]

AUDIT_KIND = "safety_decision"  # the entry kind the agent uses in the tamper-evident log
_SCHEMA = 1
CONTEXT_KEYS = frozenset({"request_id", "session", "model", "client", "artifact", "endpoint",
                          "role"})


class AuditSink(Protocol):
    """Where audit records go (the agent adapts the tamper-evident log to this)."""

    def append(self, record: dict[str, Any]) -> None:
        """Store one record (a JSON-serialisable dict)."""
        ...


class MemoryAuditSink:
    """Keeps records in a list (thread-safe); for tests and the CLI."""

    def __init__(self) -> None:
        self.records: list[dict[str, Any]] = []
        self._lock = threading.Lock()

    def append(self, record: dict[str, Any]) -> None:
        """Store one record."""
        with self._lock:
            self.records.append(record)


def text_hmac(text: str, key: bytes) -> str:
    """``hmac-sha256:<hex>`` of the UTF-8 text under ``key``."""
    return "hmac-sha256:" + hmac.new(key, text.encode("utf-8"), hashlib.sha256).hexdigest()


def audit_record(verdict: Verdict, *, text: str, stage: Stage, key: bytes, policy_name: str,
                 policy_digest: str, log_text: bool = False, log_redacted_text: bool = False,
                 now: datetime | None = None, context: dict[str, Any] | None = None
                 ) -> dict[str, Any]:
    """The audit record of one decision.

    Args:
        verdict: the decision.
        text: the text decided on (only its HMAC goes in, unless ``log_text``).
        stage: ``prompt`` or ``output``.
        key: the HMAC key (a device secret; see docs/safety.md).
        policy_name: the policy's name.
        policy_digest: the policy's ``sha256:`` digest.
        log_text: include the text itself (only if the policy allows it).
        log_redacted_text: include the redacted text, when there is one.
        now: the decision time (default: now, UTC).
        context: the caller's context; only the keys of :data:`CONTEXT_KEYS` with scalar
            values are kept (a context may carry user text, which must not be logged).

    Returns:
        A JSON-serialisable dict (schema ``1``; documented in docs/safety.md).
    """
    record: dict[str, Any] = {
        "schema": _SCHEMA,
        "time": (now or datetime.now(UTC)).isoformat(timespec="milliseconds").replace(
            "+00:00", "Z"),
        "stage": stage,
        "action": verdict.action,
        "categories": list(verdict.categories),
        "scores": {k: round(float(v), 4) for k, v in verdict.scores.items()},
        "span_types": sorted({s.type for s in verdict.spans}),
        "text_hmac": text_hmac(text, key),
        "text_chars": len(text),
        "policy": {"name": policy_name, "digest": policy_digest},
        "latency_ms": round(verdict.latency_ms, 3),
    }
    if context:
        kept = {k: v for k, v in context.items()
                if k in CONTEXT_KEYS and isinstance(v, str | int | float | bool)}
        if kept:
            record["context"] = kept
    if log_text:
        record["text"] = text
    if log_redacted_text and verdict.redacted_text is not None:
        record["redacted_text"] = verdict.redacted_text
    return record
