"""Provenance: digests, in-toto statements, DSSE envelopes, keys, trust stores, verification.

Every artifact edgeward produces gets a signed statement, and every consumer (the device
agent, the fleet manager, a bundle import) verifies it offline through one API,
:func:`verify_artifact`, which raises a precise :class:`~edgeward.errors.SignatureError`
subclass for each way it can fail. The same DSSE signing serves any other signed payload
(telemetry, commands, log checkpoints) through :func:`sign_payload` / :func:`verify_envelope`.
OpenSSF model-signing signatures interoperate (:func:`sign_oms`; :func:`verify_artifact`
reads them), model cards are rendered from the signed statement (:func:`model_card`), and
:class:`TamperEvidentLog` is the hash-chained audit log other packages append to.

Example::

    from pathlib import Path
    from edgeward.provenance import (Role, TrustStore, generate_key, sign_artifact,
                                     verify_artifact)

    key = generate_key()                                   # Ed25519
    store = TrustStore.open(Path("trust"), create=True)
    store.add(key.public_key, [Role.PUBLISHER], name="release")
    signed = sign_artifact(Path("model.gguf"), key)        # -> model.gguf.edgeward.json
    verified = verify_artifact(Path("model.gguf"), signed.envelope_path, store)
    print(verified.key_id, [s.sha256 for s in verified.subjects])

The formats (trust store, statement, envelope, log) are described in docs/provenance.md.
May import :mod:`edgeward.errors` only.
"""

from edgeward.provenance._build import build_statement, source_model_from
from edgeward.provenance._card import ModelCard, model_card, render_card
from edgeward.provenance._chunks import content_chunks
from edgeward.provenance._digest import HashConfig
from edgeward.provenance._dsse import Envelope, canonical_json, read_signature
from edgeward.provenance._keys import (
    KeyFiles,
    KeyType,
    PrivateKey,
    PublicKey,
    generate_key,
    load_private_key,
    load_public_key,
    write_key_pair,
)
from edgeward.provenance._log import FsyncPolicy, LogConfig, TamperEvidentLog
from edgeward.provenance._logverify import LogReport, verify_log
from edgeward.provenance._oms import oms_signature_path_for, sign_oms
from edgeward.provenance._report import BuildRecord, read_report
from edgeward.provenance._statement import (
    IN_TOTO_PAYLOAD_TYPE,
    PREDICATE_TYPE,
    CardInfo,
    ProvenancePredicate,
    SourceModel,
    Statement,
    Subject,
)
from edgeward.provenance._trust import Role, TrustedKey, TrustStore
from edgeward.provenance._verify import (
    SignedArtifact,
    VerifiedArtifact,
    VerifiedPayload,
    check_fingerprint_file,
    envelope_path_for,
    sign_artifact,
    sign_payload,
    verify_artifact,
    verify_envelope,
)

__all__ = [
    "IN_TOTO_PAYLOAD_TYPE",
    "PREDICATE_TYPE",
    "BuildRecord",
    "CardInfo",
    "Envelope",
    "FsyncPolicy",
    "HashConfig",
    "KeyFiles",
    "KeyType",
    "LogConfig",
    "LogReport",
    "ModelCard",
    "PrivateKey",
    "ProvenancePredicate",
    "PublicKey",
    "Role",
    "SignedArtifact",
    "SourceModel",
    "Statement",
    "Subject",
    "TamperEvidentLog",
    "TrustStore",
    "TrustedKey",
    "VerifiedArtifact",
    "VerifiedPayload",
    "build_statement",
    "canonical_json",
    "check_fingerprint_file",
    "content_chunks",
    "envelope_path_for",
    "generate_key",
    "load_private_key",
    "load_public_key",
    "model_card",
    "oms_signature_path_for",
    "read_report",
    "read_signature",
    "render_card",
    "sign_artifact",
    "sign_oms",
    "sign_payload",
    "source_model_from",
    "verify_artifact",
    "verify_envelope",
    "verify_log",
    "write_key_pair",
]
