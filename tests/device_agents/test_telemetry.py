"""The agent's telemetry client with a fake broker connection: store-and-forward, order,
at-least-once re-sends, birth/Last Will/offline, seq across restarts, backoff, config, and the
fleet's end-to-end acknowledgements (the fake broker plays the fleet manager too)."""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from edgeward.device_agents._spool import SpoolConfig
from edgeward.device_agents._telemetry import TelemetryClient, TelemetryConfig
from edgeward.device_agents._telemetry_link import AckCallback, LostCallback, backoff_delay
from edgeward.errors import ChannelError, ConfigError
from edgeward.fleet.protocol import (
    BrokerOptions,
    DeviceState,
    FleetAck,
    HealthSample,
    Message,
    StateMessage,
    WireMessage,
    ack_topic,
    decode,
)
from edgeward.provenance import PrivateKey, Role, TrustStore


def _key(seed: int) -> PrivateKey:
    raw = ed25519.Ed25519PrivateKey.from_private_bytes(bytes([seed]) * 32)
    return PrivateKey.from_pem(raw.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()))


KEY = _key(21)
TRUST = TrustStore()
TRUST.add(KEY.public_key, [Role.DEVICE])


def _decode(w: WireMessage) -> Message:
    return decode(w.topic, w.payload, TRUST, key_id=KEY.key_id)


class FakeLink:
    def __init__(self, broker: FakeBroker, on_ack: AckCallback, on_lost: LostCallback) -> None:
        self.broker, self.on_ack, self.on_lost = broker, on_ack, on_lost
        self.token = 0
        self.alive = True

    @property
    def version(self) -> str:
        return "5"

    def publish(self, message: WireMessage) -> int:
        if not self.alive:
            raise ChannelError("gone")
        self.token += 1
        with self.broker.lock:
            self.broker.received.append(message)
        if self.broker.auto_ack:
            refused = self.broker.refuse and message.topic.endswith("/health")
            unrouted = self.broker.unrouted > 0 and not message.topic.endswith("/state")
            if unrouted:
                self.broker.unrouted -= 1
            self.on_ack(self.token, "refused" if refused else
                        "unrouted" if unrouted else "delivered")
            if not (refused or unrouted):
                self.broker.store(message)
        else:
            self.broker.unacked.append((self, self.token))
        return self.token

    def close(self) -> None:
        self.alive = False


class FakeBroker:
    """The Connector: records what arrives; can be down, refuse, or hold acks."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.up = True
        self.auto_ack = True
        self.refuse = False
        self.unrouted = 0  # answer this many publishes with "no matching subscribers"
        self.received: list[WireMessage] = []
        self.wills: list[WireMessage] = []
        self.unacked: list[tuple[FakeLink, int]] = []
        self.links: list[FakeLink] = []
        self.attempts = 0
        # The fleet manager behind the broker: ``fleet`` is the client's receive(); while
        # ``fleet_up``, each delivered message is "stored" and acknowledged at once.
        self.fleet: Callable[[str, bytes], None] | None = None
        self.fleet_up = True
        self.stored: list[int] = []

    def store(self, message: WireMessage) -> None:
        if self.fleet is None or not self.fleet_up or message.topic.endswith("/state"):
            return
        m = _decode(message)
        assert not isinstance(m, StateMessage)
        self.stored.append(m.seq)
        (ack,) = FleetAck.for_seqs(m.device_id, [m.seq])
        self.fleet(ack.wire().topic, ack.wire().payload)

    def __call__(self, *, will: WireMessage, on_ack: AckCallback,
                 on_lost: LostCallback) -> FakeLink:
        self.attempts += 1
        if not self.up:
            raise ChannelError("connection refused")
        self.wills.append(will)
        link = FakeLink(self, on_ack, on_lost)
        self.links.append(link)
        return link

    def drop(self) -> None:
        """The connection dies (the broker would publish the Last Will)."""
        self.up = False
        for link in self.links:
            if link.alive:
                link.alive = False
                link.on_lost("connection reset")

    def messages(self) -> list[Message]:
        with self.lock:
            return [_decode(w) for w in self.received]

    def seqs(self) -> list[int]:
        return [m.seq for m in self.messages() if not isinstance(m, StateMessage)]


def _config(tmp_path: Path, **kw: object) -> TelemetryConfig:
    base: dict[str, object] = dict(
        device_id="pi-01", broker=BrokerOptions(url="mqtt://127.0.0.1:1"),
        spool=SpoolConfig(path=tmp_path / "spool.db", durable=False), health_interval_s=3600,
        reconnect_min_s=0.01, reconnect_max_s=0.05, drain_timeout_s=1.0)
    base.update(kw)
    return TelemetryConfig(**base)  # type: ignore[arg-type]


def _wait(pred: Callable[[], bool], timeout: float = 5.0) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end and not pred():
        time.sleep(0.005)
    return pred()


def _client(tmp_path: Path, broker: FakeBroker, **kw: object) -> TelemetryClient:
    c = TelemetryClient(_config(tmp_path, **kw), KEY, connector=broker,
                        rng=random.Random(1), clock=lambda: 1_750_000_000.0)
    broker.fleet = c.receive
    return c


def test_birth_first_then_telemetry_in_order_then_offline(tmp_path: Path) -> None:
    broker = FakeBroker()
    c = _client(tmp_path, broker)
    c.start()
    for _ in range(3):
        c.publish_health(HealthSample(uptime_s=1.0))
    c.publish_event("update.progress", {"percent": 10})
    assert c.flush(5)
    c.stop()
    msgs = broker.messages()
    assert isinstance(msgs[0], StateMessage) and msgs[0].state is DeviceState.ONLINE
    assert isinstance(msgs[-1], StateMessage) and msgs[-1].state is DeviceState.OFFLINE
    assert broker.seqs() == [1, 2, 3, 4]
    will = _decode(broker.wills[0])
    assert isinstance(will, StateMessage) and will.state is DeviceState.LOST
    assert will.session == msgs[0].session == 1 and broker.wills[0].retain


@pytest.mark.chaos
def test_store_and_forward_across_an_outage(tmp_path: Path) -> None:
    broker = FakeBroker()
    c = _client(tmp_path, broker)
    c.start()
    c.publish_health(HealthSample(uptime_s=1.0))
    assert c.flush(5)
    broker.drop()
    for i in range(20):  # made while the broker is unreachable: spooled on disk
        c.publish_health(HealthSample(uptime_s=float(i)))
    c.publish_event("error", {"code": 7}, severity="error")
    assert _wait(lambda: not c.status().connected) and c.status().queued == 21
    broker.up = True
    assert _wait(lambda: c.status().queued == 0)
    c.stop()
    assert broker.seqs() == list(range(1, 23))  # in order, each once
    sessions = [m.session for m in broker.messages()
                if isinstance(m, StateMessage) and m.state is DeviceState.ONLINE]
    assert sessions == sorted(sessions) and len(sessions) == 2 and c.status().reconnects == 1


def test_unacknowledged_messages_are_sent_again_after_a_reconnect(tmp_path: Path) -> None:
    broker = FakeBroker()
    broker.auto_ack = False
    c = _client(tmp_path, broker)
    c.start()
    for _ in range(5):
        c.publish_health(HealthSample(uptime_s=1.0))
    assert _wait(lambda: len(broker.seqs()) == 5)
    broker.drop()  # none acknowledged: all five stay queued
    broker.auto_ack = True
    broker.up = True
    assert _wait(lambda: c.status().queued == 0)
    c.stop()
    assert broker.seqs() == [1, 2, 3, 4, 5, 1, 2, 3, 4, 5]  # at least once, in order


def test_unrouted_messages_stay_spooled_and_go_again(tmp_path: Path) -> None:
    broker = FakeBroker()
    broker.unrouted = 3  # right after a broker restart no manager is subscribed yet
    c = _client(tmp_path, broker)
    c.start()
    for _ in range(5):
        c.publish_health(HealthSample(uptime_s=1.0))
    assert c.flush(5)
    c.stop()
    seqs = broker.seqs()
    assert sorted(set(seqs)) == [1, 2, 3, 4, 5] and len(seqs) == 8


def test_seq_and_session_survive_a_restart(tmp_path: Path) -> None:
    broker = FakeBroker()
    broker.up = False
    c = _client(tmp_path, broker)
    c.start()
    assert c.publish_health(HealthSample(uptime_s=1.0)) == 1
    assert c.publish_event("boot") == 2
    c.stop(timeout_s=0.1)
    broker.up = True
    c2 = _client(tmp_path, broker)
    assert c2.publish_health(HealthSample(uptime_s=2.0)) == 3
    c2.start()
    assert c2.flush(5)
    c2.stop()
    assert broker.seqs() == [1, 2, 3]
    assert c2.status().session == 2  # the first client never connected: session 1 was used


def test_a_refused_message_is_counted_and_not_retried(tmp_path: Path) -> None:
    broker = FakeBroker()
    broker.refuse = True
    c = _client(tmp_path, broker)
    c.start()
    c.publish_health(HealthSample(uptime_s=1.0))
    assert c.flush(5)
    assert c.status().refused == 1
    c.stop()


def test_the_health_timer_survives_a_failing_callback(tmp_path: Path) -> None:
    broker = FakeBroker()
    calls = {"n": 0}

    def flaky() -> HealthSample:
        calls["n"] += 1
        if calls["n"] == 1:
            raise RuntimeError("sensor gone")
        return HealthSample(uptime_s=float(calls["n"]))

    c = TelemetryClient(_config(tmp_path, health_interval_s=0.02), KEY, health=flaky,
                        connector=broker)
    broker.fleet = c.receive
    c.start()
    assert _wait(lambda: len(broker.seqs()) >= 2)
    c.stop()
    assert "sensor gone" in (c.status().last_error or "") or calls["n"] >= 3


def test_backoff_grows_exponentially_with_jitter_and_a_cap() -> None:
    rng = random.Random(3)
    delays = [backoff_delay(a, min_s=1.0, max_s=30.0, rng=rng) for a in range(10)]
    for a, d in enumerate(delays):
        base = min(30.0, 2.0**a)
        assert base / 2 <= d <= base
    assert max(delays) <= 30.0 and len(set(delays)) == len(delays)


def test_reconnects_back_off(tmp_path: Path) -> None:
    broker = FakeBroker()
    broker.up = False
    c = _client(tmp_path, broker, reconnect_min_s=0.05, reconnect_max_s=0.2)
    c.start()
    time.sleep(0.6)
    c.stop(timeout_s=0.1)
    # Without backoff it would have tried thousands of times; with it, a handful.
    assert 2 <= broker.attempts <= 12


def test_config_from_a_toml_table(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PW", "s3cret")
    cfg = TelemetryConfig.from_mapping(
        {"broker": "mqtts://broker:8883", "username": "pi-01", "password_env": "PW",
         "ca_file": "ca.pem", "health_interval_s": 10, "spool": "state/spool.db",
         "spool_max_bytes": 1_000_000}, device_id="pi-01", base_dir=tmp_path)
    assert cfg.broker.password == "s3cret" and cfg.broker.ca_file == tmp_path / "ca.pem"
    assert cfg.spool.path == tmp_path / "state/spool.db" and cfg.spool.max_bytes == 1_000_000
    assert cfg.health_interval_s == 10.0
    with pytest.raises(ConfigError, match="unknown key"):
        TelemetryConfig.from_mapping({"broker": "mqtt://b", "color": "red"}, device_id="pi-01",
                                     base_dir=tmp_path)
    with pytest.raises(ConfigError, match="NOPE"):
        TelemetryConfig.from_mapping({"broker": "mqtt://b", "password_env": "NOPE"},
                                     device_id="pi-01", base_dir=tmp_path)
    with pytest.raises(ConfigError, match="health_interval_s"):
        _config(tmp_path, health_interval_s=0)


def test_a_message_the_broker_took_stays_spooled_until_the_fleet_stored_it(
        tmp_path: Path) -> None:
    broker = FakeBroker()
    broker.fleet_up = False  # the broker takes everything (PUBACK), no manager stores it
    c = _client(tmp_path, broker, ack_timeout_s=0.2)
    c.start()
    for _ in range(3):
        c.publish_health(HealthSample(uptime_s=1.0))
    assert _wait(lambda: len(broker.seqs()) >= 3)
    assert c.status().queued == 3  # a broker's PUBACK is not the fleet's word
    assert _wait(lambda: len(broker.seqs()) >= 6)  # no acknowledgement in time: sent again
    broker.fleet_up = True
    assert _wait(lambda: c.status().queued == 0)
    c.stop()
    assert broker.stored == [1, 2, 3]
    assert broker.seqs()[:6] == [1, 2, 3, 1, 2, 3]  # in order, again


def test_a_reconnect_resends_what_the_fleet_did_not_confirm(tmp_path: Path) -> None:
    broker = FakeBroker()
    broker.fleet_up = False  # e.g. a bystander took them; the broker is killed before the
    c = _client(tmp_path, broker)  # manager resubscribed: PUBACKed, never stored
    c.start()
    for _ in range(4):
        c.publish_health(HealthSample(uptime_s=1.0))
    assert _wait(lambda: len(broker.seqs()) == 4)
    broker.drop()
    broker.fleet_up = True
    broker.up = True
    assert _wait(lambda: c.status().queued == 0)  # the new connection sends them again
    c.stop()
    assert broker.stored == [1, 2, 3, 4] and broker.seqs() == [1, 2, 3, 4, 1, 2, 3, 4]


def test_only_a_well_formed_ack_for_this_device_drops_messages(tmp_path: Path) -> None:
    broker = FakeBroker()
    broker.fleet_up = False
    c = _client(tmp_path, broker)
    c.start()
    for _ in range(3):
        c.publish_health(HealthSample(uptime_s=1.0))
    assert _wait(lambda: len(broker.seqs()) == 3)
    mine, theirs = ack_topic("pi-01"), ack_topic("pi-02")
    other = FleetAck.for_seqs("pi-02", [1, 2, 3])[0].wire().payload
    for topic, payload in ((mine, b"{"), (mine, b"[" * 5000), (mine, other),
                           (mine, b'{"_type": "https://edgeward.dev/fleet/ack/v1", '
                                  b'"device_id": "pi-01", "stored": [[3, 1]]}'),
                           (mine, b"x" * 100_000), (theirs, other)):
        c.receive(topic, payload)
    time.sleep(0.2)
    assert c.status().queued == 3 and c.bad_acks == 5  # the last went to no handler
    ack = FleetAck.for_seqs("pi-01", [1, 3])[0]
    c.receive(ack.wire().topic, ack.wire().payload)
    assert _wait(lambda: c.status().queued == 1)
    c.stop(timeout_s=0.1)


def test_without_fleet_acks_the_broker_ack_is_enough(tmp_path: Path) -> None:
    broker = FakeBroker()
    broker.fleet_up = False
    c = _client(tmp_path, broker, fleet_acks=False)
    c.start()
    c.publish_health(HealthSample(uptime_s=1.0))
    assert c.flush(5)
    c.stop()
    cfg = TelemetryConfig.from_mapping({"broker": "mqtt://b", "fleet_acks": False,
                                        "ack_timeout_s": 3, "ack_window": 10},
                                       device_id="pi-01", base_dir=tmp_path)
    assert (cfg.fleet_acks, cfg.ack_timeout_s, cfg.ack_window) == (False, 3.0, 10)
    with pytest.raises(ConfigError, match="fleet_acks"):
        TelemetryConfig.from_mapping({"broker": "mqtt://b", "fleet_acks": "no"},
                                     device_id="pi-01", base_dir=tmp_path)
    with pytest.raises(ConfigError, match="ack_timeout_s"):
        _config(tmp_path, ack_timeout_s=0)
