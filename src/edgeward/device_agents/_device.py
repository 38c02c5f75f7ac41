"""What ties the agent to its device: the device key, the audit log, and health measurements.

- :func:`audit_hmac_key` keeps the key of the audit records' text HMAC in the state directory
  (created once, mode 0600), so records of the same text link across restarts and an auditor
  holding the key can confirm which text a record is about.
- :class:`LogAuditSink` adapts :class:`edgeward.provenance.TamperEvidentLog` to the safety
  filter's audit-sink protocol: every non-allow decision becomes a hash-chained
  ``safety_decision`` entry, with signed checkpoints when the device key is configured.
- :class:`HealthSampler` reads what the health report carries: CPU use and load from
  ``/proc``, memory, the hottest thermal zone, and the agent's own figures.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from edgeward.device_agents._log import log_event
from edgeward.device_agents._reserve import DiskReserve, is_disk_full
from edgeward.errors import ConfigError, EdgewardError
from edgeward.fleet.protocol import HealthSample
from edgeward.provenance import LogConfig, PrivateKey, TamperEvidentLog
from edgeward.safety import AUDIT_KIND

__all__ = ["HealthSampler", "LogAuditSink", "audit_hmac_key"]

_HMAC_KEY_BYTES = 32
_CHECKPOINT_EVERY = 64  # audit entries between signed checkpoints
AUDIT_RESERVE_BYTES = 1 << 20  # bytes held back for audit records on a full disk


def audit_hmac_key(state_dir: Path) -> bytes:
    """The device's audit HMAC key: ``STATE/audit/hmac.key`` (32 random bytes, mode 0600),
    created on first use.

    Raises:
        ConfigError: the file exists with the wrong size, or cannot be read or written.
    """
    path = state_dir / "audit" / "hmac.key"
    try:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            key = path.read_bytes()
        else:
            key = os.urandom(_HMAC_KEY_BYTES)
            with os.fdopen(fd, "wb") as f:
                f.write(key)
                f.flush()
                os.fsync(f.fileno())
    except OSError as e:
        raise ConfigError(f"{path}: cannot read or create the audit HMAC key ({e.strerror})"
                          ) from e
    if len(key) != _HMAC_KEY_BYTES:
        raise ConfigError(f"{path}: the audit HMAC key must be {_HMAC_KEY_BYTES} bytes, found "
                          f"{len(key)}; restore it from backup (records made with the old key "
                          "can only be checked with it)")
    return key


class LogAuditSink:
    """The safety filter's audit sink over a tamper-evident log (thread-safe).

    The disk space of :data:`AUDIT_RESERVE_BYTES` is held back in ``PATH.reserve``
    (:class:`~edgeward.device_agents._reserve.DiskReserve`): a write that fails because the
    disk is full releases it and is written again, so the record still lands
    (``audit_reserve_used``, ``on_reserve_used``). A write that fails all the same is logged
    (``audit_write_failed``) and counted in :attr:`failures`; it never fails the request that
    was being decided on; ``on_failure`` decides what the agent does next.

    Args:
        path: the log file (its directory is created, mode 0700).
        key: the device key that signs checkpoints (every 64 entries and at close).
        on_failure: called after a failed write (the agent counts it in ``/metrics`` and
            applies the safety policy's ``[audit] on_failure``).
        on_reserve_used: called after a record was written in the reserve's space (an alert).
        reserve_bytes: the reserve's size (0: none).

    Raises:
        ConfigError: the log cannot be opened or another process holds it.
        LogTamperedError: its last entry is torn or not an entry (see ``edgeward verify-log``).
    """

    def __init__(self, path: Path, *, key: PrivateKey | None = None,
                 on_failure: Callable[[], None] | None = None,
                 on_reserve_used: Callable[[], None] | None = None,
                 reserve_bytes: int = AUDIT_RESERVE_BYTES) -> None:
        try:
            path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        except OSError as e:
            raise ConfigError(f"{path.parent}: cannot create the audit directory "
                              f"({e.strerror})") from e
        self.path = path
        self._log = TamperEvidentLog(path, key=key,
                                     config=LogConfig(checkpoint_every=_CHECKPOINT_EVERY))
        self._lock = threading.Lock()
        self._on_failure = on_failure
        self._on_reserve_used = on_reserve_used
        self.reserve = DiskReserve(path.with_name(path.name + ".reserve"), reserve_bytes)
        self.reserve.ensure(force=True)
        self.failures = 0
        self.appended = 0

    def append(self, record: dict[str, Any], *, kind: str = AUDIT_KIND) -> None:
        """Append one entry, a ``safety_decision`` by default (in the reserve's space on a
        full disk); the agent also records its ``behaviour_check`` verdicts here."""
        with self._lock:
            try:
                try:
                    self._log.append(kind, record)
                except EdgewardError as e:
                    if not (is_disk_full(e) and self.reserve.release()):
                        raise
                    self._log.append(kind, record)
                    log_event(logging.CRITICAL, "audit_reserve_used", log=str(self.path),
                              detail="the disk is full: this audit record was written in the "
                                     "space held back for it; free space on the disk")
                    if self._on_reserve_used is not None:
                        self._on_reserve_used()
                self.appended += 1
                if not self.reserve.held:
                    self.reserve.ensure()
            except EdgewardError as e:
                self.failures += 1
                log_event(logging.ERROR, "audit_write_failed", log=str(self.path),
                          reason=e.kind, detail=str(e))
                if self._on_failure is not None:
                    self._on_failure()

    def close(self) -> None:
        """Write a final checkpoint (with a key) and close the log."""
        with self._lock:
            self._log.close()


class HealthSampler:
    """Reads the machine's health figures; the agent adds its own through ``agent_figures``.

    Args:
        started_at: ``time.monotonic()`` when the agent started (for ``uptime_s``).
        agent_figures: returns the agent's fields of :class:`HealthSample`
            (``decode_tokens_per_s``, ``queue_depth``, ``safety_decisions``,
            ``artifact_digest``, ``slot``).
        proc: the procfs root (tests point it at a fake tree).
        sys: the sysfs root.
    """

    def __init__(self, started_at: float, agent_figures: Callable[[], Mapping[str, Any]], *,
                 proc: Path = Path("/proc"), sys: Path = Path("/sys")) -> None:
        self._started_at = started_at
        self._agent = agent_figures
        self._proc = proc
        self._sys = sys
        self._last_cpu = self._cpu_times()

    def __call__(self) -> HealthSample:
        """One sample; every figure that cannot be read is ``None``."""
        mem_total, mem_avail = self._meminfo()
        return HealthSample(
            uptime_s=max(0.0, time.monotonic() - self._started_at),
            cpu_percent=self._cpu_percent(), load_1m=self._load(),
            memory_used_bytes=(mem_total - mem_avail if mem_total is not None
                               and mem_avail is not None else None),
            memory_total_bytes=mem_total, temperature_c=self._temperature(),
            **self._agent())

    def _cpu_times(self) -> tuple[int, int] | None:
        """(busy, total) jiffies of all CPUs from /proc/stat."""
        try:
            first = (self._proc / "stat").read_text().splitlines()[0].split()
            values = [int(v) for v in first[1:]]
        except (OSError, IndexError, ValueError):
            return None
        idle = values[3] + (values[4] if len(values) > 4 else 0)  # idle + iowait
        return sum(values) - idle, sum(values)

    def _cpu_percent(self) -> float | None:
        now, last = self._cpu_times(), self._last_cpu
        self._last_cpu = now
        if now is None or last is None or now[1] <= last[1]:
            return None
        cores = os.cpu_count() or 1
        return round(100.0 * cores * (now[0] - last[0]) / (now[1] - last[1]), 2)

    def _load(self) -> float | None:
        try:
            return round(float((self._proc / "loadavg").read_text().split()[0]), 2)
        except (OSError, IndexError, ValueError):
            return None

    def _meminfo(self) -> tuple[int | None, int | None]:
        fields: dict[str, int] = {}
        try:
            for line in (self._proc / "meminfo").read_text().splitlines():
                name, _, rest = line.partition(":")
                parts = rest.split()
                if parts and parts[0].isdigit():
                    fields[name] = int(parts[0]) * 1024  # kB
        except OSError:
            return None, None
        return fields.get("MemTotal"), fields.get("MemAvailable")

    def _temperature(self) -> float | None:
        hottest: float | None = None
        for zone in sorted((self._sys / "class" / "thermal").glob("thermal_zone*/temp")):
            try:
                celsius = int(zone.read_text().strip()) / 1000.0
            except (OSError, ValueError):
                continue
            if -100 <= celsius <= 300 and (hottest is None or celsius > hottest):
                hottest = celsius
        return hottest
