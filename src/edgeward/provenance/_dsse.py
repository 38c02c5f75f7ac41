"""Canonical JSON and DSSE envelopes (https://github.com/secure-systems-lab/dsse, v1.0).

The signature covers the PAE encoding of the payload type and the payload bytes::

    PAE(type, body) = "DSSEv1" SP LEN(type) SP type SP LEN(body) SP body

with lengths as ASCII decimal byte counts. The payload travels base64-encoded inside the
envelope, so a verifier checks the exact bytes that were signed and never re-serialises JSON.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgeward.errors import (
    BadSignatureError,
    ConfigError,
    MalformedEnvelopeError,
    UnsignedArtifactError,
)
from edgeward.provenance._keys import PrivateKey, PublicKey
from edgeward.safeio import MAX_SIGNATURE_BYTES, parse_json, read_capped

__all__ = [
    "Envelope",
    "EnvelopeSignature",
    "canonical_json",
    "pae",
    "read_envelope",
    "read_signature",
    "sign_envelope",
    "verify_signatures",
]


def canonical_json(obj: Any) -> bytes:
    """Canonical JSON bytes: sorted keys, no whitespace, UTF-8, no NaN/Infinity.

    The same object always gives the same bytes, so statements can be compared and golden-
    tested byte for byte. (Verification never depends on it: it checks the signed bytes.)

    Raises:
        ConfigError: the object holds something JSON cannot represent (NaN, a set, bytes).
    """
    try:
        return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                          allow_nan=False).encode("utf-8")
    except (TypeError, ValueError) as e:
        raise ConfigError(f"cannot write as canonical JSON: {e}") from e


def pae(payload_type: str, payload: bytes) -> bytes:
    """DSSE v1 Pre-Authentication Encoding of ``payload_type`` and ``payload``."""
    t = payload_type.encode("utf-8")
    return b"DSSEv1 %d %s %d %s" % (len(t), t, len(payload), payload)


def _b64decode(value: object, what: str) -> bytes:
    if not isinstance(value, str):
        raise MalformedEnvelopeError(f"envelope: {what} must be a base64 string, "
                                     f"got {type(value).__name__}")
    try:
        # DSSE allows standard or URL-safe base64; accept both, strictly.
        if "-" in value or "_" in value:
            return base64.urlsafe_b64decode(value.encode("ascii"))
        return base64.b64decode(value.encode("ascii"), validate=True)
    except (binascii.Error, ValueError, UnicodeEncodeError) as e:
        raise MalformedEnvelopeError(f"envelope: {what} is not valid base64 ({e})") from e


@dataclass(frozen=True)
class EnvelopeSignature:
    """One signature in an envelope.

    Attributes:
        keyid: the signer's key id (sha256 hex of its DER public key); may be empty.
        sig: the raw signature bytes.
    """

    keyid: str
    sig: bytes

    def __post_init__(self) -> None:
        if not isinstance(self.keyid, str):
            raise MalformedEnvelopeError(f"envelope: keyid must be a string, got {self.keyid!r}")
        if not self.sig:
            raise MalformedEnvelopeError(f"envelope: empty signature for keyid {self.keyid!r}")

    def to_dict(self) -> dict[str, str]:
        """``{"keyid", "sig"}`` with ``sig`` in standard base64."""
        return {"keyid": self.keyid, "sig": base64.b64encode(self.sig).decode("ascii")}

    @classmethod
    def from_dict(cls, d: object) -> EnvelopeSignature:
        """Parse one ``signatures[]`` item.

        Raises:
            MalformedEnvelopeError: not an object, or bad fields.
        """
        if not isinstance(d, Mapping) or "sig" not in d:
            raise MalformedEnvelopeError(f"envelope: a signature must be an object with 'sig', "
                                         f"got {d!r:.80}")
        return cls(keyid=d.get("keyid", ""), sig=_b64decode(d["sig"], "signature"))


@dataclass(frozen=True)
class Envelope:
    """A DSSE envelope: a typed payload and the signatures over its PAE encoding.

    Attributes:
        payload_type: a media type, e.g. ``application/vnd.in-toto+json``.
        payload: the exact signed bytes.
        signatures: one or more signatures.
    """

    payload_type: str
    payload: bytes
    signatures: tuple[EnvelopeSignature, ...]

    def __post_init__(self) -> None:
        if not isinstance(self.payload_type, str) or not self.payload_type:
            raise MalformedEnvelopeError(
                f"envelope: payloadType must be a non-empty string, got {self.payload_type!r}")
        if not isinstance(self.payload, bytes):
            raise MalformedEnvelopeError("envelope: payload must be bytes")

    def to_dict(self) -> dict[str, Any]:
        """The DSSE JSON object: ``payloadType``, base64 ``payload``, ``signatures``."""
        return {"payloadType": self.payload_type,
                "payload": base64.b64encode(self.payload).decode("ascii"),
                "signatures": [s.to_dict() for s in self.signatures]}

    @classmethod
    def from_dict(cls, d: object) -> Envelope:
        """Parse a DSSE JSON object.

        Raises:
            MalformedEnvelopeError: missing or mistyped fields, bad base64.
        """
        if not isinstance(d, Mapping):
            raise MalformedEnvelopeError(f"envelope: expected a JSON object, got "
                                         f"{type(d).__name__}")
        missing = [k for k in ("payloadType", "payload", "signatures") if k not in d]
        if missing:
            raise MalformedEnvelopeError(f"envelope: missing field(s) {', '.join(missing)}")
        sigs = d["signatures"]
        if not isinstance(sigs, list):
            raise MalformedEnvelopeError(f"envelope: signatures must be a list, got {sigs!r:.80}")
        return cls(payload_type=d["payloadType"], payload=_b64decode(d["payload"], "payload"),
                   signatures=tuple(EnvelopeSignature.from_dict(s) for s in sigs))

    def to_json(self) -> bytes:
        """The envelope file's bytes: sorted keys, two-space indent, a final newline."""
        return json.dumps(self.to_dict(), indent=2, sort_keys=True).encode("utf-8") + b"\n"

    @classmethod
    def from_json(cls, data: bytes | str, *, source: str = "envelope") -> Envelope:
        """Parse envelope JSON text.

        Raises:
            MalformedEnvelopeError: not JSON (e.g. a truncated file), or not an envelope.
        """
        if len(data) > MAX_SIGNATURE_BYTES:
            raise MalformedEnvelopeError(f"{source}: {len(data):,} bytes; an envelope is at "
                                         f"most {MAX_SIGNATURE_BYTES:,}")
        try:
            obj = parse_json(data, what="envelope", max_depth=16)
        except ConfigError as e:
            raise MalformedEnvelopeError(
                f"{source}: {e}; the file is truncated or not an envelope") from None
        try:
            return cls.from_dict(obj)
        except MalformedEnvelopeError as e:
            raise MalformedEnvelopeError(f"{source}: {e}") from e


def read_envelope(path: Path) -> Envelope:
    """Read an envelope file.

    Raises:
        UnsignedArtifactError: the file does not exist.
        ConfigError: it exists but cannot be read.
        MalformedEnvelopeError: it is not a DSSE envelope.
    """
    data = read_signature(path, missing=f"{path}: no signature envelope there; sign the "
                          "artifact with `edgeward sign` or pass the envelope's path")
    return Envelope.from_json(data, source=str(path))


def read_signature(path: Path, *, missing: str) -> bytes:
    """The bytes of a signature file, read safely: a regular file (a FIFO, a device or a
    symlink to one is refused without blocking) of at most ``MAX_SIGNATURE_BYTES``.

    Raises:
        UnsignedArtifactError: there is no file at ``path`` (with the message ``missing``).
        ConfigError: it is not a regular file, is too large or cannot be read.
    """
    if not path.exists():
        raise UnsignedArtifactError(missing)
    return read_capped(path, MAX_SIGNATURE_BYTES, what="signature")


def sign_envelope(payload: bytes, payload_type: str, keys: Sequence[PrivateKey]) -> Envelope:
    """Sign ``payload`` with each key into one envelope.

    Raises:
        ConfigError: no key given.
    """
    if not keys:
        raise ConfigError("sign: no signing key given")
    to_sign = pae(payload_type, payload)
    return Envelope(payload_type, payload,
                    tuple(EnvelopeSignature(k.key_id, k.sign(to_sign)) for k in keys))


def verify_signatures(envelope: Envelope, key: PublicKey) -> bool:
    """Whether any signature in ``envelope`` that names ``key`` (or names no key) verifies."""
    signed = pae(envelope.payload_type, envelope.payload)
    return any(key.verify(s.sig, signed) for s in envelope.signatures
               if s.keyid in ("", key.key_id))


def require_signature(envelope: Envelope, key: PublicKey, *, what: str) -> None:
    """Raise unless a signature by ``key`` over ``envelope`` verifies.

    Raises:
        UnsignedArtifactError: the envelope holds no signatures.
        BadSignatureError: none verifies under ``key``.
    """
    if not envelope.signatures:
        raise UnsignedArtifactError(f"{what}: the envelope holds no signatures")
    if not verify_signatures(envelope, key):
        raise BadSignatureError(f"{what}: the signature does not verify under key "
                                f"{key.key_id[:16]}…; the signed bytes or the signature were "
                                "changed. Do not use it")
