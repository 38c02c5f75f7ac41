"""Uvicorn, run the agent's way: our socket, our signal handling, our shutdown deadline.

We bind the listening socket ourselves (so a busy port is a clear
:class:`~edgeward.errors.ResourceError` rather than Uvicorn's ``sys.exit``, and port 0 works),
and install signal handlers on the event loop ourselves (Uvicorn's own re-raise the signal
after shutdown, which would turn a clean SIGTERM exit into death by signal).
"""

from __future__ import annotations

import contextlib
import math
import socket
from collections.abc import Callable, Iterator

import uvicorn
from starlette.types import ASGIApp

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
    """

    def __init__(self, app: ASGIApp, *, grace_s: float,
                 on_started: Callable[[], None] | None = None) -> None:
        config = uvicorn.Config(
            app, lifespan="off", log_config=None, access_log=False, server_header=False,
            timeout_keep_alive=5, timeout_graceful_shutdown=max(1, math.ceil(grace_s)))
        super().__init__(config)
        self._on_started = on_started

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        """Do not touch signals: the agent handles them (see module docstring)."""
        yield

    def install_signal_handlers(self) -> None:
        """Older Uvicorn's name for the same hook: do nothing."""

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        """Start serving, then tell whoever waits."""
        await super().startup(sockets)
        if self._on_started is not None:
            self._on_started()
