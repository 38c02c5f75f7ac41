"""What a device has moved on from: one monotonic record that guards every update path.

``STATE/slots/superseded.json`` lists the artifact digests this device ran and then replaced
(``superseded``), and the one it runs now (``current``). Both update paths consult and update
it: the OTA command gate refuses a ``deploy`` of a superseded digest, and the slot layer
(:class:`~edgeward.device_agents._slots.SlotStore`, which a ``deploy`` and ``edgeward bundle
import`` both go through) refuses to install one. A digest leaves the list only through an
explicit, signed operator act:

- over MQTT, the signed ``rollback`` command (:meth:`SlotStore.revert`);
- on an air-gapped device, a :class:`DowngradeAuthorisation`: a DSSE envelope an operator key
  of the device's trust store signs offline (``edgeward bundle authorise-downgrade``), naming
  the artifact digest, valid for a limited time and usable once (its nonce is recorded here).

Every write is atomic (temp file, fsync, rename, fsync the directory). A damaged record is an
error, never a reset: deleting it would let old artifacts back in.
"""

from __future__ import annotations

import os
import re
import secrets
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgeward.device_agents._files import atomic_write
from edgeward.errors import CommandRefusedError, ConfigError, MalformedEnvelopeError
from edgeward.provenance import (
    Envelope,
    PrivateKey,
    Role,
    TrustStore,
    canonical_json,
    sign_payload,
    verify_envelope,
)
from edgeward.safeio import MAX_CONFIG_BYTES, MAX_SIGNATURE_BYTES, parse_json, read_capped

__all__ = ["DOWNGRADE_PAYLOAD_TYPE", "MAX_AUTHORISATION_LIFETIME_S", "DowngradeAuthorisation",
           "SupersededRecord", "authorise_downgrade", "read_downgrade_authorisation"]

DOWNGRADE_PAYLOAD_TYPE = "application/vnd.edgeward.downgrade+json"
MAX_AUTHORISATION_LIFETIME_S = 30 * 86400  # seconds an offline downgrade authorisation may live
_DOWNGRADE_TYPE = "https://edgeward.dev/downgrade/v1"
_HISTORY = 1024  # digests remembered (66 KB); the oldest fall off only past this many updates
_FORMAT = 1
_HEX64 = re.compile(r"[0-9a-f]{64}")
_NONCE = re.compile(r"[0-9a-f]{32,64}")
_LOCK = threading.Lock()  # read-modify-write of the record within this process


@dataclass(frozen=True)
class DowngradeAuthorisation:
    """An operator's signed permission to install one superseded artifact again.

    Attributes:
        artifact_digest: the sha256 it allows back (a slot digest: the file's sha256, or a
            directory's manifest digest).
        nonce: makes it single-use.
        issued_at: Unix seconds.
        expires_at: Unix seconds; at most :data:`MAX_AUTHORISATION_LIFETIME_S` after
            ``issued_at``.
        reason: why (for the audit trail).
        key_id: the operator key that signed it (set when verified).
    """

    artifact_digest: str
    nonce: str
    issued_at: float
    expires_at: float
    reason: str = ""
    key_id: str = ""

    def __post_init__(self) -> None:
        if not isinstance(self.artifact_digest, str) or not _HEX64.fullmatch(
                self.artifact_digest):
            raise ConfigError("downgrade authorisation: artifact_digest must be 64 lowercase "
                              f"hex digits, got {self.artifact_digest!r:.80}")
        if not isinstance(self.nonce, str) or not _NONCE.fullmatch(self.nonce):
            raise ConfigError(f"downgrade authorisation: bad nonce {self.nonce!r:.80}")
        if not 0 < self.expires_at - self.issued_at <= MAX_AUTHORISATION_LIFETIME_S:
            raise ConfigError("downgrade authorisation: expires_at must be after issued_at and "
                              f"at most {MAX_AUTHORISATION_LIFETIME_S // 86400} days later")
        if not isinstance(self.reason, str) or len(self.reason) > 1000:
            raise ConfigError("downgrade authorisation: reason must be text of at most 1000 "
                              "characters")

    def to_dict(self) -> dict[str, Any]:
        """The signed payload (without ``key_id``, which comes from the signature)."""
        return {"_type": _DOWNGRADE_TYPE, "artifact_digest": self.artifact_digest,
                "nonce": self.nonce, "issued_at": self.issued_at,
                "expires_at": self.expires_at, "reason": self.reason}

    @classmethod
    def from_dict(cls, d: object, *, key_id: str = "") -> DowngradeAuthorisation:
        """Parse a payload.

        Raises:
            MalformedEnvelopeError: not a downgrade authorisation.
        """
        if not isinstance(d, dict) or d.get("_type") != _DOWNGRADE_TYPE:
            raise MalformedEnvelopeError(f"not a downgrade authorisation (_type must be "
                                         f"{_DOWNGRADE_TYPE!r})")
        try:
            issued, expires = d["issued_at"], d["expires_at"]
            if not all(isinstance(v, int | float) and not isinstance(v, bool)
                       for v in (issued, expires)):
                raise TypeError("issued_at and expires_at must be numbers")
            return cls(artifact_digest=d["artifact_digest"], nonce=d["nonce"],
                       issued_at=float(issued), expires_at=float(expires),
                       reason=d.get("reason", ""), key_id=key_id)
        except (KeyError, TypeError, ConfigError) as e:
            raise MalformedEnvelopeError(f"downgrade authorisation: {e}") from e


def authorise_downgrade(artifact_digest: str, key: PrivateKey, *, lifetime_s: float = 86400.0,
                        reason: str = "", now: float | None = None) -> Envelope:
    """Sign a single-use permission to install ``artifact_digest`` again (offline).

    Args:
        artifact_digest: the superseded artifact's sha256.
        key: an operator key (the device's trust store must hold it with the operator role).
        lifetime_s: how long it is valid (at most 30 days).
        reason: recorded with it.
        now: Unix seconds (default: the clock).

    Raises:
        ConfigError: a malformed digest, lifetime or reason.
    """
    issued = time.time() if now is None else now
    auth = DowngradeAuthorisation(artifact_digest=artifact_digest,
                                  nonce=secrets.token_hex(16), issued_at=issued,
                                  expires_at=issued + lifetime_s, reason=reason)
    return sign_payload(canonical_json(auth.to_dict()), DOWNGRADE_PAYLOAD_TYPE, key)


def read_downgrade_authorisation(path: Path, trust_store: TrustStore, *,
                                 now: float | None = None) -> DowngradeAuthorisation:
    """Read and verify a downgrade authorisation file against the device's trust store.

    Raises:
        ConfigError: unreadable, not a regular file, too large, expired or not yet valid;
        SignatureError: not signed by an unrevoked operator key of ``trust_store``
            (``UnknownKeyError``, ``WrongRoleError``, ``MalformedEnvelopeError`` ...).
    """
    raw = read_capped(path, MAX_SIGNATURE_BYTES, what="downgrade authorisation")
    verified = verify_envelope(raw, trust_store, role=Role.OPERATOR,
                               payload_type=DOWNGRADE_PAYLOAD_TYPE)
    auth = DowngradeAuthorisation.from_dict(
        parse_json(verified.payload, what="downgrade authorisation",
                   error=MalformedEnvelopeError), key_id=verified.key_id)
    t = time.time() if now is None else now
    if t > auth.expires_at:
        raise ConfigError(f"{path}: the downgrade authorisation expired "
                          f"{t - auth.expires_at:.0f} s ago; have an operator sign a new one")
    if auth.issued_at > t + 300:
        raise ConfigError(f"{path}: the downgrade authorisation is issued "
                          f"{auth.issued_at - t:.0f} s in the future; check the clocks")
    return auth


class SupersededRecord:
    """``STATE/slots/superseded.json`` (see the module docstring).

    Args:
        state_dir: the agent's state directory.
        clock: Unix seconds (expiry of used authorisation nonces).
    """

    def __init__(self, state_dir: Path, *, clock: Any = time.time) -> None:
        self.path = Path(state_dir) / "slots" / "superseded.json"
        self._clock = clock

    def exists(self) -> bool:
        """The record was ever written."""
        return os.path.lexists(self.path)

    @property
    def current(self) -> str | None:
        """The digest that runs now, as far as the record knows."""
        current = self._read()["current"]
        return str(current) if current is not None else None

    @property
    def superseded(self) -> tuple[str, ...]:
        """The digests moved on from, oldest first."""
        return tuple(self._read()["superseded"])

    def is_superseded(self, digest: str) -> bool:
        """``digest`` was replaced by a later artifact on this device."""
        return digest in self._read()["superseded"]

    def check(self, digest: str, *, what: str,
              authorisation: DowngradeAuthorisation | None = None) -> bool:
        """Refuse ``digest`` if it is superseded, unless ``authorisation`` allows it back;
        a used authorisation is recorded (single use) before this returns.

        Returns:
            True when it was a downgrade allowed by ``authorisation``.

        Raises:
            CommandRefusedError: ``reason="downgrade"``.
            ConfigError: the record cannot be read or written.
        """
        with _LOCK:
            data = self._read()
            if digest not in data["superseded"]:
                return False
            if authorisation is None:
                raise CommandRefusedError(
                    f"{what}: {digest[:16]}… is an artifact this device moved on from (a later "
                    "update superseded it), so installing it is a downgrade; to go back "
                    "deliberately, send a signed 'rollback' command, or on an air-gapped device "
                    "have an operator sign an authorisation (`edgeward bundle "
                    "authorise-downgrade`) and import with --allow-downgrade FILE",
                    reason="downgrade")
            if authorisation.artifact_digest != digest:
                raise CommandRefusedError(
                    f"{what}: the downgrade authorisation names "
                    f"{authorisation.artifact_digest[:16]}…, not {digest[:16]}…",
                    reason="downgrade")
            now = self._clock()
            used = {n: e for n, e in data["authorisations"].items() if e >= now}
            if authorisation.nonce in used:
                raise CommandRefusedError(
                    f"{what}: this downgrade authorisation was used before (each is good for "
                    "one downgrade); have an operator sign a new one", reason="replayed")
            data["authorisations"] = {**used, authorisation.nonce: authorisation.expires_at}
            self._write(data, consequence="; the downgrade was not started")
            return True

    def moved_to(self, digest: str) -> None:
        """Record that ``digest`` now runs: the digest it replaced becomes superseded, and
        ``digest`` itself is no longer (it came back by a signed act). Idempotent."""
        with _LOCK:
            data = self._read()
            current = data["current"]
            if current == digest and digest not in data["superseded"]:
                return
            superseded = [d for d in data["superseded"] if d != digest]
            if current and current != digest:
                superseded = [*superseded, current][-_HISTORY:]
            data.update(current=digest, superseded=superseded)
            self._write(data)

    def absorb(self, superseded: list[str], current: str | None) -> None:
        """Merge an older record (``commands.json``'s ``superseded`` list and ``current``)."""
        with _LOCK:
            data = self._read()
            keep = [d for d in superseded if isinstance(d, str) and _HEX64.fullmatch(d)
                    and d != data["current"]]
            merged = [d for d in keep if d not in data["superseded"]] + data["superseded"]
            data["superseded"] = merged[-_HISTORY:]
            if data["current"] is None and isinstance(current, str) \
                    and _HEX64.fullmatch(current):
                data["current"] = current
                data["superseded"] = [d for d in data["superseded"] if d != current]
            self._write(data)

    # -- files -----------------------------------------------------------------------------
    def _read(self) -> dict[str, Any]:
        empty: dict[str, Any] = {"format": _FORMAT, "current": None, "superseded": [],
                                 "authorisations": {}}
        if not self.exists():
            return empty
        problem = ("; it guards against downgrades, so restore it (from a backup) rather than "
                   "delete it")
        try:
            data = parse_json(read_capped(self.path, MAX_CONFIG_BYTES, what="superseded record"),
                              what=f"superseded record {self.path}")
        except ConfigError as e:
            raise ConfigError(f"{e}{problem}") from e
        ok = (isinstance(data, dict) and data.get("format") == _FORMAT
              and (data.get("current") is None or isinstance(data.get("current"), str))
              and isinstance(data.get("superseded"), list)
              and all(isinstance(d, str) for d in data["superseded"])
              and isinstance(data.get("authorisations", {}), dict))
        if not ok:
            raise ConfigError(f"{self.path}: not a superseded record of format {_FORMAT}{problem}")
        return {**empty, **data}

    def _write(self, data: dict[str, Any], *, consequence: str = "") -> None:
        atomic_write(self.path, canonical_json(data), consequence=consequence)
