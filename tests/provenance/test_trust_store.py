"""The trust store on disk: roles, the TOML index, signed revocation, signed rotation."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

import pytest

from edgeward.errors import (
    BadSignatureError,
    ConfigError,
    MalformedEnvelopeError,
    RevokedKeyError,
    UnknownKeyError,
    WrongRoleError,
)
from edgeward.provenance import (
    Envelope,
    PrivateKey,
    Role,
    TrustStore,
    generate_key,
    sign_artifact,
    verify_artifact,
)


def test_index_round_trips_with_roles(tmp_path: Path, publisher_key: PrivateKey,
                                      other_key: PrivateKey) -> None:
    store = TrustStore.open(tmp_path / "t", create=True)
    store.add(publisher_key.public_key, [Role.PUBLISHER], name="release")
    store.add(other_key.public_key, ["operator", "device"], name="ops")
    index = tomllib.loads((tmp_path / "t" / "index.toml").read_text())
    assert index["version"] == 1
    assert {k["key_id"]: k["roles"] for k in index["keys"]} == {
        publisher_key.key_id: ["publisher"], other_key.key_id: ["device", "operator"]}
    again = TrustStore.open(tmp_path / "t")
    assert [k.to_dict() for k in again.list_keys()] == [k.to_dict() for k in store.list_keys()]
    assert again.require(other_key.key_id, "device").name == "ops"
    with pytest.raises(WrongRoleError, match="trusted as device, operator, not publisher"):
        again.require(other_key.key_id, "publisher")


def test_missing_store_and_bad_index_are_config_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not a trust store"):
        TrustStore.open(tmp_path / "none")
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "index.toml").write_text("version = [")
    with pytest.raises(ConfigError, match="not valid TOML"):
        TrustStore.open(tmp_path / "bad")
    (tmp_path / "bad" / "index.toml").write_text("version = 9")
    with pytest.raises(ConfigError, match="unsupported index version 9"):
        TrustStore.open(tmp_path / "bad")
    with pytest.raises(ConfigError, match="unknown role"):
        TrustStore().add(generate_key().public_key, ["admin"])


def test_a_swapped_key_file_is_detected(tmp_path: Path, publisher_key: PrivateKey,
                                        other_key: PrivateKey) -> None:
    store = TrustStore.open(tmp_path, create=True)
    store.add(publisher_key.public_key, [Role.PUBLISHER])
    (tmp_path / "keys" / f"{publisher_key.key_id}.pub").write_bytes(
        other_key.public_key.to_pem())
    with pytest.raises(ConfigError, match="edited by hand"):
        TrustStore.open(tmp_path)


def test_revocation_by_the_key_itself_persists(tmp_path: Path, publisher_key: PrivateKey,
                                               artifact_dir: Path) -> None:
    store = TrustStore.open(tmp_path / "t", create=True)
    store.add(publisher_key.public_key, [Role.PUBLISHER])
    signed = sign_artifact(artifact_dir, publisher_key)
    verify_artifact(artifact_dir, signed.envelope_path, store)
    store.revoke(publisher_key.key_id, publisher_key, reason="key leaked")
    reopened = TrustStore.open(tmp_path / "t")
    with pytest.raises(RevokedKeyError, match="key leaked"):
        verify_artifact(artifact_dir, signed.envelope_path, reopened)
    # Editing the revocation out of the index does not un-revoke: the signed file counts.
    index = tmp_path / "t" / "index.toml"
    index.write_text("\n".join(line for line in index.read_text().splitlines()
                               if not line.startswith(("revoked_at", "revocation"))))
    with pytest.raises(RevokedKeyError):
        TrustStore.open(tmp_path / "t").require(publisher_key.key_id, "publisher")
    with pytest.raises(ConfigError, match="cannot be trusted again"):
        reopened.add(publisher_key.public_key, [Role.PUBLISHER])


def test_revocation_needs_the_key_itself_or_an_operator(
        publisher_key: PrivateKey, other_key: PrivateKey) -> None:
    store = TrustStore()
    store.add(publisher_key.public_key, [Role.PUBLISHER])
    store.add(other_key.public_key, [Role.PUBLISHER])
    with pytest.raises(ConfigError, match="by itself or by a trusted operator key"):
        store.revoke(publisher_key.key_id, other_key)
    operator = generate_key()
    store.add(operator.public_key, [Role.OPERATOR])
    env = store.revoke(publisher_key.key_id, operator, reason="rotation overdue")
    tk = store.get(publisher_key.key_id)
    assert tk is not None and tk.revocation is not None
    assert tk.revocation.signed_by == operator.key_id
    # The same signed revocation, shipped to a device's store, revokes there too.
    device_store = TrustStore()
    device_store.add(publisher_key.public_key, [Role.PUBLISHER])
    device_store.add(operator.public_key, [Role.OPERATOR])
    device_store.apply(Envelope.from_json(env.to_json()))
    with pytest.raises(RevokedKeyError):
        device_store.require(publisher_key.key_id, "publisher")


def test_a_forged_revocation_is_refused_and_a_tampered_one_fails_closed(
        tmp_path: Path, publisher_key: PrivateKey, other_key: PrivateKey) -> None:
    store = TrustStore.open(tmp_path, create=True)
    store.add(publisher_key.public_key, [Role.PUBLISHER])
    forged = TrustStore()
    forged.add(publisher_key.public_key, [Role.PUBLISHER])
    forged.add(other_key.public_key, [Role.OPERATOR])  # an operator only elsewhere
    env = forged.revoke(publisher_key.key_id, other_key)
    with pytest.raises(BadSignatureError, match="neither by that key nor by an operator"):
        store.apply(env)
    assert store.get(publisher_key.key_id).revocation is None  # type: ignore[union-attr]
    real = store.revoke(publisher_key.key_id, publisher_key, reason="leaked")
    path = tmp_path / "revocations" / f"{publisher_key.key_id}.json"
    d = json.loads(path.read_text())
    d["payload"] = Envelope(real.payload_type, real.payload.replace(b"leaked", b"LEAKED"),
                            ()).to_dict()["payload"]
    path.write_text(json.dumps(d))
    with pytest.raises(BadSignatureError):
        TrustStore.open(tmp_path)


def test_rotation_hands_the_roles_to_the_new_key(
        tmp_path: Path, publisher_key: PrivateKey, artifact_dir: Path) -> None:
    store = TrustStore.open(tmp_path / "t", create=True)
    store.add(publisher_key.public_key, [Role.PUBLISHER, Role.OPERATOR], name="2024")
    new = generate_key("ecdsa-p256")
    env = store.rotate(publisher_key, new.public_key, name="2025")
    reopened = TrustStore.open(tmp_path / "t")
    tk = reopened.require(new.key_id, "publisher")
    assert tk.rotated_from == publisher_key.key_id and tk.name == "2025"
    assert set(tk.roles) == {Role.PUBLISHER, Role.OPERATOR}
    signed = sign_artifact(artifact_dir, new)
    assert verify_artifact(artifact_dir, signed.envelope_path, reopened).key_id == new.key_id
    # Shipped to a device that only knew the old key, the rotation introduces the new one.
    device = TrustStore()
    device.add(publisher_key.public_key, [Role.PUBLISHER, Role.OPERATOR])
    device.apply(env)
    assert device.require(new.key_id, "publisher").rotated_from == publisher_key.key_id


def test_rotation_must_be_signed_by_a_usable_old_key(
        tmp_path: Path, publisher_key: PrivateKey, other_key: PrivateKey) -> None:
    store = TrustStore.open(tmp_path, create=True)
    store.add(publisher_key.public_key, [Role.PUBLISHER])
    with pytest.raises(UnknownKeyError):
        store.rotate(other_key, generate_key().public_key)
    new = generate_key()
    env = store.rotate(publisher_key, new.public_key)
    # A rotation claiming to come from the publisher but signed by someone else:
    forged = Envelope(env.payload_type, env.payload,
                      tuple(type(s)(s.keyid, other_key.sign(b"x")) for s in env.signatures))
    fresh = TrustStore()
    fresh.add(publisher_key.public_key, [Role.PUBLISHER])
    with pytest.raises(BadSignatureError):
        fresh.apply(forged)
    store.revoke(publisher_key.key_id, publisher_key)
    with pytest.raises(RevokedKeyError):
        store.rotate(publisher_key, generate_key().public_key)
    with pytest.raises(MalformedEnvelopeError):
        fresh.apply(Envelope("application/json", b"{}", env.signatures))
    # The rotation file is checked on load too.
    rot = tmp_path / "rotations" / f"{new.key_id}.json"
    rot.write_bytes(forged.to_json())
    with pytest.raises(BadSignatureError):
        TrustStore.open(tmp_path)


def test_revocation_record_round_trips(publisher_key: PrivateKey) -> None:
    from edgeward.provenance._trust_records import Revocation

    store = TrustStore()
    store.add(publisher_key.public_key, [Role.PUBLISHER])
    store.revoke(publisher_key.key_id, publisher_key, reason="r")
    tk = store.get(publisher_key.key_id)
    assert tk is not None and tk.revocation is not None
    assert Revocation.from_dict(tk.revocation.to_dict()) == tk.revocation
    with pytest.raises(ConfigError, match="'revoked_at'"):
        Revocation.from_dict({"key_id": "x", "signed_by": "y"})
