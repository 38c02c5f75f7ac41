"""Uvicorn, run the agent's way: our socket, our signal handling, our shutdown deadline.

We bind the listening socket ourselves (so a busy port is a clear
:class:`~edgeward.errors.ResourceError` rather than Uvicorn's ``sys.exit``, and port 0 works),
and install signal handlers on the event loop ourselves (Uvicorn's own re-raise the signal
after shutdown, which would turn a clean SIGTERM exit into death by signal). We also accept
connections ourselves, with header and body deadlines and a connection cap under the
file-descriptor limit (see :mod:`._http_guard`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import socket
from collections.abc import Callable, Iterator
from typing import cast

import uvicorn
from starlette.types import ASGIApp

from edgeward.device_agents._http_guard import (
    Acceptor,
    ConnectionGuard,
    GuardedProtocol,
    OnShed,
    connection_cap,
)
from edgeward.device_agents._log import log_event
from edgeward.errors import ResourceError

__all__ = ["AgentServer", "bind_socket"]


def bind_socket(host: str, port: int) -> socket.socket:
    """A listening TCP socket on ``host:port`` (port 0: a free one).

    Raises:
        ResourceError: the address is in use or cannot be bound.
    """
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
        family, kind, proto, _, address = infos[0]
        sock = socket.socket(family, kind, proto)
    except OSError as e:
        raise ResourceError(f"listen {host}:{port}: cannot resolve or open it ({e})") from e
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(2048)
    except OSError as e:
        sock.close()
        raise ResourceError(f"listen {host}:{port}: cannot listen there ({e.strerror}); is "
                            "another agent running? Set another port in `listen`") from e
    return sock


class AgentServer(uvicorn.Server):
    """A Uvicorn server that leaves signals to the agent and reports when it listens.

    Args:
        app: the ASGI app.
        grace_s: how long shutdown waits for open connections before cancelling them
            (seconds); the agent cancels its own jobs earlier, at its deadline.
        on_started: called once the server accepts connections.
        on_shed: called with the reason of each connection the guard evicts, refuses or
            times out (see :mod:`._http_guard`), for metrics.
    """

    def __init__(self, app: ASGIApp, *, grace_s: float,
                 on_started: Callable[[], None] | None = None,
                 on_shed: OnShed | None = None) -> None:
        config = uvicorn.Config(
            app, lifespan="off", log_config=None, access_log=False, server_header=False,
            http="h11", timeout_keep_alive=5,
            timeout_graceful_shutdown=max(1, math.ceil(grace_s)))
        super().__init__(config)
        self._on_started = on_started
        self.guard = ConnectionGuard(connection_cap(), on_shed=on_shed)

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        """Do not touch signals: the agent handles them (see module docstring)."""
        yield

    def install_signal_handlers(self) -> None:
        """Older Uvicorn's name for the same hook: do nothing."""

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        """Accept on ``sockets`` through the connection guard, then tell whoever waits."""
        if not sockets:
            raise ResourceError("the agent's server needs its bound listening socket")
        await self.lifespan.startup()
        config, guard = self.config, self.guard

        def protocol() -> asyncio.Protocol:
            return GuardedProtocol(config, self.server_state, self.lifespan.state, guard)

        acceptors = [Acceptor(sock, protocol, guard) for sock in sockets]
        # Uvicorn only calls close() and wait_closed() on what it keeps here.
        self.servers = cast("list[asyncio.base_events.Server]", acceptors)
        self.started = True
        log_event(logging.INFO, "http_limits", max_connections=guard.cap,
                  header_timeout_s=guard.header_timeout_s, body_timeout_s=guard.body_timeout_s)
        if self._on_started is not None:
            self._on_started()
