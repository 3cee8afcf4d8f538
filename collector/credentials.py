"""Startup checks of the bundle's TLS files: each problem named by field, file and fix, in one line.

Without them, a wrong file surfaces as OpenSSL's `[SSL] PEM lib (_ssl.c:3926)`, a key anyone on the
host can read starts silently, and a certificate issued to another thing is only noticed when the
broker drops the connection right after CONNACK (AWS IoT: the policy's `iot:Connect` on the client id),
over and over. The key check follows ssh: a private key that group or others may access is refused.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Protocol

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes
from cryptography.x509.oid import NameOID

from collector.config import CollectorConfig

_PUBLIC = (serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def bundle_file_problems(cfg: CollectorConfig) -> list[str]:
    """One line per unusable certificate, key or CA file (empty: all usable together)."""
    mqtt = cfg.mqtt
    files = {"ca_file": mqtt.ca_file, "cert_file": mqtt.cert_file, "key_file": mqtt.key_file}
    unreadable = [
        f"mqtt.{field}: cannot read {path}" for field, path in files.items() if not os.access(path, os.R_OK)
    ]
    if unreadable:
        return unreadable
    problems = []
    open_key = _key_permission_problem(mqtt.key_file)
    if open_key:
        problems.append(open_key)
    ca_problem = _ca_problem(mqtt.ca_file)
    if ca_problem:
        problems.append(ca_problem)
    cert, cert_problem = _load_certificate(mqtt.cert_file)
    key, key_problem = _load_key(mqtt.key_file)
    problems += [p for p in (cert_problem, key_problem) if p]
    if cert is not None:
        cn = _common_name(cert)
        if cn != cfg.thing_name:
            problems.append(
                f"mqtt.cert_file: {mqtt.cert_file} is issued to CN {cn!r} but thing_name is "
                f"{cfg.thing_name!r}; the broker would drop the connection (use this thing's bundle)"
            )
        if key is not None and _public(key.public_key()) != _public(cert.public_key()):
            problems.append(
                f"mqtt.key_file: {mqtt.key_file} does not belong to the certificate {mqtt.cert_file} "
                "(mqtt.cert_file); use the key generated with that certificate"
            )
    return problems


class _PublicKey(Protocol):
    def public_bytes(self, encoding: serialization.Encoding, format: serialization.PublicFormat) -> bytes: ...


def _public(key: _PublicKey) -> bytes:
    return key.public_bytes(*_PUBLIC)


def _key_permission_problem(path: Path) -> str | None:
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077 == 0:
        return None
    return (
        f"mqtt.key_file: {path} is accessible by group or others (mode {mode:04o}); "
        f"a private key must be readable by its owner only: chmod 600 {path}"
    )


def _ca_problem(path: Path) -> str | None:
    try:
        x509.load_pem_x509_certificates(path.read_bytes())
    except ValueError as e:
        return f"mqtt.ca_file: {path} is not a PEM CA certificate ({_reason(e)})"
    return None


def _load_certificate(path: Path) -> tuple[x509.Certificate | None, str | None]:
    try:
        return x509.load_pem_x509_certificate(path.read_bytes()), None
    except ValueError as e:
        return None, f"mqtt.cert_file: {path} is not a PEM certificate ({_reason(e)})"


def _load_key(path: Path) -> tuple[PrivateKeyTypes | None, str | None]:
    try:
        return serialization.load_pem_private_key(path.read_bytes(), password=None), None
    except TypeError:
        return None, f"mqtt.key_file: {path} is encrypted; the collector needs the unencrypted key"
    except (ValueError, UnsupportedAlgorithm) as e:
        return None, f"mqtt.key_file: {path} is not a PEM private key ({_reason(e)})"


def _common_name(cert: x509.Certificate) -> str:
    names = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    return str(names[0].value) if names else ""


def _reason(error: Exception) -> str:
    """cryptography's message, first line only (some carry an OpenSSL error stack)."""
    return (str(error).splitlines() or [type(error).__name__])[0].rstrip(".")
