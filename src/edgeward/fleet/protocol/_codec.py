"""Signing messages onto the wire, and opening, checking and parsing what arrives.

On the wire every device message is a DSSE envelope in canonical JSON (sorted keys, no
whitespace), signed by the device key over the canonical JSON of the message body. A receiver
checks, cheapest first: the topic, the size, the envelope's shape, the payload type of the topic's
kind, then (with the device's key) the signature, then the body's version and schema, then that
the body names the topic's device. Each failure is a :class:`~edgeward.errors.RejectedMessageError`
whose ``reason`` is one :class:`Rejection`; nothing a sender does raises anything else.
"""

from __future__ import annotations

import enum
import json
from collections.abc import Mapping
from dataclasses import dataclass

from edgeward.errors import (
    BadSignatureError,
    ChannelError,
    MalformedEnvelopeError,
    RejectedMessageError,
    RevokedKeyError,
    SignatureError,
    UnsignedArtifactError,
)
from edgeward.fleet.protocol._messages import Message, message_from_dict
from edgeward.fleet.protocol._topics import DeviceTopic, Kind
from edgeward.provenance import (
    Envelope,
    PrivateKey,
    Role,
    TrustStore,
    canonical_json,
    sign_payload,
    verify_envelope,
)

__all__ = [
    "MAX_PAYLOAD_BYTES",
    "MAX_SIGNATURES",
    "PAYLOAD_TYPES",
    "Opened",
    "Rejection",
    "WireMessage",
    "decode",
    "encode",
    "open_message",
    "verify_opened",
]

PAYLOAD_TYPES: dict[Kind, str] = {
    Kind.STATE: "application/vnd.edgeward.state+json",
    Kind.HEALTH: "application/vnd.edgeward.health+json",
    Kind.PROVENANCE: "application/vnd.edgeward.provenance+json",
    Kind.EVENTS: "application/vnd.edgeward.event+json",
    Kind.CMD: "application/vnd.edgeward.command+json",
}
# Largest MQTT payload accepted per kind (bytes of the envelope JSON). A health report is about
# 1 KiB on the wire; a provenance report carries the artifact's statement (one subject per file).
MAX_PAYLOAD_BYTES: dict[Kind, int] = {
    Kind.STATE: 2 * 1024,
    Kind.HEALTH: 8 * 1024,
    Kind.EVENTS: 16 * 1024,
    Kind.PROVENANCE: 320 * 1024,
    Kind.CMD: 64 * 1024,
}
MAX_SIGNATURES = 4  # per envelope: bounds the verification work one message can cost


class Rejection(enum.StrEnum):
    """Why a received message was dropped; the fleet manager counts each reason."""

    BAD_TOPIC = "bad_topic"  # not edgeward/VERSION/devices/DEVICE/KIND, or a bad device id
    UNSUPPORTED_VERSION = "unsupported_version"  # another protocol or message version
    OVERSIZE = "oversize"  # larger than MAX_PAYLOAD_BYTES of its kind
    MALFORMED = "malformed"  # not JSON, not an envelope, wrong payload type, bad body
    UNSIGNED = "unsigned"  # no signature at all
    UNKNOWN_DEVICE = "unknown_device"  # the topic's device is not enrolled
    REVOKED_KEY = "revoked_key"  # signed by the device's key, which has been revoked
    FORGED = "forged"  # the signature does not verify under the device's registered key
    TOPIC_MISMATCH = "topic_mismatch"  # the signed body names another device than the topic
    REPLAYED = "replayed"  # its (device, seq) is stored already: a replay, or a re-send
    STALE_STATE = "stale_state"  # a state of an older session, or older in this session
    DUPLICATE = "duplicate"  # a retained or re-delivered (DUP) copy of what is stored: benign


def _reject(reason: Rejection, message: str) -> RejectedMessageError:
    return RejectedMessageError(message, reason=reason.value)


@dataclass(frozen=True)
class WireMessage:
    """What to publish: topic, payload bytes, retain flag, QoS."""

    topic: str
    payload: bytes
    retain: bool
    qos: int = 1


def encode(message: Message, key: PrivateKey) -> WireMessage:
    """Sign ``message`` with the device key into its wire form.

    Args:
        message: the message.
        key: the device's private key.

    Returns:
        Its topic, the envelope's canonical JSON bytes and the retain flag of its kind.

    Raises:
        ChannelError: the signed message is larger than its kind's limit.
    """
    kind = message.kind
    env = sign_payload(message.canonical_bytes(), PAYLOAD_TYPES[kind], key)
    payload = canonical_json(env.to_dict())
    if len(payload) > MAX_PAYLOAD_BYTES[kind]:
        raise ChannelError(f"{kind.value} message of {len(payload)} bytes exceeds the limit of "
                           f"{MAX_PAYLOAD_BYTES[kind]} bytes; receivers would drop it")
    return WireMessage(str(DeviceTopic(message.device_id, kind)), payload, kind.retained)


@dataclass(frozen=True)
class Opened:
    """A received message whose topic, size and envelope shape are fine; not yet verified."""

    topic: DeviceTopic
    envelope: Envelope


def _loads(data: bytes, what: str) -> object:
    try:
        return json.loads(data)
    except (ValueError, RecursionError, UnicodeDecodeError) as e:
        # ValueError covers JSONDecodeError and integers longer than Python converts.
        raise _reject(Rejection.MALFORMED, f"{what} is not JSON ({type(e).__name__}: "
                                           f"{str(e)[:80]})") from None


def open_message(topic: str, payload: bytes) -> Opened:
    """Check a received message's topic, size and envelope (no signature check yet).

    Raises:
        RejectedMessageError: reason ``bad_topic``, ``unsupported_version``, ``oversize``,
            ``malformed`` or ``unsigned``.
    """
    t = DeviceTopic.parse(topic)
    if t.kind is Kind.CMD:
        raise _reject(Rejection.BAD_TOPIC, f"{topic}: commands go to devices, not from them")
    if len(payload) > MAX_PAYLOAD_BYTES[t.kind]:
        raise _reject(Rejection.OVERSIZE, f"{topic}: {len(payload)} bytes, the limit for "
                                          f"{t.kind.value} is {MAX_PAYLOAD_BYTES[t.kind]}")
    obj = _loads(payload, f"{topic}: the payload")
    if isinstance(obj, Mapping) and not obj.get("signatures") and "payload" in obj:
        raise _reject(Rejection.UNSIGNED, f"{topic}: the envelope holds no signature")
    try:
        env = Envelope.from_dict(obj)
    except MalformedEnvelopeError as e:
        raise _reject(Rejection.MALFORMED, f"{topic}: {e}") from None
    if not env.signatures:
        raise _reject(Rejection.UNSIGNED, f"{topic}: the envelope holds no signature")
    if len(env.signatures) > MAX_SIGNATURES:
        raise _reject(Rejection.MALFORMED, f"{topic}: {len(env.signatures)} signatures, at "
                                           f"most {MAX_SIGNATURES} are read")
    if env.payload_type != PAYLOAD_TYPES[t.kind]:
        raise _reject(Rejection.MALFORMED, f"{topic}: payloadType {env.payload_type!r:.80} is "
                                           f"not {PAYLOAD_TYPES[t.kind]!r}")
    return Opened(t, env)


def verify_opened(opened: Opened, device_keys: TrustStore, *, key_id: str) -> Message:
    """Verify an opened message against the key registered for its topic's device, then parse.

    Args:
        opened: from :func:`open_message`.
        device_keys: a trust store holding the device's key with the ``device`` role.
        key_id: the key id the device registry holds for ``opened.topic.device_id``.

    Returns:
        The parsed message.

    Raises:
        RejectedMessageError: reason ``unsigned``, ``revoked_key``, ``forged``,
            ``unsupported_version``, ``malformed`` or ``topic_mismatch``.
    """
    env, t = opened.envelope, opened.topic
    mine = [s for s in env.signatures if s.keyid == key_id]
    if not mine:
        raise _reject(Rejection.FORGED, f"{t}: not signed by the key registered for "
                                        f"{t.device_id} ({key_id[:16]}…)")
    try:
        verified = verify_envelope(Envelope(env.payload_type, env.payload, tuple(mine)),
                                   device_keys, role=Role.DEVICE)
    except UnsignedArtifactError as e:
        raise _reject(Rejection.UNSIGNED, f"{t}: {e}") from None
    except RevokedKeyError as e:
        raise _reject(Rejection.REVOKED_KEY, f"{t}: {e}") from None
    except (BadSignatureError, SignatureError) as e:
        raise _reject(Rejection.FORGED, f"{t}: {e}") from None
    message = message_from_dict(t.kind, _loads(verified.payload, f"{t}: the signed body"))
    if message.device_id != t.device_id:
        raise _reject(Rejection.TOPIC_MISMATCH, f"{t}: the signed body is from device "
                                                f"{message.device_id!r}")
    return message


def decode(topic: str, payload: bytes, device_keys: TrustStore, *, key_id: str) -> Message:
    """:func:`open_message` then :func:`verify_opened`, for one message.

    Raises:
        RejectedMessageError: any :class:`Rejection` but the replay reasons, which need state.
    """
    return verify_opened(open_message(topic, payload), device_keys, key_id=key_id)
