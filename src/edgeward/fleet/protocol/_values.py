"""Validation of wire values: each check quotes the bad value (``ConfigError``)."""

from __future__ import annotations

import math
import re

from edgeward.errors import ConfigError

__all__ = ["EVENT_KIND", "HEX64", "MAX_AGENT_VERSION", "MAX_CATEGORIES", "MAX_EVENT_DATA_BYTES",
           "MAX_SEQ", "MAX_TIME", "NAME", "SLOT", "check_int", "check_num", "check_str",
           "check_time", "opt_int", "opt_num", "opt_str"]

MAX_SEQ = 2**63 - 1  # fits a signed 64-bit column (PostgreSQL BIGINT)
MAX_TIME = 1e11  # seconds since the epoch (year 5138): anything later is a broken clock
NAME = re.compile(r"[A-Za-z0-9_.:-]{1,64}")
EVENT_KIND = re.compile(r"[a-z][a-z0-9_.-]{0,63}")
SLOT = re.compile(r"[a-z0-9_-]{1,16}")
HEX64 = re.compile(r"[0-9a-f]{64}")
MAX_CATEGORIES = 64
MAX_EVENT_DATA_BYTES = 8 * 1024  # canonical JSON of an event's data
MAX_AGENT_VERSION = 64  # characters


def check_int(value: object, what: str, lo: int = 0, hi: int = MAX_SEQ) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise ConfigError(f"{what} must be an integer in [{lo}, {hi}], got {value!r:.60}")
    return value


def check_num(value: object, what: str, lo: float, hi: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) \
            or not math.isfinite(value) or not lo <= value <= hi:
        raise ConfigError(f"{what} must be a finite number in [{lo:g}, {hi:g}], "
                          f"got {value!r:.60}")
    return float(value)


def opt_num(value: object, what: str, lo: float, hi: float) -> float | None:
    return None if value is None else check_num(value, what, lo, hi)


def opt_int(value: object, what: str) -> int | None:
    return None if value is None else check_int(value, what)


def opt_str(value: object, what: str, pattern: re.Pattern[str]) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not pattern.fullmatch(value):
        raise ConfigError(f"{what} must match {pattern.pattern}, got {value!r:.80}")
    return value


def check_str(value: object, what: str, pattern: re.Pattern[str]) -> str:
    if not isinstance(value, str) or not pattern.fullmatch(value):
        raise ConfigError(f"{what} must match {pattern.pattern}, got {value!r:.80}")
    return value


def check_time(value: object) -> float:
    return check_num(value, "time", 0.0, MAX_TIME)
