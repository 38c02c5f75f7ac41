"""The fleet manager: subscribe, verify, store in batches, acknowledge, alert.

One process runs one :class:`FleetManager` (``edgeward fleet run``). It subscribes to the
device topics with an MQTT 5 shared subscription (``$share/GROUP/...``) when the broker speaks
MQTT 5, so several managers split the load, and plainly otherwise (then run one). Its network
thread receives and verifies each message (:class:`~edgeward.fleet._ingest.Ingestor`) and
collects a batch; the writer thread (:class:`~edgeward.fleet._writer.Writer`) commits it in one
transaction; only then are its messages acknowledged to the broker (manual PUBACK), and the
devices told what is stored: a :class:`~edgeward.fleet.protocol.FleetAck` per device on
``edgeward/v1/devices/DEVICE/ack`` names the stored seqs (copies of what was stored before
included), and only then does a device drop them from its spool. So a manager that dies loses
nothing (the broker re-sends what it had not acknowledged), and neither does a broker that
dies or restarts, with or without other subscribers: what the fleet did not confirm, the
devices send again, and the store keeps each ``(device, seq)`` once.
"""

from __future__ import annotations

import logging
import random
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import paho.mqtt.client as mqtt

from edgeward.errors import ChannelError, StoreError
from edgeward.fleet._alerts import AlertEngine
from edgeward.fleet._config import FleetConfig
from edgeward.fleet._ingest import Ingestor, Registry
from edgeward.fleet._store import Store, iso_time, open_store
from edgeward.fleet._writer import Batch, Writer
from edgeward.fleet.protocol import (
    Connection,
    FleetAck,
    StateMessage,
    client_id_for,
    connect,
    fleet_filters,
)
from edgeward.provenance import TrustStore

__all__ = ["FleetManager", "ManagerReport"]

log = logging.getLogger("edgeward.fleet")
_SUBACK_TIMEOUT_S = 10.0  # seconds
_SWITCH_INTERVAL_S = 0.001  # seconds; see FleetManager.run
_RECONNECT_MAX_S = 5.0  # seconds: a manager away from its broker misses messages; come back soon


class _AckIds(list[int]):
    """A batch's MQTT message ids to acknowledge, and the ``(device, seqs)`` it holds, which
    the devices are told are stored once the writer committed the batch."""

    stored: dict[str, list[int]]

    def __init__(self) -> None:
        super().__init__()
        self.stored = {}


def _new_batch(generation: int) -> Batch:
    return Batch(generation, acks=_AckIds())


_switch = {"users": 0, "saved": 0.005}
_switch_lock = threading.Lock()


def _switch_interval(*, lower: bool) -> None:
    """Lower the GIL switch interval while any manager runs in this process; restore it after
    the last one stops (several managers may run on threads, as in tests)."""
    with _switch_lock:
        if lower:
            if _switch["users"] == 0:
                _switch["saved"] = sys.getswitchinterval()
                sys.setswitchinterval(min(_switch["saved"], _SWITCH_INTERVAL_S))
            _switch["users"] += 1
        else:
            _switch["users"] -= 1
            if _switch["users"] == 0:
                sys.setswitchinterval(_switch["saved"])


@dataclass(frozen=True)
class ManagerReport:
    """What a manager did, for ``edgeward fleet run --json`` (printed when it stops)."""

    manager: str
    mqtt_version: str | None
    shared: bool
    started_at: float
    stopped_at: float
    counters: dict[str, int]

    def to_dict(self) -> dict[str, Any]:
        """All fields, times in RFC 3339."""
        return {"manager": self.manager, "mqtt_version": self.mqtt_version,
                "shared": self.shared, "started_at": iso_time(self.started_at),
                "stopped_at": iso_time(self.stopped_at), "counters": self.counters}


class FleetManager:
    """Ingests the fleet's telemetry into the store (see the module docstring).

    Args:
        config: the fleet configuration.
        store: an open store (default: the one ``config.store`` names).
        clock: epoch seconds.

    Raises:
        StoreError, ConfigError: the store or the trust store cannot be opened.
    """

    def __init__(self, config: FleetConfig, *, store: Store | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self.config = config
        self.store = store or open_store(config.store, base_dir=config.base_dir,
                                         sqlite_synchronous=config.sqlite_synchronous)
        self.manager_id = config.client_id or client_id_for("edgeward-fleet")
        self._clock = clock
        trust_dir = config.trust_store

        def load_trust() -> TrustStore | None:
            return TrustStore.open(trust_dir) if trust_dir is not None else None

        self.registry = Registry(self.store, load_trust=load_trust)
        self.ingestor = Ingestor(self.registry, clock=clock)
        self.alerts = AlertEngine(config.alerts)
        self._generation = 0
        self._batch = _new_batch(0)
        self._device_acks: dict[str, set[int]] = {}  # stored, not yet told to the device
        self.device_acks_sent = 0  # acknowledgement messages published to devices
        self._writer: Writer | None = None
        self._started_at = clock()
        self._version: str | None = None
        self._shared = False
        self._rng = random.Random()

    # -- messages ------------------------------------------------------------------------------
    def handle(self, topic: str, payload: bytes, *, retained: bool = False, mid: int = 0,
               qos: int = 1) -> None:
        """Check one delivered message and add it to the current batch (or count why not)."""
        accepted = self.ingestor.check(topic, payload, retained=retained, token=mid)
        b = self._batch
        if not b.acks and not b.accepted:
            b.started = time.monotonic()
        if qos > 0:
            b.acks.append(mid)
        if accepted is not None:
            b.accepted.append(accepted)

    def _on_message(self, _c: mqtt.Client, _u: object, msg: mqtt.MQTTMessage) -> None:
        payload = msg.payload if isinstance(msg.payload, bytes) else bytes(msg.payload)
        # A retained or re-delivered (DUP) copy of something stored is expected, not hostile.
        self.handle(msg.topic, payload, retained=bool(msg.retain or msg.dup), mid=msg.mid,
                    qos=msg.qos)

    def _submit(self) -> None:
        batch, self._batch = self._batch, _new_batch(self._generation)
        if (batch.accepted or batch.acks) and self._writer is not None:
            if isinstance(batch.acks, _AckIds):
                for a in batch.accepted:
                    if not isinstance(a.message, StateMessage):
                        batch.acks.stored.setdefault(a.message.device_id, []).append(
                            a.message.seq)
            self._writer.submit(batch)

    def _send_acks(self, client: mqtt.Client) -> None:
        writer = self._writer
        while writer is not None and writer.acks:
            generation, mids = writer.acks.popleft()
            if generation == self._generation:
                for mid in mids:
                    client.ack(mid, 1)
            if isinstance(mids, _AckIds):  # committed: stored, whatever the connection
                for device, seqs in mids.stored.items():
                    self._device_acks.setdefault(device, set()).update(seqs)
        # One acknowledgement per device for what was committed since the last call (the
        # writer merges batches under load, so these grow with it rather than multiply).
        pending, self._device_acks = self._device_acks, {}
        for device, stored in pending.items():
            for ack in FleetAck.for_seqs(device, stored):
                wire = ack.wire()
                # Lost if the connection is gone: the device then sends those again.
                client.publish(wire.topic, wire.payload, qos=wire.qos, retain=wire.retain)
                self.device_acks_sent += 1

    def counters(self) -> dict[str, int]:
        """The ingest counters so far."""
        return self.ingestor.snapshot()

    # -- the connection --------------------------------------------------------------------
    def _connect(self, first: bool) -> Connection:
        cfg = self.config
        conn = connect(cfg.broker, client_id=self.manager_id, manual_ack=True,
                       clean_start=first and cfg.client_id is None,
                       session_expiry_s=cfg.session_expiry_s,
                       receive_maximum=cfg.receive_maximum,
                       setup=lambda c: setattr(c, "on_message", self._on_message))
        shared = conn.version == "5" and bool(cfg.share_group)
        filters = fleet_filters(share_group=cfg.share_group if shared else None)
        granted: dict[str, Any] = {}

        def on_subscribe(_c: object, _u: object, _mid: int, reasons: Any, _p: object) -> None:
            granted["reasons"] = reasons

        conn.client.on_subscribe = on_subscribe
        conn.client.subscribe([(f, 1) for f in filters])
        deadline = time.monotonic() + _SUBACK_TIMEOUT_S
        while "reasons" not in granted and time.monotonic() < deadline:
            if conn.client.loop(timeout=0.05) != mqtt.MQTT_ERR_SUCCESS:
                break
        bad = [str(r) for r in granted.get("reasons", []) if getattr(r, "is_failure", False)]
        if "reasons" not in granted or bad:
            conn.close()
            raise ChannelError(f"{cfg.broker.display_url}: subscription to {filters[0]} ... "
                               f"refused or unanswered ({', '.join(bad) or 'no SUBACK'})")
        self._version, self._shared = conn.version, shared
        log.info("fleet manager %s subscribed to %s (MQTT %s%s)", self.manager_id,
                 cfg.broker.display_url, conn.version,
                 f", shared group {cfg.share_group!r}" if shared else ", not shared")
        return conn

    def run(self, *, stop: threading.Event | None = None, duration_s: float | None = None,
            on_ready: Callable[[], None] | None = None) -> ManagerReport:
        """Ingest until ``stop`` is set (or ``duration_s`` passed), reconnecting as needed.

        Args:
            stop: set it to stop (from a signal handler or another thread).
            duration_s: stop after this many seconds.
            on_ready: called once, after the first subscription is in place.

        Returns:
            The manager's counters.
        """
        stop = stop or threading.Event()
        end = time.monotonic() + duration_s if duration_s is not None else float("inf")
        self._writer = Writer(self.store, self.ingestor, self.alerts, manager=self.manager_id,
                              clock=self._clock)
        first, attempt = True, 0
        # The writer thread needs the GIL for a moment after each store call; with the
        # default 5 ms switch interval it waits behind the busy network thread and the
        # acknowledgements (hence the broker's flow) stall. 1 ms keeps them moving.
        _switch_interval(lower=True)
        try:
            while not stop.is_set() and time.monotonic() < end:
                try:
                    conn = self._connect(first)
                except ChannelError as e:
                    delay = min(_RECONNECT_MAX_S, 0.25 * 2**attempt) * self._rng.uniform(0.5, 1)
                    log.warning("%s; retrying in %.1f s", e, delay)
                    attempt += 1
                    stop.wait(min(delay, max(0.0, end - time.monotonic())))
                    continue
                if first and on_ready is not None:
                    on_ready()
                first, attempt = False, 0
                self._pump(conn, stop, end)
        finally:
            self._submit()
            self._writer.close()
            self._save_stats()
            _switch_interval(lower=False)
        return ManagerReport(self.manager_id, self._version, self._shared, self._started_at,
                             self._clock(), self.counters())

    def _pump(self, conn: Connection, stop: threading.Event, end: float) -> None:
        client, cfg, writer = conn.client, self.config, self._writer
        assert writer is not None
        self._generation += 1
        self._batch.generation = self._generation
        next_stats = time.monotonic() + cfg.stats_interval_s
        while not stop.is_set() and time.monotonic() < end:
            rc = client.loop(timeout=cfg.batch_wait_s)
            self._send_acks(client)
            now = time.monotonic()
            b = self._batch
            if b.acks and (len(b.accepted) >= cfg.batch_size
                           or now - b.started >= cfg.batch_wait_s):
                self._submit()
            if now >= next_stats:
                self._save_stats()
                next_stats = now + cfg.stats_interval_s
            if writer.failed.is_set():
                writer.failed.clear()
                log.warning("reconnecting so that the broker re-sends what was not stored")
                conn.close()
                return
            if rc != mqtt.MQTT_ERR_SUCCESS:
                log.warning("broker connection lost (%s); reconnecting", mqtt.error_string(rc))
                self._submit()  # stored; their acks are dropped, the broker re-sends: copies
                return
        self._submit()
        writer.drain()
        self._send_acks(client)
        client.loop(timeout=0.05)  # let the last acks leave
        conn.close()

    def _save_stats(self) -> None:
        try:
            self.store.save_stats(self.manager_id, self.counters(), started_at=self._started_at,
                                  now=self._clock())
        except StoreError as e:
            log.warning("cannot save the counters: %s", e)
