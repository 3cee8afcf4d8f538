"""collector/sink_errors.py without a network: which failure is which kind, and the last error kept.

The exceptions are the ones the standard library raises for each failure (socket, ssl, urllib).
"""

from __future__ import annotations

import datetime as dt
import socket
import ssl
from pathlib import Path

import pytest

from collector.sink_errors import KINDS, LastError, certificate_problem, http_kind, network_kind
from sandbox.ca import DevCA


@pytest.mark.parametrize(("error", "kind"), [
    (ssl.SSLCertVerificationError("certificate verify failed"), "server_certificate"),
    (ssl.SSLError("handshake failure"), "tls"),
    (ConnectionRefusedError(111, "Connection refused"), "connection_refused"),
    (socket.gaierror(-2, "Name or service not known"), "dns"),
    (TimeoutError("timed out"), "timeout"),
    (ConnectionResetError(104, "Connection reset by peer"), "network"),
    (OSError(113, "No route to host"), "network"),
])
def test_network_failures(error: BaseException, kind: str) -> None:
    assert network_kind(error) == kind


@pytest.mark.parametrize(("status", "kind"), [
    (401, "not_authorized"), (403, "not_authorized"), (404, "database_not_found"), (400, "rejected"),
    (500, "http"), (503, "http"), (402, "http"), (405, "http")])
def test_http_statuses(status: int, kind: str) -> None:
    assert http_kind(status) == kind


def test_last_error_keeps_the_latest_and_says_when_it_changed() -> None:
    last = LastError()
    assert last.get() is None and last.as_dict() is None
    assert last.set("connection_refused", "connect to b:8883 failed") is True
    assert last.set("connection_refused", "connect to b:8883 failed") is False  # same: no new log line
    assert last.set("policy", "closed before CONNACK") is True
    error = last.as_dict()
    assert error is not None and (error["kind"], error["message"]) == ("policy", "closed before CONNACK")
    assert isinstance(error["at_ms"], int) and error["at_ms"] > 1_600_000_000_000
    with pytest.raises(ValueError, match="unknown sink error kind 'oops'"):
        last.set("oops", "x")
    assert set(KINDS) >= {"http", "rejected", "database_not_found", "connection_lost", "timeout", "dns"}


def test_certificate_validity_at_a_given_time(tmp_path: Path, dev_ca: DevCA) -> None:
    cert, _ = dev_ca.issue("test:plant-a:edge-01", tmp_path, days=10)
    now = dt.datetime.now(dt.UTC)
    assert certificate_problem(cert, now) is None
    expired = certificate_problem(cert, now + dt.timedelta(days=11))
    assert expired is not None and expired[0] == "certificate_expired" and "expired at" in expired[1]
    early = certificate_problem(cert, now - dt.timedelta(days=1))
    assert early is not None and early[0] == "certificate_not_yet_valid" and "clock" in early[1]
    assert certificate_problem(tmp_path / "missing.pem") is None  # startup checks report unusable files
