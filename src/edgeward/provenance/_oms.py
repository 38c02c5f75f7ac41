"""Interop with OpenSSF model signing (OMS; PyPI ``model-signing``, 1.1.x).

Signing uses the ``model-signing`` library itself (an optional extra, imported lazily), so the
signature is exactly what its reference verifier expects. Verifying needs no extra: an OMS
signature is a Sigstore bundle holding a DSSE envelope over an in-toto statement whose
predicate (``https://model_signing/signature/v1.0``) lists every file's sha256, so edgeward
checks it with its own DSSE and digest code, against its own trust store, offline, with the
same precise errors as its own envelopes. Only key-based bundles with the ``files``
serialization and sha256 are read; certificate and Sigstore-identity bundles are refused.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, cast

from edgeward.errors import (
    ConfigError,
    MalformedEnvelopeError,
    UnknownKeyError,
    UnsupportedPredicateError,
)
from edgeward.provenance._digest import HashConfig
from edgeward.provenance._dsse import Envelope
from edgeward.provenance._keys import KeyType, load_private_key
from edgeward.provenance._statement import IN_TOTO_PAYLOAD_TYPE, Statement, Subject
from edgeward.provenance._trust import Role, TrustStore
from edgeward.provenance._verify import (
    SignedArtifact,
    VerifiedArtifact,
    check_files,
    verify_envelope,
)
from edgeward.safeio import parse_json

__all__ = ["OMS_PREDICATE_TYPE", "OMS_SUFFIX", "oms_signature_path_for", "sign_oms",
           "verify_oms"]

OMS_SUFFIX = ".oms.sig"
OMS_PREDICATE_TYPE = "https://model_signing/signature/v1.0"
_BUNDLE_MEDIA_PREFIX = "application/vnd.dev.sigstore.bundle"


def oms_signature_path_for(artifact: Path) -> Path:
    """``ARTIFACT.oms.sig`` next to the artifact (outside a directory artifact)."""
    return artifact.with_name(artifact.name + OMS_SUFFIX)


def _model_signing() -> Any:
    try:
        import model_signing.hashing
        import model_signing.signing
        import OpenSSL  # noqa: F401 - model-signing 1.1 needs it without declaring it
    except ImportError as e:
        raise ConfigError(
            f"the OMS format needs the optional extra 'oms' ({e.name or e} is not installed); "
            "install it with: pip install 'edgeward[oms]'") from e
    return model_signing


def sign_oms(artifact: Path, key_path: Path, *, passphrase: bytes | None = None,
             signature_path: Path | None = None, overwrite: bool = False) -> SignedArtifact:
    """Sign ``artifact`` as an OpenSSF model-signing bundle with an ECDSA P-256 key.

    Args:
        artifact: a model directory (or file).
        key_path: the private key (``keys generate --type ecdsa-p256``), mode 0600.
        passphrase: its passphrase, if encrypted.
        signature_path: default ``ARTIFACT.oms.sig``.
        overwrite: replace an existing signature.

    Returns:
        Where the signature went, the key id and the signed files.

    Raises:
        ConfigError: not an ECDSA P-256 key, the ``oms`` extra is missing, the signature
            exists, or model-signing failed.
    """
    key = load_private_key(key_path, passphrase=passphrase)
    if key.key_type is not KeyType.ECDSA_P256:
        raise ConfigError(f"{key_path}: OMS signatures need an ECDSA P-256 key (model-signing "
                          "has no Ed25519 signer); make one with `edgeward keys generate "
                          "--type ecdsa-p256`")
    if not artifact.exists():
        raise ConfigError(f"{artifact}: no such file or directory")
    out = signature_path or oms_signature_path_for(artifact)
    if out.exists() and not overwrite:
        raise ConfigError(f"{out}: already exists; pass --force to re-sign")
    if artifact.is_dir() and out.resolve().is_relative_to(artifact.resolve()):
        raise ConfigError(f"{out}: the signature cannot live inside the artifact it signs")
    ms = _model_signing()
    tmp = out.with_name(f".{out.name}.tmp")
    try:
        hashing = ms.hashing.Config().set_ignored_paths(paths=[], ignore_git_paths=True)
        # model-signing hands the password to cryptography, which wants bytes.
        config = ms.signing.Config().use_elliptic_key_signer(
            private_key=key_path, password=cast(Any, passphrase))
        config.set_hashing_config(hashing).sign(artifact, tmp)
        raw = tmp.read_bytes()
        tmp.replace(out)
    except (ValueError, TypeError, OSError, RuntimeError) as e:
        raise ConfigError(f"model-signing could not sign {artifact}: {e}") from e
    finally:
        tmp.unlink(missing_ok=True)
    env, _ = _parse_bundle(raw, str(out))
    statement = Statement.from_dict(json.loads(env.payload))
    return SignedArtifact(out, key.key_id, _resources(statement, artifact), format="oms",
                          envelope=env, statement=statement)


def _parse_bundle(raw: bytes, source: str) -> tuple[Envelope, str]:
    try:
        bundle = parse_json(raw, what="OMS signature", max_depth=16)
    except ConfigError as e:
        raise MalformedEnvelopeError(f"{source}: {e}; the OMS signature is truncated or not "
                                     "a Sigstore bundle") from None
    if not isinstance(bundle, dict) or not str(bundle.get("mediaType", "")).startswith(
            _BUNDLE_MEDIA_PREFIX) or not isinstance(bundle.get("dsseEnvelope"), dict):
        raise MalformedEnvelopeError(f"{source}: not a Sigstore bundle with a DSSE envelope")
    material = bundle.get("verificationMaterial") or {}
    if not isinstance(material, dict):
        raise MalformedEnvelopeError(f"{source}: verificationMaterial must be an object")
    if "publicKey" not in material:
        raise UnknownKeyError(f"{source}: signed with a certificate or a Sigstore identity, "
                              "not a key; edgeward verifies key-based OMS signatures against "
                              "its trust store (use `model_signing verify` for the others)")
    hint = (material.get("publicKey") or {}).get("hint", "")
    try:
        env = Envelope.from_dict(bundle["dsseEnvelope"])
    except MalformedEnvelopeError as e:
        raise MalformedEnvelopeError(f"{source}: {e}") from e
    if env.payload_type != IN_TOTO_PAYLOAD_TYPE:
        raise MalformedEnvelopeError(f"{source}: payloadType {env.payload_type!r} is not "
                                     f"{IN_TOTO_PAYLOAD_TYPE}")
    return env, str(hint)


def _resources(statement: Statement, artifact: Path) -> tuple[Subject, ...]:
    pred = statement.predicate
    if statement.predicate_type != OMS_PREDICATE_TYPE:
        raise UnsupportedPredicateError(f"OMS predicate {statement.predicate_type!r} is not "
                                        f"supported (edgeward reads {OMS_PREDICATE_TYPE})")
    ser = pred.get("serialization") or {}
    if ser.get("method") != "files" or ser.get("hash_type") != "sha256":
        raise UnsupportedPredicateError(
            f"OMS serialization {ser.get('method')!r}/{ser.get('hash_type')!r} is not "
            "supported (edgeward reads 'files' with sha256); verify with `model_signing verify`")
    resources = pred.get("resources")
    if not isinstance(resources, list):
        raise MalformedEnvelopeError("OMS statement: resources must be a list")
    root = hashlib.sha256()
    out = []
    try:
        for r in resources:
            if r.get("algorithm") != "sha256":
                raise UnsupportedPredicateError(f"OMS resource algorithm {r.get('algorithm')!r}")
            root.update(bytes.fromhex(r["digest"]))
            name = artifact.name if r["name"] == "." else r["name"]
            out.append(Subject(name, r["digest"]))
    except (AttributeError, KeyError, TypeError, ValueError, ConfigError) as e:
        raise MalformedEnvelopeError(f"OMS statement: bad resource ({e})") from e
    if [root.hexdigest()] != [s.sha256 for s in statement.subjects]:
        raise MalformedEnvelopeError("OMS statement: the subject digest does not match its "
                                     "resources; the signer is broken")
    return tuple(out)


def verify_oms(path: Path, raw: bytes, trust_store: TrustStore, *, role: Role | str,
               hash_config: HashConfig | None = None) -> VerifiedArtifact:
    """Verify an OpenSSF model-signing (key-based) signature of ``path`` against the store.

    Raises:
        The same :class:`~edgeward.errors.SignatureError` subclasses as
        :func:`verify_artifact`.
    """
    env, hint = _parse_bundle(raw, "OMS signature")
    # The bundle names its key by sha256 of the PEM public key, not edgeward's DER key id.
    trusted = trust_store.list_keys()
    by_hint = {hashlib.sha256(k.key.to_pem()).hexdigest(): k.key_id for k in trusted}
    if hint and hint not in by_hint:
        raise UnknownKeyError(f"OMS signature: its key (hint {hint[:16]}…) is not in the trust "
                              "store; add the signer's public key with `edgeward keys trust`",
                              key_id="")
    candidates = [by_hint[hint]] if hint else list(by_hint.values())
    sigs = tuple(type(s)(kid, s.sig) for s in env.signatures[:1] for kid in candidates)
    verified = verify_envelope(Envelope(env.payload_type, env.payload, sigs), trust_store,
                               role=role)
    statement = Statement.from_dict(verified.json())
    subjects = _resources(statement, path)
    ser = statement.predicate.get("serialization") or {}
    # Only what the signature itself declares out of scope (signed ``ignore_paths``; model-
    # signing's default lists the git paths) is skipped: an added .git* file is refused
    # like any other extra file when the signature does not say it ignored it.
    ignore = tuple(str(p) for p in ser.get("ignore_paths") or ())
    check_files(path, {s.name: s.sha256 for s in subjects}, ignore=ignore,
                hash_config=hash_config)
    return VerifiedArtifact(path, verified.key_id, verified.key, statement, subjects,
                            format="oms")
