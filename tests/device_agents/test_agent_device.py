"""The device side of the agent: the audit HMAC key, the audit sink over the tamper-evident log,
and health sampling from /proc and /sys (fake trees here)."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from edgeward.device_agents._device import HealthSampler, LogAuditSink, audit_hmac_key
from edgeward.errors import ConfigError
from edgeward.provenance import verify_log


def test_the_hmac_key_is_made_once_private_and_kept(tmp_path: Path) -> None:
    key = audit_hmac_key(tmp_path)
    path = tmp_path / "audit" / "hmac.key"
    assert len(key) == 32 and stat.S_IMODE(path.stat().st_mode) == 0o600
    assert audit_hmac_key(tmp_path) == key  # the same key after a restart
    path.write_bytes(b"short")
    with pytest.raises(ConfigError, match="must be 32 bytes"):
        audit_hmac_key(tmp_path)


def test_the_sink_appends_chained_entries_and_survives_a_failed_write(tmp_path: Path) -> None:
    failures: list[int] = []
    sink = LogAuditSink(tmp_path / "audit" / "safety.log",
                        on_failure=lambda: failures.append(1))
    sink.append({"stage": "prompt", "action": "block", "categories": ["S1"]})
    sink.append({"stage": "output", "action": "redact", "categories": ["EMAIL"]})
    assert sink.appended == 2
    sink._log.close()  # a write now fails: counted, reported, never raised
    sink.append({"stage": "prompt", "action": "block", "categories": ["S9"]})
    assert sink.failures == 1 and failures == [1]
    report = verify_log(sink.path)
    assert report.ok and report.entries == 2


def _fake_proc(root: Path, busy: int, idle: int) -> None:
    (root / "stat").write_text(f"cpu  {busy} 0 0 {idle} 0 0 0 0 0 0\ncpu0 1 0 0 1\n")


def test_health_is_read_from_proc_and_sys(tmp_path: Path) -> None:
    proc, sys_ = tmp_path / "proc", tmp_path / "sys"
    proc.mkdir()
    _fake_proc(proc, busy=100, idle=900)
    (proc / "loadavg").write_text("0.42 0.30 0.20 1/100 4242\n")
    (proc / "meminfo").write_text("MemTotal:       8000000 kB\nMemFree:        1000 kB\n"
                                  "MemAvailable:   6000000 kB\n")
    for zone, milli in (("thermal_zone0", 45500), ("thermal_zone1", 61250)):
        (sys_ / "class" / "thermal" / zone).mkdir(parents=True)
        (sys_ / "class" / "thermal" / zone / "temp").write_text(f"{milli}\n")
    sampler = HealthSampler(0.0, lambda: {"queue_depth": 3, "safety_decisions": {"block": 2}},
                            proc=proc, sys=sys_)
    _fake_proc(proc, busy=150, idle=950)  # 50 of 100 jiffies busy since the first read
    h = sampler()
    assert h.cpu_percent == pytest.approx(50.0 * (os.cpu_count() or 1))
    assert h.load_1m == 0.42 and h.temperature_c == 61.25
    assert (h.memory_total_bytes, h.memory_used_bytes) == (8_192_000_000, 2_048_000_000)
    assert h.queue_depth == 3 and h.safety_decisions == {"block": 2} and h.uptime_s > 0


def test_health_without_proc_reports_none_not_an_error(tmp_path: Path) -> None:
    h = HealthSampler(0.0, dict, proc=tmp_path / "none", sys=tmp_path / "none")()
    assert (h.cpu_percent, h.load_1m, h.memory_total_bytes, h.temperature_c) == (
        None, None, None, None)
