"""Health that says why: each sink's `last_error` tells an expired certificate, a policy refusal, a
refused connection and an InfluxDB 401 apart (issue 22), against real servers that fail that way.

- expired certificate: Mosquitto (TLS 1.2, client certificates required) refusing a certificate whose
  validity ended; the client only sees the connection end, so the collector checks its own certificate;
- policy refusal: AWS IoT closes the connection of a client its policy does not allow (iot:Connect),
  played by a TLS server that closes right after CONNECT, or right after CONNACK;
- CONNACK "not authorized" (return code 5, MQTT 3.1.1 section 3.2.2.3);
- refused connection: a port nothing listens on;
- broker certificate not trusted: the bundle's CA is another CA;
- InfluxDB 1.x with `auth-enabled` and a wrong password: HTTP 401; a database that does not exist: 404.
"""

from __future__ import annotations

import datetime as dt
import re
import socket
import ssl
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from collector.backoff import Backoff
from collector.buffer import Buffer
from collector.config import InfluxConfig, load_config
from collector.influx_sink import RETRY_CAP_S, InfluxSink
from collector.mqtt_link import MqttLink
from collector.reading import Reading
from collector.service import Collector
from collector.sink_errors import KINDS, certificate_problem
from sandbox.ca import DevCA
from sandbox.influx import InfluxServer
from sandbox.mosquitto import MosquittoBroker
from sandbox.net import free_port
from tests.collector.harness import THING, wait_until, write_bundle
from tests.collector.test_operations import FakeInflux

pytestmark = pytest.mark.slow

CONNACK_NOT_AUTHORIZED = b"\x20\x02\x00\x05"
CONNACK_ACCEPTED = b"\x20\x02\x00\x00"


class ScriptedBroker:
    """A TLS server (the dev CA's server certificate) that reads CONNECT and answers `reply` (or
    nothing), then closes: how a broker refuses a client it authenticated but does not authorize."""

    def __init__(self, ca: DevCA, workdir: Path, reply: bytes) -> None:
        cert, key = ca.issue("127.0.0.1", workdir, server_hostnames=["localhost"], ip_addresses=["127.0.0.1"])
        self._tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self._tls.load_cert_chain(cert, key)
        self._tls.load_verify_locations(ca.cert_path)
        self._tls.verify_mode = ssl.CERT_REQUIRED
        self._reply = reply
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                raw, _ = self._listener.accept()
            except OSError:
                return
            try:
                with self._tls.wrap_socket(raw, server_side=True) as conn:
                    conn.recv(1024)  # CONNECT
                    if self._reply:
                        conn.sendall(self._reply)
            except OSError:
                pass

    def close(self) -> None:
        self._listener.close()


def bundle_for(tmp_path: Path, ca: DevCA, broker: MosquittoBroker, port: int, **cert: Any) -> Path:
    config = write_bundle(tmp_path / "bundle", ca, broker, [free_port()], influx_url=None)
    data = yaml.safe_load(config.read_text())
    data["mqtt"]["port"] = port
    config.write_text(yaml.safe_dump(data))
    if cert:
        issued, key = ca.issue(THING, tmp_path / "issued", **cert)
        (config.parent / "device.pem.crt").write_bytes(issued.read_bytes())
        (config.parent / "private.pem.key").write_bytes(key.read_bytes())
    return config


def last_error_of(config: Path, until: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
    link = MqttLink(load_config(config), on_puback=lambda mid: None, backoff=Backoff(base_s=0.05, cap_s=0.2))
    link.start()
    try:
        return wait_until(lambda: (e := link.last_error.as_dict()) and until(e) and e, 30, "last_error")
    finally:
        link.stop(timeout_s=1)


@pytest.fixture
def broker(tmp_path: Path, dev_ca: DevCA) -> Iterator[MosquittoBroker]:
    broker = MosquittoBroker(tmp_path / "mosquitto", dev_ca)
    broker.start()
    yield broker
    broker.stop()


def test_expired_certificate(tmp_path: Path, dev_ca: DevCA, broker: MosquittoBroker) -> None:
    config = bundle_for(tmp_path, dev_ca, broker, broker.port, expired=True, days=3)
    error = last_error_of(config, lambda e: True)
    assert error["kind"] == "certificate_expired"
    assert "device.pem.crt" in error["message"] and "expired" in error["message"]
    assert isinstance(error["at_ms"], int)


def test_refused_connection(tmp_path: Path, dev_ca: DevCA, broker: MosquittoBroker) -> None:
    config = bundle_for(tmp_path, dev_ca, broker, free_port())
    error = last_error_of(config, lambda e: True)
    assert error["kind"] == "connection_refused" and "refused" in error["message"]


def test_closed_before_connack_is_a_policy_refusal(
    tmp_path: Path, dev_ca: DevCA, broker: MosquittoBroker
) -> None:
    server = ScriptedBroker(dev_ca, tmp_path / "server", reply=b"")
    try:
        error = last_error_of(bundle_for(tmp_path, dev_ca, broker, server.port), lambda e: True)
    finally:
        server.close()
    assert error["kind"] == "policy" and "iot:Connect" in error["message"]


def test_dropped_right_after_connack_is_a_policy_refusal(
    tmp_path: Path, dev_ca: DevCA, broker: MosquittoBroker
) -> None:
    server = ScriptedBroker(dev_ca, tmp_path / "server", reply=CONNACK_ACCEPTED)
    try:
        config = bundle_for(tmp_path, dev_ca, broker, server.port)
        error = last_error_of(config, lambda e: e["kind"] == "policy")
    finally:
        server.close()
    assert "right after CONNACK" in error["message"]


def test_connack_not_authorized(tmp_path: Path, dev_ca: DevCA, broker: MosquittoBroker) -> None:
    server = ScriptedBroker(dev_ca, tmp_path / "server", reply=CONNACK_NOT_AUTHORIZED)
    try:
        error = last_error_of(bundle_for(tmp_path, dev_ca, broker, server.port), lambda e: True)
    finally:
        server.close()
    assert error["kind"] == "not_authorized" and "CONNACK" in error["message"]


def test_broker_certificate_not_trusted(tmp_path: Path, dev_ca: DevCA, broker: MosquittoBroker) -> None:
    config = bundle_for(tmp_path, dev_ca, broker, broker.port)
    other = DevCA.create(tmp_path / "other-ca", name="someone else's CA")
    (config.parent / "root-ca.pem").write_bytes(other.cert_path.read_bytes())
    error = last_error_of(config, lambda e: True)
    assert error["kind"] == "server_certificate" and "root-ca.pem" in error["message"]


def test_every_kind_is_explained_in_the_operators_table() -> None:
    """docs/collector.md, "/health": the table of kinds is KINDS, row for row (no kind undocumented,
    no documented kind the collector never reports)."""
    text = (Path(__file__).parents[2] / "docs" / "collector.md").read_text()
    table = text[text.index("| `kind` | meaning |"):].split("\n\n", 1)[0].splitlines()[2:]
    documented = dict(re.fullmatch(r"\| `([a-z_]+)` \| (.+) \|", row).groups() for row in table)  # type: ignore[union-attr]
    assert documented == KINDS
    assert {"certificate_expired", "policy", "connection_refused", "not_authorized"} <= set(KINDS)


def test_the_certificate_is_valid_on_both_ends_of_its_period(tmp_path: Path, dev_ca: DevCA) -> None:
    """RFC 5280 4.1.2.5: the validity period is notBefore through notAfter, inclusive."""
    from cryptography import x509

    path, _ = dev_ca.issue(THING, tmp_path / "cert", days=3)
    cert = x509.load_pem_x509_certificate(path.read_bytes())
    start, end = cert.not_valid_before_utc, cert.not_valid_after_utc
    assert certificate_problem(path, now=start) is None and certificate_problem(path, now=end) is None
    second = dt.timedelta(seconds=1)
    assert certificate_problem(path, now=end + second) == (
        "certificate_expired",
        f"device certificate {path} expired at {end:%Y-%m-%dT%H:%M:%SZ}; "
        "the broker refuses it: rotate it (cli.py devices rotate-cert)",
    )
    assert certificate_problem(path, now=start - second) == (
        "certificate_not_yet_valid",
        f"device certificate {path} is valid only from {start:%Y-%m-%dT%H:%M:%SZ}: check this host's clock",
    )


def test_a_last_error_is_an_immutable_record_with_its_time(tmp_path: Path) -> None:
    import dataclasses
    import time

    from collector.sink_errors import LastError

    last = LastError()
    before = int(time.time() * 1000)
    assert last.set("tls", "handshake failed") is True
    error = last.get()
    assert error is not None and before <= error.at_ms <= int(time.time() * 1000)
    with pytest.raises(dataclasses.FrozenInstanceError):
        error.kind = "dns"  # type: ignore[misc]
    assert last.set("tls", "handshake failed") is False  # the same failure again: not worth a log line
    assert last.set("network", "reset") is True


def test_certificate_problem_reads_the_validity_of_the_file(tmp_path: Path, dev_ca: DevCA) -> None:
    expired, _ = dev_ca.issue(THING, tmp_path / "old", expired=True, days=3)
    valid, _ = dev_ca.issue(THING, tmp_path / "new")
    problem = certificate_problem(expired)
    assert problem is not None and problem[0] == "certificate_expired"
    assert certificate_problem(valid) is None


def test_health_names_the_expired_certificate(tmp_path: Path, dev_ca: DevCA, broker: MosquittoBroker) -> None:
    config = bundle_for(tmp_path, dev_ca, broker, broker.port, expired=True, days=3)
    collector = Collector(load_config(config))
    collector.start()
    try:
        health = wait_until(
            lambda: (h := collector.snapshot())["sinks"]["mqtt"]["last_error"] is not None and h, 30, "error"
        )
    finally:
        collector.stop()
    assert health["sinks"]["mqtt"]["last_error"]["kind"] == "certificate_expired"
    assert any(p.startswith("mqtt not connected (certificate_expired): ") for p in health["problems"])


# -- InfluxDB ----------------------------------------------------------------------------------------


def influx_last_error(tmp_path: Path, cfg: InfluxConfig) -> dict[str, Any]:
    buffer = Buffer(tmp_path / "b.sqlite", 16 * 1024 * 1024, THING, sinks=("influx",))
    buffer.append(Reading("plant-a", "meter-0", "F0", 1_700_000_000_000, {"voltageAN": 230.0}))
    sink = InfluxSink(cfg, buffer)
    sink.start()
    try:
        return wait_until(lambda: sink.status()["last_error"], 30, "influx error")  # type: ignore[no-any-return]
    finally:
        sink.stop()
        buffer.close()


def test_influx_401_and_unknown_database_and_refused_are_told_apart(tmp_path: Path) -> None:
    influx = InfluxServer(tmp_path / "influxdb", auth=True)
    influx.start()
    try:
        influx.create_database("pm500")
        wrong = InfluxConfig(url=influx.url, database="pm500", username=influx.admin_user, password="wrong")  # type: ignore[arg-type]
        unauthorized = influx_last_error(tmp_path / "a", wrong)
        missing = InfluxConfig(
            url=influx.url, database="nope", username=influx.admin_user, password=influx.admin_password  # type: ignore[arg-type]
        )
        not_found = influx_last_error(tmp_path / "b", missing)
    finally:
        influx.stop()
    refused = influx_last_error(tmp_path / "c", InfluxConfig(url=f"http://127.0.0.1:{free_port()}"))
    assert (unauthorized["kind"], not_found["kind"], refused["kind"]) == (
        "not_authorized",
        "database_not_found",
        "connection_refused",
    )
    assert "HTTP 401" in unauthorized["message"] and "HTTP 404" in not_found["message"]


class RecordingBackoff(Backoff):
    def __init__(self, base_s: float, cap_s: float) -> None:
        super().__init__(base_s=base_s, cap_s=cap_s)
        self.ceilings: list[float] = []

    def next_delay(self) -> float:
        self.ceilings.append(min(self.cap_s, self.base_s * (2 ** min(len(self.ceilings), 32))))
        return 0.01  # the test does not wait; it checks the ceilings the sink would have waited for


def test_influx_retries_stay_within_a_few_seconds_after_a_long_outage(tmp_path: Path) -> None:
    """The 30 s cap suits a fleet reconnecting to the cloud, not a historian on the same host: after
    any outage the sink tries again within RETRY_CAP_S of InfluxDB answering (issue: 19 s before)."""
    server = FakeInflux([503] * 12)
    buffer = Buffer(tmp_path / "b.sqlite", 16 * 1024 * 1024, THING, sinks=("influx",))
    buffer.append(Reading("plant-a", "meter-0", "F0", 1_700_000_000_000, {"voltageAN": 230.0}))
    sink = InfluxSink(InfluxConfig(url=server.url), buffer)
    policy = sink._backoff = RecordingBackoff(sink._backoff.base_s, sink._backoff.cap_s)
    sink.start()
    try:
        wait_until(lambda: buffer.depth("influx") == 0, 30, "written after 12 failures")
        assert sink.status()["last_error"]["kind"] == "http"  # the last failure is kept, like a meter's
        assert sink.status()["reachable"] is True
    finally:
        sink.stop()
        server.server.shutdown()
        buffer.close()
    assert len(policy.ceilings) == 12
    assert RETRY_CAP_S <= 5 and max(policy.ceilings) == RETRY_CAP_S
