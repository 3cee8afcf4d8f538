"""Why a sink cannot deliver: each sink's `last_error`, with a `kind` an operator can act on.

"mqtt not connected" alone sends everyone to the edge host. An expired certificate (rotate it), a
policy refusal (fix the IoT policy or attach the certificate), a refused connection (network, broker
down) and an InfluxDB 401 (fix the password) need different people, so each failure is classified once,
where it happens, and shown in /health, the named shadow and `cli.py fleet status`.

A broker refusing an expired client certificate only shows the client a closed connection (the TLS
alert arrives as an EOF), as does AWS IoT closing a connection its policy does not allow. So on every
MQTT failure the collector first checks its own certificate's validity: an expired or not yet valid
certificate is named as such, whatever the socket said.
"""

from __future__ import annotations

import datetime as dt
import socket
import ssl
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509

# kind -> what it means and who acts: the table of docs/collector.md, "/health" (a test holds them equal).
KINDS: dict[str, str] = {
    "certificate_expired": "the device certificate's validity has ended: rotate it "
    "(`cli.py devices rotate-cert`). Checked on the collector's own certificate file at every MQTT "
    "failure: a broker refusing an expired certificate only shows the client a closed connection",
    "certificate_not_yet_valid": "the certificate is not valid yet: the host's clock is wrong",
    "policy": "the broker closes the connection before CONNACK, or repeatedly right after it: AWS IoT's "
    "answer to an inactive or unattached certificate or an IoT policy that does not allow `iot:Connect` "
    "for the client id",
    "not_authorized": "CONNACK return code 4 or 5, or InfluxDB HTTP 401/403 (wrong user or password)",
    "server_certificate": "`mqtt.ca_file` does not trust the broker's certificate (or the endpoint name "
    "differs)",
    "tls": "another TLS handshake failure",
    "connection_refused": "nothing listens at that address and port",
    "dns": "the name does not resolve",
    "timeout": "no answer in time",
    "network": "another network error (unreachable host, reset connection)",
    "connection_lost": "an established MQTT connection dropped",
    "database_not_found": "InfluxDB HTTP 404: no such database",
    "rejected": "InfluxDB HTTP 400: it will never take those lines "
    "(they are dropped from its queue, counted)",
    "http": "another HTTP status (e.g. 503)",
}


@dataclass(frozen=True)
class SinkError:
    kind: str
    message: str
    at_ms: int

    def as_dict(self) -> dict[str, object]:
        return {"kind": self.kind, "message": self.message, "at_ms": self.at_ms}


class LastError:
    """The last failure of one sink (kept after recovery, like a meter's `last_error`); thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._error: SinkError | None = None

    def set(self, kind: str, message: str) -> bool:
        """Record a failure; True if it differs from the previous one (worth a log line)."""
        if kind not in KINDS:
            raise ValueError(f"unknown sink error kind {kind!r}")
        with self._lock:
            changed = self._error is None or (self._error.kind, self._error.message) != (kind, message)
            self._error = SinkError(kind, message, int(time.time() * 1000))
        return changed

    def get(self) -> SinkError | None:
        with self._lock:
            return self._error

    def as_dict(self) -> dict[str, object] | None:
        error = self.get()
        return None if error is None else error.as_dict()


def certificate_problem(cert_file: Path, now: dt.datetime | None = None) -> tuple[str, str] | None:
    """(kind, message) when the certificate in `cert_file` is outside its validity period."""
    try:
        cert = x509.load_pem_x509_certificate(cert_file.read_bytes())
    except (OSError, ValueError):
        return None  # unusable files are refused at startup (collector.credentials)
    now = now or dt.datetime.now(dt.UTC)
    if now > cert.not_valid_after_utc:
        return "certificate_expired", (
            f"device certificate {cert_file} expired at {cert.not_valid_after_utc:%Y-%m-%dT%H:%M:%SZ}; "
            "the broker refuses it: rotate it (cli.py devices rotate-cert)"
        )
    if now < cert.not_valid_before_utc:
        return "certificate_not_yet_valid", (
            f"device certificate {cert_file} is valid only from "
            f"{cert.not_valid_before_utc:%Y-%m-%dT%H:%M:%SZ}: check this host's clock"
        )
    return None


def network_kind(error: BaseException) -> str:
    """The kind of a failed connect or request (socket, TLS or urllib's wrapped reason)."""
    if isinstance(error, ssl.SSLCertVerificationError):
        return "server_certificate"
    if isinstance(error, ssl.SSLError):
        return "tls"
    if isinstance(error, ConnectionRefusedError):
        return "connection_refused"
    if isinstance(error, socket.gaierror):
        return "dns"
    if isinstance(error, TimeoutError):
        return "timeout"
    return "network"


def http_kind(status: int) -> str:
    if status in (401, 403):
        return "not_authorized"
    if status == 404:
        return "database_not_found"
    if status == 400:
        return "rejected"
    return "http"
