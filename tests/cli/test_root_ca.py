"""The shipped Amazon Root CA 1 is the real one (it verifies the AWS IoT ATS endpoint in every bundle)."""

from __future__ import annotations

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.x509.oid import NameOID

from devices.crypto import amazon_root_ca_pem

# Published by Amazon Trust Services for "Amazon Root CA 1" (RSA 2048, valid until 2038-01-17).
AMAZON_ROOT_CA_1_SHA256 = "8ecde6884f3d87b1125ba31ac3fcb13d7016de7f57cc904fe1cb97c6ae98196e"


def test_shipped_root_ca_is_amazon_root_ca_1() -> None:
    cert = x509.load_pem_x509_certificate(amazon_root_ca_pem())
    assert cert.fingerprint(hashes.SHA256()).hex() == AMAZON_ROOT_CA_1_SHA256
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "Amazon Root CA 1"
    assert cert.subject == cert.issuer
    cert.verify_directly_issued_by(cert)  # self-signed: raises if the signature does not verify
    assert cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
