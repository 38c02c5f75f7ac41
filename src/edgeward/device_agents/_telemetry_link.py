"""The agent's connection to the broker, behind a small interface the telemetry sender uses.

:class:`PahoConnector` is the real one (paho-mqtt, through :func:`edgeward.fleet.protocol.connect`:
TLS, credentials, MQTT 5 with a 3.1.1 fallback that it remembers). Tests pass a fake connector
with the same shape. Reconnection is the sender's job, with :func:`backoff_delay`.
"""

from __future__ import annotations

import random
import threading
from collections.abc import Callable
from dataclasses import replace
from typing import Any, Literal, Protocol

from edgeward.errors import ChannelError
from edgeward.fleet.protocol import BrokerOptions, Connection, WireMessage, connect

__all__ = [
    "Ack",
    "AckCallback",
    "Connector",
    "Link",
    "LostCallback",
    "PahoConnector",
    "backoff_delay",
]

Ack = Literal["delivered", "unrouted", "refused"]
"""What the broker's PUBACK said: delivered (to at least one subscriber, or queued for one);
unrouted (MQTT 5 reason 0x10, "no matching subscribers": no fleet manager is subscribed yet,
e.g. right after a broker restart, so the broker dropped it: send it again later); refused
(a failure reason such as 0x87 "not authorized": sending it again cannot help)."""
AckCallback = Callable[[int, Ack], None]  # (token, what the broker said)
_NO_MATCHING_SUBSCRIBERS = 16
LostCallback = Callable[[str], None]  # (why)


class Link(Protocol):
    """One open connection to the broker."""

    @property
    def version(self) -> str:
        """The MQTT version in use (``"5"`` or ``"3.1.1"``)."""

    def publish(self, message: WireMessage) -> int:
        """Send ``message`` at QoS 1; returns a token that ``on_ack`` reports later.

        Raises:
            ChannelError: the connection is gone.
        """

    def close(self) -> None:
        """Disconnect cleanly (the broker does not publish the Last Will)."""


class Connector(Protocol):
    """Opens links; one call is one connection attempt."""

    def __call__(self, *, will: WireMessage, on_ack: AckCallback,
                 on_lost: LostCallback) -> Link:
        """Connect with ``will`` as the Last Will.

        Raises:
            ChannelError: the attempt failed (the message says why).
        """


def backoff_delay(attempt: int, *, min_s: float, max_s: float, rng: random.Random) -> float:
    """Seconds to wait before reconnect attempt ``attempt`` (0 for the first retry).

    Exponential (``min_s * 2**attempt``, capped at ``max_s``) with "equal jitter": a uniform
    draw between half and all of it, so a fleet that lost its broker does not come back in
    lock-step.
    """
    base = min(max_s, min_s * 2.0 ** min(attempt, 32))
    return base * rng.uniform(0.5, 1.0)


class _PahoLink:
    def __init__(self, conn: Connection) -> None:
        self._conn = conn

    @property
    def version(self) -> str:
        return self._conn.version

    def publish(self, message: WireMessage) -> int:
        info = self._conn.client.publish(message.topic, message.payload, qos=message.qos,
                                         retain=message.retain)
        if info.rc != 0:
            raise ChannelError(f"publish on {message.topic} failed (paho rc {info.rc}); "
                               "the connection is gone")
        return int(info.mid)

    def close(self) -> None:
        self._conn.close()


class PahoConnector:
    """Connects with paho-mqtt as client id ``DEVICE_ID``, a clean session each time.

    Once a broker has refused MQTT 5 and accepted 3.1.1, later attempts go straight to 3.1.1.

    Args:
        options: the broker.
        client_id: the MQTT client id (the device id).
        subscriptions: topics to subscribe to (QoS 1) on every connection, e.g. the device's
            command topic.
        on_message: called with ``(topic, payload)`` for what arrives on them, on paho's
            network thread (hand it off; do not block).
    """

    def __init__(self, options: BrokerOptions, *, client_id: str,
                 subscriptions: tuple[str, ...] = (),
                 on_message: Callable[[str, bytes], None] | None = None) -> None:
        self.options = options
        self.client_id = client_id
        self.subscriptions = subscriptions
        self._on_message = on_message
        self._lock = threading.Lock()

    def __call__(self, *, will: WireMessage, on_ack: AckCallback,
                 on_lost: LostCallback) -> Link:
        on_message = self._on_message

        def setup(client: Any) -> None:
            def on_publish(_c: object, _u: object, mid: int, reason: Any, _p: object) -> None:
                value = getattr(reason, "value", 0)
                ack: Ack = ("refused" if getattr(reason, "is_failure", False) else
                            "unrouted" if value == _NO_MATCHING_SUBSCRIBERS else "delivered")
                on_ack(int(mid), ack)

            def on_disconnect(_c: object, _u: object, _f: object, reason: Any,
                              _p: object) -> None:
                on_lost(str(reason))

            def on_msg(_c: object, _u: object, msg: Any) -> None:
                if on_message is not None:
                    on_message(str(msg.topic), bytes(msg.payload))

            client.on_publish = on_publish
            client.on_disconnect = on_disconnect
            client.on_message = on_msg

        conn = connect(self.options, client_id=self.client_id, will=will, clean_start=True,
                       setup=setup)
        with self._lock:
            if self.options.version == "auto" and conn.version == "3.1.1":
                self.options = replace(self.options, version="3.1.1")
        for topic in self.subscriptions:
            conn.client.subscribe(topic, qos=1)
        conn.client.loop_start()
        return _PahoLink(conn)
