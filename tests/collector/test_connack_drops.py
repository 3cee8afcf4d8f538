"""Defect: a broker that accepts the connection and drops it right after CONNACK got a reconnect storm.

A CONNACK reset the backoff, so every retry came within 0.5 s. Now only a connection that stayed up
resets it, and repeated drops right after CONNACK are reported as an identity or policy problem.
A real TLS server (the dev CA's server certificate, 127.0.0.1, port 0) plays such a broker: it answers
every CONNECT with CONNACK "accepted" and closes the connection.
"""

from __future__ import annotations

import logging
import socket
import ssl
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from collector.config import load_config
from collector.mqtt_link import MqttLink
from sandbox.ca import DevCA
from tests.collector.harness import wait_until
from tests.collector.test_bundle_files import make_bundle
from tests.collector.test_reconnect import RecordingBackoff

CONNACK_ACCEPTED = b"\x20\x02\x00\x00"


class AcceptThenDropBroker:
    def __init__(self, ca: DevCA, workdir: Path) -> None:
        cert, key = ca.issue("127.0.0.1", workdir, server_hostnames=["localhost"], ip_addresses=["127.0.0.1"])
        self._tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self._tls.load_cert_chain(cert, key)
        self._tls.load_verify_locations(ca.cert_path)
        self._tls.verify_mode = ssl.CERT_REQUIRED
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self.connacks = 0
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while True:
            try:
                raw, _ = self._listener.accept()
            except OSError:
                return
            try:
                with self._tls.wrap_socket(raw, server_side=True) as conn:
                    conn.recv(1024)  # the CONNECT packet
                    conn.sendall(CONNACK_ACCEPTED)
                    self.connacks += 1
            except OSError:
                pass

    def close(self) -> None:
        self._listener.close()


@pytest.fixture
def dropping_broker(dev_ca: DevCA, tmp_path: Path) -> Iterator[AcceptThenDropBroker]:
    broker = AcceptThenDropBroker(dev_ca, tmp_path)
    yield broker
    broker.close()


def test_drops_right_after_connack_back_off_and_are_reported_as_identity_or_policy(
    tmp_path: Path, dev_ca: DevCA, dropping_broker: AcceptThenDropBroker, caplog: pytest.LogCaptureFixture
) -> None:
    config = make_bundle(tmp_path / "bundle", dev_ca)
    data = yaml.safe_load(config.read_text())
    data["mqtt"]["port"] = dropping_broker.port
    config.write_text(yaml.safe_dump(data))
    policy = RecordingBackoff()
    link = MqttLink(load_config(config), on_puback=lambda mid: None, backoff=policy)
    caplog.set_level(logging.INFO, logger="collector.mqtt_link")
    link.start()
    try:
        wait_until(lambda: link.stats["early_drops"] >= 4, 60, "four drops right after CONNACK")
    finally:
        link.stop(timeout_s=1)
    events = policy.snapshot()
    assert ("reset", 0.0) not in events  # a CONNACK alone does not reset the backoff any more
    assert link.stats["connects"] >= 4
    assert link.identity_suspected
    reports = [r for r in caplog.records if "identity or policy" in r.getMessage()]
    assert len(reports) == 1  # once, not once per retry
    assert reports[0].client_id == "test:plant-a:edge-01"  # type: ignore[attr-defined]
    assert "test:plant-a:edge-01" in reports[0].hint  # type: ignore[attr-defined]
