"""The fleet's end-to-end acknowledgement (``edgeward/v1/devices/D/ack``): ranges, splitting,
byte-exact form, and strict parsing of what a device receives."""

from __future__ import annotations

import pytest

from edgeward.errors import ConfigError, RejectedMessageError
from edgeward.fleet.protocol import ACK_TYPE, FleetAck, ack_topic
from edgeward.fleet.protocol._fleet_ack import MAX_ACK_RANGES


def test_seqs_become_ranges_and_round_trip() -> None:
    (ack,) = FleetAck.for_seqs("pi-01", [5, 1, 2, 3, 3, 9, 10])
    assert ack.stored == ((1, 3), (5, 5), (9, 10)) and list(ack.seqs()) == [1, 2, 3, 5, 9, 10]
    wire = ack.wire()
    assert (wire.topic, wire.retain, wire.qos) == ("edgeward/v1/devices/pi-01/ack", False, 1)
    assert wire.payload == (b'{"_type":"' + ACK_TYPE.encode() + b'","device_id":"pi-01",'
                            b'"stored":[[1,3],[5,5],[9,10]]}')
    assert FleetAck.parse(wire.topic, wire.payload, device_id="pi-01") == ack


def test_many_ranges_are_split_over_several_acks() -> None:
    acks = FleetAck.for_seqs("pi-01", range(1, 4 * MAX_ACK_RANGES, 2))
    assert len(acks) == 2 and sum(len(a.stored) for a in acks) == 2 * MAX_ACK_RANGES
    assert [s for a in acks for s in a.seqs()] == list(range(1, 4 * MAX_ACK_RANGES, 2))


@pytest.mark.parametrize("stored", [(), ((0, 1),), ((3, 1),), ((1, 2), (3, 4)),
                                    ((5, 6), (1, 2)), ((1, True),), ((1, 2**63),)],
                         ids=["empty", "zero", "reversed", "adjacent", "unordered", "bool",
                              "huge"])
def test_bad_ranges_are_refused(stored: tuple[tuple[int, int], ...]) -> None:
    with pytest.raises(ConfigError, match="range"):
        FleetAck("pi-01", stored)


@pytest.mark.parametrize(("topic", "payload", "reason"), [
    ("edgeward/v1/devices/pi-02/ack", None, "bad_topic"),
    (None, b"x" * 40_000, "oversize"),
    (None, b"{", "malformed"),
    (None, b"[" * 3000 + b"]" * 3000, "malformed"),
    (None, b'{"_type":"https://edgeward.dev/fleet/ack/v2","device_id":"pi-01","stored":[]}',
     "unsupported_version"),
    (None, b'{"_type":"' + ACK_TYPE.encode() + b'","device_id":"pi-02","stored":[[1,1]]}',
     "malformed"),
    (None, b'{"_type":"' + ACK_TYPE.encode() + b'","device_id":"pi-01","stored":[[1,1]],'
     b'"x":1}', "malformed"),
    (None, b'{"_type":"' + ACK_TYPE.encode() + b'","device_id":"pi-01","stored":[[1]]}',
     "malformed"),
    (None, b'{"_type":"' + ACK_TYPE.encode() + b'","device_id":"pi-01","stored":{"a":1}}',
     "malformed"),
    (None, b'{"_type":"' + ACK_TYPE.encode() + b'","device_id":"pi-01","stored":[[1.5,2]]}',
     "malformed"),
], ids=["another-device", "oversize", "not-json", "deep", "v2", "names-another", "extra-key",
        "short-range", "not-a-list", "float"])
def test_what_a_device_receives_is_parsed_strictly(topic: str | None, payload: bytes | None,
                                                    reason: str) -> None:
    good = FleetAck.for_seqs("pi-01", [1])[0].wire()
    with pytest.raises(RejectedMessageError) as e:
        FleetAck.parse(topic or ack_topic("pi-01"), payload or good.payload, device_id="pi-01")
    assert e.value.reason == reason
