"""Keys: Ed25519 and ECDSA P-256, key ids, PKCS#8 files created 0600, permission refusal."""

from __future__ import annotations

import hashlib
import os
import stat
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization

from edgeward.errors import ConfigError
from edgeward.provenance import (
    KeyType,
    PrivateKey,
    generate_key,
    load_private_key,
    load_public_key,
    write_key_pair,
)


@pytest.mark.parametrize("key_type", ["ed25519", "ecdsa-p256"])
def test_generate_write_load_sign_verify(tmp_path: Path, key_type: str) -> None:
    key = generate_key(key_type)
    assert key.key_type is KeyType(key_type)
    files = write_key_pair(key, tmp_path / "keys", name="k")
    assert stat.S_IMODE(files.private_key_path.stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "keys").stat().st_mode) == 0o700
    assert files.private_key_path.read_bytes().startswith(b"-----BEGIN PRIVATE KEY-----")
    loaded = load_private_key(files.private_key_path)
    pub = load_public_key(files.public_key_path)
    assert loaded.key_id == pub.key_id == key.key_id == files.key_id
    sig = loaded.sign(b"data")
    assert pub.verify(sig, b"data")
    assert not pub.verify(sig, b"Data")


def test_key_id_is_sha256_of_the_der_subject_public_key_info() -> None:
    key = generate_key()
    der = key._obj.public_key().public_bytes(serialization.Encoding.DER,
                                              serialization.PublicFormat.SubjectPublicKeyInfo)
    assert key.key_id == hashlib.sha256(der).hexdigest()
    assert len(key.key_id) == 64


def test_private_key_is_0600_even_with_a_permissive_umask(tmp_path: Path) -> None:
    old = os.umask(0)
    try:
        files = write_key_pair(generate_key(), tmp_path)
    finally:
        os.umask(old)
    assert stat.S_IMODE(files.private_key_path.stat().st_mode) == 0o600
    assert stat.S_IMODE(files.public_key_path.stat().st_mode) == 0o644


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o644, 0o660])
def test_group_or_world_readable_private_key_is_refused(tmp_path: Path, mode: int) -> None:
    files = write_key_pair(generate_key(), tmp_path)
    files.private_key_path.chmod(mode)
    with pytest.raises(ConfigError, match=r"accessible by group or others.*chmod 600"):
        load_private_key(files.private_key_path)


def test_passphrase_encrypts_the_private_key(tmp_path: Path) -> None:
    files = write_key_pair(generate_key("ecdsa-p256"), tmp_path, passphrase=b"s3cret")
    assert b"ENCRYPTED PRIVATE KEY" in files.private_key_path.read_bytes()
    assert load_private_key(files.private_key_path, passphrase=b"s3cret").key_id == files.key_id
    with pytest.raises(ConfigError, match="passphrase-protected"):
        load_private_key(files.private_key_path)
    with pytest.raises(ConfigError, match="wrong passphrase"):
        load_private_key(files.private_key_path, passphrase=b"nope")


def test_existing_key_files_are_never_overwritten(tmp_path: Path) -> None:
    first = write_key_pair(generate_key(), tmp_path, name="k")
    before = first.private_key_path.read_bytes()
    with pytest.raises(ConfigError, match="already exists"):
        write_key_pair(generate_key(), tmp_path, name="k")
    assert first.private_key_path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["k.key", "k.pub"]  # no temp files


def test_bad_inputs_are_clear_config_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="unknown key type 'rsa'"):
        generate_key("rsa")
    files = write_key_pair(generate_key(), tmp_path)
    with pytest.raises(ConfigError, match="is a private key"):
        load_public_key(files.private_key_path)
    with pytest.raises(ConfigError, match="cannot read"):
        load_private_key(tmp_path / "missing.key")
    junk = tmp_path / "junk.pub"
    junk.write_text("not a key")
    with pytest.raises(ConfigError, match="not a PEM public key"):
        load_public_key(junk)
    with pytest.raises(ConfigError, match="not a PEM PKCS#8 private key"):
        PrivateKey.from_pem(b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n")


def test_unsupported_curve_is_refused() -> None:
    from cryptography.hazmat.primitives.asymmetric import ec

    pem = ec.generate_private_key(ec.SECP384R1()).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption())
    with pytest.raises(ConfigError, match="secp384r1"):
        PrivateKey.from_pem(pem)


def test_libsodium_and_openssl_agree_on_ed25519_signatures() -> None:
    pytest.importorskip("nacl", reason="PyNaCl (the fleet extra) is not installed")
    import dataclasses

    key = generate_key("ed25519")
    fast = key.public_key
    assert fast._fast is not None  # PyNaCl present: the libsodium path is in use
    slow = dataclasses.replace(fast, _fast=None)  # the same key through OpenSSL
    data = b"edgeward/v1/pi-01/health " * 20
    good = key.sign(data)
    cases = [(good, data, True), (good, data + b"x", False),
             (bytes([good[0] ^ 1]) + good[1:], data, False), (good[:63], data, False),
             (good + b"\0", data, False), (b"", data, False),
             (generate_key("ed25519").sign(data), data, False)]
    for sig, msg, ok in cases:
        assert fast.verify(sig, msg) is ok
        assert slow.verify(sig, msg) is ok
