"""Keys, CSRs and certificate checks. The private key is generated here and never leaves this host.

AWS IoT (or the organisation's CA) only ever sees the CSR. Whatever comes back is checked strictly:
the certificate must carry exactly our public key and the subject we asked for, otherwise the device
would hold a key that does not match its certificate and fail its first TLS handshake in the field.
"""

from __future__ import annotations

import datetime as dt
import os
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Literal, get_args

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.types import PublicKeyTypes
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from collector.topics import check_thing_name_length
from devices.errors import DeviceError

KeyType = Literal["ec-p256", "rsa-2048"]
KEY_TYPES: tuple[str, ...] = get_args(KeyType)
PrivateKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey
CA_KEY_PASSWORD_ENV = "PM500_CA_KEY_PASSWORD"  # noqa: S105 (a variable name, not a password)
_BACKDATE = dt.timedelta(minutes=5)


def generate_key(key_type: KeyType) -> PrivateKey:
    if key_type == "ec-p256":
        return ec.generate_private_key(ec.SECP256R1())
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def private_key_pem(key: PrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def subject_for(thing: str) -> x509.Name:
    try:
        check_thing_name_length(thing)  # the same rule the stack config applies
    except ValueError as e:
        raise DeviceError(str(e)) from None
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, thing)])


def build_csr(key: PrivateKey, thing: str) -> str:
    """A PEM CSR whose subject is CN=<thing name> (AWS IoT and Mosquitto both key on that CN)."""
    csr = x509.CertificateSigningRequestBuilder().subject_name(subject_for(thing)).sign(key, hashes.SHA256())
    return csr.public_bytes(serialization.Encoding.PEM).decode()


def _spki(key: PublicKeyTypes) -> bytes:
    """Any key type compares: a certificate with a key type we never ask for is a mismatch, not a crash."""
    return key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def check_certificate(cert_pem: str, key: PrivateKey, thing: str) -> x509.Certificate:
    """The certificate the service returned, if it carries our public key and CN=<thing>; else an error."""
    try:
        cert = x509.load_pem_x509_certificate(cert_pem.encode())
    except ValueError:
        raise DeviceError("the service returned something that is not a PEM certificate") from None
    if _spki(cert.public_key()) != _spki(key.public_key()):
        raise DeviceError(
            "certificate/key mismatch: the certificate AWS IoT issued does not carry the public key of the "
            "private key generated here; it was revoked and deleted"
        )
    if cert.subject != subject_for(thing):
        raise DeviceError(
            f"certificate subject mismatch: expected CN={thing}, got {cert.subject.rfc4514_string()}; "
            "it was revoked and deleted"
        )
    return cert


def cert_matches_key(cert_pem: bytes, key_pem: bytes) -> bool:
    """True when a bundle's certificate and private key belong together."""
    try:
        cert = x509.load_pem_x509_certificate(cert_pem)
        key = serialization.load_pem_private_key(key_pem, password=None)
    except (ValueError, TypeError):
        return False
    return _spki(cert.public_key()) == _spki(key.public_key())


def load_certificate_file(path: Path, option: str) -> x509.Certificate:
    try:
        return x509.load_pem_x509_certificate(path.read_bytes())
    except OSError as e:
        raise DeviceError(f"{option} {path}: cannot read it: {e.strerror}") from None
    except ValueError:
        raise DeviceError(f"{option} {path}: not a PEM certificate") from None


# Amazon's ATS roots that AWS IoT's `iot:Data-ATS` endpoint chains to: CA 1 for RSA cipher suites, CA 3
# for ECDSA ones (which one a client sees depends on the negotiated suite). Copied from Debian's
# ca-certificates (mozilla/Amazon_Root_CA_{1,3}.crt); fingerprints asserted in tests/cli/test_root_ca.py.
AMAZON_ROOT_CA_FILES = ("AmazonRootCA1.pem", "AmazonRootCA3.pem")


def amazon_root_ca_pem() -> bytes:
    """Amazon Root CA 1 and 3 (one PEM file), shipped with the CLI: what verifies the AWS IoT ATS endpoint."""
    folder = resources.files("devices")
    return b"".join(folder.joinpath(name).read_bytes() for name in AMAZON_ROOT_CA_FILES)


@dataclass(frozen=True)
class OrgCA:
    """The organisation's own CA (bring-your-own-CA): signs CSRs locally, registered with AWS IoT."""

    certificate: x509.Certificate
    private_key: PrivateKey

    @property
    def cert_pem(self) -> str:
        return self.certificate.public_bytes(serialization.Encoding.PEM).decode()

    def sign(self, csr_pem: str, days: int) -> str:
        """A client certificate for the CSR's subject and public key, valid `days` days."""
        csr = x509.load_pem_x509_csr(csr_pem.encode())
        now = dt.datetime.now(dt.UTC)
        cert = (
            x509.CertificateBuilder()
            .subject_name(csr.subject)
            .issuer_name(self.certificate.subject)
            .public_key(csr.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - _BACKDATE)
            .not_valid_after(now + dt.timedelta(days=days))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(self.private_key.public_key()),
                critical=False,
            )
            .sign(self.private_key, hashes.SHA256())
        )
        return cert.public_bytes(serialization.Encoding.PEM).decode()


def load_org_ca(cert_path: Path, key_path: Path) -> OrgCA:
    """Load `--ca-cert/--ca-key`; the key may be encrypted (password from $PM500_CA_KEY_PASSWORD)."""
    cert = load_certificate_file(cert_path, "--ca-cert")
    if not _is_ca(cert):
        raise DeviceError(f"--ca-cert {cert_path}: not a CA certificate (basicConstraints CA:TRUE missing)")
    password = os.environ.get(CA_KEY_PASSWORD_ENV)
    try:
        key = serialization.load_pem_private_key(
            key_path.read_bytes(), password.encode() if password else None
        )
    except OSError as e:
        raise DeviceError(f"--ca-key {key_path}: cannot read it: {e.strerror}") from None
    except TypeError:
        raise DeviceError(f"--ca-key {key_path}: the key is encrypted; set {CA_KEY_PASSWORD_ENV}") from None
    except ValueError:
        raise DeviceError(
            f"--ca-key {key_path}: not a PEM private key (or wrong {CA_KEY_PASSWORD_ENV})"
        ) from None
    if not isinstance(key, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey):
        raise DeviceError(f"--ca-key {key_path}: expected an EC or RSA key")
    if _spki(key.public_key()) != _spki(cert.public_key()):
        raise DeviceError(f"--ca-key {key_path} does not belong to --ca-cert {cert_path}")
    return OrgCA(cert, key)


def _is_ca(cert: x509.Certificate) -> bool:
    try:
        return cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    except x509.ExtensionNotFound:
        return False


def check_issued_by(cert: x509.Certificate, ca: OrgCA) -> None:
    try:
        cert.verify_directly_issued_by(ca.certificate)
    except (ValueError, TypeError, InvalidSignature):
        raise DeviceError("the registered certificate was not signed by --ca-cert") from None
