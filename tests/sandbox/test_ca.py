import stat
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from collector.topics import thing_name
from sandbox.ca import DevCA


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _cn(cert: x509.Certificate) -> str:
    return str(cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value)


def test_create_writes_a_ca_with_a_private_key(tmp_path: Path) -> None:
    ca = DevCA.create(tmp_path / "ca", name="unit CA")
    assert _mode(ca.key_path) == 0o600
    cert = x509.load_pem_x509_certificate(ca.cert_path.read_bytes())
    assert cert == ca.certificate
    assert ca.cert_pem == ca.cert_path.read_bytes()
    assert cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert _cn(cert) == "unit CA" == ca.name
    cert.verify_directly_issued_by(cert)


def test_create_refuses_to_overwrite_and_load_round_trips(tmp_path: Path) -> None:
    ca = DevCA.create(tmp_path)
    with pytest.raises(FileExistsError, match=r"DevCA\.load"):
        DevCA.create(tmp_path)
    loaded = DevCA.load(tmp_path)
    assert loaded.certificate == ca.certificate
    assert loaded.private_key.private_numbers() == ca.private_key.private_numbers()


def test_issue_client_certificate_for_a_thing_name(dev_ca: DevCA, tmp_path: Path) -> None:
    thing = thing_name("staging", "plant-a", "edge-01")
    cert_path, key_path = dev_ca.issue(thing, tmp_path / "edge")
    assert _mode(key_path) == 0o600
    cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
    assert _cn(cert) == thing  # the ':' survives: it is the MQTT identity
    cert.verify_directly_issued_by(dev_ca.certificate)
    assert cert.public_key() == key.public_key()
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.CLIENT_AUTH]


def test_issue_server_certificate_names_hosts_and_ips(dev_ca: DevCA, tmp_path: Path) -> None:
    cert_path, _ = dev_ca.issue("localhost", tmp_path, server_hostnames=["localhost"],
                                ip_addresses=["127.0.0.1"])
    cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["localhost"]
    assert [str(ip) for ip in san.get_values_for_type(x509.IPAddress)] == ["127.0.0.1"]
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert ExtendedKeyUsageOID.SERVER_AUTH in eku


@pytest.mark.parametrize("algorithm", ["ec", "rsa"])
def test_sign_csr_keeps_the_devices_key_and_subject(dev_ca: DevCA, algorithm: str) -> None:
    key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey = (
        ec.generate_private_key(ec.SECP256R1()) if algorithm == "ec"
        else rsa.generate_private_key(public_exponent=65537, key_size=2048)
    )
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "prod:site-9:edge-3")])
    csr = x509.CertificateSigningRequestBuilder().subject_name(subject).sign(key, hashes.SHA256())
    pem = dev_ca.sign_csr(csr.public_bytes(serialization.Encoding.PEM), days=30)
    cert = x509.load_pem_x509_certificate(pem)
    assert cert.public_key() == key.public_key()
    assert cert.subject == subject
    cert.verify_directly_issued_by(dev_ca.certificate)
    assert (cert.not_valid_after_utc - cert.not_valid_before_utc).days in (30, 31)


def test_sign_csr_rejects_garbage(dev_ca: DevCA) -> None:
    with pytest.raises(ValueError, match="csr_pem"):
        dev_ca.sign_csr(b"-----BEGIN CERTIFICATE REQUEST-----\nnope\n-----END CERTIFICATE REQUEST-----\n")
