"""The shipped server CAs are Amazon's real ATS roots (they verify the AWS IoT ATS endpoint in every
bundle). AWS IoT presents a chain that depends on the negotiated cipher suite: RSA suites chain to
Amazon Root CA 1, ECDSA suites to Amazon Root CA 3
(https://docs.aws.amazon.com/iot/latest/developerguide/server-authentication.html), so a bundle needs both.
"""

from __future__ import annotations

import re
import ssl
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

from devices.crypto import amazon_root_ca_pem

# Published by Amazon Trust Services (https://www.amazontrust.com/repository/): CA 1 is RSA 2048 (valid
# until 2038), CA 3 ECC P-256 (until 2040).
AMAZON_ROOT_CA_1_SHA256 = "8ecde6884f3d87b1125ba31ac3fcb13d7016de7f57cc904fe1cb97c6ae98196e"
AMAZON_ROOT_CA_3_SHA256 = "18ce6cfe7bf14e60b2e347b8dfe868cb31d02ebb3ada271569f50343b46db3a4"


def _certificates() -> list[x509.Certificate]:
    pem = rb"-----BEGIN CERTIFICATE-----.+?-----END CERTIFICATE-----\n"
    pems = re.findall(pem, amazon_root_ca_pem(), re.S)
    assert b"".join(pems) == amazon_root_ca_pem()  # nothing but certificates in the file
    return [x509.load_pem_x509_certificate(p) for p in pems]


def test_shipped_roots_are_amazon_root_ca_1_and_3() -> None:
    certs = _certificates()
    assert [c.fingerprint(hashes.SHA256()).hex() for c in certs] == [AMAZON_ROOT_CA_1_SHA256,
                                                                      AMAZON_ROOT_CA_3_SHA256]
    names = [c.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value for c in certs]
    assert names == ["Amazon Root CA 1", "Amazon Root CA 3"]
    assert isinstance(certs[0].public_key(), rsa.RSAPublicKey)
    assert isinstance(certs[1].public_key(), ec.EllipticCurvePublicKey)
    for cert in certs:
        assert cert.subject == cert.issuer
        cert.verify_directly_issued_by(cert)  # self-signed: raises if the signature does not verify
        assert cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca


def test_a_tls_context_loads_both_roots(tmp_path: Path) -> None:
    """The collector builds its context with `ssl.create_default_context(cafile=root-ca.pem)`."""
    ca_file = tmp_path / "root-ca.pem"
    ca_file.write_bytes(amazon_root_ca_pem())
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(ca_file))
    assert context.cert_store_stats()["x509_ca"] == 2
