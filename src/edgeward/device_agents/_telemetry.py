"""The agent's telemetry: signed state, health, events and provenance over MQTT, store-and-forward.

The agent makes one :class:`TelemetryClient` and calls :meth:`~TelemetryClient.start`; the
client then publishes, on the topics of :mod:`edgeward.fleet.protocol`:

- a retained, signed ``online`` state with a session counter at each connection, and a Last Will
  (retained, signed, ``lost``) that the broker publishes if the connection dies;
  ``offline`` on :meth:`~TelemetryClient.stop`;
- a signed health report every ``health_interval_s``, from the ``health`` callback;
- signed events and the retained, signed provenance report when the agent calls for them.

Every signed message goes through the on-disk :class:`~edgeward.device_agents._spool.Spool`
first and is removed only when the fleet manager acknowledges that it stored it (a
:class:`~edgeward.fleet.protocol.FleetAck` on the device's ``ack`` topic; with
``fleet_acks = false``, when the broker acknowledges it). A broker's PUBACK is not enough: a
broker that is killed before it persisted a message, or that hands it to another subscriber
while no manager is subscribed (right after a restart), loses it. So nothing made while the
broker is down is lost: it is flushed in order after reconnecting, everything not acknowledged
by the fleet is sent again on each new connection and after ``ack_timeout_s``, and the fleet
stores each ``(device, seq)`` once. Reconnects back off exponentially with jitter. Example::

    client = TelemetryClient(config, device_key, health=lambda: HealthSample(uptime_s=...))
    client.start()
    client.publish_event("update.progress", {"percent": 40})
    ...
    client.stop()
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from edgeward import __version__
from edgeward.device_agents._spool import Spool
from edgeward.device_agents._telemetry_config import TelemetryConfig
from edgeward.device_agents._telemetry_link import (
    Ack,
    Connector,
    Link,
    PahoConnector,
    backoff_delay,
)
from edgeward.errors import ChannelError, ConfigError, EdgewardError, RejectedMessageError
from edgeward.fleet.protocol import (
    Attestation,
    DeviceState,
    DeviceTopic,
    EventMessage,
    FleetAck,
    HealthReport,
    HealthSample,
    Kind,
    ProvenanceReport,
    StateMessage,
    WireMessage,
    ack_topic,
    encode,
)
from edgeward.provenance import Envelope, PrivateKey

__all__ = ["TelemetryClient", "TelemetryConfig", "TelemetryStatus"]

log = logging.getLogger("edgeward.telemetry")
_STATE = -1  # the in-flight marker of a state message (not in the spool)
_UNROUTED_RETRY_S = 1.0  # seconds before a message no subscriber took is sent again
_MAX_ACK_BACKOFF = 3  # the fleet-ack timeout doubles at most this many times (x8)


@dataclass(frozen=True)
class TelemetryStatus:
    """A snapshot of the client (for the agent's status endpoint and tests)."""

    connected: bool
    mqtt_version: str | None
    session: int
    seq: int
    queued: int
    queued_bytes: int
    dropped_health: int
    refused: int
    reconnects: int
    last_error: str | None

    def to_dict(self) -> dict[str, Any]:
        """All fields."""
        return dict(self.__dict__)


@dataclass
class _LinkState:
    link: Link
    inflight: dict[int, int] = field(default_factory=dict)  # token -> spool id
    early: dict[int, Ack] = field(default_factory=dict)  # acks that beat their token
    sent_upto: int = 0  # the last spool id published on this link
    retry_from: int | None = None  # the first unrouted spool id, to send again
    retry_at: float = 0.0  # when (monotonic seconds)
    # spool id -> when to send it again unless the fleet acknowledged it (monotonic seconds),
    # from the broker's PUBACK on; in that order, so the first entry is due first
    unacked: dict[int, float] = field(default_factory=dict)
    resend: deque[int] = field(default_factory=deque)  # spool ids due again, oldest first


class TelemetryClient:
    """Publishes the device's signed telemetry; see the module docstring.

    Args:
        config: the settings.
        device_key: the device's private key (signs everything; never leaves the device).
        health: returns the current measurements; ``None`` for no periodic health report.
        connector: opens broker connections (default: paho-mqtt with ``config.broker``).
        on_command: called with ``(topic, payload)`` of each message on the device's command
            topic (the default connector subscribes to it when this is given), on the network
            thread: hand it off, do not block.

    The default connector also subscribes to the device's ``ack`` topic (with
    ``config.fleet_acks``); a custom connector hands what arrives to :meth:`receive`.
        clock: seconds since the epoch, for message times.
        rng: the jitter's source of randomness.

    Raises:
        ResourceError: the spool cannot be opened.
    """

    def __init__(self, config: TelemetryConfig, device_key: PrivateKey, *,
                 health: Callable[[], HealthSample] | None = None,
                 connector: Connector | None = None, clock: Callable[[], float] = time.time,
                 rng: random.Random | None = None,
                 on_command: Callable[[str, bytes], None] | None = None) -> None:
        self.config = config
        self._key = device_key
        self._health = health
        self._on_command = on_command
        self._ack_topic = ack_topic(config.device_id)
        topics = ((str(DeviceTopic(config.device_id, Kind.CMD)),) if on_command else ()) + \
            ((self._ack_topic,) if config.fleet_acks else ())
        self._connector = connector or PahoConnector(
            config.broker, client_id=config.device_id, subscriptions=topics,
            on_message=self.receive if topics else None)
        self._clock = clock
        self._rng = rng or random.Random()
        self._spool = Spool(config.spool)
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._stop_health = threading.Event()
        self._acks: deque[tuple[int, int, Ack]] = deque()  # (link generation, token, ack)
        self._fleet_acks: deque[FleetAck] = deque()  # what the fleet says it stored
        self._ack_timeouts = 0  # fleet-ack timeouts in a row (the timeout doubles)
        self.bad_acks = 0  # acknowledgements refused (malformed, another device's)
        self._generation = 0
        self._link: _LinkState | None = None
        self._lost: str | None = None
        self._threads: list[threading.Thread] = []
        self._session = 0
        self._refused = 0
        self._reconnects = 0
        self._connections = 0
        self._last_error: str | None = None
        self._drain_deadline = 0.0
        self._final: TelemetryStatus | None = None
        self._reserve_alerted = self._spool.reserve_used

    # -- producing -------------------------------------------------------------------------
    def _queue(self, kind: Kind, make: Callable[[int, float], Any]) -> int | None:
        seq = self._spool.append(kind, lambda s: encode(make(s, self._clock()), self._key))
        used = self._spool.reserve_used
        if used > self._reserve_alerted:  # the disk is full: that went into the reserve
            self._reserve_alerted = used
            log.critical("the disk is full: telemetry went into the spool's reserve (%s)",
                         self.config.spool.path)
            try:
                self._spool.append(Kind.EVENTS, lambda s: encode(EventMessage(
                    device_id=self.config.device_id, seq=s, time=self._clock(),
                    event="storage.reserve_used", severity="critical",
                    data={"file": "telemetry_spool"}), self._key))
            except EdgewardError as e:  # what the caller queued is queued: do not fail it
                log.error("the storage.reserve_used alert was not queued: %s", e)
        self._wake.set()
        return seq

    def publish_health(self, sample: HealthSample | None = None) -> int | None:
        """Queue a signed health report (``sample``, or the ``health`` callback's).

        Returns:
            Its seq, or ``None`` if the spool's drop policy dropped it.

        Raises:
            ConfigError: no sample and no ``health`` callback.
            ResourceError: the spool write failed.
        """
        if sample is None:
            if self._health is None:
                raise ConfigError("publish_health: no sample given and no health callback")
            sample = self._health()
        dropped = self._spool.counter("dropped_health")
        return self._queue(Kind.HEALTH, lambda s, t: HealthReport(
            device_id=self.config.device_id, seq=s, time=t, metrics=sample,
            spool_dropped=dropped))

    def publish_event(self, event: str, data: Mapping[str, Any] | None = None, *,
                      severity: str = "info") -> int:
        """Queue a signed event (``update.progress``, ``safety.block``, ``error`` ...).

        Args:
            event: what happened (lowercase, dots and underscores).
            data: a JSON object of at most 8 KiB; counts and categories, never prompt text
                unless policy allows it.
            severity: info, warning, error or critical.

        Returns:
            Its seq.

        Raises:
            ConfigError: a bad event name, severity or data.
            ResourceError: the spool is full of undelivered events, or the write failed.
        """
        seq = self._queue(Kind.EVENTS, lambda s, t: EventMessage(
            device_id=self.config.device_id, seq=s, time=t, event=event, severity=severity,
            data=dict(data or {})))
        assert seq is not None  # only health is ever dropped
        return seq

    def publish_provenance(self, statement: Envelope, *, artifact_digest: str,
                           slot: str | None, publisher_key_id: str, verified_at: float,
                           loaded_at: float) -> int:
        """Queue the retained, signed provenance report of the artifact now running.

        Args:
            statement: the publisher's DSSE envelope the device verified the artifact with.
            artifact_digest: sha256 (hex) of the artifact.
            slot: the slot it was loaded from.
            publisher_key_id: the key that signed the statement.
            verified_at / loaded_at: when the device verified and loaded it (epoch seconds).

        Returns:
            Its seq.

        Raises:
            ConfigError: a bad value; ChannelError: too large for the wire;
            ResourceError: the spool is full of undelivered events, or the write failed.
        """
        attestation = Attestation(publisher_key_id=publisher_key_id, verified_at=verified_at,
                                  loaded_at=loaded_at)
        seq = self._queue(Kind.PROVENANCE, lambda s, t: ProvenanceReport(
            device_id=self.config.device_id, seq=s, time=t, artifact_digest=artifact_digest,
            slot=slot, statement=statement, attestation=attestation))
        assert seq is not None
        return seq

    # -- lifecycle -------------------------------------------------------------------------
    def start(self) -> None:
        """Start the sender (and the health timer, with a ``health`` callback); returns at once.

        The first connection is attempted in the background: telemetry queues until it is up.
        """
        if self._threads:
            raise ConfigError("TelemetryClient.start: already started")
        targets: list[Callable[[], None]] = [self._run_sender]
        if self._health is not None:
            targets.append(self._run_health)
        for target in targets:
            t = threading.Thread(target=target, name=f"edgeward-{target.__name__[5:]}",
                                 daemon=True)
            t.start()
            self._threads.append(t)

    def stop(self, timeout_s: float | None = None) -> None:
        """Deliver what is queued (up to ``drain_timeout_s``), publish ``offline``, disconnect.

        What is not delivered stays in the spool for the next start.
        """
        deadline = time.monotonic() + (self.config.drain_timeout_s if timeout_s is None
                                       else timeout_s)
        self._drain_deadline = deadline
        # The health timer first, so nothing is queued after the sender's last drain.
        self._stop_health.set()
        for t in self._threads[1:]:
            t.join(10.0)
        self._stopping.set()
        self._wake.set()
        for t in self._threads[:1]:
            t.join(max(0.1, deadline - time.monotonic()) + 5.0)
        self._threads.clear()
        self._final = self.status()
        self._spool.close()

    def flush(self, timeout_s: float) -> bool:
        """Wait until everything queued so far is acknowledged (by the fleet, with
        ``fleet_acks``; messages queued meanwhile may still be on their way); False on
        timeout."""
        upto = self._spool.counter("seq")
        deadline = time.monotonic() + timeout_s

        def done() -> bool:
            oldest = self._spool.oldest_seq()
            return oldest is None or oldest > upto
        while not done() and time.monotonic() < deadline:
            time.sleep(0.01)
        return done()

    def status(self) -> TelemetryStatus:
        """A snapshot of the connection and the spool (after :meth:`stop`: the last one)."""
        if self._final is not None:
            return self._final
        link = self._link
        return TelemetryStatus(
            connected=link is not None, mqtt_version=link.link.version if link else None,
            session=self._session, seq=self._spool.counter("seq"), queued=self._spool.depth,
            queued_bytes=self._spool.size_bytes,
            dropped_health=self._spool.counter("dropped_health"), refused=self._refused,
            reconnects=self._reconnects, last_error=self._last_error)

    def receive(self, topic: str, payload: bytes) -> None:
        """A message from the broker on one of the device's subscriptions (network thread).

        The fleet's acknowledgements are queued for the sender, which drops what they name
        from the spool; commands go to ``on_command``. A malformed acknowledgement is counted
        (``bad_acks``) and ignored: the messages it would name are simply sent again.
        """
        if topic == self._ack_topic and self.config.fleet_acks:
            try:
                ack = FleetAck.parse(topic, payload, device_id=self.config.device_id)
            except RejectedMessageError as e:
                self.bad_acks += 1
                log.warning("ignored a fleet acknowledgement (%s): %s", e.reason, e)
                return
            self._fleet_acks.append(ack)
            self._wake.set()
        elif self._on_command is not None:
            self._on_command(topic, payload)

    # -- the health timer ------------------------------------------------------------------
    def _run_health(self) -> None:
        while not self._stop_health.is_set():
            try:
                self.publish_health()
            except EdgewardError as e:
                self._last_error = f"health report: {e}"
                log.warning("health report not queued: %s", e)
            except Exception as e:  # the agent's callback must not stop the timer
                self._last_error = f"health callback: {type(e).__name__}: {e}"
                log.exception("the health callback failed")
            self._stop_health.wait(self.config.health_interval_s)

    # -- the sender ------------------------------------------------------------------------
    def _state(self, state: DeviceState) -> WireMessage:
        return encode(StateMessage(device_id=self.config.device_id, state=state,
                                   session=self._session, time=self._clock(),
                                   agent_version=__version__[:64]), self._key)

    def _run_sender(self) -> None:
        attempt = 0
        while not self._stopping.is_set():
            self._session = self._spool.next_session()
            self._generation += 1
            gen = self._generation
            self._lost = None

            def on_ack(token: int, ack: Ack, g: int = gen) -> None:
                self._acks.append((g, token, ack))
                self._wake.set()

            def on_lost(why: str, g: int = gen) -> None:
                if g == self._generation:
                    self._lost = why
                    self._wake.set()

            try:
                link = self._connector(will=self._state(DeviceState.LOST), on_ack=on_ack,
                                       on_lost=on_lost)
            except ChannelError as e:
                self._last_error = str(e)
                delay = backoff_delay(attempt, min_s=self.config.reconnect_min_s,
                                      max_s=self.config.reconnect_max_s, rng=self._rng)
                log.info("broker unreachable (%s); retrying in %.1f s", e, delay)
                attempt += 1
                self._stopping.wait(delay)
                continue
            if self._connections:
                self._reconnects += 1
            self._connections += 1
            attempt = 0
            self._pump(_LinkState(link))

    def _pump(self, st: _LinkState) -> None:
        """Publish the birth, then the spool in order, until the link dies or we stop."""
        try:
            st.inflight[st.link.publish(self._state(DeviceState.ONLINE))] = _STATE
            self._link = st
            while self._lost is None:
                self._settle_acks(st)
                if self._stopping.is_set() and (not self._spool.depth or
                                                time.monotonic() > self._drain_deadline):
                    token = st.link.publish(self._state(DeviceState.OFFLINE))
                    st.inflight[token] = _STATE
                    until = time.monotonic() + 1.0  # the offline state leaves first
                    while token in st.inflight and self._lost is None \
                            and time.monotonic() < until:
                        self._wake.wait(0.05)
                        self._wake.clear()
                        self._settle_acks(st)
                    st.link.close()
                    return
                room = self.config.inflight - len(st.inflight)
                if self.config.fleet_acks:
                    room = min(room, self.config.ack_window - len(st.unacked))
                flying = set(st.inflight.values())
                again: list[int] = []
                while st.resend and len(again) < room:
                    again.append(st.resend.popleft())
                for m in self._spool.fetch(again):  # what the fleet did not confirm in time
                    if m.id not in flying:
                        st.inflight[st.link.publish(m.wire)] = m.id
                room -= len(again)
                for m in self._spool.peek(st.sent_upto, room) if room > 0 else []:
                    if m.id not in flying:
                        st.inflight[st.link.publish(m.wire)] = m.id
                    st.sent_upto = m.id
                self._settle_acks(st)
                self._wake.wait(0.5)
                self._wake.clear()
        except ChannelError as e:
            self._lost = str(e)
        finally:
            self._link = None
        self._last_error = f"connection lost: {self._lost}"
        log.info("broker connection lost (%s); %d message(s) stay queued", self._lost,
                 self._spool.depth)
        st.link.close()

    def _settle_acks(self, st: _LinkState) -> None:
        done: list[int] = []
        while self._acks:
            gen, token, ack = self._acks.popleft()
            if gen != self._generation:
                continue  # an ack from a dead link: its messages are re-sent anyway
            st.early[token] = ack
        for token in [t for t in st.early if t in st.inflight]:
            ack, row = st.early.pop(token), st.inflight.pop(token)
            if ack == "unrouted":
                # No fleet manager subscribed (yet): the broker dropped it. It stays in the
                # spool and goes again shortly; the fleet stores each (device, seq) once.
                if row != _STATE and (st.retry_from is None or row < st.retry_from):
                    st.retry_from = row
                    st.retry_at = time.monotonic() + _UNROUTED_RETRY_S
                continue
            if ack == "refused":
                self._refused += 1  # the broker refused it (ACL): re-sending cannot help
                log.warning("the broker refused a message (not authorized?)")
                st.unacked.pop(row, None)
            elif self.config.fleet_acks:
                # The broker has it; it leaves the spool when the fleet stored it, and goes
                # again if the fleet does not say so in time.
                if row != _STATE:
                    st.unacked.pop(row, None)
                    st.unacked[row] = time.monotonic() + self._ack_timeout()
                continue
            done.append(row)
        self._spool.remove(i for i in done if i != _STATE)
        self._settle_fleet_acks(st)
        now = time.monotonic()
        if st.retry_from is not None and now >= st.retry_at:
            st.sent_upto = min(st.sent_upto, st.retry_from - 1)
            st.retry_from = None
        expired: list[int] = []
        while st.unacked:
            first, due = next(iter(st.unacked.items()))
            if now < due:
                break
            del st.unacked[first]
            expired.append(first)
        if expired:
            # The fleet did not confirm them in time (a broker restart lost them, or they
            # went to another subscriber while no manager was there): send those again, and
            # only those, waiting longer next time. Copies are stored once.
            self._ack_timeouts = min(self._ack_timeouts + 1, _MAX_ACK_BACKOFF)
            log.info("no fleet acknowledgement for %d message(s) in time; sending them again",
                     len(expired))
            st.resend.extend(sorted(expired))

    def _ack_timeout(self) -> float:
        return float(self.config.ack_timeout_s * 2 ** self._ack_timeouts)

    def _settle_fleet_acks(self, st: _LinkState | None) -> None:
        """Drop what the fleet stored from the spool (and from the link's unacknowledged)."""
        ranges: list[tuple[int, int]] = []
        while self._fleet_acks:
            ranges.extend(self._fleet_acks.popleft().stored)
        if not ranges:
            return
        removed = self._spool.remove_seqs(ranges)
        if removed:
            self._ack_timeouts = 0
        if st is not None:
            for i in removed:
                st.unacked.pop(i, None)
