"""Every way to tamper with a signed artifact is refused, each with its own error class."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from _prov_helpers import GOLDEN_FILES, fixed_statement

from edgeward.errors import (
    BadSignatureError,
    DigestMismatchError,
    ExtraFileError,
    MalformedEnvelopeError,
    MissingFileError,
    RevokedKeyError,
    SignatureError,
    SubjectMismatchError,
    UnknownKeyError,
    UnsignedArtifactError,
    UnsupportedPredicateError,
    WrongRoleError,
)
from edgeward.provenance import (
    IN_TOTO_PAYLOAD_TYPE,
    Envelope,
    PrivateKey,
    Role,
    Statement,
    TrustStore,
    canonical_json,
    sign_artifact,
    sign_payload,
    verify_artifact,
)


@dataclass
class Signed:
    artifact: Path
    envelope: Path
    store: TrustStore
    key: PrivateKey
    other: PrivateKey


def _flip(path: Path, offset: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset % len(data)] ^= 0x01
    path.write_bytes(bytes(data))


def _edit_envelope(s: Signed, fn: Callable[[dict], None]) -> None:
    d = json.loads(s.envelope.read_text())
    fn(d)
    s.envelope.write_text(json.dumps(d))


def _resign(s: Signed, statement: dict, key: PrivateKey | None = None) -> None:
    env = sign_payload(canonical_json(statement), IN_TOTO_PAYLOAD_TYPE, key or s.key)
    s.envelope.write_bytes(env.to_json())


def _statement(s: Signed) -> dict:
    return json.loads(base64.b64decode(json.loads(s.envelope.read_text())["payload"]))


def _swap_signature(s: Signed) -> None:
    # A valid signature by the same trusted key, but over another payload.
    other = sign_payload(b'{"another": "payload"}', IN_TOTO_PAYLOAD_TYPE, s.key)
    _edit_envelope(s, lambda d: d["signatures"][0].update(other.to_dict()["signatures"][0]))


def _edit_payload(s: Signed) -> None:
    st = _statement(s)
    st["predicate"]["builder"]["id"] = "mallory@evil"
    _edit_envelope(s, lambda d: d.update(
        payload=base64.b64encode(canonical_json(st)).decode()))


def _rename_subject(s: Signed) -> None:
    st = _statement(s)
    st["subject"][0]["name"] = "renamed.onnx"
    _resign(s, st)


def _new_predicate_version(s: Signed) -> None:
    st = _statement(s)
    st["predicateType"] = "https://edgeward.dev/provenance/v2"
    _resign(s, st)


def _revoke(s: Signed) -> None:
    s.store.revoke(s.key.key_id, s.key, reason="laptop stolen")


def _wrong_role(s: Signed) -> None:
    s.store.add(s.other.public_key, [Role.DEVICE], name="device-7")
    _resign(s, _statement(s), key=s.other)


def _truncate(s: Signed) -> None:
    data = s.envelope.read_bytes()
    s.envelope.write_bytes(data[: len(data) // 2])


def _symlink(s: Signed) -> None:
    (s.artifact / "link.onnx").symlink_to(s.artifact / "model.onnx")


CASES: dict[str, tuple[Callable[[Signed], None], type[SignatureError]]] = {
    **{f"flip-byte-in-{name}": (lambda s, n=name: _flip(s.artifact / n, 7), DigestMismatchError)
       for name in GOLDEN_FILES},
    **{f"flip-last-byte-in-{name}": (lambda s, n=name: _flip(s.artifact / n, -1),
                                     DigestMismatchError) for name in GOLDEN_FILES},
    **{f"remove-{name}": (lambda s, n=name: (s.artifact / n).unlink(), MissingFileError)
       for name in GOLDEN_FILES},
    "add-a-file": (lambda s: (s.artifact / "extra.bin").write_bytes(b"x"), ExtraFileError),
    "add-a-file-in-a-new-folder": (
        lambda s: ((s.artifact / "sub").mkdir(), (s.artifact / "sub" / "x").write_bytes(b"")),
        ExtraFileError),
    "add-a-symlink": (_symlink, ExtraFileError),
    "swap-the-signature": (_swap_signature, BadSignatureError),
    "edit-the-payload": (_edit_payload, BadSignatureError),
    "unknown-key": (lambda s: _resign(s, _statement(s), key=s.other), UnknownKeyError),
    "revoked-key": (_revoke, RevokedKeyError),
    "wrong-role": (_wrong_role, WrongRoleError),
    "truncated-envelope": (_truncate, MalformedEnvelopeError),
    "not-an-envelope": (lambda s: s.envelope.write_text('{"hello": 1}'), MalformedEnvelopeError),
    "wrong-payload-type": (lambda s: _edit_envelope(s, lambda d: d.update(
        payloadType="text/plain")), MalformedEnvelopeError),
    "bad-base64": (lambda s: _edit_envelope(s, lambda d: d.update(payload="%%%")),
                   MalformedEnvelopeError),
    "no-signatures": (lambda s: _edit_envelope(s, lambda d: d.update(signatures=[])),
                      UnsignedArtifactError),
    "envelope-deleted": (lambda s: s.envelope.unlink(), UnsignedArtifactError),
    "different-subject-name": (_rename_subject, MissingFileError),
    "unsupported-predicate-version": (_new_predicate_version, UnsupportedPredicateError),
}


@pytest.fixture
def signed(artifact_dir: Path, publisher_key: PrivateKey, other_key: PrivateKey,
           tmp_path: Path) -> Signed:
    store = TrustStore.open(tmp_path / "trust", create=True)
    store.add(publisher_key.public_key, [Role.PUBLISHER])
    result = sign_artifact(artifact_dir, publisher_key, statement=fixed_statement(artifact_dir))
    verify_artifact(artifact_dir, result.envelope_path, store)  # intact before tampering
    return Signed(artifact_dir, result.envelope_path, store, publisher_key, other_key)


@pytest.mark.parametrize("case", sorted(CASES))
def test_tampered_artifact_is_refused_with_its_error(signed: Signed, case: str) -> None:
    tamper, expected = CASES[case]
    tamper(signed)
    with pytest.raises(SignatureError) as info:
        verify_artifact(signed.artifact, signed.envelope, signed.store)
    assert type(info.value) is expected, f"{case}: got {type(info.value).__name__}: {info.value}"
    named = {"add-a-file": "extra.bin", "add-a-file-in-a-new-folder": "sub/x",
             "add-a-symlink": "link.onnx", "different-subject-name": "renamed.onnx",
             **{f"flip-byte-in-{n}": n for n in GOLDEN_FILES},
             **{f"flip-last-byte-in-{n}": n for n in GOLDEN_FILES},
             **{f"remove-{n}": n for n in GOLDEN_FILES}}
    if case in named:  # the error names the file
        assert info.value.file == named[case]  # type: ignore[attr-defined]
        assert repr(named[case]) in str(info.value)


def test_a_single_file_under_another_name_is_a_subject_mismatch(
        tiny_gguf: Path, tmp_path: Path, publisher_key: PrivateKey, store: TrustStore) -> None:
    art = tmp_path / "model.gguf"
    art.write_bytes(tiny_gguf.read_bytes())
    signed = sign_artifact(art, publisher_key)
    renamed = tmp_path / "other.gguf"
    art.rename(renamed)
    with pytest.raises(SubjectMismatchError) as info:
        verify_artifact(renamed, signed.envelope_path, store)
    assert type(info.value) is SubjectMismatchError
    assert "'model.gguf'" in str(info.value) and "'other.gguf'" in str(info.value)


def test_a_flipped_byte_in_a_gguf_names_the_file(
        tiny_gguf: Path, tmp_path: Path, publisher_key: PrivateKey, store: TrustStore) -> None:
    art = tmp_path / tiny_gguf.name
    art.write_bytes(tiny_gguf.read_bytes())
    signed = sign_artifact(art, publisher_key)
    assert verify_artifact(art, signed.envelope_path, store).subjects[0].name == art.name
    _flip(art, art.stat().st_size // 2)
    with pytest.raises(DigestMismatchError) as info:
        verify_artifact(art, signed.envelope_path, store)
    assert info.value.file == art.name
    assert info.value.expected == signed.subjects[0].sha256 != info.value.actual


def test_a_second_untrusted_signature_does_not_hide_a_valid_one(
        signed: Signed) -> None:
    env = Envelope.from_json(signed.envelope.read_bytes())
    extra = sign_payload(env.payload, env.payload_type, signed.other).signatures
    both = Envelope(env.payload_type, env.payload, extra + env.signatures)
    assert verify_artifact(signed.artifact, both, signed.store).key_id == signed.key.key_id


def test_statement_for_another_artifact_is_refused(
        signed: Signed, tmp_path: Path) -> None:
    other = tmp_path / "other-model"
    other.mkdir()
    (other / "weights.bin").write_bytes(b"other weights")
    sign_artifact(other, signed.key, envelope_path=tmp_path / "other.json")
    with pytest.raises(MissingFileError):
        verify_artifact(signed.artifact, tmp_path / "other.json", signed.store)
    assert Statement.from_dict(json.loads(Envelope.from_json(
        (tmp_path / "other.json").read_bytes()).payload)).subjects[0].name == "weights.bin"
