"""Connection exhaustion (issue 18, break 5): slow clients are timed out, a flood of idle
connections cannot crowd out health checks and chat, and running out of file descriptors costs
a log line, not a traceback per attempt.

The unit tests run :class:`AgentServer` (the agent's real accept loop and protocol) in a thread
around a tiny ASGI app, with short deadlines and a small cap; the chaos tests run whole
processes under a low ``RLIMIT_NOFILE``.
"""

from __future__ import annotations

import asyncio
import logging
import os
import resource
import socket
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from _agent_helpers import BIN, sign_copy, toml_config, wait_for

from edgeward.device_agents._http_guard import RateLimitedLog, connection_cap
from edgeward.device_agents._server import AgentServer, bind_socket

SLOW_HEADER = b"GET /healthz HTTP/1.1\r\nHost: x\r\n"  # never the final blank line


class _App:
    """Answers ``GET /`` with ``ok``; ``GET /hold`` waits for :attr:`release`; ``POST`` reads
    the body (seeing a disconnect as ``disconnected``)."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.seen: list[str] = []

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["path"] == "/hold":
            while not self.release.is_set():
                await asyncio.sleep(0.01)
        if scope["method"] == "POST":
            while True:
                message = await receive()
                if message["type"] == "http.disconnect":
                    self.seen.append("disconnected")
                    return
                if not message.get("more_body"):
                    break
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"text/plain")]})
        await send({"type": "http.response.body", "body": b"ok"})


class _Served:
    def __init__(self, *, cap: int = 64, header_s: float = 10.0, body_s: float = 30.0) -> None:
        self.app = _App()
        self.server = AgentServer(self.app, grace_s=1)  # type: ignore[arg-type]
        self.server.guard.cap = cap
        self.server.guard.header_timeout_s = header_s
        self.server.guard.body_timeout_s = body_s
        self.sock = bind_socket("127.0.0.1", 0)
        self.port = self.sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.thread = threading.Thread(
            target=lambda: asyncio.run(self.server.serve(sockets=[self.sock])), daemon=True)
        self.thread.start()
        wait_for(lambda: self.server.started, what="the server to start")

    def connect(self, data: bytes = SLOW_HEADER) -> socket.socket:
        s = socket.create_connection(("127.0.0.1", self.port), timeout=10)
        if data:
            s.sendall(data)
        return s

    def get(self, path: str = "/") -> httpx.Response:
        return httpx.get(self.url + path, timeout=10)

    def stop(self) -> None:
        self.app.release.set()
        self.server.should_exit = True
        self.thread.join(10)
        self.sock.close()


@pytest.fixture
def served() -> Iterator[list[_Served]]:
    made: list[_Served] = []
    yield made
    for s in made:
        s.stop()


def _closed_by_server(s: socket.socket, timeout: float = 5.0) -> bytes:
    """Everything the server sent until it closed the connection."""
    s.settimeout(timeout)
    out = b""
    try:
        while chunk := s.recv(65536):
            out += chunk
    except ConnectionResetError:
        pass
    return out


def test_a_connection_that_never_finishes_its_headers_gets_408_and_is_closed(
        served: list[_Served]) -> None:
    srv = _Served(header_s=0.5)
    served.append(srv)
    s = srv.connect()
    for _ in range(3):  # trickling bytes does not extend the deadline
        time.sleep(0.1)
        s.sendall(b"X-Slow: 1\r\n")
    reply = _closed_by_server(s)
    assert reply.startswith(b"HTTP/1.1 408 "), reply
    assert b'"header_timeout"' in reply
    assert srv.server.guard.report.total == {"header_timeout": 1}


def test_an_idle_keep_alive_connection_gets_a_fresh_header_deadline(
        served: list[_Served]) -> None:
    srv = _Served(header_s=0.5)
    served.append(srv)
    s = srv.connect(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    time.sleep(0.3)
    s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")  # within the first deadline
    time.sleep(0.3)
    s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n")      # after it, but within its own
    reply = _closed_by_server(s)
    assert reply.count(b"HTTP/1.1 200 OK") == 2
    assert reply.endswith(b'"code": "header_timeout"}}')


def test_a_body_that_never_arrives_is_cut_off(served: list[_Served]) -> None:
    srv = _Served(body_s=0.5)
    served.append(srv)
    s = srv.connect(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nabc")
    assert _closed_by_server(s) == b""
    wait_for(lambda: srv.app.seen == ["disconnected"], what="the app to see the disconnect")
    assert srv.server.guard.report.total == {"body_timeout": 1}


def test_idle_connections_at_the_cap_make_room_for_real_requests(
        served: list[_Served]) -> None:
    srv = _Served(cap=8)
    served.append(srv)
    slow = [srv.connect() for _ in range(30)]
    for _ in range(5):
        assert srv.get().text == "ok"
    wait_for(lambda: srv.server.guard.count <= 8, what="the cap to hold")
    total = srv.server.guard.report.total
    assert total["connection_evicted"] >= 22 and "connection_refused" not in total
    assert _closed_by_server(slow[0]) == b""  # the oldest idle one went first
    for s in slow:
        s.close()


def test_when_every_connection_is_busy_a_new_one_is_refused_with_503(
        served: list[_Served]) -> None:
    srv = _Served(cap=3)
    served.append(srv)
    busy = [srv.connect(b"GET /hold HTTP/1.1\r\nHost: x\r\n\r\n") for _ in range(3)]
    wait_for(lambda: len(srv.server.server_state.tasks) == 3, what="three busy requests")
    reply = _closed_by_server(srv.connect(b""))
    assert reply.startswith(b"HTTP/1.1 503 ") and b'"too_many_connections"' in reply
    srv.app.release.set()
    for s in busy:
        s.settimeout(5)
        assert s.recv(100).startswith(b"HTTP/1.1 200 OK")
        s.close()
    assert srv.get().text == "ok"


def test_connection_pressure_is_one_log_line_per_interval(
        caplog: pytest.LogCaptureFixture) -> None:
    now = [0.0]
    log = RateLimitedLog(10.0, clock=lambda: now[0])
    with caplog.at_level(logging.WARNING, logger="edgeward.agent"):
        for i in range(10_000):  # 10,000 evictions in 20 s
            now[0] = i * 0.002
            log.note("connection_evicted", open=5, cap=5)
        log.flush()
    shed = [r for r in caplog.records if r.getMessage() == "connections_shed"]
    assert len(shed) == 3  # at 0 s, at 10 s, and the rest at the end
    counts = [r.edgeward_fields["connection_evicted"] for r in shed]  # type: ignore[attr-defined]
    assert counts[0] == 1 and sum(counts) == 10_000


def test_the_cap_leaves_a_reserve_under_the_descriptor_limit() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(1024, hard), hard))
        assert connection_cap() == 1024 - 128
        assert connection_cap(100) == 100
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


# -- whole processes at a low descriptor limit ---------------------------------------------


def _nofile(n: int, argv: list[str]) -> list[str]:
    """``argv`` run with at most ``n`` file descriptors (set in a fresh interpreter, then
    exec'd: no preexec_fn in a threaded test process)."""
    code = ("import os, resource, sys; resource.setrlimit(resource.RLIMIT_NOFILE, "
            f"({n}, {n})); os.execv(sys.argv[1], sys.argv[1:])")
    return [sys.executable, "-c", code, *argv]


def _open_slow(host: str, port: int, n: int) -> list[socket.socket]:
    socks = []
    for _ in range(n):
        s = socket.create_connection((host, port), timeout=10)
        s.sendall(SLOW_HEADER)
        socks.append(s)
    return socks


@pytest.mark.chaos
def test_agent_stays_reachable_with_1000_slow_connections_at_1024_descriptors(
        tmp_path: Path, tiny_gguf: Path) -> None:
    signed = sign_copy(tiny_gguf, tmp_path / "signed")
    cfg = toml_config(tmp_path / "agent.toml", artifact=signed.artifact,
                      trust_store=signed.trust, listen="127.0.0.1:0",
                      state_dir=tmp_path / "state")
    log_path = tmp_path / "agent.log"
    with log_path.open("w") as log:
        proc = subprocess.Popen(_nofile(1024, [str(BIN), "agent", "run", "--config", str(cfg)]),
                                stderr=log, stdout=subprocess.DEVNULL)
    socks: list[socket.socket] = []
    try:
        wait_for(lambda: "event=listening" in log_path.read_text(), 60, "the agent to listen")
        url = log_path.read_text().split("url=", 1)[1].split()[0]
        host, port = url.removeprefix("http://").rsplit(":", 1)
        socks = _open_slow(host, int(port), 1000)
        chat = {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 4}
        with httpx.Client(base_url=url, timeout=10) as c:
            for _ in range(3):
                for i, s in enumerate(socks):  # keep all 1,000 open: replace those shed
                    try:
                        s.sendall(b"X-Slow: 1\r\n")
                    except OSError:
                        s.close()
                        socks[i] = _open_slow(host, int(port), 1)[0]
                h = c.get("/healthz")
                assert h.status_code == 200, h.text
                r = c.post("/v1/chat/completions", json=chat)
                assert r.status_code == 200, r.text
                assert r.json()["object"] == "chat.completion"
        assert log_path.stat().st_size < 1 << 20
        text = log_path.read_text()
        assert "Traceback" not in text and "event=connections_shed" in text
    finally:
        for s in socks:
            s.close()
        proc.terminate()
        proc.wait(30)
    assert proc.returncode == 0
    assert log_path.stat().st_size < 1 << 20


_EMFILE_SERVER = textwrap.dedent("""
    import asyncio, sys
    from edgeward.device_agents._log import configure_logging
    from edgeward.device_agents._server import AgentServer, bind_socket

    async def app(scope, receive, send):
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    configure_logging()
    server = AgentServer(app, grace_s=1)
    server.guard.cap = 100_000  # as if the limit were lower than the cap was computed for
    sock = bind_socket("127.0.0.1", 0)
    print(sock.getsockname()[1], flush=True)
    asyncio.run(server.serve(sockets=[sock]))
""")


@pytest.mark.chaos
def test_out_of_descriptors_costs_a_line_not_a_traceback_storm(tmp_path: Path) -> None:
    log_path = tmp_path / "server.log"
    with log_path.open("w") as log:
        proc = subprocess.Popen(_nofile(128, [sys.executable, "-c", _EMFILE_SERVER]),
                                stdout=subprocess.PIPE, stderr=log, text=True,
                                env={**os.environ, "PYTHONUNBUFFERED": "1"})
    socks: list[socket.socket] = []
    try:
        assert proc.stdout is not None
        port = int(proc.stdout.readline())
        socks = _open_slow("127.0.0.1", port, 300)  # far more than 128 descriptors
        time.sleep(2)
        r = httpx.get(f"http://127.0.0.1:{port}/", timeout=10)
        assert r.text == "ok"
    finally:
        for s in socks:
            s.close()
        proc.terminate()
        proc.wait(30)
    text = log_path.read_text()
    assert "Traceback" not in text, text[:3000]
    assert "accept_emfile=" in text
    assert len(text.splitlines()) < 20, text[:3000]
