"""Trust-store records: roles, trusted keys, revocations; the signed-statement payloads."""

from __future__ import annotations

import enum
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from edgeward.errors import ConfigError, MalformedEnvelopeError
from edgeward.provenance._dsse import Envelope
from edgeward.provenance._keys import PublicKey
from edgeward.provenance._statement import utc_now

__all__ = ["Revocation", "Role", "TrustedKey", "parse_payload", "roles_of"]


class Role(enum.StrEnum):
    """What a trusted key may sign."""

    PUBLISHER = "publisher"  # artifacts (provenance statements)
    OPERATOR = "operator"  # commands to devices; may also revoke keys
    DEVICE = "device"  # telemetry and log checkpoints


def roles_of(values: Iterable[str], source: str) -> tuple[Role, ...]:
    try:
        roles = tuple(sorted({Role(v) for v in values}))
    except ValueError as e:
        raise ConfigError(f"{source}: unknown role in {list(values)!r}; roles are "
                          f"{', '.join(r.value for r in Role)}") from e
    if not roles:
        raise ConfigError(f"{source}: a trusted key needs at least one role")
    return roles


@dataclass(frozen=True, kw_only=True)
class Revocation:
    """A signed statement that a key must no longer be trusted."""

    key_id: str
    reason: str
    revoked_at: str
    signed_by: str

    def to_dict(self) -> dict[str, str]:
        """As shown by ``keys list --json``."""
        return {"key_id": self.key_id, "reason": self.reason, "revoked_at": self.revoked_at,
                "signed_by": self.signed_by}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Revocation:
        """Inverse of :meth:`to_dict`.

        Raises:
            ConfigError: a field is missing.
        """
        try:
            return cls(key_id=str(d["key_id"]), reason=str(d.get("reason", "")),
                       revoked_at=str(d["revoked_at"]), signed_by=str(d["signed_by"]))
        except KeyError as e:
            raise ConfigError(f"revocation record lacks {e.args[0]!r}") from e


@dataclass(frozen=True, kw_only=True)
class TrustedKey:
    """A public key in the trust store.

    Attributes:
        key: the public key.
        roles: what it may sign.
        name: a label for people.
        added_at: when it was added (RFC 3339 UTC).
        rotated_from: the key id of the key that introduced it by rotation, if any.
        revocation: set when the key is revoked.
    """

    key: PublicKey
    roles: tuple[Role, ...]
    name: str = ""
    added_at: str = field(default_factory=utc_now)
    rotated_from: str | None = None
    revocation: Revocation | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "roles", roles_of(self.roles, f"key {self.key_id[:16]}"))

    @property
    def key_id(self) -> str:
        """sha256 hex of the DER public key."""
        return self.key.key_id

    def to_dict(self) -> dict[str, Any]:
        """As shown by ``keys list --json``."""
        return {"key_id": self.key_id, "key_type": self.key.key_type.value,
                "roles": [r.value for r in self.roles], "name": self.name,
                "added_at": self.added_at, "rotated_from": self.rotated_from,
                "revoked": self.revocation is not None,
                "revocation": self.revocation.to_dict() if self.revocation else None}


def parse_payload(envelope: Envelope, payload_type: str, type_uri: str,
                  what: str) -> dict[str, Any]:
    """The JSON payload of a trust-store statement, checked for its type.

    Raises:
        MalformedEnvelopeError: another payload type, not JSON, or another ``_type``.
    """
    if envelope.payload_type != payload_type:
        raise MalformedEnvelopeError(f"{what}: payloadType must be {payload_type}, got "
                                     f"{envelope.payload_type!r}")
    try:
        obj = json.loads(envelope.payload)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise MalformedEnvelopeError(f"{what}: payload is not JSON ({e})") from e
    if not isinstance(obj, dict) or obj.get("_type") != type_uri:
        raise MalformedEnvelopeError(f"{what}: payload _type must be {type_uri}")
    return obj
