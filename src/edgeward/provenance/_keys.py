"""Signing keys: Ed25519 (default) and ECDSA P-256, PKCS#8 on disk, 0600 from the start.

A key id is the sha256 (hex) of the public key's DER SubjectPublicKeyInfo, so the same key has
the same id whatever file or format it travels in. ``cryptography`` exceptions are translated
here; nothing outside this module sees them.
"""

from __future__ import annotations

import enum
import hashlib
import os
import stat
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

from edgeward.errors import ConfigError
from edgeward.safeio import MAX_KEY_BYTES, read_capped

__all__ = [
    "KeyFiles",
    "KeyType",
    "PrivateKey",
    "PublicKey",
    "generate_key",
    "load_private_key",
    "load_public_key",
    "write_key_pair",
]

_PrivateKeyObj = ed25519.Ed25519PrivateKey | ec.EllipticCurvePrivateKey
_PublicKeyObj = ed25519.Ed25519PublicKey | ec.EllipticCurvePublicKey


def _libsodium_ed25519(raw: bytes) -> Callable[[bytes, bytes], bool] | None:
    """An Ed25519 verifier backed by libsodium (PyNaCl), or ``None`` when PyNaCl is absent.

    libsodium verifies Ed25519 about twice as fast as OpenSSL through ``cryptography``; the
    fleet manager verifies every message, so it installs PyNaCl (the ``fleet`` extra). It is
    also stricter (it refuses small-order keys and non-canonical encodings), never looser.
    """
    try:
        from nacl.exceptions import BadSignatureError
        from nacl.signing import VerifyKey
    except ImportError:
        return None
    key = VerifyKey(raw)

    def verify(signature: bytes, data: bytes) -> bool:
        if len(signature) != 64:
            return False
        try:
            key.verify(data, signature)
        except (BadSignatureError, ValueError, TypeError):
            return False
        return True

    return verify


class KeyType(enum.StrEnum):
    """The signature algorithms edgeward signs with."""

    ED25519 = "ed25519"
    ECDSA_P256 = "ecdsa-p256"  # ECDSA on NIST P-256 with SHA-256, DER-encoded signatures


def _key_type_of(obj: _PrivateKeyObj | _PublicKeyObj, source: str) -> KeyType:
    if isinstance(obj, ed25519.Ed25519PrivateKey | ed25519.Ed25519PublicKey):
        return KeyType.ED25519
    if isinstance(obj, ec.EllipticCurvePrivateKey | ec.EllipticCurvePublicKey) \
            and obj.curve.name == "secp256r1":
        return KeyType.ECDSA_P256
    curve = f"/{obj.curve.name}" if isinstance(obj, ec.EllipticCurvePrivateKey
                                               | ec.EllipticCurvePublicKey) else ""
    raise ConfigError(f"{source}: unsupported key type {type(obj).__name__}{curve}; "
                      "edgeward uses Ed25519 or ECDSA P-256 keys")


@dataclass(frozen=True)
class PublicKey:
    """A public key, by its DER SubjectPublicKeyInfo bytes.

    Attributes:
        key_type: the algorithm.
        der: the DER SubjectPublicKeyInfo; ``key_id`` is its sha256.
    """

    key_type: KeyType
    der: bytes = field(repr=False)
    _obj: _PublicKeyObj = field(repr=False, compare=False)
    _fast: Callable[[bytes, bytes], bool] | None = field(default=None, repr=False,
                                                         compare=False)

    @property
    def key_id(self) -> str:
        """sha256 (hex) of the DER SubjectPublicKeyInfo."""
        return hashlib.sha256(self.der).hexdigest()

    @classmethod
    def from_der(cls, der: bytes, *, source: str = "public key") -> PublicKey:
        """Load a DER SubjectPublicKeyInfo.

        Raises:
            ConfigError: not a public key, or an unsupported algorithm.
        """
        try:
            obj = serialization.load_der_public_key(der)
        except (ValueError, UnsupportedAlgorithm) as e:
            raise ConfigError(f"{source}: not a DER public key ({e})") from e
        if not isinstance(obj, ed25519.Ed25519PublicKey | ec.EllipticCurvePublicKey):
            raise ConfigError(f"{source}: unsupported key type {type(obj).__name__}; "
                              "edgeward uses Ed25519 or ECDSA P-256 keys")
        fast = None
        if isinstance(obj, ed25519.Ed25519PublicKey):
            fast = _libsodium_ed25519(obj.public_bytes(serialization.Encoding.Raw,
                                                       serialization.PublicFormat.Raw))
        return cls(_key_type_of(obj, source), der, obj, fast)

    @classmethod
    def from_pem(cls, pem: bytes, *, source: str = "public key") -> PublicKey:
        """Load a PEM ``PUBLIC KEY`` (SubjectPublicKeyInfo).

        Raises:
            ConfigError: not a PEM public key, or an unsupported algorithm.
        """
        try:
            obj = serialization.load_pem_public_key(pem)
        except (ValueError, UnsupportedAlgorithm) as e:
            raise ConfigError(f"{source}: not a PEM public key ({e}); pass the .pub file "
                              "that `edgeward keys generate` wrote") from e
        der = obj.public_bytes(serialization.Encoding.DER,
                               serialization.PublicFormat.SubjectPublicKeyInfo)
        return cls.from_der(der, source=source)

    def to_pem(self) -> bytes:
        """The key as PEM SubjectPublicKeyInfo (what ``model_signing`` and openssl read)."""
        return self._obj.public_bytes(serialization.Encoding.PEM,
                                      serialization.PublicFormat.SubjectPublicKeyInfo)

    def verify(self, signature: bytes, data: bytes) -> bool:
        """Whether ``signature`` is this key's signature over ``data`` (never raises for a bad
        signature; a caller turns ``False`` into a precise error)."""
        if self._fast is not None:
            return self._fast(signature, data)
        try:
            if isinstance(self._obj, ed25519.Ed25519PublicKey):
                self._obj.verify(signature, data)
            else:
                self._obj.verify(signature, data, ec.ECDSA(hashes.SHA256()))
        except (InvalidSignature, ValueError):
            return False
        return True


@dataclass(frozen=True)
class PrivateKey:
    """A private signing key held in memory. Never serialised except by :func:`write_key_pair`.

    Attributes:
        key_type: the algorithm.
        public_key: its public half.
    """

    key_type: KeyType
    public_key: PublicKey
    _obj: _PrivateKeyObj = field(repr=False, compare=False)

    @property
    def key_id(self) -> str:
        """The public key's id."""
        return self.public_key.key_id

    @classmethod
    def from_pem(cls, pem: bytes, *, passphrase: bytes | None = None,
                 source: str = "private key") -> PrivateKey:
        """Load a PEM PKCS#8 private key (no permission check: see :func:`load_private_key`).

        Raises:
            ConfigError: not a private key, a wrong or missing passphrase, unsupported type.
        """
        try:
            obj = serialization.load_pem_private_key(pem, password=passphrase)
        except TypeError as e:
            if passphrase is None:
                raise ConfigError(f"{source}: the key is passphrase-protected; give its "
                                  "passphrase (--passphrase-env VAR)") from e
            raise ConfigError(f"{source}: the key is not passphrase-protected; "
                              "give no passphrase") from e
        except (ValueError, UnsupportedAlgorithm) as e:
            hint = "wrong passphrase, or " if passphrase is not None else ""
            raise ConfigError(f"{source}: cannot load the private key ({hint}not a PEM "
                              f"PKCS#8 private key: {e})") from e
        if not isinstance(obj, ed25519.Ed25519PrivateKey | ec.EllipticCurvePrivateKey):
            raise ConfigError(f"{source}: unsupported key type {type(obj).__name__}; "
                              "edgeward uses Ed25519 or ECDSA P-256 keys")
        key_type = _key_type_of(obj, source)
        der = obj.public_key().public_bytes(serialization.Encoding.DER,
                                            serialization.PublicFormat.SubjectPublicKeyInfo)
        return cls(key_type, PublicKey.from_der(der, source=source), obj)

    def to_pem(self, *, passphrase: bytes | None = None) -> bytes:
        """PEM PKCS#8, encrypted with ``passphrase`` when given (best available encryption)."""
        encryption: serialization.KeySerializationEncryption = (
            serialization.BestAvailableEncryption(passphrase) if passphrase
            else serialization.NoEncryption())
        return self._obj.private_bytes(serialization.Encoding.PEM,
                                       serialization.PrivateFormat.PKCS8, encryption)

    def sign(self, data: bytes) -> bytes:
        """Sign ``data``: raw Ed25519, or DER-encoded ECDSA over SHA-256."""
        if isinstance(self._obj, ed25519.Ed25519PrivateKey):
            return self._obj.sign(data)
        return self._obj.sign(data, ec.ECDSA(hashes.SHA256()))


def generate_key(key_type: KeyType | str = KeyType.ED25519) -> PrivateKey:
    """Generate a new signing key.

    Args:
        key_type: ``ed25519`` (default) or ``ecdsa-p256``.

    Raises:
        ConfigError: an unknown key type.
    """
    try:
        kt = KeyType(key_type)
    except ValueError:
        raise ConfigError(f"unknown key type {key_type!r}; use one of "
                          f"{', '.join(k.value for k in KeyType)}") from None
    obj: _PrivateKeyObj = (ed25519.Ed25519PrivateKey.generate() if kt is KeyType.ED25519
                           else ec.generate_private_key(ec.SECP256R1()))
    der = obj.public_key().public_bytes(serialization.Encoding.DER,
                                        serialization.PublicFormat.SubjectPublicKeyInfo)
    return PrivateKey(kt, PublicKey.from_der(der), obj)


@dataclass(frozen=True)
class KeyFiles:
    """Where :func:`write_key_pair` put a key pair."""

    key_id: str
    key_type: KeyType
    public_key_path: Path
    private_key_path: Path

    def to_dict(self) -> dict[str, str]:
        """The ``keys generate --json`` object."""
        return {"key_id": self.key_id, "key_type": self.key_type.value,
                "public_key_path": str(self.public_key_path),
                "private_key_path": str(self.private_key_path)}


def write_key_pair(key: PrivateKey, out_dir: Path, *, name: str | None = None,
                   passphrase: bytes | None = None) -> KeyFiles:
    """Write ``NAME.key`` (PKCS#8 PEM, mode 0600 from creation) and ``NAME.pub`` (PEM SPKI).

    Args:
        key: the key to write.
        out_dir: the directory (created with mode 0700 if missing).
        name: the file stem; default ``edgeward-<type>-<first 16 hex of the key id>``.
        passphrase: encrypt the private key with it (recommended off-device).

    Returns:
        The key id and both paths.

    Raises:
        ConfigError: a file exists already (never overwritten) or cannot be written.
    """
    stem = name or f"edgeward-{key.key_type.value}-{key.key_id[:16]}"
    if not stem or "/" in stem or stem.startswith("."):
        raise ConfigError(f"bad key name {stem!r}: a plain file stem, e.g. 'publisher-2025'")
    try:
        out_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as e:
        raise ConfigError(f"{out_dir}: cannot create the key directory ({e.strerror})") from e
    priv, pub = out_dir / f"{stem}.key", out_dir / f"{stem}.pub"
    for path in (priv, pub):
        if path.exists():
            raise ConfigError(f"{path}: already exists; choose another --name or directory")
    _write_exclusive(priv, key.to_pem(passphrase=passphrase), mode=0o600)
    try:
        _write_exclusive(pub, key.public_key.to_pem(), mode=0o644)
    except ConfigError:
        priv.unlink(missing_ok=True)
        raise
    return KeyFiles(key.key_id, key.key_type, pub, priv)


def _write_exclusive(path: Path, data: bytes, *, mode: int) -> None:
    """Create ``path`` with ``mode`` from the first byte (os.open, O_EXCL); temp then rename."""
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
        try:
            os.fchmod(fd, mode)  # the umask may have narrowed it; never widened
            os.write(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.link(tmp, path)  # fails if path appeared meanwhile; never overwrites
    except OSError as e:
        raise ConfigError(f"{path}: cannot write ({e.strerror})") from e
    finally:
        tmp.unlink(missing_ok=True)


def load_private_key(path: Path, *, passphrase: bytes | None = None) -> PrivateKey:
    """Load a private key file, refusing one that others can read.

    Args:
        path: a PEM PKCS#8 private key (``.key`` from :func:`write_key_pair`).
        passphrase: its passphrase, if it is encrypted.

    Raises:
        ConfigError: missing file, group- or world-accessible file, wrong or missing
            passphrase, not a private key, unsupported key type.
    """
    try:
        st = path.stat()
    except OSError as e:
        raise ConfigError(f"{path}: cannot read the private key ({e.strerror})") from e
    data = read_capped(path, MAX_KEY_BYTES, what="private key")
    if st.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise ConfigError(
            f"{path}: private key is accessible by group or others (mode "
            f"{stat.S_IMODE(st.st_mode):04o}); refusing to use it. Restrict it with "
            f"`chmod 600 {path}`, and consider the key compromised if others could read it")
    return PrivateKey.from_pem(data, passphrase=passphrase, source=str(path))


def load_public_key(path: Path) -> PublicKey:
    """Load a PEM public key file.

    Raises:
        ConfigError: missing file, not a public key, unsupported key type.
    """
    data = read_capped(path, MAX_KEY_BYTES, what="public key")
    if b"PRIVATE KEY" in data:
        raise ConfigError(f"{path}: is a private key; pass the public key (.pub) instead, "
                          "and never copy a private key off the machine that made it")
    return PublicKey.from_pem(data, source=str(path))
