"""The trust store: public keys with roles, signed revocations, signed rotations.

On disk it is a directory (see docs/provenance.md)::

    TRUST/index.toml                  the keys, their roles and status (format 1)
    TRUST/keys/KEYID.pub              each key, PEM SubjectPublicKeyInfo
    TRUST/revocations/KEYID.json      DSSE envelope: "KEYID is revoked", signed
    TRUST/rotations/NEWKEYID.json     DSSE envelope: "OLD hands its roles to NEW", signed by OLD

Every revocation file under ``revocations/`` counts, listed in the index or not, so deleting an
index line cannot un-revoke a key; a revocation or rotation whose signature does not verify makes
the whole store refuse to load (fail closed).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

from edgeward.errors import (
    BadSignatureError,
    ConfigError,
    MalformedEnvelopeError,
    RevokedKeyError,
    UnknownKeyError,
    WrongRoleError,
)
from edgeward.provenance._dsse import Envelope, canonical_json, sign_envelope, verify_signatures
from edgeward.provenance._keys import PrivateKey, PublicKey
from edgeward.provenance._statement import utc_now
from edgeward.provenance._trust_records import (
    Revocation,
    Role,
    TrustedKey,
    parse_payload,
    roles_of,
)
from edgeward.safeio import (
    MAX_KEY_BYTES,
    MAX_MANIFEST_BYTES,
    MAX_SIGNATURE_BYTES,
    parse_toml,
    read_capped,
    read_text_capped,
)

__all__ = ["REVOCATION_PAYLOAD_TYPE", "ROTATION_PAYLOAD_TYPE", "Revocation", "Role",
           "TrustStore", "TrustedKey"]

REVOCATION_PAYLOAD_TYPE = "application/vnd.edgeward.revocation+json"
ROTATION_PAYLOAD_TYPE = "application/vnd.edgeward.rotation+json"
_REVOCATION_TYPE = "https://edgeward.dev/revocation/v1"
_ROTATION_TYPE = "https://edgeward.dev/rotation/v1"
_INDEX_VERSION = 1


class TrustStore:
    """Public keys with roles, revocations and rotations; on disk or in memory.

    ``TrustStore.open(path)`` loads a directory (``create=True`` makes an empty one);
    ``TrustStore()`` is an in-memory store (tests, a device's store built from a bundle).
    Every mutation of an on-disk store is written at once (key files, then the index,
    each by temp file and atomic rename).
    """

    def __init__(self, path: Path | None = None) -> None:
        self.path = path
        self._keys: dict[str, TrustedKey] = {}
        self._revoked_unknown: dict[str, Revocation] = {}

    # -- loading -------------------------------------------------------------------------
    @classmethod
    def open(cls, path: Path, *, create: bool = False) -> TrustStore:
        """Load a trust store directory.

        Args:
            path: the directory.
            create: make an empty store if it does not exist.

        Raises:
            ConfigError: missing (and not ``create``), unreadable or malformed index.
            BadSignatureError: a revocation or rotation in it does not verify.
        """
        store = cls(path)
        index = path / "index.toml"
        if not index.exists():
            if not create:
                raise ConfigError(f"{path}: not a trust store (no index.toml); create one with "
                                  "`edgeward keys trust PUBKEY --trust DIR --role ROLE`")
            store._save()
            return store
        text = read_text_capped(index, MAX_MANIFEST_BYTES, what="trust index")
        data = parse_toml(text, what=str(index))
        if data.get("version") != _INDEX_VERSION:
            raise ConfigError(f"{index}: unsupported index version {data.get('version')!r:.40} "
                              f"(this edgeward reads {_INDEX_VERSION})")
        if not isinstance(data.get("keys", []), list) \
                or not all(isinstance(e, dict) for e in data.get("keys", [])):
            raise ConfigError(f"{index}: `keys` must be an array of tables ([[keys]]); the "
                              "index was edited by hand")
        for entry in data.get("keys", []):
            store._load_entry(entry, index)
        for entry in data.get("keys", []):
            if entry.get("rotation"):
                rotation = str(entry["rotation"])
                if rotation.startswith("/") or ".." in rotation.split("/"):
                    raise ConfigError(f"{index}: rotation {rotation!r:.60} must be a path "
                                      "inside the store")
                store._check_rotation_file(path / rotation, entry["key_id"])
        rev_dir = path / "revocations"
        for f in sorted(rev_dir.glob("*.json")) if rev_dir.is_dir() else []:
            store._apply_revocation(Envelope.from_json(
                read_capped(f, MAX_SIGNATURE_BYTES, what="revocation"), source=str(f)), str(f))
        return store

    def _load_entry(self, entry: Mapping[str, Any], index: Path) -> None:
        where = f"{index}: key {entry.get('key_id', '?')!r}"
        assert self.path is not None
        try:
            pem = self._key_file(entry["public_key"], where)
            key = PublicKey.from_pem(pem, source=where)
            if key.key_id != entry["key_id"]:
                raise ConfigError(f"{where}: the key file holds key {key.key_id}, not the "
                                  "key the index names; the store was edited by hand")
            if entry.get("algorithm") not in (None, key.key_type.value):
                raise ConfigError(f"{where}: algorithm {entry['algorithm']!r} does not match "
                                  f"the key ({key.key_type.value})")
            self._keys[key.key_id] = TrustedKey(
                key=key, roles=roles_of(entry["roles"], where), name=entry.get("name", ""),
                added_at=entry.get("added_at", ""), rotated_from=entry.get("rotated_from"))
        except (KeyError, TypeError, AttributeError, ValueError, OSError) as e:
            raise ConfigError(f"{where}: bad index entry ({type(e).__name__}: {e})") from e

    def _key_file(self, name: object, where: str) -> bytes:
        """A key file named by the index: a plain name inside the store, read safely."""
        assert self.path is not None
        text = name if isinstance(name, str) else ""
        parts = text.split("/")
        if not text or text.startswith("/") or "\\" in text \
                or any(p in ("", ".", "..") for p in parts):
            raise ConfigError(f"{where}: public_key must be a relative path inside the store "
                              f"(like keys/ID.pub), not {name!r:.60}")
        return read_capped(self.path / text, MAX_KEY_BYTES, what="public key")

    def _check_rotation_file(self, path: Path, key_id: str) -> None:
        env = Envelope.from_json(read_capped(path, MAX_SIGNATURE_BYTES,
                                             what="rotation statement"), source=str(path))
        body = self._verify_rotation(env, str(path), require_unrevoked=False)
        if body["new_key_id"] != key_id:
            raise BadSignatureError(f"{path}: the rotation introduces {body['new_key_id']}, "
                                    f"not {key_id}")

    # -- queries -------------------------------------------------------------------------
    def list_keys(self) -> tuple[TrustedKey, ...]:
        """Every key, oldest first."""
        return tuple(sorted(self._keys.values(), key=lambda k: (k.added_at, k.key_id)))

    def get(self, key_id: str) -> TrustedKey | None:
        """The key with this id, or None."""
        return self._keys.get(key_id)

    def require(self, key_id: str, role: Role | str) -> TrustedKey:
        """The key, if it is trusted, unrevoked and holds ``role``.

        Raises:
            UnknownKeyError / RevokedKeyError / WrongRoleError: which check failed.
            ConfigError: an unknown role name.
        """
        r = roles_of([str(role)], "role")[0]
        short = key_id[:16] or "(none)"
        tk = self._keys.get(key_id)
        if tk is None:
            if key_id in self._revoked_unknown:
                raise RevokedKeyError(f"key {short}… is revoked", key_id=key_id)
            raise UnknownKeyError(f"key {short}… is not in the trust store {self.path or ''}; "
                                  "add its public key with `edgeward keys trust` if you trust it",
                                  key_id=key_id)
        if tk.revocation is not None:
            raise RevokedKeyError(
                f"key {short}… ({tk.name or 'unnamed'}) was revoked at "
                f"{tk.revocation.revoked_at}: {tk.revocation.reason or 'no reason given'}",
                key_id=key_id)
        if r not in tk.roles:
            raise WrongRoleError(f"key {short}… ({tk.name or 'unnamed'}) is trusted as "
                                 f"{', '.join(tk.roles)}, not {r.value}", key_id=key_id)
        return tk

    # -- mutations -----------------------------------------------------------------------
    def add(self, key: PublicKey, roles: Iterable[Role | str], *, name: str = "") -> TrustedKey:
        """Trust ``key`` for ``roles`` (adding roles to a key already trusted).

        Raises:
            ConfigError: no/unknown role, or the key is revoked (a revoked key stays revoked).
        """
        wanted = roles_of([str(r) for r in roles], "trust")
        if key.key_id in self._revoked_unknown or (
                key.key_id in self._keys and self._keys[key.key_id].revocation):
            raise ConfigError(f"key {key.key_id[:16]}… is revoked; a revoked key cannot be "
                              "trusted again (generate a new key)")
        old = self._keys.get(key.key_id)
        tk = (replace(old, roles=tuple(sorted(set(old.roles) | set(wanted))),
                      name=name or old.name) if old
              else TrustedKey(key=key, roles=wanted, name=name))
        self._keys[key.key_id] = tk
        self._save()
        return tk

    def revoke(self, key_id: str, signer: PrivateKey, *, reason: str = "") -> Envelope:
        """Revoke a key with a signed revocation (by the key itself or an operator key).

        Returns:
            The revocation envelope (also stored; ship it to devices with :meth:`apply`).

        Raises:
            UnknownKeyError: ``key_id`` is not in the store.
            ConfigError: the signer may not revoke it.
        """
        tk = self._keys.get(key_id)
        if tk is None:
            raise UnknownKeyError(f"key {key_id[:16]}… is not in the trust store", key_id=key_id)
        if signer.key_id != key_id:
            op = self._keys.get(signer.key_id)
            if op is None or Role.OPERATOR not in op.roles or op.revocation:
                raise ConfigError("a key is revoked by itself or by a trusted operator key; "
                                  f"{signer.key_id[:16]}… is neither")
        body = {"_type": _REVOCATION_TYPE, "key_id": key_id, "reason": reason,
                "revoked_at": utc_now(), "public_key": tk.key.to_pem().decode("ascii")}
        env = sign_envelope(canonical_json(body), REVOCATION_PAYLOAD_TYPE, [signer])
        self.apply(env)
        return env

    def rotate(self, old: PrivateKey, new: PublicKey, *, name: str = "") -> Envelope:
        """Introduce ``new`` with ``old``'s roles, by a statement signed with ``old``.

        The old key stays trusted for what it already signed until it is revoked.

        Returns:
            The rotation envelope (also stored; ship it to devices with :meth:`apply`).

        Raises:
            UnknownKeyError / RevokedKeyError: the old key is not usable.
        """
        tk = self._keys.get(old.key_id)
        if tk is None:
            raise UnknownKeyError(f"key {old.key_id[:16]}… is not in the trust store",
                                  key_id=old.key_id)
        self.require(old.key_id, tk.roles[0])
        body = {"_type": _ROTATION_TYPE, "old_key_id": old.key_id, "new_key_id": new.key_id,
                "new_public_key": new.to_pem().decode("ascii"),
                "roles": [r.value for r in tk.roles], "name": name, "rotated_at": utc_now()}
        env = sign_envelope(canonical_json(body), ROTATION_PAYLOAD_TYPE, [old])
        self.apply(env)
        return env

    def apply(self, envelope: Envelope) -> TrustedKey | Revocation:
        """Apply a signed revocation or rotation made elsewhere (e.g. shipped in a bundle).

        Raises:
            MalformedEnvelopeError: neither kind of statement.
            BadSignatureError: its signature does not verify under the key it must come from.
            UnknownKeyError / RevokedKeyError: a rotation's old key is not usable here.
        """
        if envelope.payload_type == REVOCATION_PAYLOAD_TYPE:
            rev = self._apply_revocation(envelope, "revocation")
            self._write_envelope("revocations", rev.key_id, envelope)
            self._save()
            return rev
        body = self._verify_rotation(envelope, "rotation", require_unrevoked=True)
        new = PublicKey.from_pem(body["new_public_key"].encode("ascii"), source="rotation")
        if new.key_id in self._revoked_unknown:
            raise ConfigError(f"rotation: the new key {new.key_id[:16]}… is revoked")
        tk = TrustedKey(key=new, roles=roles_of(body["roles"], "rotation"),
                        name=body.get("name", ""), rotated_from=body["old_key_id"])
        self._keys[new.key_id] = tk
        self._write_envelope("rotations", new.key_id, envelope)
        self._save()
        return tk

    def _verify_rotation(self, env: Envelope, what: str, *,
                         require_unrevoked: bool) -> dict[str, Any]:
        body = parse_payload(env, ROTATION_PAYLOAD_TYPE, _ROTATION_TYPE, what)
        old_id = body.get("old_key_id")
        if not isinstance(old_id, str) or not isinstance(body.get("new_public_key"), str):
            raise MalformedEnvelopeError(f"{what}: needs old_key_id and new_public_key")
        old = self._keys.get(old_id)
        if old is None:
            raise UnknownKeyError(f"{what}: the old key {old_id[:16]}… is not in the trust "
                                  "store, so the rotation cannot be checked", key_id=old_id)
        if require_unrevoked and old.revocation:
            raise RevokedKeyError(f"{what}: the old key {old_id[:16]}… is revoked",
                                  key_id=old_id)
        if not verify_signatures(env, old.key):
            raise BadSignatureError(f"{what}: not signed by the old key {old_id[:16]}…")
        if not set(body.get("roles") or ()) <= {r.value for r in old.roles}:
            raise BadSignatureError(f"{what}: claims roles {body.get('roles')!r} the old key "
                                    "does not hold")
        new = PublicKey.from_pem(body["new_public_key"].encode("ascii"), source=what)
        if new.key_id != body.get("new_key_id"):
            raise MalformedEnvelopeError(f"{what}: new_key_id does not match new_public_key")
        return body

    def _apply_revocation(self, env: Envelope, what: str) -> Revocation:
        body = parse_payload(env, REVOCATION_PAYLOAD_TYPE, _REVOCATION_TYPE, what)
        key_id = body.get("key_id")
        if not isinstance(key_id, str) or not isinstance(body.get("public_key"), str):
            raise MalformedEnvelopeError(f"{what}: needs key_id and public_key")
        revoked = PublicKey.from_pem(body["public_key"].encode("ascii"), source=what)
        if revoked.key_id != key_id:
            raise MalformedEnvelopeError(f"{what}: key_id does not match public_key")
        signers = [revoked] + [k.key for k in self._keys.values() if Role.OPERATOR in k.roles]
        signer = next((k for k in signers if verify_signatures(env, k)), None)
        if signer is None:
            raise BadSignatureError(f"{what}: the revocation of {key_id[:16]}… is signed "
                                    "neither by that key nor by an operator key in the store")
        rev = Revocation(key_id=key_id, reason=str(body.get("reason", "")),
                         revoked_at=str(body.get("revoked_at", "")), signed_by=signer.key_id)
        if key_id in self._keys:
            self._keys[key_id] = replace(self._keys[key_id], revocation=rev)
        else:
            self._revoked_unknown[key_id] = rev
        return rev

    # -- persistence ---------------------------------------------------------------------
    def _write_envelope(self, folder: str, key_id: str, env: Envelope) -> None:
        if self.path is not None:
            _atomic_write(self.path / folder / f"{key_id}.json", env.to_json())

    def _save(self) -> None:
        if self.path is None:
            return
        lines = ["# edgeward trust store index. Manage it with `edgeward keys trust|revoke|"
                 "rotate`;", "# see docs/provenance.md for the format.",
                 f"version = {_INDEX_VERSION}", ""]
        for tk in self.list_keys():
            rel = f"keys/{tk.key_id}.pub"
            if not (self.path / rel).exists():
                _atomic_write(self.path / rel, tk.key.to_pem())
            entry: dict[str, Any] = {
                "key_id": tk.key_id, "algorithm": tk.key.key_type.value,
                "roles": [r.value for r in tk.roles], "name": tk.name,
                "added_at": tk.added_at, "public_key": rel}
            if tk.rotated_from:
                entry |= {"rotated_from": tk.rotated_from,
                          "rotation": f"rotations/{tk.key_id}.json"}
            if tk.revocation:
                entry |= {"revoked_at": tk.revocation.revoked_at,
                          "revocation": f"revocations/{tk.key_id}.json"}
            lines.append("[[keys]]")
            lines += [f"{k} = {_toml(v)}" for k, v in entry.items()]
            lines.append("")
        _atomic_write(self.path / "index.toml", "\n".join(lines).encode("utf-8"))


def _toml(value: object) -> str:
    if isinstance(value, str):
        return json.dumps(value)  # a JSON string is a valid TOML basic string
    if isinstance(value, list):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    raise TypeError(f"cannot write {value!r} to the trust index")


def _atomic_write(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with tmp.open("wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        tmp.replace(path)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        raise ConfigError(f"{path}: cannot write ({e.strerror})") from e
