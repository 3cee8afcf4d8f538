"""devices/crypto.py read back with `cryptography`: key types, CSR, the certificates our CA signs, and
every refusal (CN length, foreign or garbled certificates, CA files that are not what they claim)."""

from __future__ import annotations

import dataclasses
import datetime as dt
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from devices import crypto
from devices.errors import DeviceError

THING = "test:plant-a:edge-01"


CaFiles = tuple[Path, Path, ec.EllipticCurvePrivateKey]


def _ca(tmp_path: Path, name: str = "Test CA", is_ca: bool | None = True) -> CaFiles:
    """A self-signed CA written as cert.pem/key.pem (is_ca None: no basicConstraints at all)."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = dt.datetime.now(dt.UTC)
    builder = (
        x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
        .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=30))
    )
    if is_ca is not None:
        builder = builder.add_extension(x509.BasicConstraints(ca=is_ca, path_length=None), critical=True)
    cert = builder.sign(key, hashes.SHA256())
    folder = tmp_path / name.replace(" ", "-")
    folder.mkdir()
    (folder / "cert.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (folder / "key.pem").write_bytes(crypto.private_key_pem(key))
    return folder / "cert.pem", folder / "key.pem", key


@pytest.fixture
def ca(tmp_path: Path) -> crypto.OrgCA:
    cert, key, _ = _ca(tmp_path)
    return crypto.load_org_ca(cert, key)


def test_key_types() -> None:
    ec_key = crypto.generate_key("ec-p256")
    assert isinstance(ec_key, ec.EllipticCurvePrivateKey) and isinstance(ec_key.curve, ec.SECP256R1)
    rsa_key = crypto.generate_key("rsa-2048")
    assert isinstance(rsa_key, rsa.RSAPrivateKey)
    assert rsa_key.key_size == 2048 and rsa_key.public_key().public_numbers().e == 65537
    assert crypto.KEY_TYPES == ("ec-p256", "rsa-2048")


def test_private_key_pem_is_unencrypted_pkcs8() -> None:
    key = crypto.generate_key("ec-p256")
    pem = crypto.private_key_pem(key)
    assert pem.startswith(b"-----BEGIN " + b"PRIVATE KEY-----\n")  # split: no key-like text in the repo
    loaded = serialization.load_pem_private_key(pem, password=None)
    assert loaded.public_key().public_numbers() == key.public_key().public_numbers()  # type: ignore[union-attr]


def test_csr_carries_the_thing_name_and_our_key() -> None:
    key = crypto.generate_key("ec-p256")
    csr = x509.load_pem_x509_csr(crypto.build_csr(key, THING).encode())
    assert csr.subject.rfc4514_string() == f"CN={THING}"
    assert csr.is_signature_valid
    assert isinstance(csr.signature_hash_algorithm, hashes.SHA256)
    assert csr.public_key().public_numbers() == key.public_key().public_numbers()  # type: ignore[union-attr]


def test_common_name_holds_64_characters_not_65() -> None:
    assert crypto.subject_for("a" * 64).rfc4514_string() == "CN=" + "a" * 64
    expected = "is 65 characters; a thing name is the certificate CN and holds at most 64"
    with pytest.raises(DeviceError, match=expected):
        crypto.subject_for("a" * 65)


def test_ca_signs_a_client_certificate(ca: crypto.OrgCA) -> None:
    key = crypto.generate_key("rsa-2048")
    before = dt.datetime.now(dt.UTC)
    cert = x509.load_pem_x509_certificate(ca.sign(crypto.build_csr(key, THING), days=30).encode())
    after = dt.datetime.now(dt.UTC)
    assert cert.subject.rfc4514_string() == f"CN={THING}"
    assert cert.issuer.rfc4514_string() == "CN=Test CA"
    assert cert.public_key().public_numbers() == key.public_key().public_numbers()  # type: ignore[union-attr]
    constraints = cert.extensions.get_extension_for_class(x509.BasicConstraints)
    assert constraints.critical and constraints.value.ca is False
    usage = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage)
    assert list(usage.value) == [ExtendedKeyUsageOID.CLIENT_AUTH] and not usage.critical
    aki_extension = cert.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier)
    aki = aki_extension.value
    assert not aki_extension.critical
    assert aki.key_identifier == x509.SubjectKeyIdentifier.from_public_key(
        ca.certificate.public_key()  # type: ignore[arg-type]
    ).digest
    # Backdated 5 minutes against clock skew, valid `days` days.
    assert before - dt.timedelta(minutes=5, seconds=1) <= cert.not_valid_before_utc <= after
    assert cert.not_valid_after_utc - cert.not_valid_before_utc == dt.timedelta(days=30, minutes=5)
    assert isinstance(cert.signature_hash_algorithm, hashes.SHA256)
    cert.verify_directly_issued_by(ca.certificate)
    crypto.check_issued_by(cert, ca)
    pem = cert.public_bytes(serialization.Encoding.PEM).decode()
    assert crypto.check_certificate(pem, key, THING) == cert


def test_check_issued_by_refuses_another_ca(ca: crypto.OrgCA, tmp_path: Path) -> None:
    other = crypto.load_org_ca(*_ca(tmp_path, "Other CA")[:2])
    key = crypto.generate_key("ec-p256")
    cert = x509.load_pem_x509_certificate(other.sign(crypto.build_csr(key, THING), 1).encode())
    with pytest.raises(DeviceError, match=r"^the registered certificate was not signed by --ca-cert$"):
        crypto.check_issued_by(cert, ca)


def test_check_certificate_refuses_garbage_foreign_key_and_wrong_subject(ca: crypto.OrgCA) -> None:
    key, other = crypto.generate_key("ec-p256"), crypto.generate_key("ec-p256")
    garbled = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"
    for garbage in ("", "not a certificate", garbled):
        with pytest.raises(DeviceError, match=r"^the service returned something that is not a PEM cert"):
            crypto.check_certificate(garbage, key, THING)
    foreign = ca.sign(crypto.build_csr(other, THING), 1)
    with pytest.raises(DeviceError, match=r"^certificate/key mismatch"):
        crypto.check_certificate(foreign, key, THING)
    wrong_cn = ca.sign(crypto.build_csr(key, "test:plant-a:edge-02"), 1)
    with pytest.raises(DeviceError, match=f"expected CN={THING}, got CN=test:plant-a:edge-02"):
        crypto.check_certificate(wrong_cn, key, THING)


def test_cert_matches_key(ca: crypto.OrgCA) -> None:
    key, other = crypto.generate_key("ec-p256"), crypto.generate_key("ec-p256")
    cert = ca.sign(crypto.build_csr(key, THING), 1).encode()
    assert crypto.cert_matches_key(cert, crypto.private_key_pem(key)) is True
    assert crypto.cert_matches_key(cert, crypto.private_key_pem(other)) is False
    assert crypto.cert_matches_key(b"garbage", crypto.private_key_pem(key)) is False
    assert crypto.cert_matches_key(cert, b"garbage") is False


def test_certificate_files_that_cannot_be_read_or_are_not_pem(tmp_path: Path) -> None:
    with pytest.raises(DeviceError, match=r"^--ca-cert .*missing\.pem: cannot read it: No such file"):
        crypto.load_certificate_file(tmp_path / "missing.pem", "--ca-cert")
    (tmp_path / "junk.pem").write_text("junk")
    with pytest.raises(DeviceError, match=r"^--server-ca .*junk\.pem: not a PEM certificate$"):
        crypto.load_certificate_file(tmp_path / "junk.pem", "--server-ca")


def test_amazon_root_ca_is_root_ca_1_then_3_in_pem() -> None:
    pem = crypto.amazon_root_ca_pem()
    assert pem.startswith(b"-----BEGIN CERTIFICATE-----")
    assert [c.subject.rfc4514_string() for c in x509.load_pem_x509_certificates(pem)] == [
        "CN=Amazon Root CA 1,O=Amazon,C=US",
        "CN=Amazon Root CA 3,O=Amazon,C=US",
    ]


@pytest.mark.parametrize("is_ca", [False, None])
def test_ca_cert_that_is_not_a_ca_is_refused(tmp_path: Path, is_ca: bool | None) -> None:
    cert, key, _ = _ca(tmp_path, is_ca=is_ca)
    with pytest.raises(DeviceError, match="not a CA certificate"):
        crypto.load_org_ca(cert, key)


def test_encrypted_ca_key_needs_the_right_password(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cert, key_path, key = _ca(tmp_path)
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.BestAvailableEncryption(b"s3cret")))
    monkeypatch.delenv("PM500_CA_KEY_PASSWORD", raising=False)
    with pytest.raises(DeviceError, match=r"the key is encrypted; set PM500_CA_KEY_PASSWORD$"):
        crypto.load_org_ca(cert, key_path)
    monkeypatch.setenv("PM500_CA_KEY_PASSWORD", "wrong")
    with pytest.raises(DeviceError, match=r"not a PEM private key \(or wrong PM500_CA_KEY_PASSWORD\)$"):
        crypto.load_org_ca(cert, key_path)
    monkeypatch.setenv("PM500_CA_KEY_PASSWORD", "s3cret")
    loaded = crypto.load_org_ca(cert, key_path)
    assert loaded.private_key.public_key().public_numbers() == key.public_key().public_numbers()  # type: ignore[union-attr]
    assert loaded.cert_pem == cert.read_text()


def test_ca_key_files_that_are_missing_garbled_foreign_or_of_another_type(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("PM500_CA_KEY_PASSWORD", raising=False)
    cert, key_path, _ = _ca(tmp_path)
    with pytest.raises(DeviceError, match=r"^--ca-key .*missing\.pem: cannot read it: No such file"):
        crypto.load_org_ca(cert, tmp_path / "missing.pem")
    key_path.write_text("junk")
    with pytest.raises(DeviceError, match="not a PEM private key"):
        crypto.load_org_ca(cert, key_path)
    key_path.write_bytes(crypto.private_key_pem(crypto.generate_key("ec-p256")))
    with pytest.raises(DeviceError, match=r"key\.pem does not belong to --ca-cert .*cert\.pem$"):
        crypto.load_org_ca(cert, key_path)
    key_path.write_bytes(ed25519.Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    with pytest.raises(DeviceError, match="expected an EC or RSA key"):
        crypto.load_org_ca(cert, key_path)


def test_certificate_with_a_key_type_we_never_use_is_a_clear_mismatch(tmp_path: Path) -> None:
    """A service (or CA) that returns an Ed25519 certificate gets the mismatch error, not a crash."""
    cert_path, _, ca_key = _ca(tmp_path)
    ca_cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    now = dt.datetime.now(dt.UTC)
    odd = (
        x509.CertificateBuilder().subject_name(crypto.subject_for(THING)).issuer_name(ca_cert.subject)
        .public_key(ed25519.Ed25519PrivateKey.generate().public_key())
        .serial_number(x509.random_serial_number()).not_valid_before(now)
        .not_valid_after(now + dt.timedelta(days=1)).sign(ca_key, hashes.SHA256())
    )
    pem = odd.public_bytes(serialization.Encoding.PEM)
    with pytest.raises(DeviceError, match=r"^certificate/key mismatch"):
        crypto.check_certificate(pem.decode(), crypto.generate_key("ec-p256"), THING)
    assert crypto.cert_matches_key(pem, crypto.private_key_pem(crypto.generate_key("ec-p256"))) is False


def test_missing_ca_cert_names_the_option(tmp_path: Path) -> None:
    with pytest.raises(DeviceError, match=r"^--ca-cert .*missing\.pem: cannot read it"):
        crypto.load_org_ca(tmp_path / "missing.pem", tmp_path / "key.pem")


def test_org_ca_is_immutable(ca: crypto.OrgCA) -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        ca.private_key = crypto.generate_key("ec-p256")  # type: ignore[misc]
