"""Fixtures of the safety tests: a fresh filter with an in-memory audit sink."""

from __future__ import annotations

import pytest

from edgeward.safety import BundledFilter, MemoryAuditSink


@pytest.fixture
def audit() -> MemoryAuditSink:
    """An empty in-memory audit sink."""
    return MemoryAuditSink()


@pytest.fixture
def flt(audit: MemoryAuditSink) -> BundledFilter:
    """The default policy and shipped classifier, auditing into ``audit``."""
    return BundledFilter(audit=audit, hmac_key=b"k" * 32)
