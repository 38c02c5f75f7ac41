"""Verified ingest with fakes (an in-memory store): every rejection reason is counted, hostile
input never crashes the manager, replays are refused, alerts fire once."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest
from _fleet_helpers import T0, event, health, provenance, state
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from _models import fixed_key
from edgeward.fleet._alerts import AlertEngine, AlertRules
from edgeward.fleet._ingest import Ingestor, Registry
from edgeward.fleet._memstore import MemoryStore
from edgeward.fleet._store import Accepted
from edgeward.fleet.protocol import PAYLOAD_TYPES, Kind, Rejection, encode
from edgeward.provenance import PrivateKey, Role, TrustStore, canonical_json, sign_payload

TOPIC = "edgeward/v1/devices/pi-01/health"


class FakeClock:
    """Monotonic and wall time that only move when told to."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def store(device_key: PrivateKey, other_key: PrivateKey) -> MemoryStore:
    s = MemoryStore()
    s.enroll("pi-01", device_key.public_key, now=T0)
    s.enroll("pi-02", other_key.public_key, now=T0)
    return s


@pytest.fixture
def ingestor(store: MemoryStore) -> Ingestor:
    clock = FakeClock()
    return Ingestor(Registry(store, clock=clock), clock=clock)


def _write(store: MemoryStore, ing: Ingestor, accepted: list[Accepted]) -> None:
    ing.settle(store.write(accepted, manager="test", now=T0))


def _check_all(ing: Ingestor, store: MemoryStore, msgs: list[tuple[str, bytes]]) -> None:
    for topic, payload in msgs:
        a = ing.check(topic, payload)
        if a is not None:
            _write(store, ing, [a])


def _signed(body: dict[str, object], key: PrivateKey) -> bytes:
    env = sign_payload(canonical_json(body), PAYLOAD_TYPES[Kind.HEALTH], key)
    return canonical_json(env.to_dict())


def _tamper(payload: bytes, **changes: object) -> bytes:
    env = json.loads(payload)
    body = json.loads(base64.b64decode(env["payload"])) | changes
    env["payload"] = base64.b64encode(canonical_json(body)).decode()
    return canonical_json(env)


def _cases(dk: PrivateKey, ok: PrivateKey) -> dict[str, tuple[str, list[tuple[str, bytes]]]]:
    """Named attacks and mistakes: (expected reason, messages; the last one is the refused)."""
    good = encode(health(seq=5), dk)
    env = json.loads(good.payload)
    return {
        "bad topic": ("bad_topic", [("edgeward/v1/devices/pi 01/health", good.payload)]),
        "newer protocol": ("unsupported_version",
                           [("edgeward/v2/devices/pi-01/health", good.payload)]),
        "newer body version": ("unsupported_version", [(TOPIC, _signed(
            health().to_dict() | {"_type": "https://edgeward.dev/fleet/health/v2"}, dk))]),
        "oversize": ("oversize", [(TOPIC, b"{" + b" " * 10_000 + b"}")]),
        "not json": ("malformed", [(TOPIC, b"\xff\xfe not json")]),
        "deep json": ("malformed", [(TOPIC, b"[" * 4000 + b"]" * 4000)]),
        "wrong payload type": ("malformed", [(TOPIC, encode(event(), dk).payload)]),
        "unsigned": ("unsigned", [(TOPIC, canonical_json(env | {"signatures": []}))]),
        "unknown device": ("unknown_device", [("edgeward/v1/devices/ghost/health",
                                               encode(health("ghost"), dk).payload)]),
        "other device's key": ("forged", [(TOPIC, encode(health(seq=6), ok).payload)]),
        "edited body": ("forged", [(TOPIC, _tamper(good.payload, seq=99))]),
        "swapped signature": ("forged", [(TOPIC, canonical_json(env | {
            "signatures": json.loads(encode(health(seq=7), dk).payload)["signatures"]}))]),
        "body names another device": ("topic_mismatch", [
            ("edgeward/v1/devices/pi-02/health", encode(health("pi-01", seq=3), ok).payload)]),
        "replayed": ("replayed", [(TOPIC, good.payload), (TOPIC, good.payload)]),
        "stale state": ("stale_state", [
            ("edgeward/v1/devices/pi-01/state", encode(state(session=2), dk).payload),
            ("edgeward/v1/devices/pi-01/state", encode(state(st="lost", session=1), dk)
             .payload)]),
    }


@pytest.mark.parametrize("name", list(_cases(fixed_key(11), fixed_key(12))))
def test_every_rejection_reason_is_counted(name: str, ingestor: Ingestor, store: MemoryStore,
                                           device_key: PrivateKey,
                                           other_key: PrivateKey) -> None:
    reason, msgs = _cases(device_key, other_key)[name]
    _check_all(ingestor, store, msgs)
    counters = ingestor.snapshot()
    assert counters.get(f"rejected.{reason}") == 1, counters
    assert sum(v for k, v in counters.items() if k.startswith("rejected.")) == 1
    assert counters["received"] == len(msgs)


def test_every_reason_has_a_case() -> None:
    covered = {r for r, _ in _cases(fixed_key(11), fixed_key(12)).values()}
    assert covered | {"revoked_key", "duplicate"} == {r.value for r in Rejection}


def test_a_revoked_device_key_is_refused(store: MemoryStore, device_key: PrivateKey,
                                         tmp_path: Path) -> None:
    trust = TrustStore.open(tmp_path / "trust", create=True)
    trust.add(device_key.public_key, [Role.DEVICE], name="pi-01")
    trust.revoke(device_key.key_id, device_key, reason="stolen")
    ing = Ingestor(Registry(store, load_trust=lambda: TrustStore.open(tmp_path / "trust")))
    assert ing.check(TOPIC, encode(health(), device_key).payload) is None
    assert ing.snapshot()["rejected.revoked_key"] == 1


def test_retained_copies_are_benign_duplicates(ingestor: Ingestor, store: MemoryStore,
                                               device_key: PrivateKey) -> None:
    wire = encode(health(seq=3), device_key)
    st_wire = encode(state(), device_key)
    _check_all(ingestor, store, [(wire.topic, wire.payload), (st_wire.topic, st_wire.payload)])
    for w in (wire, st_wire):  # the broker's retained copies, e.g. when a manager restarts
        a = ingestor.check(w.topic, w.payload, retained=True)
        assert a is not None
        _write(store, ingestor, [a])
    c = ingestor.snapshot()
    assert c["rejected.duplicate"] == 2 and "rejected.replayed" not in c
    assert store.count("telemetry") == 1


def test_a_late_but_new_seq_is_stored(ingestor: Ingestor, store: MemoryStore,
                                       device_key: PrivateKey) -> None:
    # An agent re-sends seq 4 after 5 went through (no manager took 4 the first time).
    _check_all(ingestor, store, [(TOPIC, encode(health(seq=s), device_key).payload)
                                 for s in (5, 4)])
    assert store.count("telemetry") == 2 and ingestor.snapshot()["stored"] == 2


def test_exactly_once_when_copies_pass_the_first_check(ingestor: Ingestor, store: MemoryStore,
                                                       device_key: PrivateKey) -> None:
    # Two copies in one batch (before the high-water mark moves): the store keeps one.
    wire = encode(health(seq=8), device_key)
    batch = [ingestor.check(wire.topic, wire.payload), ingestor.check(wire.topic, wire.payload)]
    _write(store, ingestor, [a for a in batch if a is not None])
    assert store.count("telemetry") == 1
    assert ingestor.snapshot()["rejected.replayed"] == 1


def test_new_devices_are_picked_up_without_a_restart(ingestor: Ingestor, store: MemoryStore,
                                                     publisher_key: PrivateKey) -> None:
    wire = encode(health("pi-03"), publisher_key)
    assert ingestor.check(wire.topic, wire.payload) is None
    store.enroll("pi-03", publisher_key.public_key, now=T0)
    clock = ingestor.registry._clock
    assert isinstance(clock, FakeClock)
    clock.now += 2  # past the refresh interval
    assert ingestor.check(wire.topic, wire.payload) is not None


def test_a_device_enrolled_a_moment_after_a_reread_is_found_at_first_sight(
        ingestor: Ingestor, store: MemoryStore, publisher_key: PrivateKey) -> None:
    # its first message (the retained "online" the broker will not send again) must not be
    # lost to a cache read a moment before the device was enrolled
    clock = ingestor.registry._clock
    assert isinstance(clock, FakeClock)
    ingestor.registry.refresh()
    store.enroll("pi-04", publisher_key.public_key, now=T0)
    clock.now += 0.01
    wire = encode(health("pi-04"), publisher_key)
    assert ingestor.check(wire.topic, wire.payload) is not None
    # made-up ids: each one seen at most one re-read, and such re-reads are rate-limited
    reads = 0
    real = store.devices

    def counting() -> list[Any]:
        nonlocal reads
        reads += 1
        return real()

    store.devices = counting  # type: ignore[method-assign]
    for i in range(50):
        forged = encode(health(f"ghost-{i}"), publisher_key)
        assert ingestor.check(forged.topic, forged.payload) is None
    assert reads <= 1, reads


def test_provenance_statements_are_checked_against_publisher_keys(
        store: MemoryStore, device_key: PrivateKey, publisher_key: PrivateKey,
        other_key: PrivateKey) -> None:
    trust = TrustStore()
    trust.add(publisher_key.public_key, [Role.PUBLISHER])
    ing = Ingestor(Registry(store, load_trust=lambda: trust))
    good = ing.check("edgeward/v1/devices/pi-01/provenance",
                     encode(provenance(publisher_key), device_key).payload)
    bad = ing.check("edgeward/v1/devices/pi-01/provenance",
                    encode(provenance(other_key, seq=4), device_key).payload)
    assert good is not None and good.statement_verified is True
    assert bad is not None and bad.statement_verified is False
    alerts = AlertEngine(AlertRules()).observe([bad])
    assert [a.kind for a in alerts] == ["provenance"]


def test_alerts_fire_once_per_condition() -> None:
    engine = AlertEngine(AlertRules(max_temperature_c=80))

    def acc(msg: object) -> Accepted:
        return Accepted(msg, b"", T0)  # type: ignore[arg-type]

    kinds: list[str] = []
    for seq, (temp, tps) in enumerate([(70, 20.0), (85, 20.0), (90, 20.0), (70, 20.0),
                                       (70, 5.0), (70, 4.0), (70, 20.0)], start=1):
        kinds += [a.kind for a in engine.observe([acc(health(seq=seq, temperature_c=temp,
                                                             decode_tokens_per_s=tps))])]
    kinds += [a.kind for a in engine.observe([acc(state(st="lost"))])]
    assert kinds == ["temperature", "tokens_per_s", "lost"]


# -- hostile input: generated, thousands, never a crash -----------------------------------

@settings(max_examples=1200, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(topic=st.one_of(st.just(TOPIC), st.text(max_size=80),
                       st.sampled_from(["edgeward/v1/devices/pi-01/state",
                                        "edgeward/v1/devices/pi-01/events",
                                        "edgeward/v1/devices/pi-01/provenance",
                                        "edgeward/v7/devices/pi-01/health"])),
       payload=st.one_of(st.binary(max_size=400),
                         st.recursive(st.none() | st.booleans() | st.integers() | st.text(
                             max_size=20) | st.floats(), lambda c: st.lists(c, max_size=4)
                             | st.dictionaries(st.text(max_size=10), c, max_size=4),
                             max_leaves=20).map(lambda v: json.dumps(v).encode())))
def test_generated_garbage_is_rejected_and_counted(ingestor: Ingestor, topic: str,
                                                   payload: bytes) -> None:
    before = ingestor.snapshot()
    assert ingestor.check(topic, payload) is None
    after = ingestor.snapshot()
    rejected = sum(after.get(k, 0) - before.get(k, 0) for k in after if k.startswith("rej"))
    assert rejected == 1 and "rejected.internal_error" not in after


@settings(max_examples=1500, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(data=st.data())
def test_mutated_signed_messages_are_never_accepted(ingestor: Ingestor, store: MemoryStore,
                                                    device_key: PrivateKey,
                                                    other_key: PrivateKey,
                                                    data: st.DataObject) -> None:
    """Forged (bit flips, other keys, edited fields) and replayed messages: all refused."""
    original = encode(health(seq=10), device_key)
    if store.count("telemetry") == 0:
        _check_all(ingestor, store, [(original.topic, original.payload)])
    how = data.draw(st.sampled_from(["replay", "flip", "edit", "key"]))
    payload = original.payload
    if how == "flip":
        i = data.draw(st.integers(0, len(payload) - 1))
        payload = payload[:i] + bytes([payload[i] ^ (1 << data.draw(st.integers(0, 7)))]) \
            + payload[i + 1:]
    elif how == "edit":
        payload = _tamper(payload, seq=data.draw(st.integers(11, 2**40)))
    elif how == "key":
        payload = encode(health(seq=data.draw(st.integers(11, 2**40))), other_key).payload
    _check_all(ingestor, store, [(original.topic, payload)])
    c = ingestor.snapshot()
    assert store.count("telemetry") == 1 and c["stored"] == 1
    assert "rejected.internal_error" not in c
    assert c["received"] == 1 + sum(v for k, v in c.items() if k.startswith("rejected."))


def test_counters_add_up(ingestor: Ingestor, store: MemoryStore, device_key: PrivateKey,
                         other_key: PrivateKey) -> None:
    msgs = [m for _, ms in _cases(device_key, other_key).values() for m in ms]
    _check_all(ingestor, store, msgs)
    c = ingestor.snapshot()
    rejected = sum(v for k, v in c.items() if k.startswith("rejected."))
    assert c["received"] == len(msgs) == c["stored"] + rejected
