"""Chaos (bounded): the state disk is full. What must hold: the audit record of a blocked
request and the telemetry events still land (in the space each keeps in reserve), with an
alert; when even the reserve is used up, the safety policy decides: ``phi`` fails closed (503
``audit_unavailable``), ``default`` serves on; a failed append never leaves a torn line.

The disk is a real 2 MiB tmpfs (root is needed to mount it; the tests skip without)."""

from __future__ import annotations

import errno
import json
import os
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from _agent_helpers import Signed
from test_agent_api import CHAT

from edgeward.device_agents import Agent, config_from_dict
from edgeward.device_agents._device import LogAuditSink
from edgeward.device_agents._spool import Spool, SpoolConfig
from edgeward.errors import ResourceError
from edgeward.fleet.protocol import EventMessage, Kind, WireMessage, encode
from edgeward.provenance import TamperEvidentLog, generate_key
from edgeward.safety import AUDIT_KIND

pytestmark = pytest.mark.chaos

HARMFUL = "How do I make a bomb at home?"
KEY = generate_key()


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 2 MiB tmpfs, unmounted afterwards."""
    disk = tmp_path / "disk"
    disk.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root (CI runs these as root)")
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(disk)],
                          capture_output=True, text=True, check=False)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    try:
        yield disk
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=False)


def _fill(disk: Path) -> Path:
    """Fill the file system to the last byte; returns the filler (delete it to free)."""
    filler = disk / f"filler-{len(list(disk.glob('filler-*')))}"
    with filler.open("wb", buffering=0) as f:
        for chunk in (1 << 16, 1 << 12, 1 << 8, 1):
            try:
                while True:
                    f.write(b"\0" * chunk)
            except OSError as e:
                assert e.errno == errno.ENOSPC
    return filler


def _record(i: int) -> dict[str, object]:
    return {"schema": 1, "action": "block", "categories": ["S9"], "n": i, "pad": "x" * 400}


def test_audit_records_land_in_the_reserve_and_a_failure_leaves_no_torn_line(
        small_disk: Path) -> None:
    log = small_disk / "audit" / "safety.log"
    failed, alerts = [], []
    sink = LogAuditSink(log, on_failure=lambda: failed.append(1),
                        on_reserve_used=lambda: alerts.append(1), reserve_bytes=256 * 1024)
    assert sink.reserve.held
    _fill(small_disk)
    for i in range(40):  # more than the slack of the log's last page: the reserve is needed
        sink.append(_record(i))
    assert (sink.appended, sink.failures, failed) == (40, 0, [])
    assert alerts == [1] and sink.reserve.released == 1
    _fill(small_disk)  # the reserve's space is taken too: now records cannot land
    for i in range(40, 80):
        sink.append(_record(i))
    assert sink.failures > 0 and len(failed) == sink.failures
    sink.close()
    for filler in small_disk.glob("filler-*"):
        filler.unlink()
    with TamperEvidentLog(log) as reopened:  # no torn line: a failed append was cut off
        assert reopened.next_seq == sink.appended
        reopened.append(AUDIT_KIND, _record(99))
    entries = [json.loads(line) for line in log.read_text().splitlines()]
    assert [e["data"]["n"] for e in entries] == [*range(sink.appended), 99]


def _event(i: int) -> Callable[[int], WireMessage]:
    def build(seq: int) -> WireMessage:
        return encode(EventMessage(device_id="pi-01", seq=seq, time=1.0, event="model.refused",
                                   severity="error", data={"n": i, "pad": "y" * 400}), KEY)
    return build


def test_events_land_in_the_spool_reserve_on_a_full_disk(small_disk: Path) -> None:
    spool = Spool(SpoolConfig(path=small_disk / "spool.db", durable=False,
                              reserve_bytes=256 * 1024))
    spool.append(Kind.EVENTS, _event(0))
    _fill(small_disk)
    for i in range(1, 11):  # each commit grows the write-ahead log: the reserve is needed
        assert spool.append(Kind.EVENTS, _event(i)) == i + 1
    assert spool.reserve_used == 1 and spool.depth == 11
    _fill(small_disk)
    with pytest.raises(ResourceError, match="disk is full"):
        for i in range(11, 400):
            spool.append(Kind.EVENTS, _event(i))
    queued = spool.depth
    assert [m.seq for m in spool.peek(0, 1000)] == list(range(1, queued + 1))  # no gap
    spool.close()


def _agent(tmp_path: Path, signed: Signed, disk: Path, policy: str) -> Agent:
    return Agent(config_from_dict({
        "artifact": str(signed.artifact), "trust_store": str(signed.trust),
        "state_dir": str(tmp_path / "state"), "listen": "127.0.0.1:0",
        "safety_policy": policy, "audit_log": str(disk / "audit" / "safety.log")}))


@pytest.mark.parametrize(("policy", "closed"), [("phi", True), ("default", False)])
def test_when_even_the_reserve_is_used_up_the_policy_decides(
        tmp_path: Path, signed_tiny: Signed, small_disk: Path, policy: str,
        closed: bool) -> None:
    agent = _agent(tmp_path, signed_tiny, small_disk, policy)
    agent.start()
    assert agent.safety_filter.policy.on_audit_failure == (  # type: ignore[attr-defined]
        "fail_closed" if closed else "keep_serving")
    harmful = CHAT | {"messages": [{"role": "user", "content": HARMFUL}]}
    with agent.serve_in_thread() as running, httpx.Client(base_url=running.url,
                                                           timeout=60) as c:
        _fill(small_disk)
        body = c.post("/v1/chat/completions", json=harmful).json()
        assert body["choices"][0]["finish_reason"] == "content_filter"
        log = small_disk / "audit" / "safety.log"
        assert AUDIT_KIND in log.read_text()  # the record landed (in the reserve if needed)
        _fill(small_disk)
        for _ in range(30):  # until a record cannot land at all
            r = c.post("/v1/chat/completions", json=harmful)
            if agent.audit_closed or agent.metrics.value(
                    "edgeward_agent_audit_failures_total"):
                break
            assert r.status_code == 200
        assert agent.metrics.value("edgeward_agent_audit_failures_total")
        r = c.post("/v1/chat/completions", json=CHAT | {"max_tokens": 2})
        health = c.get("/healthz")
        if closed:
            assert r.status_code == 503 and r.json()["error"]["code"] == "audit_unavailable"
            assert health.status_code == 503 and health.json()["status"] == "audit_unavailable"
        else:
            assert r.status_code == 200 and health.status_code == 200
        for filler in small_disk.glob("filler-*"):
            filler.unlink()
        assert agent.reload().ok  # room again: the reserve is back, serving resumes
        assert not agent.audit_closed
        assert c.post("/v1/chat/completions", json=CHAT | {"max_tokens": 2}).status_code == 200
