"""Commands to a device (``edgeward/v1/devices/D/cmd``), signed by an operator key.

A command carries what the device needs to refuse a replay or a rollback attack: a random
``nonce`` it must never have seen, an ``expires_at`` after which it is void, and a ``version``
that must be higher than the last one the device applied. The device checks these in
:class:`edgeward.device_agents._commands.CommandGate`; this module only encodes, decodes and
verifies the signature (a key with the ``operator`` role in the device's trust store).
"""

from __future__ import annotations

import math
import re
import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

from edgeward.errors import ConfigError, MalformedEnvelopeError, RejectedMessageError
from edgeward.errors import SignatureError as _SignatureError
from edgeward.fleet.protocol._codec import (
    MAX_PAYLOAD_BYTES,
    MAX_SIGNATURES,
    PAYLOAD_TYPES,
    WireMessage,
)
from edgeward.fleet.protocol._messages import _exact_fields, type_uri
from edgeward.fleet.protocol._topics import DeviceTopic, Kind, check_device_id
from edgeward.fleet.protocol._values import MAX_EVENT_DATA_BYTES, MAX_SEQ, check_int, check_time
from edgeward.provenance import (
    Envelope,
    PrivateKey,
    Role,
    TrustStore,
    canonical_json,
    sign_payload,
    verify_envelope,
)
from edgeward.safeio import parse_json

__all__ = ["COMMAND_ACTIONS", "MAX_COMMAND_LIFETIME_S", "Command", "decode_command",
           "encode_command", "new_command"]

COMMAND_ACTIONS = ("deploy", "rollback", "set-policy", "set-config")
MAX_COMMAND_LIFETIME_S = 7 * 86400  # seconds: a device keeps nonces this long at most
_NONCE = re.compile(r"[0-9a-f]{32,64}")
_COMMAND_ID = re.compile(r"[0-9a-f]{8,64}")
_FIELDS = ("_type", "device_id", "command_id", "action", "version", "nonce", "issued_at",
           "expires_at", "params")


@dataclass(frozen=True, kw_only=True)
class Command:
    """One signed command.

    Attributes:
        device_id: the device it is for (must match the topic).
        command_id: an id for progress events and queries.
        action: ``deploy``, ``rollback``, ``set-policy`` or ``set-config``.
        version: the operator's command counter for this device; the device applies only a
            version above the last it applied.
        nonce: 16-32 random bytes (hex) the device must not have seen.
        issued_at / expires_at: Unix seconds; the device refuses it after ``expires_at``.
        params: the action's parameters (``deploy``: ``artifact_digest``, ``name``,
            ``size``); a JSON object of at most 8 KiB.
    """

    kind: ClassVar[Kind] = Kind.CMD
    device_id: str
    command_id: str
    action: str
    version: int
    nonce: str
    issued_at: float
    expires_at: float
    params: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        check_device_id(self.device_id)
        if not isinstance(self.command_id, str) or not _COMMAND_ID.fullmatch(self.command_id):
            raise ConfigError(f"command_id must be 8-64 hex digits, got {self.command_id!r:.80}")
        if self.action not in COMMAND_ACTIONS:
            raise ConfigError(f"action must be one of {', '.join(COMMAND_ACTIONS)}, got "
                              f"{self.action!r:.40}")
        check_int(self.version, "version", 1, MAX_SEQ)
        if not isinstance(self.nonce, str) or not _NONCE.fullmatch(self.nonce):
            raise ConfigError(f"nonce must be 32-64 hex digits, got {self.nonce!r:.80}")
        check_time(self.issued_at)
        check_time(self.expires_at)
        if not 0 < self.expires_at - self.issued_at <= MAX_COMMAND_LIFETIME_S:
            raise ConfigError(f"expires_at must be after issued_at by at most "
                              f"{MAX_COMMAND_LIFETIME_S} s")
        if not isinstance(self.params, Mapping):
            raise ConfigError(f"params must be a JSON object, got {self.params!r:.60}")
        if len(canonical_json(dict(self.params))) > MAX_EVENT_DATA_BYTES:
            raise ConfigError(f"params exceed {MAX_EVENT_DATA_BYTES} bytes of canonical JSON")

    @property
    def topic(self) -> str:
        """``edgeward/v1/devices/D/cmd``."""
        return str(DeviceTopic(self.device_id, Kind.CMD))

    def to_dict(self) -> dict[str, Any]:
        """The signed body."""
        return {"_type": type_uri(Kind.CMD), "device_id": self.device_id,
                "command_id": self.command_id, "action": self.action, "version": self.version,
                "nonce": self.nonce, "issued_at": self.issued_at, "expires_at": self.expires_at,
                "params": dict(self.params)}


def new_command(device_id: str, action: str, version: int, *, params: Mapping[str, Any] | None
                = None, lifetime_s: float = 3600.0, now: float | None = None) -> Command:
    """A command with a fresh id and nonce, valid from now for ``lifetime_s`` seconds."""
    issued = time.time() if now is None else now
    return Command(device_id=device_id, command_id=secrets.token_hex(8), action=action,
                   version=version, nonce=secrets.token_hex(16), issued_at=issued,
                   expires_at=issued + lifetime_s, params=dict(params or {}))


def encode_command(command: Command, operator_key: PrivateKey) -> WireMessage:
    """Sign ``command`` with an operator key into what the fleet publishes (QoS 1, not
    retained: a retained command would be delivered again to every new subscription).

    Raises:
        ChannelError: larger than the command size limit.
    """
    from edgeward.errors import ChannelError

    env = sign_payload(canonical_json(command.to_dict()), PAYLOAD_TYPES[Kind.CMD], operator_key)
    payload = canonical_json(env.to_dict())
    if len(payload) > MAX_PAYLOAD_BYTES[Kind.CMD]:
        raise ChannelError(f"command of {len(payload)} bytes exceeds the limit of "
                           f"{MAX_PAYLOAD_BYTES[Kind.CMD]}")
    return WireMessage(command.topic, payload, retain=False)


def decode_command(topic: str, payload: bytes, trust_store: TrustStore) -> Command:
    """Check a received command's topic, size, envelope and operator signature, then parse.

    Everything is parsed as input from outside (:func:`edgeward.safeio.parse_json`: bounded
    depth, no lone surrogates, no NaN), so any payload ends in a :class:`RejectedMessageError`
    with its reason, never in another exception.

    Raises:
        RejectedMessageError: with the reason: ``bad_topic``, ``oversize``, ``malformed``,
            ``unsigned``, ``forged`` (no operator key of the trust store signed it: unknown,
            revoked, not an operator, or a bad signature; the message says which),
            ``topic_mismatch``.
    """
    t = DeviceTopic.parse(topic)
    if t.kind is not Kind.CMD:
        raise RejectedMessageError(f"{topic}: not a command topic", reason="bad_topic")
    if len(payload) > MAX_PAYLOAD_BYTES[Kind.CMD]:
        raise RejectedMessageError(f"{topic}: {len(payload)} bytes exceeds the command limit",
                                   reason="oversize")
    try:
        env = Envelope.from_dict(parse_json(payload, what="command envelope",
                                            error=_malformed))
    except (MalformedEnvelopeError, ValueError, ConfigError) as e:
        raise RejectedMessageError(f"{topic}: not a DSSE envelope ({e})",
                                   reason="malformed") from e
    if not env.signatures:
        raise RejectedMessageError(f"{topic}: the command is not signed", reason="unsigned")
    if len(env.signatures) > MAX_SIGNATURES:
        raise RejectedMessageError(f"{topic}: {len(env.signatures)} signatures; at most "
                                   f"{MAX_SIGNATURES}", reason="malformed")
    try:
        verified = verify_envelope(env, trust_store, role=Role.OPERATOR,
                                   payload_type=PAYLOAD_TYPES[Kind.CMD])
    except _SignatureError as e:
        raise RejectedMessageError(f"{topic}: {e}", reason="forged") from e
    except (ValueError, ConfigError) as e:
        raise RejectedMessageError(f"{topic}: {e}", reason="malformed") from e
    body = parse_json(verified.payload, what="command body", error=_malformed)
    try:
        f = _exact_fields(body, _FIELDS, "command")
        if f.pop("_type") != type_uri(Kind.CMD):
            raise ConfigError("_type is not a v1 command")
        for k in ("issued_at", "expires_at"):
            if isinstance(f[k], float) and not math.isfinite(f[k]):
                raise ConfigError(f"{k} is not finite")
        command = Command(**f)
    except (ConfigError, TypeError, ValueError) as e:
        raise RejectedMessageError(f"{topic}: {e}", reason="malformed") from e
    if command.device_id != t.device_id:
        raise RejectedMessageError(f"{topic}: the command is for {command.device_id!r}",
                                   reason="topic_mismatch")
    return command


def _malformed(message: str) -> RejectedMessageError:
    return RejectedMessageError(message, reason="malformed")
