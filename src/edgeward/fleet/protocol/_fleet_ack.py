"""The fleet's end-to-end acknowledgement: which of a device's messages are stored.

A broker's PUBACK only says that the broker took a message; a broker that restarts or is
killed, or that routes the message to some other subscriber while no fleet manager is
subscribed, can still lose it. So a device keeps each spooled message until the fleet manager
says it is *stored*: after each committed batch the manager publishes, per device, a
:class:`FleetAck` on ``edgeward/v1/devices/DEVICE/ack`` (QoS 1, not retained) naming the
stored ``seq`` values as inclusive ranges::

    {"_type": "https://edgeward.dev/fleet/ack/v1", "device_id": "pi-01",
     "stored": [[1, 40], [42, 42]]}

Copies of what was already stored are acknowledged again, so a device that re-sends (after a
timeout, or on reconnect) always gets its answer; the store keeps each ``(device, seq)`` once.
The acknowledgement is not signed: it is protected by the broker's ACL (only the fleet
manager's account may publish on another account's ``ack`` topic), and a forged one can at
worst make a device forget telemetry it already published.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from edgeward.errors import ConfigError, RejectedMessageError
from edgeward.fleet.protocol._codec import WireMessage
from edgeward.fleet.protocol._topics import TOPIC_ROOT, check_device_id
from edgeward.fleet.protocol._values import MAX_SEQ
from edgeward.provenance import canonical_json
from edgeward.safeio import parse_json

__all__ = ["ACK_TYPE", "MAX_ACK_BYTES", "MAX_ACK_RANGES", "FleetAck", "ack_topic"]

ACK_TYPE = "https://edgeward.dev/fleet/ack/v1"
MAX_ACK_RANGES = 512  # ranges in one acknowledgement (more are split over several)
MAX_ACK_BYTES = 32 * 1024  # bytes of one acknowledgement's payload
_FIELDS = {"_type", "device_id", "stored"}


def ack_topic(device_id: str) -> str:
    """``edgeward/v1/devices/DEVICE/ack``: where the fleet acknowledges what it stored.

    Raises:
        ConfigError: a bad device id.
    """
    return f"{TOPIC_ROOT}/devices/{check_device_id(device_id)}/ack"


def _ranges(seqs: Iterable[int]) -> list[tuple[int, int]]:
    out: list[tuple[int, int]] = []
    for s in sorted(set(seqs)):
        if out and s == out[-1][1] + 1:
            out[-1] = (out[-1][0], s)
        else:
            out.append((s, s))
    return out


@dataclass(frozen=True)
class FleetAck:
    """The seqs of one device that the fleet has stored (see the module docstring).

    Attributes:
        device_id: the device.
        stored: inclusive ``(first, last)`` ranges, ascending, disjoint, not adjacent.
    """

    device_id: str
    stored: tuple[tuple[int, int], ...]

    def __post_init__(self) -> None:
        check_device_id(self.device_id)
        if not isinstance(self.stored, tuple) or not 1 <= len(self.stored) <= MAX_ACK_RANGES:
            raise ConfigError(f"an ack holds 1..{MAX_ACK_RANGES} ranges, got "
                              f"{self.stored!r:.80}")
        prev = -1  # the previous range's last seq (-1: none yet, so first >= 1)
        for r in self.stored:
            ok = (isinstance(r, tuple) and len(r) == 2
                  and all(isinstance(v, int) and not isinstance(v, bool) for v in r))
            if not ok or not prev + 1 < r[0] <= r[1] <= MAX_SEQ:
                raise ConfigError(f"ack range {r!r:.80} is not [first, last] with "
                                  f"{max(1, prev + 2)} <= first <= last <= {MAX_SEQ} (ascending, "
                                  "disjoint, not adjacent)")
            prev = r[1]

    @classmethod
    def for_seqs(cls, device_id: str, seqs: Iterable[int]) -> list[FleetAck]:
        """The acknowledgements (one per :data:`MAX_ACK_RANGES` ranges) naming ``seqs``."""
        ranges = _ranges(seqs)
        return [cls(device_id, tuple(ranges[i:i + MAX_ACK_RANGES]))
                for i in range(0, len(ranges), MAX_ACK_RANGES)]

    def seqs(self) -> Iterable[int]:
        """Every seq named (ascending)."""
        for first, last in self.stored:
            yield from range(first, last + 1)

    def to_dict(self) -> dict[str, object]:
        """The body: ``_type``, device id, stored ranges."""
        return {"_type": ACK_TYPE, "device_id": self.device_id,
                "stored": [list(r) for r in self.stored]}

    def wire(self) -> WireMessage:
        """What the manager publishes (QoS 1, not retained)."""
        return WireMessage(ack_topic(self.device_id), canonical_json(self.to_dict()), False)

    @classmethod
    def parse(cls, topic: str, payload: bytes, *, device_id: str) -> FleetAck:
        """Parse an acknowledgement that ``device_id`` received on ``topic``.

        Raises:
            RejectedMessageError: ``bad_topic`` (not this device's ack topic), ``oversize``,
                ``unsupported_version`` (another ``_type`` version) or ``malformed``.
        """
        if topic != ack_topic(device_id):
            raise RejectedMessageError(f"topic {topic!r:.120} is not {ack_topic(device_id)}",
                                       reason="bad_topic")
        if len(payload) > MAX_ACK_BYTES:
            raise RejectedMessageError(f"an ack of {len(payload)} bytes is over "
                                       f"{MAX_ACK_BYTES}", reason="oversize")
        try:
            d = parse_json(payload, what="fleet ack", max_depth=4)
            if not isinstance(d, Mapping) or set(d) != _FIELDS:
                raise ConfigError(f"an ack has exactly the fields {sorted(_FIELDS)}, got "
                                  f"{sorted(d) if isinstance(d, Mapping) else type(d).__name__}")
            if d["_type"] != ACK_TYPE:
                reason = "unsupported_version" if isinstance(d["_type"], str) and \
                    d["_type"].startswith(ACK_TYPE[:-1]) else "malformed"
                raise RejectedMessageError(f"ack _type {d['_type']!r:.80} is not {ACK_TYPE}",
                                           reason=reason)
            if d["device_id"] != device_id:
                raise ConfigError(f"the ack names device {d['device_id']!r:.80}, not "
                                  f"{device_id!r}")
            stored = d["stored"]
            if not isinstance(stored, list) or len(stored) > MAX_ACK_RANGES:
                raise ConfigError(f"stored must be a list of at most {MAX_ACK_RANGES} ranges")
            ranges = tuple(tuple(r) if isinstance(r, list) else r for r in stored)
            return cls(device_id, ranges)  # the types are checked in __post_init__
        except ConfigError as e:
            raise RejectedMessageError(f"fleet ack: {e}", reason="malformed") from e
