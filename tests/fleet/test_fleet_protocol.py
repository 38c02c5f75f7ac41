"""The wire protocol: golden bytes, round trips, topics, limits, strict parsing, broker URLs."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import pytest
from _fleet_helpers import event, health, provenance, sample, state

from edgeward.errors import ChannelError, ConfigError, RejectedMessageError
from edgeward.fleet.protocol import (
    MAX_PAYLOAD_BYTES,
    BrokerOptions,
    DeviceTopic,
    EventMessage,
    HealthReport,
    Kind,
    Message,
    decode,
    encode,
    fleet_filters,
    message_from_dict,
    open_message,
)
from edgeward.provenance import Envelope, PrivateKey, Role, TrustStore


def _trust(*keys: PrivateKey) -> TrustStore:
    store = TrustStore()
    for k in keys:
        store.add(k.public_key, [Role.DEVICE])
    return store


def _messages(publisher: PrivateKey) -> dict[str, Message]:
    return {"state": state(), "health": health(), "events": event(),
            "provenance": provenance(publisher)}


@pytest.mark.parametrize("kind", ["state", "health", "events", "provenance"])
def test_wire_bytes_match_the_golden(kind: str, device_key: PrivateKey,
                                     publisher_key: PrivateKey,
                                     golden: Callable[[str, bytes], None]) -> None:
    msg = _messages(publisher_key)[kind]
    wire = encode(msg, device_key)
    # Canonical: sorted keys, no whitespace; the same message always gives the same bytes.
    assert wire.payload == encode(msg, device_key).payload
    assert b" " not in wire.payload and b"\n" not in wire.payload
    golden(f"{kind}.body.json", msg.canonical_bytes())
    golden(f"{kind}.wire.json", wire.payload)
    assert wire.topic == f"edgeward/v1/devices/pi-01/{kind}"
    assert wire.retain is (kind in ("state", "provenance")) and wire.qos == 1


@pytest.mark.parametrize("kind", ["state", "health", "events", "provenance"])
def test_round_trip_through_the_wire(kind: str, device_key: PrivateKey,
                                     publisher_key: PrivateKey) -> None:
    msg = _messages(publisher_key)[kind]
    wire = encode(msg, device_key)
    back = decode(wire.topic, wire.payload, _trust(device_key), key_id=device_key.key_id)
    assert back == msg
    assert message_from_dict(Kind(kind), msg.to_dict()) == msg


def test_health_body_shape_is_documented() -> None:
    d = health().to_dict()
    assert d["_type"] == "https://edgeward.dev/fleet/health/v1"
    assert set(d) == {"_type", "device_id", "seq", "time", "metrics", "spool_dropped"}
    assert set(d["metrics"]) == {
        "uptime_s", "cpu_percent", "load_1m", "memory_used_bytes", "memory_total_bytes",
        "temperature_c", "decode_tokens_per_s", "queue_depth", "safety_decisions",
        "artifact_digest", "slot"}


@pytest.mark.parametrize(("topic", "device", "kind"), [
    ("edgeward/v1/devices/pi-01/health", "pi-01", Kind.HEALTH),
    ("edgeward/v1/devices/A.b_c-9/state", "A.b_c-9", Kind.STATE),
])
def test_topics_parse(topic: str, device: str, kind: Kind) -> None:
    t = DeviceTopic.parse(topic)
    assert (t.device_id, t.kind) == (device, kind) and str(t) == topic


@pytest.mark.parametrize(("topic", "reason"), [
    ("edgeward/v2/devices/pi-01/health", "unsupported_version"),
    ("edgeward/v1/devices/pi-01/health/x", "bad_topic"),
    ("edgeward/v1/devices/pi$01/health", "bad_topic"),
    ("edgeward/v1/devices/-lead/health", "bad_topic"),
    ("edgeward/v1/devices/pi-01/temperature", "bad_topic"),
    ("edgeward/v1/devices/" + "x" * 65 + "/health", "bad_topic"),
    ("other/v1/devices/pi-01/health", "bad_topic"),
    ("edgeward/v1/devices/pi-01/cmd", "bad_topic"),
])
def test_bad_topics_are_rejected_with_their_reason(topic: str, reason: str) -> None:
    with pytest.raises(RejectedMessageError) as e:
        open_message(topic, b"{}")
    assert e.value.reason == reason


def test_values_validate_and_quote_the_bad_value() -> None:
    with pytest.raises(ConfigError, match="-5"):
        sample(queue_depth=-5)
    with pytest.raises(ConfigError, match="nan"):
        sample(temperature_c=float("nan"))
    with pytest.raises(ConfigError, match="'Bad Name'"):
        EventMessage(device_id="pi-01", seq=1, time=1.0, event="Bad Name")
    with pytest.raises(ConfigError, match="seq"):
        health(seq=0)
    with pytest.raises(ConfigError, match="'a/b'"):
        health(device="a/b")


def test_oversize_is_refused_on_both_sides(device_key: PrivateKey) -> None:
    with pytest.raises(ConfigError, match="8192"):
        EventMessage(device_id="pi-01", seq=1, time=1.0, event="x", data={"s": "y" * 9000})
    big = health(safety_decisions={f"c{i}": i for i in range(64)})
    assert len(encode(big, device_key).payload) < MAX_PAYLOAD_BYTES[Kind.HEALTH]
    with pytest.raises(RejectedMessageError) as e:
        open_message("edgeward/v1/devices/pi-01/health", b"x" * 9000)
    assert e.value.reason == "oversize"
    prov = provenance(device_key)
    huge = Envelope(prov.statement.payload_type, b"x" * 300_000, prov.statement.signatures)
    with pytest.raises(ChannelError, match="exceeds"):
        encode(replace(prov, statement=huge), device_key)


def test_unknown_body_version_is_unsupported_not_malformed() -> None:
    d = health().to_dict() | {"_type": "https://edgeward.dev/fleet/health/v2"}
    with pytest.raises(RejectedMessageError) as e:
        message_from_dict(Kind.HEALTH, d)
    assert e.value.reason == "unsupported_version"
    extra = health().to_dict() | {"surprise": 1}
    with pytest.raises(RejectedMessageError) as e:
        message_from_dict(Kind.HEALTH, extra)
    assert e.value.reason == "malformed"


def test_fleet_filters_share_or_not() -> None:
    assert fleet_filters(share_group=None)[1] == "edgeward/+/devices/+/health"
    assert fleet_filters(share_group="fleet")[0] == "$share/fleet/edgeward/+/devices/+/state"
    with pytest.raises(ConfigError):
        fleet_filters(share_group="a/b")


def test_broker_options_parse_urls_and_hide_the_password() -> None:
    o = BrokerOptions(url="mqtts://user:s3cret@broker.example")
    assert (o.tls, o.host, o.port, o.username, o.password) == (
        True, "broker.example", 8883, "user", "s3cret")
    assert "s3cret" not in repr(o) and o.display_url == "mqtts://broker.example:8883"
    assert BrokerOptions(url="mqtt://127.0.0.1").port == 1883
    # mqtt://127.0.0.[] made urlsplit raise ValueError (found by benchmarks/fuzz.py)
    for bad in ("http://x", "mqtt://", "mqtt://h:99999", "mqtt://h/path", "mqtt://127.0.0.[]",
                "mqtt://[::1"):
        with pytest.raises(ConfigError):
            BrokerOptions(url=bad)
    with pytest.raises(ConfigError, match="mqtts"):
        BrokerOptions(url="mqtt://h", ca_file=Path("ca.pem"))


def test_the_signed_body_is_what_the_envelope_carries(device_key: PrivateKey) -> None:
    wire = encode(health(), device_key)
    env = json.loads(wire.payload)
    assert env["payloadType"] == "application/vnd.edgeward.health+json"
    assert env["signatures"][0]["keyid"] == device_key.key_id
    assert isinstance(decode(wire.topic, wire.payload, _trust(device_key),
                             key_id=device_key.key_id), HealthReport)
