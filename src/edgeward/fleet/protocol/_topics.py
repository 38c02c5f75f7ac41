"""The topic tree: ``edgeward/v1/devices/DEVICE/KIND`` and the fleet's subscription filters."""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass

from edgeward.errors import ConfigError, RejectedMessageError

__all__ = [
    "PROTOCOL_VERSION",
    "TOPIC_ROOT",
    "DeviceTopic",
    "Kind",
    "check_device_id",
    "fleet_filters",
]

PROTOCOL_VERSION = "v1"
TOPIC_ROOT = f"edgeward/{PROTOCOL_VERSION}"
# A device id is one topic level: no '/', no MQTT wildcards, no '$', printable ASCII, bounded.
_DEVICE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
_VERSION = re.compile(r"v[0-9]{1,4}")
MAX_TOPIC_BYTES = 256


class Kind(enum.StrEnum):
    """The last level of a device topic: what the message is."""

    STATE = "state"  # retained; online birth / offline / lost (the Last Will)
    HEALTH = "health"  # periodic health report, signed, with a monotonically increasing seq
    PROVENANCE = "provenance"  # retained; what the device runs, and its attestation
    EVENTS = "events"  # update progress, safety events, errors
    CMD = "cmd"  # fleet -> device commands (signed by an operator key)

    @property
    def retained(self) -> bool:
        """Whether messages of this kind are published with the retain flag."""
        return self in (Kind.STATE, Kind.PROVENANCE)

    @property
    def sequenced(self) -> bool:
        """Whether messages of this kind carry the device's ``seq`` (state carries a session)."""
        return self in (Kind.HEALTH, Kind.PROVENANCE, Kind.EVENTS)


def check_device_id(device_id: object) -> str:
    """Return ``device_id`` if it is a valid device id, else raise.

    A device id is 1 to 64 characters of ``A-Z a-z 0-9 . _ -``, starting with a letter or digit,
    so it is always exactly one MQTT topic level and never a wildcard.

    Raises:
        ConfigError: not a valid device id (quotes it).
    """
    if not isinstance(device_id, str) or not _DEVICE_ID.fullmatch(device_id):
        raise ConfigError(f"bad device id {device_id!r}: 1-64 characters of A-Z a-z 0-9 . _ -, "
                          "starting with a letter or digit")
    return device_id


@dataclass(frozen=True)
class DeviceTopic:
    """One device topic, ``edgeward/v1/devices/DEVICE/KIND``.

    Attributes:
        device_id: the device (validated).
        kind: which of the device's topics.
    """

    device_id: str
    kind: Kind

    def __post_init__(self) -> None:
        check_device_id(self.device_id)
        if not isinstance(self.kind, Kind):
            raise ConfigError(f"bad topic kind {self.kind!r}: one of "
                              f"{', '.join(k.value for k in Kind)}")

    def __str__(self) -> str:
        return f"{TOPIC_ROOT}/devices/{self.device_id}/{self.kind.value}"

    @classmethod
    def parse(cls, topic: str) -> DeviceTopic:
        """Parse a topic a message arrived on.

        Raises:
            RejectedMessageError: ``unsupported_version`` for ``edgeward/vN/...`` with another
                N; ``bad_topic`` for anything else that is not a device topic.
        """
        if not isinstance(topic, str) or len(topic.encode("utf-8", "replace")) > MAX_TOPIC_BYTES:
            raise RejectedMessageError(f"topic {topic!r:.80} is not a string of at most "
                                       f"{MAX_TOPIC_BYTES} bytes", reason="bad_topic")
        parts = topic.split("/")
        if len(parts) == 5 and parts[0] == "edgeward" and parts[1] != PROTOCOL_VERSION \
                and _VERSION.fullmatch(parts[1]) and parts[2] == "devices":
            raise RejectedMessageError(f"topic {topic!r}: protocol version {parts[1]!r} is not "
                                       f"{PROTOCOL_VERSION!r}; upgrade edgeward",
                                       reason="unsupported_version")
        if len(parts) != 5 or parts[0] != "edgeward" or parts[1] != PROTOCOL_VERSION \
                or parts[2] != "devices":
            raise RejectedMessageError(f"topic {topic!r:.120} is not "
                                       f"{TOPIC_ROOT}/devices/DEVICE/KIND", reason="bad_topic")
        try:
            return cls(parts[3], Kind(parts[4]))
        except (ConfigError, ValueError) as e:
            raise RejectedMessageError(f"topic {topic!r:.120}: {e}", reason="bad_topic") from e


def fleet_filters(*, share_group: str | None) -> tuple[str, ...]:
    """The subscription filters of a fleet manager: every version's device telemetry topics.

    Every protocol version is subscribed to (``edgeward/+/...``) so that messages of a newer
    version are seen and counted as ``unsupported_version`` rather than silently missed.

    Args:
        share_group: an MQTT 5 shared-subscription group (``$share/GROUP/...``) so that several
            managers split the load; ``None`` for a plain subscription (MQTT 3.1.1).

    Raises:
        ConfigError: a group name that is not one topic level.
    """
    kinds = (Kind.STATE, Kind.HEALTH, Kind.PROVENANCE, Kind.EVENTS)
    filters = tuple(f"edgeward/+/devices/+/{k.value}" for k in kinds)
    if share_group is None:
        return filters
    if not share_group or any(c in share_group for c in "/+#$"):
        raise ConfigError(f"bad shared-subscription group {share_group!r}: one topic level "
                          "without / + # $")
    return tuple(f"$share/{share_group}/{f}" for f in filters)
