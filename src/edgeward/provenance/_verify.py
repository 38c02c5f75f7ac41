"""Signing and verification: generic DSSE payloads, and artifacts with their statements.

The order of checks in :func:`verify_artifact` is fixed, cheapest first, and each failure has
its own :class:`~edgeward.errors.SignatureError` subclass: envelope shape, signer (known,
unrevoked, right role), signature, statement and predicate version, the set of files, then
each file's digest.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from edgeward.errors import (
    BadSignatureError,
    ConfigError,
    DigestMismatchError,
    ExtraFileError,
    MalformedEnvelopeError,
    MissingFileError,
    SignatureError,
    SubjectMismatchError,
    UnsignedArtifactError,
)
from edgeward.provenance._build import build_statement
from edgeward.provenance._digest import HashConfig, artifact_files, hash_files, is_regular
from edgeward.provenance._dsse import Envelope, pae, read_envelope, read_signature, sign_envelope
from edgeward.provenance._keys import PrivateKey
from edgeward.provenance._report import read_report
from edgeward.provenance._statement import (
    IN_TOTO_PAYLOAD_TYPE,
    ProvenancePredicate,
    Statement,
    Subject,
    check_predicate_type,
)
from edgeward.provenance._trust import Role, TrustedKey, TrustStore

__all__ = [
    "ENVELOPE_SUFFIX",
    "SignedArtifact",
    "VerifiedArtifact",
    "VerifiedPayload",
    "envelope_path_for",
    "sign_artifact",
    "sign_payload",
    "verify_artifact",
    "verify_envelope",
]

ENVELOPE_SUFFIX = ".edgeward.json"


def envelope_path_for(artifact: Path) -> Path:
    """Where the DSSE envelope of ``artifact`` lives by default: ``ARTIFACT.edgeward.json``
    next to it (``model.gguf`` -> ``model.gguf.edgeward.json``; ``onnx/`` ->
    ``onnx.edgeward.json``), outside a directory artifact so it is not one of its files."""
    return artifact.with_name(artifact.name + ENVELOPE_SUFFIX)


def sign_payload(payload: bytes, payload_type: str, key: PrivateKey) -> Envelope:
    """Sign any payload into a DSSE envelope (telemetry, commands, statements, ...).

    Args:
        payload: the exact bytes to sign (canonical JSON, for edgeward's records).
        payload_type: its media type, e.g. ``application/vnd.edgeward.health+json``.
        key: the signing key.

    Returns:
        An envelope with one signature, ``keyid`` set to the key's id.
    """
    return sign_envelope(payload, payload_type, [key])


@dataclass(frozen=True)
class VerifiedPayload:
    """A payload whose signature verified under a trusted key holding the required role."""

    payload: bytes
    payload_type: str
    key: TrustedKey

    @property
    def key_id(self) -> str:
        """The signer's key id."""
        return self.key.key_id

    def json(self) -> Any:
        """The payload parsed as JSON.

        Raises:
            MalformedEnvelopeError: it is not JSON.
        """
        try:
            return json.loads(self.payload)
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise MalformedEnvelopeError(f"payload is not JSON ({e})") from e


def verify_envelope(envelope: Envelope | bytes | Path, trust_store: TrustStore, *,
                    role: Role | str, payload_type: str | None = None) -> VerifiedPayload:
    """Verify a DSSE envelope against the trust store.

    Accepts the envelope if one of its signatures is by a known, unrevoked key that holds
    ``role`` and verifies over the PAE of the payload; otherwise raises the error of its first
    signature (so a single-signature envelope always gets the precise reason).

    Args:
        envelope: an :class:`Envelope`, its JSON bytes, or the path of its file.
        trust_store: the keys to trust.
        role: the role the signer must hold (``publisher``, ``operator``, ``device``).
        payload_type: when given, the payload type it must carry.

    Raises:
        MalformedEnvelopeError: not a DSSE envelope, or the wrong payload type.
        UnsignedArtifactError: no signatures.
        UnknownKeyError / RevokedKeyError / WrongRoleError: the signer is not trusted for it.
        BadSignatureError: the signature does not verify (changed bytes, swapped signature).
    """
    env = _as_envelope(envelope)
    if payload_type is not None and env.payload_type != payload_type:
        raise MalformedEnvelopeError(f"envelope: payloadType is {env.payload_type!r}, "
                                     f"expected {payload_type!r}")
    if not env.signatures:
        raise UnsignedArtifactError("envelope: it holds no signatures; it was never signed")
    signed = pae(env.payload_type, env.payload)
    first: SignatureError | None = None
    for s in env.signatures:
        try:
            tk = trust_store.require(s.keyid, role)
        except SignatureError as e:
            first = first or e
            continue
        if tk.key.verify(s.sig, signed):
            return VerifiedPayload(env.payload, env.payload_type, tk)
        first = first or BadSignatureError(
            f"envelope: the signature of key {s.keyid[:16]}… does not verify; the payload or "
            "the signature was changed. Do not use it")
    assert first is not None
    raise first


def _as_envelope(envelope: Envelope | bytes | Path) -> Envelope:
    if isinstance(envelope, Envelope):
        return envelope
    if isinstance(envelope, Path):
        return read_envelope(envelope)
    return Envelope.from_json(envelope)


@dataclass(frozen=True)
class VerifiedArtifact:
    """An artifact whose files match a statement signed by a trusted key.

    Attributes:
        path: the artifact (file or directory).
        key_id: the signer's key id.
        signer: the signer's trust-store record (name, roles, rotation).
        statement: the verified statement.
        subjects: the verified files with their sha256 (the artifact's own files).
        format: ``dsse`` (edgeward's envelope) or ``oms`` (an OpenSSF model-signing bundle).
    """

    path: Path
    key_id: str
    signer: TrustedKey
    statement: Statement
    subjects: tuple[Subject, ...]
    format: Literal["dsse", "oms"] = "dsse"

    @property
    def fingerprint(self) -> Subject | None:
        """The signed behavioural fingerprint's subject (its file is checked separately, with
        :func:`check_fingerprint_file`), or None."""
        return self.statement.fingerprint_subject if self.format == "dsse" else None

    @property
    def provenance(self) -> ProvenancePredicate | None:
        """The edgeward predicate (None for an OMS signature, which carries none)."""
        return self.statement.provenance() if self.format == "dsse" else None

    def to_dict(self) -> dict[str, Any]:
        """The ``edgeward verify --json`` object."""
        return {"verified": True, "artifact": str(self.path), "key_id": self.key_id,
                "format": self.format, "predicate_type": self.statement.predicate_type,
                "subjects": [{"name": s.name, "sha256": s.sha256} for s in self.subjects],
                "fingerprint": ({"name": self.fingerprint.name, "sha256": self.fingerprint.sha256}
                                if self.fingerprint else None)}


def verify_artifact(path: Path, envelope: Envelope | bytes | Path, trust_store: TrustStore, *,
                    role: Role | str = Role.PUBLISHER,
                    hash_config: HashConfig | None = None) -> VerifiedArtifact:
    """Verify an artifact (file or directory) against its signed statement, offline.

    Args:
        path: the artifact.
        envelope: edgeward's DSSE envelope (object, bytes or path), or the path/bytes of an
            OpenSSF model-signing (Sigstore bundle) signature made with a key.
        trust_store: the keys to trust.
        role: the role the signer must hold.
        hash_config: block size and threads for hashing.

    Returns:
        What was verified.

    Raises:
        ConfigError: the artifact does not exist.
        SignatureError: one of its subclasses, naming what failed (see docs/provenance.md).
    """
    if not path.exists():
        raise ConfigError(f"{path}: no such file or directory")
    raw = envelope
    if isinstance(envelope, Path):
        raw = read_signature(envelope, missing=f"{envelope}: no signature there; sign the "
                             "artifact with `edgeward sign` first")
    if isinstance(raw, bytes) and b'"dsseEnvelope"' in raw:
        from edgeward.provenance._oms import verify_oms

        return verify_oms(path, raw, trust_store, role=role, hash_config=hash_config)
    env = _as_envelope(raw)
    if env.payload_type != IN_TOTO_PAYLOAD_TYPE:
        raise MalformedEnvelopeError(f"envelope: payloadType is {env.payload_type!r}, an "
                                     f"artifact's envelope carries {IN_TOTO_PAYLOAD_TYPE}")
    verified = verify_envelope(env, trust_store, role=role)
    statement = Statement.from_dict(verified.json())
    check_predicate_type(statement.predicate_type)
    statement.provenance()  # the predicate parses
    subjects = statement.artifact_subjects
    check_files(path, {s.name: s.sha256 for s in subjects}, hash_config=hash_config)
    return VerifiedArtifact(path, verified.key_id, verified.key, statement, subjects)


def check_fingerprint_file(statement: Statement, path: Path) -> Subject:
    """Check that ``path`` is the behavioural fingerprint the statement signs.

    Returns:
        The fingerprint's subject.

    Raises:
        ConfigError: the statement signs no fingerprint, or the file is missing.
        DigestMismatchError: the file's bytes are not the signed ones.
    """
    subject = statement.fingerprint_subject
    if subject is None:
        raise ConfigError("the statement signs no behavioural fingerprint; re-sign the artifact "
                          "(edgeward sign makes one by default)")
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: no such fingerprint file; the statement signs "
                          f"{subject.name!r}")
    actual = hash_files({subject.name: path})[subject.name]
    if actual != subject.sha256:
        raise DigestMismatchError(
            f"{path}: the fingerprint does not match the signed digest (sha256 {actual[:16]}…, "
            f"signed {subject.sha256[:16]}…); its bytes were changed",
            file=subject.name, expected=subject.sha256, actual=actual)
    return subject


def check_files(path: Path, expected: Mapping[str, str], *, ignore: tuple[str, ...] = (),
                hash_config: HashConfig | None = None) -> None:
    """Check that ``path`` consists of exactly the ``expected`` files with those digests.

    A single-file artifact is compared by content under its one subject, and must carry that
    subject's name.

    Raises:
        SubjectMismatchError: a single file under another name.
        MissingFileError / ExtraFileError: the sets of files differ (names the file).
        DigestMismatchError: a file's bytes changed (names the file).
    """
    files = artifact_files(path, ignore=ignore)
    if path.is_file() and len(expected) == 1 and set(expected) != set(files):
        (signed_name,) = expected
        raise SubjectMismatchError(f"{path}: the statement is for a file named "
                                   f"{signed_name!r}, not {path.name!r}", file=path.name)
    for name in expected:
        if name not in files:
            raise MissingFileError(f"{path}: {name!r} is in the signed statement but not in "
                                   "the artifact", file=name)
    for name, p in files.items():
        if name not in expected:
            raise ExtraFileError(f"{path}: {name!r} is in the artifact but not in the signed "
                                 "statement (an added file)", file=name)
        if not is_regular(p):
            raise ExtraFileError(f"{path}: {name!r} is not a regular file (a symlink?); it "
                                 "was not signed as one", file=name)
    actual = hash_files(files, config=hash_config)
    for name in sorted(expected):
        if actual[name] != expected[name]:
            raise DigestMismatchError(
                f"{path}: {name!r} does not match the signed digest (sha256 "
                f"{actual[name][:16]}…, signed {expected[name][:16]}…); its bytes were changed",
                file=name, expected=expected[name], actual=actual[name])


@dataclass(frozen=True)
class SignedArtifact:
    """What :func:`sign_artifact` (or ``sign_oms``) produced.

    Attributes:
        envelope_path: where the signature was written.
        key_id: the signer's key id.
        subjects: the signed files with their sha256.
        format: ``dsse`` or ``oms``.
        envelope: the DSSE envelope (inside the Sigstore bundle, for ``oms``).
        statement: the signed statement.
    """

    envelope_path: Path
    key_id: str
    subjects: tuple[Subject, ...]
    format: Literal["dsse", "oms"] = "dsse"
    envelope: Envelope | None = None
    statement: Statement | None = None

    def to_dict(self) -> dict[str, Any]:
        """The ``edgeward sign --json`` object."""
        return {"envelope_path": str(self.envelope_path), "format": self.format,
                "key_id": self.key_id,
                "subjects": [{"name": s.name, "sha256": s.sha256} for s in self.subjects]}


def sign_artifact(artifact: Path, key: PrivateKey, *, statement: Statement | None = None,
                  envelope_path: Path | None = None, overwrite: bool = False,
                  fingerprint: Path | None = None,
                  behaviour: Mapping[str, Any] | None = None) -> SignedArtifact:
    """Sign a statement about ``artifact`` and write the envelope next to it.

    Args:
        artifact: the artifact (file or directory).
        key: the publisher's key.
        statement: what to sign; default ``build_statement(artifact)`` (hashes it, reads
            ``ARTIFACT.report.json`` if present).
        envelope_path: default ``ARTIFACT.edgeward.json`` (see :func:`envelope_path_for`).
        overwrite: replace an existing envelope (never a half-written one: temp + rename).
        fingerprint, behaviour: the behavioural fingerprint file and its record, signed as one
            more subject (see :func:`build_statement`); ignored when ``statement`` is given.

    Returns:
        The envelope's path, the key id and the signed files.

    Raises:
        ConfigError: the artifact is missing, the envelope exists and ``overwrite`` is off,
            or it cannot be written.
        ArtifactError: a file of the artifact cannot be read.
    """
    out = envelope_path or envelope_path_for(artifact)
    if out.exists() and not overwrite:
        raise ConfigError(f"{out}: already exists; pass --force to re-sign")
    if artifact.is_dir() and out.resolve().is_relative_to(artifact.resolve()):
        raise ConfigError(f"{out}: the envelope cannot live inside the artifact it signs")
    if statement is None:
        statement = build_statement(artifact, report=read_report(artifact),
                                    fingerprint=fingerprint, behaviour=behaviour)
    env = sign_payload(statement.canonical_bytes(), IN_TOTO_PAYLOAD_TYPE, key)
    tmp = out.with_name(f".{out.name}.tmp")
    try:
        tmp.write_bytes(env.to_json())
        tmp.replace(out)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        raise ConfigError(f"{out}: cannot write the envelope ({e.strerror})") from e
    return SignedArtifact(out, key.key_id, statement.artifact_subjects, envelope=env,
                          statement=statement)
