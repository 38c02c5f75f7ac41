"""Connection limits for the agent's HTTP server: deadlines, a connection cap, a calm accept loop.

Uvicorn alone keeps a connection that never finishes its request headers open for ever, and
asyncio's accept loop retries ``accept()`` up to the backlog (2,048) times per tick once the
process is out of file descriptors, logging a traceback each time. So the agent accepts
connections itself (:class:`Acceptor`) and hands each one to :class:`GuardedProtocol`, Uvicorn's
h11 protocol with deadlines:

- **header deadline**: a connection has :data:`HEADER_TIMEOUT_S` from being accepted (or from
  the end of its previous response) to send a complete request line and headers; trickling a
  byte at a time does not extend it. Then it gets ``408`` and is closed.
- **body deadline**: once the headers are in, the body must arrive within
  :data:`BODY_TIMEOUT_S`; otherwise the connection is closed (the handler sees a disconnect).
- **connection cap** (:func:`connection_cap`): at most :data:`MAX_CONNECTIONS`, and never more
  than the file-descriptor limit leaves room for (``RLIMIT_NOFILE`` minus a reserve for the
  model, the spool, the audit log, MQTT). Over the cap a new connection first evicts the
  connection that has waited longest for its request headers (a slow or idle client), so
  health checks and chat keep being answered under a slowloris flood; only when every
  connection is busy with a request is the new one refused at once with a canned ``503``.
- **out of descriptors anyway** (``EMFILE``/``ENFILE``, e.g. a lower limit than expected):
  the accept loop evicts idle connections, pauses with a backoff (10 ms doubling to 1 s) and
  logs one line per :data:`REPORT_EVERY_S` with counts, never a traceback per attempt.

Evictions, refusals and timeouts are counted in ``edgeward_agent_rejected_total`` (reasons
``connection_evicted``, ``connection_refused``, ``header_timeout``, ``body_timeout``,
``accept_emfile`` ...) and summarised in at most one ``connections_shed`` log line per
:data:`REPORT_EVERY_S`.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import json
import logging
import resource
import socket
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any, Literal

import h11
from uvicorn.config import Config
from uvicorn.protocols.http.h11_impl import H11Protocol
from uvicorn.server import ServerState

from edgeward.device_agents._log import log_event

__all__ = ["BODY_TIMEOUT_S", "HEADER_TIMEOUT_S", "MAX_CONNECTIONS", "REPORT_EVERY_S", "Acceptor",
           "ConnectionGuard", "GuardedProtocol", "RateLimitedLog", "connection_cap"]

HEADER_TIMEOUT_S = 10.0   # seconds from accept (or the last response) to complete headers
BODY_TIMEOUT_S = 30.0     # seconds from the headers to the end of the body
MAX_CONNECTIONS = 4096    # connections open at once, whatever the descriptor limit allows
REPORT_EVERY_S = 10.0     # at most one connection-pressure log line this often (seconds)
_ACCEPTS_PER_TICK = 32  # and the most the acceptor lets the count run over the cap
_BACKOFF_MIN_S, _BACKOFF_MAX_S = 0.01, 1.0
_OUT_OF_RESOURCES = {errno.EMFILE: "EMFILE", errno.ENFILE: "ENFILE", errno.ENOBUFS: "ENOBUFS",
                     errno.ENOMEM: "ENOMEM"}

Phase = Literal["headers", "body", "busy"]
OnShed = Callable[[str], None]


def _canned(status: int, reason: str, message: str, code: str) -> bytes:
    body = json.dumps({"error": {"message": message, "type": "server_error", "param": None,
                                 "code": code}}).encode()
    return (f"HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\n"
            f"content-length: {len(body)}\r\nconnection: close\r\nretry-after: 1\r\n\r\n"
            ).encode() + body


_REFUSED = _canned(503, "Service Unavailable", "the agent has too many open connections, all "
                   "busy with requests; retry after the Retry-After seconds",
                   "too_many_connections")
_HEADER_TIMEOUT = _canned(408, "Request Timeout", f"the request headers did not arrive within "
                          f"{HEADER_TIMEOUT_S:g} s", "header_timeout")


def connection_cap(maximum: int = MAX_CONNECTIONS) -> int:
    """How many connections the agent keeps open: ``maximum``, lowered so that the soft
    ``RLIMIT_NOFILE`` keeps a reserve (an eighth of it, at least 64 descriptors) for
    everything else the agent opens. At least 16."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return maximum
    return max(16, min(maximum, soft - max(64, soft // 8)))


class RateLimitedLog:
    """Counts events by reason and logs them as one ``connections_shed`` line at most every
    ``every_s`` seconds (the first event at once), so a flood costs a line, not a line per
    connection."""

    def __init__(self, every_s: float = REPORT_EVERY_S, *,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.every_s = every_s
        self.clock = clock
        self.pending: dict[str, int] = {}
        self.total: dict[str, int] = {}
        self._last: float | None = None

    def note(self, reason: str, **fields: Any) -> None:
        """Count one event; log the counts if the last line is older than ``every_s``."""
        self.pending[reason] = self.pending.get(reason, 0) + 1
        self.total[reason] = self.total.get(reason, 0) + 1
        now = self.clock()
        if self._last is None or now - self._last >= self.every_s:
            self.flush(**fields)

    def flush(self, **fields: Any) -> None:
        """Log what was counted since the last line (nothing when nothing was)."""
        if not self.pending:
            return
        self._last = self.clock()
        counts = dict(sorted(self.pending.items()))
        self.pending = {}
        log_event(logging.WARNING, "connections_shed", **counts, **fields,
                  every_s=self.every_s)


class ConnectionGuard:
    """What the acceptor and the protocols share: open connections, the ones waiting for
    headers (oldest first), the cap, and the counters.

    Args:
        cap: connections open at once (see :func:`connection_cap`).
        on_shed: called with the reason of each eviction, refusal or timeout (metrics).
        header_timeout_s, body_timeout_s: the deadlines (seconds).
    """

    def __init__(self, cap: int, *, on_shed: OnShed | None = None,
                 header_timeout_s: float = HEADER_TIMEOUT_S,
                 body_timeout_s: float = BODY_TIMEOUT_S) -> None:
        self.cap = cap
        self.header_timeout_s = header_timeout_s
        self.body_timeout_s = body_timeout_s
        self.pending = 0  # accepted, protocol not yet attached
        self.open: set[GuardedProtocol] = set()
        self.waiting: OrderedDict[GuardedProtocol, None] = OrderedDict()
        self.report = RateLimitedLog()
        self._on_shed = on_shed

    @property
    def count(self) -> int:
        """Connections holding a descriptor (attached or about to be)."""
        return self.pending + len(self.open)

    def shed(self, reason: str) -> None:
        """Count and (rate-limited) log one shed connection."""
        if self._on_shed is not None:
            self._on_shed(reason)
        self.report.note(reason, open=self.count, cap=self.cap)

    def evict_idle(self) -> bool:
        """Close the connection that has waited longest for its request headers; ``False``
        when every connection is busy with a request."""
        while self.waiting:
            proto, _ = self.waiting.popitem(last=False)
            if proto.evict():
                self.shed("connection_evicted")
                return True
        return False


class GuardedProtocol(H11Protocol):
    """Uvicorn's h11 protocol with a header and a body deadline, registered with a guard."""

    def __init__(self, config: Config, server_state: ServerState, app_state: dict[str, Any],
                 guard: ConnectionGuard, _loop: asyncio.AbstractEventLoop | None = None) -> None:
        super().__init__(config, server_state, app_state, _loop)
        self.guard = guard
        self._phase: Phase | None = None
        self._deadline: asyncio.TimerHandle | None = None

    # -- the phase of the connection, from h11's view of the client ------------------------

    def _current_phase(self) -> Phase:
        state = self.conn.their_state
        if state is h11.IDLE:
            return "headers"
        if state is h11.SEND_BODY:
            return "body"
        return "busy"

    def _track(self) -> None:
        """Start the phase's deadline when the phase changed (never when bytes trickle in)."""
        if self.transport is None or self.transport.is_closing():
            return
        phase = self._current_phase()
        if phase == self._phase:
            return
        self._phase = phase
        self._cancel_deadline()
        if phase == "headers":
            self.guard.waiting[self] = None
            self.guard.waiting.move_to_end(self)
        else:
            self.guard.waiting.pop(self, None)
        timeout = {"headers": self.guard.header_timeout_s,
                   "body": self.guard.body_timeout_s}.get(phase)
        if timeout is not None:
            self._deadline = self.loop.call_later(timeout, self._expired, phase)

    def _cancel_deadline(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _expired(self, phase: Phase) -> None:
        self._deadline = None
        if self._phase != phase or self.transport.is_closing():
            return
        self.guard.waiting.pop(self, None)
        self.guard.shed("header_timeout" if phase == "headers" else "body_timeout")
        if phase == "headers":
            self.transport.write(_HEADER_TIMEOUT)
            self.transport.close()
        else:
            self.transport.abort()

    def evict(self) -> bool:
        """Close this connection if it is still waiting for request headers."""
        if self._current_phase() != "headers" or self.transport.is_closing():
            return False
        self._cancel_deadline()
        self.guard.open.discard(self)  # its descriptor is freed on the next loop pass
        self.transport.abort()
        return True

    # -- the protocol's events -------------------------------------------------------------

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        guard = self.guard
        guard.open.add(self)
        if len(guard.open) > guard.cap and not guard.evict_idle():
            guard.open.discard(self)
            guard.shed("connection_refused")
            transport.write(_REFUSED)
            transport.close()
            return
        self._track()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        self._track()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._track()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_deadline()
        self.guard.open.discard(self)
        self.guard.waiting.pop(self, None)
        super().connection_lost(exc)


class Acceptor:
    """Accepts connections on a listening socket for the guard's protocols; stands where
    Uvicorn keeps its ``asyncio.Server`` (``close``, ``wait_closed``).

    Args:
        sock: the bound, listening socket.
        factory: makes the protocol for one connection.
        guard: the shared limits.
    """

    def __init__(self, sock: socket.socket, factory: Callable[[], asyncio.Protocol],
                 guard: ConnectionGuard) -> None:
        self.sock = sock
        self.factory = factory
        self.guard = guard
        self.loop = asyncio.get_running_loop()
        self._backoff = _BACKOFF_MIN_S
        self._reading = False
        self._closed = False
        self._attach_wait = False
        self._resume: asyncio.TimerHandle | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        sock.setblocking(False)
        self._start_reading()

    def _start_reading(self) -> None:
        self._resume = None
        if not self._closed and not self._reading:
            self.loop.add_reader(self.sock.fileno(), self._on_readable)
            self._reading = True

    def _stop_reading(self) -> None:
        if self._reading:
            self.loop.remove_reader(self.sock.fileno())
            self._reading = False

    def _on_readable(self) -> None:
        for _ in range(_ACCEPTS_PER_TICK):
            try:
                conn, _ = self.sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except ConnectionAbortedError:
                continue
            except OSError as e:
                if e.errno not in _OUT_OF_RESOURCES:
                    raise
                self._out_of_resources(_OUT_OF_RESOURCES[e.errno])
                return
            self._backoff = _BACKOFF_MIN_S
            self._admit(conn)
            if self.guard.pending >= _ACCEPTS_PER_TICK:
                # Let the protocols attach (and the cap evict) before taking more: the rest
                # wait in the kernel's backlog, which costs this process no descriptor.
                self._stop_reading()
                self._attach_wait = True
                return

    def _out_of_resources(self, name: str) -> None:
        """No descriptor for the next connection: free some, pause, try again."""
        self.guard.shed(f"accept_{name.lower()}")
        freed = sum(self.guard.evict_idle() for _ in range(8))
        self._stop_reading()
        delay = _BACKOFF_MIN_S if freed else self._backoff
        if not freed:
            self._backoff = min(_BACKOFF_MAX_S, self._backoff * 2)
        self._resume = self.loop.call_later(delay, self._start_reading)

    def _admit(self, conn: socket.socket) -> None:
        conn.setblocking(False)
        if (self.guard.count >= self.guard.cap + _ACCEPTS_PER_TICK
                and not self.guard.evict_idle()):
            # The cap is kept in connection_made; this keeps the descriptors in use within
            # the cap's reserve should connections come faster than protocols attach.
            self.guard.shed("connection_refused")
            with contextlib.suppress(OSError):
                conn.send(_REFUSED)
            conn.close()
            return
        self.guard.pending += 1
        task = self.loop.create_task(self._attach(conn))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _attach(self, conn: socket.socket) -> None:
        try:
            await self.loop.connect_accepted_socket(self.factory, sock=conn)
        except OSError:
            conn.close()
        finally:
            self.guard.pending -= 1
            if self._attach_wait and self.guard.pending <= _ACCEPTS_PER_TICK // 2:
                self._attach_wait = False
                if self._resume is None:
                    self._start_reading()

    def close(self) -> None:
        """Stop accepting (the socket itself is closed by its owner)."""
        self._closed = True
        if self._resume is not None:
            self._resume.cancel()
            self._resume = None
        self._stop_reading()
        self.guard.report.flush(open=self.guard.count, cap=self.guard.cap)

    async def wait_closed(self) -> None:
        """Nothing to wait for: connections are Uvicorn's to drain."""
