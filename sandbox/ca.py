"""A throw-away certificate authority for local runs: the bring-your-own-CA of a real fleet.

The broker trusts it (`cafile`), the CLI signs device CSRs with it, the tests issue client
certificates whose CN is a thing name. Keys are EC P-256, generated at run time, written 0600 and
never leave the working directory they were created in.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import re
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

CA_CERT_FILE = "ca.pem"
CA_KEY_FILE = "ca.key"
_BACKDATE = dt.timedelta(minutes=5)  # tolerate small clock differences between processes/hosts
_CA_DAYS = 3650

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


def write_private(path: Path, data: bytes) -> None:
    """Write `data` to `path` with mode 0600 from the first byte on, atomically (temp file + rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")  # mkstemp creates it 0600
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_public(path: Path, data: bytes) -> None:
    """Write a certificate (public data) atomically, mode 0644."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _new_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def file_stem(cn: str) -> str:
    """A file name for a certificate CN (thing names contain ':'; keep file names portable)."""
    return re.sub(r"[^A-Za-z0-9._-]", "_", cn)


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


@dataclass(frozen=True)
class DevCA:
    """A CA certificate and key on disk (`ca.pem`, `ca.key` in `directory`)."""

    directory: Path
    certificate: x509.Certificate
    private_key: ec.EllipticCurvePrivateKey

    @property
    def cert_path(self) -> Path:
        return self.directory / CA_CERT_FILE

    @property
    def key_path(self) -> Path:
        return self.directory / CA_KEY_FILE

    @property
    def cert_pem(self) -> bytes:
        return self.certificate.public_bytes(serialization.Encoding.PEM)

    @property
    def name(self) -> str:
        return str(self.certificate.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value)

    @classmethod
    def create(cls, directory: Path, name: str = "pm500 dev CA") -> DevCA:
        """Generate a new CA in `directory` (created if missing); refuses to overwrite an existing one."""
        directory = Path(directory).absolute()  # servers read these paths from another cwd
        if (directory / CA_KEY_FILE).exists():
            raise FileExistsError(f"{directory / CA_KEY_FILE} exists; use DevCA.load() to reuse that CA")
        key = _new_key()
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        now = _now()
        cert = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - _BACKDATE)
            .not_valid_after(now + dt.timedelta(days=_CA_DAYS))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True, content_commitment=False, key_encipherment=False,
                    data_encipherment=False, key_agreement=False, key_cert_sign=True, crl_sign=True,
                    encipher_only=False, decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .sign(key, hashes.SHA256())
        )
        ca = cls(directory, cert, key)
        write_private(ca.key_path, _key_pem(key))
        write_public(ca.cert_path, ca.cert_pem)
        return ca

    @classmethod
    def load(cls, directory: Path) -> DevCA:
        """Load the CA that `create` wrote to `directory`."""
        directory = Path(directory).absolute()
        cert = x509.load_pem_x509_certificate((directory / CA_CERT_FILE).read_bytes())
        key = serialization.load_pem_private_key((directory / CA_KEY_FILE).read_bytes(), password=None)
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise TypeError(f"{directory / CA_KEY_FILE}: expected an EC private key")
        return cls(directory, cert, key)

    def issue(
        self,
        cn: str,
        directory: Path,
        *,
        server_hostnames: Sequence[str] | None = None,
        ip_addresses: Sequence[str | IPAddress] = (),
        days: int = 365,
        expired: bool = False,
    ) -> tuple[Path, Path]:
        """Generate a key and a certificate for `cn` in `directory`; return (cert path, key path).

        Without `server_hostnames`/`ip_addresses` the certificate is a TLS client certificate (the
        thing's identity: Mosquitto uses its CN as the user name). With them, it is a server
        certificate whose subjectAltName lists those names and addresses. `expired=True` makes one whose
        validity ended `days` days ago (what a collector presents after missing its rotation).
        """
        if not cn:
            raise ValueError("cn must be a non-empty string")
        key = _new_key()
        cert = self._build(
            x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)]),
            key.public_key(),
            days,
            server_hostnames=list(server_hostnames or ()),
            ip_addresses=[ipaddress.ip_address(ip) for ip in ip_addresses],
            expired=expired,
        )
        stem = file_stem(cn)
        directory = Path(directory).absolute()
        cert_path, key_path = directory / f"{stem}.pem", directory / f"{stem}.key"
        write_private(key_path, _key_pem(key))
        write_public(cert_path, cert.public_bytes(serialization.Encoding.PEM))
        return cert_path, key_path

    def sign_csr(self, csr_pem: bytes, days: int = 365) -> bytes:
        """Sign a device CSR: a client certificate PEM with the CSR's own subject and public key.

        This is what a real bring-your-own-CA does, and what moto's `create_certificate_from_csr`
        does not (it signs a fresh key), so tests use it to stand in for the CA honestly.
        """
        try:
            csr = x509.load_pem_x509_csr(csr_pem)
        except ValueError as exc:
            raise ValueError(f"csr_pem is not a PEM certificate signing request: {exc}") from exc
        if not csr.is_signature_valid:
            raise ValueError("csr_pem: signature does not match its public key")
        cert = self._build(csr.subject, csr.public_key(), days, server_hostnames=[], ip_addresses=[])
        return cert.public_bytes(serialization.Encoding.PEM)

    def _build(
        self,
        subject: x509.Name,
        public_key: object,
        days: int,
        *,
        server_hostnames: list[str],
        ip_addresses: list[IPAddress],
        expired: bool = False,
    ) -> x509.Certificate:
        if days < 1:
            raise ValueError(f"days must be >= 1, got {days}")
        now = _now() - dt.timedelta(days=2 * days) if expired else _now()
        server = bool(server_hostnames or ip_addresses)
        builder = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(self.certificate.subject)
            .public_key(public_key)  # type: ignore[arg-type]
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - _BACKDATE)
            .not_valid_after(now + dt.timedelta(days=days))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.ExtendedKeyUsage(
                    [ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH]
                ),
                critical=False,
            )
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(self.private_key.public_key()),
                critical=False,
            )
        )
        if server:
            names: list[x509.GeneralName] = [x509.DNSName(h) for h in server_hostnames]
            names += [x509.IPAddress(ip) for ip in ip_addresses]
            builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
        return builder.sign(self.private_key, hashes.SHA256())
