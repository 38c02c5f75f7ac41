"""A throw-away certificate authority for tests, benchmarks and the demo (never production).

``make_ca`` writes a CA; ``issue`` writes a server certificate (for a broker on loopback: the
names ``localhost`` and ``127.0.0.1``) or a client certificate whose common name is the device
id or user, which Mosquitto's ``use_identity_as_username`` turns into the MQTT user name. Keys
are ECDSA P-256, written 0600.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from edgeward.errors import ConfigError

__all__ = ["CertFiles", "issue", "make_ca"]

_VALID_FOR = dt.timedelta(days=2)  # long enough for any test run, useless after


@dataclass(frozen=True)
class CertFiles:
    """A certificate and its private key on disk (PEM).

    Attributes:
        cert: the certificate.
        key: its private key (mode 0600).
        name: the common name.
    """

    cert: Path
    key: Path
    name: str


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    data = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
    except OSError as e:
        raise ConfigError(f"{path}: cannot write the key ({e.strerror})") from e


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn),
                      x509.NameAttribute(NameOID.ORGANIZATION_NAME, "edgeward test CA")])


def make_ca(directory: Path, *, name: str = "edgeward test CA") -> CertFiles:
    """Create a self-signed CA in ``directory`` (``ca.pem``, ``ca.key``).

    Raises:
        ConfigError: the files cannot be written.
    """
    directory.mkdir(parents=True, exist_ok=True)
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(_name(name)).issuer_name(_name(name))
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + _VALID_FOR)
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True,
                                         crl_sign=True, content_commitment=False,
                                         key_encipherment=False, data_encipherment=False,
                                         key_agreement=False, encipher_only=False,
                                         decipher_only=False), critical=True)
            .sign(key, hashes.SHA256()))
    files = CertFiles(directory / "ca.pem", directory / "ca.key", name)
    _write_key(files.key, key)
    files.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return files


def issue(ca: CertFiles, name: str, directory: Path, *, server: bool = False) -> CertFiles:
    """Issue a certificate signed by ``ca``: ``NAME.pem`` and ``NAME.key`` in ``directory``.

    Args:
        ca: from :func:`make_ca`.
        name: the common name (a device id or user for a client; any label for a server).
        directory: where to write.
        server: a broker certificate for ``localhost`` / ``127.0.0.1`` / ``::1``; otherwise
            a client certificate.

    Raises:
        ConfigError: the CA cannot be read or the files written.
    """
    try:
        ca_key = serialization.load_pem_private_key(ca.key.read_bytes(), password=None)
        ca_cert = x509.load_pem_x509_certificate(ca.cert.read_bytes())
    except (OSError, ValueError) as e:
        raise ConfigError(f"{ca.cert}: cannot load the test CA ({e})") from e
    if not isinstance(ca_key, ec.EllipticCurvePrivateKey):
        raise ConfigError(f"{ca.key}: not the EC key make_ca writes")
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    usage = ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH
    builder = (x509.CertificateBuilder().subject_name(_name(name))
               .issuer_name(ca_cert.subject).public_key(key.public_key())
               .serial_number(x509.random_serial_number())
               .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + _VALID_FOR)
               .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
               .add_extension(x509.ExtendedKeyUsage([usage]), critical=False))
    if server:
        builder = builder.add_extension(x509.SubjectAlternativeName([
            x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
            x509.IPAddress(ipaddress.ip_address("::1"))]), critical=False)
    cert = builder.sign(ca_key, hashes.SHA256())
    directory.mkdir(parents=True, exist_ok=True)
    files = CertFiles(directory / f"{name}.pem", directory / f"{name}.key", name)
    _write_key(files.key, key)
    files.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return files
