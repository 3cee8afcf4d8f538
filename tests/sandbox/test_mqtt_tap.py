"""The MQTT tap decodes what paho writes and Mosquitto answers, forwards it, and breaks on demand."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from sandbox.ca import DevCA
from sandbox.mosquitto import MosquittoBroker
from sandbox.mqtt_tap import BROKER_TO_CLIENT, CLIENT_TO_BROKER, MqttTap, Will, decode

USER = "tap-test-client"


@pytest.fixture
def broker(tmp_path: Path, dev_ca: DevCA) -> Iterator[MosquittoBroker]:
    b = MosquittoBroker(tmp_path / "mosquitto", dev_ca, acl_extra=[f"user {USER}", "topic readwrite tap/#"])
    b.start()
    yield b
    b.stop()


@pytest.fixture
def tap(tmp_path: Path, dev_ca: DevCA, broker: MosquittoBroker) -> Iterator[MqttTap]:
    cert, key = dev_ca.issue(USER, tmp_path / "client")
    t = MqttTap(tmp_path / "tap", dev_ca, broker.host, broker.port, cert, key).start()
    yield t
    t.stop()


def client_through(tap: MqttTap, dev_ca: DevCA, tmp_path: Path, **will: object) -> mqtt.Client:
    cert, key = tmp_path / "client" / f"{USER}.pem", tmp_path / "client" / f"{USER}.key"
    assert cert.exists() and key.exists()
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="tap-client", clean_session=True)
    client.tls_set(ca_certs=str(dev_ca.cert_path), certfile=str(cert), keyfile=str(key))
    if will:
        client.will_set(**will)  # type: ignore[arg-type]
    connected = threading.Event()
    client.on_connect = lambda *a: connected.set()
    client.connect("127.0.0.1", tap.port, keepalive=17)
    client.loop_start()
    assert connected.wait(20)
    return client


def test_the_tap_records_each_packet_with_its_mqtt_fields(
    tap: MqttTap, dev_ca: DevCA, tmp_path: Path
) -> None:
    client = client_through(tap, dev_ca, tmp_path, topic="tap/will", payload=b"gone", qos=1, retain=True)
    try:
        got = threading.Event()
        client.on_message = lambda c, u, m: got.set()
        client.subscribe([("tap/a", 1), ("tap/b/#", 0)])
        client.publish("tap/a", b"\x00\x01", qos=0).wait_for_publish(10)
        client.publish("tap/a", b"kept", qos=1, retain=True).wait_for_publish(10)
        assert got.wait(10)
        client.unsubscribe("tap/b/#")
        tap.wait_for(lambda ps: any(p.type == "UNSUBACK" for p in ps), 10)
    finally:
        client.disconnect()
        client.loop_stop()
    tap.wait_for(lambda ps: any(p.type == "DISCONNECT" for p in ps), 10)
    connect = tap.packets("CONNECT")[0]
    assert (connect.client_id, connect.clean_session, connect.keepalive, connect.protocol_level) == (
        "tap-client", True, 17, 4)
    assert connect.will == Will("tap/will", b"gone", 1, True)
    assert tap.packets("CONNACK")[0].return_codes == [0]
    subscribe = tap.packets("SUBSCRIBE")[0]
    assert subscribe.filters == [("tap/a", 1), ("tap/b/#", 0)]
    suback = tap.packets("SUBACK")[0]
    assert (suback.packet_id, suback.return_codes) == (subscribe.packet_id, [1, 0])
    sent = tap.packets("PUBLISH", CLIENT_TO_BROKER)
    assert [(p.topic, p.payload, p.qos, p.retain) for p in sent] == [
        ("tap/a", b"\x00\x01", 0, False), ("tap/a", b"kept", 1, True)]
    assert sent[0].packet_id is None and sent[1].packet_id is not None
    assert tap.packets("PUBACK", BROKER_TO_CLIENT)[0].packet_id == sent[1].packet_id
    delivered = tap.packets("PUBLISH", BROKER_TO_CLIENT)
    assert {p.payload for p in delivered} >= {b"\x00\x01", b"kept"}
    unsubscribe = tap.packets("UNSUBSCRIBE")[0]
    assert unsubscribe.filters == [("tap/b/#", None)]
    assert tap.packets("UNSUBACK")[0].packet_id == unsubscribe.packet_id
    assert all(p.forwarded and p.connection == 1 for p in tap.packets())


def test_refused_connects_and_cuts(tap: MqttTap, dev_ca: DevCA, tmp_path: Path) -> None:
    tap.refuse(1)
    cert, key = dev_ca.issue(USER, tmp_path / "client")
    refused = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="refused")
    refused.tls_set(ca_certs=str(dev_ca.cert_path), certfile=str(cert), keyfile=str(key))
    answers: list[object] = []
    done = threading.Event()
    refused.on_connect = lambda c, u, f, rc, p: (answers.append(rc), done.set())
    refused.connect("127.0.0.1", tap.port)
    refused.loop_start()
    try:
        assert done.wait(10)
    finally:
        refused.loop_stop()
    assert str(answers[0]) == "Not authorized"
    assert tap.packets("CONNECT")[0].forwarded is False

    client = client_through(tap, dev_ca, tmp_path)
    lost = threading.Event()
    client.on_disconnect = lambda *a: lost.set()
    try:
        assert tap.open_connections == 1
        assert tap.cut() == 1
        assert lost.wait(10)  # the client sees the connection die
    finally:
        client.loop_stop()
    assert [p.connection for p in tap.packets("CONNECT")] == [1, 2]


def test_decode_rejects_what_is_not_mqtt() -> None:
    with pytest.raises(ValueError, match="packet type"):
        decode(bytes([0x00, 0x00]))
    with pytest.raises(ValueError, match="protocol name"):
        decode(bytes([0x10, 0x06, 0x00, 0x04]) + b"MQTX")
