"""Simulated devices that answer operator commands (for rollout tests and benchmarks).

One MQTT connection stands in for many devices: it publishes each device's signed ``online``
state, subscribes to every device's command topic, checks each command's operator signature
(:func:`~edgeward.fleet.protocol.decode_command`), and answers with the device's signed events,
as a real agent would: ``command.accepted`` then ``command.done`` — or ``command.failed`` for
the devices ``fail`` picks (failure injection). It never runs a model.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping
from typing import Any

from edgeward.errors import RejectedMessageError
from edgeward.fleet.protocol import (
    BrokerOptions,
    DeviceState,
    EventMessage,
    StateMessage,
    connect,
    decode_command,
    encode,
)
from edgeward.provenance import PrivateKey, TrustStore

__all__ = ["CommandResponder"]


class CommandResponder:
    """Answers commands for ``keys`` (device id -> device key); see the module docstring.

    Args:
        broker: the broker.
        keys: the simulated devices and their keys (enrolled in the fleet).
        operators: the trust store holding the operator keys commands must be signed with.
        fail: devices for which an admitted command fails (``command.failed``).
    """

    def __init__(self, broker: BrokerOptions, keys: Mapping[str, PrivateKey],
                 operators: TrustStore, *, fail: Callable[[str], bool] = lambda _d: False
                 ) -> None:
        self.broker, self.keys, self.operators, self.fail = broker, dict(keys), operators, fail
        self.received: Counter[str] = Counter()  # device -> commands admitted
        self.actions: list[tuple[str, str]] = []  # (device, action) in arrival order
        self._seq = {d: int(time.time() * 1000) for d in keys}
        self._lock = threading.Lock()

    def _next(self, device: str) -> int:
        with self._lock:
            self._seq[device] += 1
            return self._seq[device]

    def run(self, *, stop: threading.Event, on_ready: Callable[[], None] | None = None) -> None:
        """Answer until ``stop`` is set."""
        conn = connect(self.broker, client_id=f"responder-{id(self):x}")
        client = conn.client

        def publish(message: EventMessage | StateMessage) -> None:
            wire = encode(message, self.keys[message.device_id])
            client.publish(wire.topic, wire.payload, qos=1, retain=wire.retain)

        def on_message(_c: object, _u: object, msg: Any) -> None:
            topic = str(msg.topic)
            device = topic.split("/")[3]
            if device not in self.keys:
                return
            try:
                cmd = decode_command(topic, bytes(msg.payload), self.operators)
            except RejectedMessageError:
                return
            with self._lock:
                self.received[device] += 1
                self.actions.append((device, cmd.action))
            now = time.time()
            base = {"command_id": cmd.command_id, "action": cmd.action}
            publish(EventMessage(device_id=device, seq=self._next(device), time=now,
                                 event="command.accepted", data=base))
            failed = self.fail(device) and cmd.action == "deploy"
            publish(EventMessage(device_id=device, seq=self._next(device), time=now,
                                 event="command.failed" if failed else "command.done",
                                 severity="error" if failed else "info",
                                 data=base | ({"reason": "health_check_failed"} if failed
                                              else {"sha256": cmd.params.get(
                                                  "artifact_digest")})))

        client.on_message = on_message
        for device in self.keys:
            publish(StateMessage(device_id=device, state=DeviceState.ONLINE, session=1,
                                 time=time.time(), agent_version="responder"))
        client.subscribe("edgeward/v1/devices/+/cmd", qos=1)
        client.loop_start()
        if on_ready is not None:
            on_ready()
        try:
            stop.wait()
        finally:
            client.loop_stop()
            conn.close()
