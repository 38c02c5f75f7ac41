"""Interop with OpenSSF model signing (PyPI model-signing 1.1.x), both directions.

Their reference verifier (the ``model_signing`` CLI) checks our ``sign --format oms`` output;
our verifier checks signatures their signer made. Both refuse a changed byte.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from edgeward.errors import (
    BadSignatureError,
    ConfigError,
    DigestMismatchError,
    ExtraFileError,
    UnknownKeyError,
)
from edgeward.provenance import (
    KeyFiles,
    Role,
    TrustStore,
    generate_key,
    load_public_key,
    sign_oms,
    verify_artifact,
    write_key_pair,
)
from edgeward.provenance._oms import OMS_SUFFIX

pytestmark = pytest.mark.integration
model_signing = pytest.importorskip("model_signing", reason="the 'oms' extra is not installed")

CLI = shutil.which("model_signing", path=str(Path(sys.executable).parent))


def _their_verify(sig: Path, pub: Path, model: Path) -> subprocess.CompletedProcess[str]:
    assert CLI, "the model_signing command is not installed next to this Python"
    return subprocess.run([CLI, "verify", "key", "--signature", str(sig), "--public_key",
                           str(pub), str(model)], capture_output=True, text=True, timeout=120,
                          check=False)


@pytest.fixture
def ec_files(tmp_path: Path) -> KeyFiles:
    return write_key_pair(generate_key("ecdsa-p256"), tmp_path / "keys", name="oms")


@pytest.fixture
def oms_store(ec_files: KeyFiles) -> TrustStore:
    s = TrustStore()
    s.add(load_public_key(ec_files.public_key_path), [Role.PUBLISHER])
    return s


def test_their_verifier_accepts_our_signature_and_rejects_a_changed_byte(
        artifact_dir: Path, ec_files: KeyFiles) -> None:
    signed = sign_oms(artifact_dir, ec_files.private_key_path)
    assert signed.envelope_path == artifact_dir.with_name(artifact_dir.name + OMS_SUFFIX)
    assert signed.format == "oms" and signed.key_id == ec_files.key_id
    assert sorted(s.name for s in signed.subjects) == sorted(
        str(p.relative_to(artifact_dir)) for p in artifact_dir.rglob("*") if p.is_file())
    ok = _their_verify(signed.envelope_path, ec_files.public_key_path, artifact_dir)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "Verification succeeded" in ok.stdout
    data = bytearray((artifact_dir / "model.onnx_data").read_bytes())
    data[100] ^= 0x80
    (artifact_dir / "model.onnx_data").write_bytes(bytes(data))
    bad = _their_verify(signed.envelope_path, ec_files.public_key_path, artifact_dir)
    assert bad.returncode != 0
    assert "model.onnx_data" in bad.stdout + bad.stderr


def test_our_verifier_accepts_their_signature_and_names_what_changed(
        artifact_dir: Path, ec_files: KeyFiles, oms_store: TrustStore,
        tmp_path: Path) -> None:
    sig = tmp_path / "theirs.sig"
    model_signing.signing.Config().use_elliptic_key_signer(
        private_key=ec_files.private_key_path).sign(artifact_dir, sig)
    verified = verify_artifact(artifact_dir, sig, oms_store)
    assert verified.format == "oms" and verified.key_id == ec_files.key_id
    assert {s.name for s in verified.subjects} == {
        "model.onnx", "model.onnx_data", "tokenizer/tokenizer.json"}
    assert verified.provenance is None

    other = TrustStore()
    other.add(generate_key("ecdsa-p256").public_key, [Role.PUBLISHER])
    with pytest.raises(UnknownKeyError):
        verify_artifact(artifact_dir, sig, other)
    (artifact_dir / "new.bin").write_bytes(b"added")
    with pytest.raises(ExtraFileError):
        verify_artifact(artifact_dir, sig, oms_store)
    (artifact_dir / "new.bin").unlink()
    (artifact_dir / "tokenizer" / "tokenizer.json").write_text("{}")
    with pytest.raises(DigestMismatchError) as info:
        verify_artifact(artifact_dir, sig, oms_store)
    assert info.value.file == "tokenizer/tokenizer.json"


def test_their_single_file_signature_and_a_forged_bundle(
        tiny_gguf: Path, ec_files: KeyFiles, oms_store: TrustStore,
        tmp_path: Path) -> None:
    model = tmp_path / tiny_gguf.name
    model.write_bytes(tiny_gguf.read_bytes())
    sig = tmp_path / "single.sig"
    model_signing.signing.Config().use_elliptic_key_signer(
        private_key=ec_files.private_key_path).sign(model, sig)
    assert verify_artifact(model, sig, oms_store).subjects[0].name == model.name
    # Re-signing their statement with another key but keeping our key's hint is refused.
    text = sig.read_text()
    forged_sig = sign_oms(model, write_key_pair(generate_key("ecdsa-p256"), tmp_path / "k2")
                          .private_key_path, signature_path=tmp_path / "forged.sig")
    bundle = json.loads(forged_sig.envelope_path.read_text())
    bundle["verificationMaterial"] = json.loads(text)["verificationMaterial"]
    (tmp_path / "forged.sig").write_text(json.dumps(bundle))
    with pytest.raises(BadSignatureError):
        verify_artifact(model, tmp_path / "forged.sig", oms_store)


def test_oms_needs_an_ecdsa_key_and_the_extra(artifact_dir: Path, tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    ed = write_key_pair(generate_key("ed25519"), tmp_path / "ed")
    with pytest.raises(ConfigError, match="ECDSA P-256"):
        sign_oms(artifact_dir, ed.private_key_path)
    ec = write_key_pair(generate_key("ecdsa-p256"), tmp_path / "ec")
    monkeypatch.setitem(sys.modules, "model_signing", None)
    monkeypatch.setitem(sys.modules, "model_signing.signing", None)
    with pytest.raises(ConfigError, match=r"pip install 'edgeward\[oms\]'"):
        sign_oms(artifact_dir, ec.private_key_path)
    assert not artifact_dir.with_name(artifact_dir.name + OMS_SUFFIX).exists()


@pytest.mark.parametrize("name", ["model.onnx", "model.onnx_data", "tokenizer/tokenizer.json"])
def test_their_library_verifier_rejects_a_flipped_byte_in_each_file(
        artifact_dir: Path, ec_files: KeyFiles, name: str) -> None:
    signed = sign_oms(artifact_dir, ec_files.private_key_path)
    verifier = model_signing.verifying.Config().use_elliptic_key_verifier(
        public_key=ec_files.public_key_path)
    verifier.verify(artifact_dir, signed.envelope_path)  # intact: accepted
    path = artifact_dir / name
    data = bytearray(path.read_bytes())
    data[-1] ^= 0x01
    path.write_bytes(bytes(data))
    with pytest.raises(ValueError, match=name.rsplit("/", 1)[-1]):
        verifier.verify(artifact_dir, signed.envelope_path)
