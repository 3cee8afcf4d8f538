"""The broker stand-in enforces what AWS IoT Core enforces: mutual TLS and per-thing topics."""

import socket
import ssl
import threading
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import MQTTProtocolVersion
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from collector.topics import DDATA, NBIRTH, NCMD, STATE, mosquitto_acl_patterns, thing_name
from sandbox.ca import DevCA
from sandbox.mosquitto import OBSERVER_CN, MosquittoBroker, render_acl
from sandbox.mqtt import MqttError, Recorder, close_client, tls_client
from sandbox.net import listening_sockets
from sandbox.procs import running_processes
from sandbox.server import PortInUseError, ServerStartError

EDGE_01 = thing_name("staging", "plant-a", "edge-01")
EDGE_02 = thing_name("staging", "plant-a", "edge-02")


def _publish_v5(client: mqtt.Client, topic: str, payload: bytes = b"x") -> ReasonCode:
    """Publish at QoS 1 and return the PUBACK reason code (MQTT 5 reports ACL denials in it)."""
    acked = threading.Event()
    codes: list[ReasonCode] = []

    def on_publish(c: mqtt.Client, u: object, mid: int, rc: ReasonCode, props: Properties) -> None:
        codes.append(rc)
        acked.set()

    client.on_publish = on_publish
    client.publish(topic, payload, qos=1)
    assert acked.wait(30), "no PUBACK"
    return codes[0]


def _thing_client(broker: MosquittoBroker, ca: DevCA, thing: str, tmp_path: Path) -> mqtt.Client:
    cert, key = ca.issue(thing, tmp_path / "things")
    return tls_client(broker.host, broker.port, broker.ca_file, cert, key, client_id=thing,
                      protocol=MQTTProtocolVersion.MQTTv5)


def test_acl_is_rendered_from_collector_topics(mqtt_broker: MosquittoBroker) -> None:
    acl = mqtt_broker.acl_path.read_text()
    assert acl == render_acl()
    lines = acl.splitlines()
    for pattern in mosquitto_acl_patterns():
        assert pattern in lines
    assert f"user {OBSERVER_CN}" in lines
    assert "pattern write spBv1.0/pm500/DDATA/%u/+" in lines  # what the collector publishes on
    assert "pattern write $aws/things/%u/shadow/name/pm500/update" in lines  # its named shadow only
    assert "pattern read $aws/things/%u/shadow/name/pm500/#" in lines
    assert "pattern read spBv1.0/pm500/NCMD/%u" in lines
    assert "pattern write pm500/event/%u/+" in lines  # alarm/output events


def test_broker_listens_on_loopback_only(mqtt_broker: MosquittoBroker) -> None:
    assert mqtt_broker.pid is not None
    assert listening_sockets(mqtt_broker.pid) == [("127.0.0.1", mqtt_broker.port)]


def test_thing_publishes_on_its_own_topics_only(
    mqtt_broker: MosquittoBroker, mqtt_observer: Recorder, dev_ca: DevCA, tmp_path: Path
) -> None:
    shadow = "$aws/things/staging:plant-a:edge-01/shadow/name/pm500/update"
    cert, key = mqtt_broker.observer_credentials(tmp_path / "observer-aws")
    aws_observer = Recorder(mqtt_broker.host, mqtt_broker.port, mqtt_broker.ca_file, cert, key,
                            topic_filter=["$aws/#"]).start()
    client = _thing_client(mqtt_broker, dev_ca, EDGE_01, tmp_path)
    try:
        own = DDATA.render(EDGE_01, "meter-1")
        foreign = DDATA.render(EDGE_02, "meter-1")
        denied = _publish_v5(client, foreign, b"forged")
        assert denied.is_failure and denied.getName() == "Not authorized"
        accepted = _publish_v5(client, own, b"reading")
        assert not accepted.is_failure
        assert not _publish_v5(client, NBIRTH.render(EDGE_01)).is_failure
        assert not _publish_v5(client, shadow).is_failure
        assert _publish_v5(client, "$aws/things/staging:plant-a:edge-02/shadow/name/pm500/update").is_failure
        assert _publish_v5(client, "$aws/things/staging:plant-a:edge-01/shadow/update").is_failure  # classic
        assert _publish_v5(client, "$aws/things/staging:plant-a:edge-01/shadow/name/pm500/delete").is_failure
        assert [m.topic for m in aws_observer.wait_for_topic("$aws/")] == [shadow]
    finally:
        close_client(client)
        aws_observer.stop()
    topics = [m.topic for m in mqtt_observer.messages()]
    assert foreign not in topics  # the forged reading never reached the "cloud"
    assert [m.payload for m in mqtt_observer.messages(own)] == [b"reading"]


def test_thing_receives_its_commands_but_not_another_things(dev_ca: DevCA, tmp_path: Path) -> None:
    """Mosquitto 2.0 grants any SUBSCRIBE and filters at delivery with the read ACL (IoT Core refuses
    the SUBSCRIBE instead); either way a thing never receives another thing's commands."""
    commander = ["user pm500-commander", "topic write spBv1.0/pm500/NCMD/#"]
    with MosquittoBroker(tmp_path / "broker", dev_ca, acl_extra=commander) as broker:
        assert broker.acl_path.read_text().endswith("\n".join(commander) + "\n")
        recorders = {}
        for thing in (EDGE_01, EDGE_02):
            cert, key = dev_ca.issue(thing, tmp_path / "things")
            recorders[thing] = Recorder(broker.host, broker.port, broker.ca_file, cert, key,
                                        topic_filter=[NCMD.render(EDGE_01), NCMD.render(EDGE_02)]).start()
        cert, key = dev_ca.issue("pm500-commander", tmp_path / "commander")
        client = tls_client(broker.host, broker.port, broker.ca_file, cert, key,
                            protocol=MQTTProtocolVersion.MQTTv5)
        try:
            assert not _publish_v5(client, NCMD.render(EDGE_02), b"for-02").is_failure
            assert not _publish_v5(client, NCMD.render(EDGE_01), b"for-01").is_failure
            # Same publisher, same subscriber: delivery is in order, so "for-02" would come first.
            for thing in (EDGE_01, EDGE_02):
                got = recorders[thing].wait_for_topic(NCMD.render(thing))
                assert [m.payload for m in recorders[thing].messages()] == [got[0].payload]
        finally:
            close_client(client)
            for recorder in recorders.values():
                recorder.stop()


def test_a_host_application_commands_and_announces_itself_and_collectors_read_its_state(
    dev_ca: DevCA, tmp_path: Path
) -> None:
    """A Sparkplug host identity (`primary_hosts`, CN = host id): it may publish its own STATE and NCMD,
    nothing an edge node publishes, nor another host's STATE; a collector reads its STATE and may not
    forge it."""
    host, state = "scada", STATE.render("", host="scada")
    with MosquittoBroker(tmp_path / "broker", dev_ca, primary_hosts=[host]) as broker:
        cert, key = dev_ca.issue(EDGE_01, tmp_path / "things")
        collector_view = Recorder(broker.host, broker.port, broker.ca_file, cert, key,
                                  topic_filter=[state]).start()
        cert, key = dev_ca.issue(host, tmp_path / "host")
        client = tls_client(broker.host, broker.port, broker.ca_file, cert, key, client_id=host,
                            protocol=MQTTProtocolVersion.MQTTv5)
        thing = _thing_client(broker, dev_ca, EDGE_01, tmp_path)
        try:
            assert not _publish_v5(client, state, b"online").is_failure
            assert not _publish_v5(client, NCMD.render(EDGE_01), b"rebirth").is_failure
            assert _publish_v5(client, DDATA.render(EDGE_01, "meter-1")).is_failure
            assert _publish_v5(client, STATE.render("", host="other-host")).is_failure
            assert _publish_v5(thing, state, b"forged").is_failure
            assert [m.payload for m in collector_view.wait_for_topic(state)] == [b"online"]
        finally:
            close_client(thing)
            close_client(client)
            collector_view.stop()


def test_client_without_certificate_is_refused(mqtt_broker: MosquittoBroker) -> None:
    with pytest.raises((ssl.SSLError, OSError, MqttError)):
        client = tls_client(mqtt_broker.host, mqtt_broker.port, mqtt_broker.ca_file, None, None,
                            timeout=10)
        close_client(client)


def test_certificate_from_another_ca_is_refused(mqtt_broker: MosquittoBroker, tmp_path: Path) -> None:
    rogue = DevCA.create(tmp_path / "rogue", name="rogue CA")
    cert, key = rogue.issue(EDGE_01, tmp_path / "rogue-thing")
    with pytest.raises((ssl.SSLError, OSError, MqttError)):
        client = tls_client(mqtt_broker.host, mqtt_broker.port, mqtt_broker.ca_file, cert, key,
                            timeout=10)
        close_client(client)


def test_observer_is_read_only(mqtt_broker: MosquittoBroker, mqtt_observer: Recorder,
                               tmp_path: Path) -> None:
    cert, key = mqtt_broker.observer_credentials(tmp_path / "observer2")
    client = tls_client(mqtt_broker.host, mqtt_broker.port, mqtt_broker.ca_file, cert, key,
                        protocol=MQTTProtocolVersion.MQTTv5)
    try:
        assert _publish_v5(client, DDATA.render(EDGE_01, "meter-1")).is_failure
    finally:
        close_client(client)
    assert mqtt_observer.messages() == []


def test_restart_keeps_the_port_and_the_recorder_resubscribes(
    mqtt_broker: MosquittoBroker, mqtt_observer: Recorder, dev_ca: DevCA, tmp_path: Path
) -> None:
    port = mqtt_broker.port
    assert mqtt_observer.live
    mqtt_broker.restart()
    assert mqtt_broker.port == port and mqtt_broker.running
    assert mqtt_observer.wait_live(timeout=60)
    topic = DDATA.render(EDGE_01, "meter-2")
    client = _thing_client(mqtt_broker, dev_ca, EDGE_01, tmp_path)
    try:
        assert not _publish_v5(client, topic, b"after-restart").is_failure
        assert [m.payload for m in mqtt_observer.wait_for_topic(topic)] == [b"after-restart"]
    finally:
        close_client(client)


def test_a_clash_on_a_given_port_fails_with_the_log(mqtt_broker: MosquittoBroker, dev_ca: DevCA,
                                                    tmp_path: Path) -> None:
    clash = MosquittoBroker(tmp_path / "b", dev_ca, port=mqtt_broker.port)
    with pytest.raises(PortInUseError, match="Address already in use"):
        clash.start()
    assert not clash.running
    assert not [p for p in running_processes() if str(clash.conf_path) in p.args]
    assert mqtt_broker.running


def test_a_clash_on_a_picked_port_moves_to_another(dev_ca: DevCA, tmp_path: Path) -> None:
    broker = MosquittoBroker(tmp_path / "b", dev_ca)
    taken = broker.port
    with socket.socket() as squatter:
        squatter.bind((broker.host, taken))
        squatter.listen()
        with broker:
            assert broker.port != taken
            assert listening_sockets(broker.pid or 0) == [(broker.host, broker.port)]


def test_kill9_then_start_again(mqtt_broker: MosquittoBroker, mqtt_observer: Recorder) -> None:
    pid, port = mqtt_broker.pid, mqtt_broker.port
    mqtt_broker.kill9()
    assert pid is not None and not Path(f"/proc/{pid}").exists()
    mqtt_broker.start()
    assert mqtt_broker.port == port and mqtt_broker.pid != pid
    assert mqtt_observer.wait_live(timeout=60)


def test_persistence_keeps_retained_messages_across_restart(dev_ca: DevCA, tmp_path: Path) -> None:
    topic = NBIRTH.render(EDGE_01)
    with MosquittoBroker(tmp_path / "broker", dev_ca, persistence=True) as broker:
        client = _thing_client(broker, dev_ca, EDGE_01, tmp_path)
        try:
            info = client.publish(topic, b"birth", qos=1, retain=True)
            info.wait_for_publish(30)
        finally:
            close_client(client)
        broker.restart()
        assert (broker.workdir / "mosquitto.db").exists()
        cert, key = broker.observer_credentials(tmp_path / "observer")
        with Recorder(broker.host, broker.port, broker.ca_file, cert, key) as late_observer:
            assert [m.payload for m in late_observer.wait_for_topic(topic)] == [b"birth"]


def test_relative_paths_work(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The broker runs with cwd=workdir: paths given relative to the caller must still resolve."""
    monkeypatch.chdir(tmp_path)
    ca = DevCA.create(Path("ca"))
    with MosquittoBroker(Path("var/mosquitto"), ca) as broker:
        cert, key = broker.observer_credentials(Path("observer"))
        with Recorder(broker.host, broker.port, broker.ca_file, cert, key) as recorder:
            assert recorder.live


def test_missing_binary_names_the_package(dev_ca: DevCA, tmp_path: Path,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("sandbox.mosquitto.MOSQUITTO_BIN", "mosquitto-not-installed-pm500")
    with pytest.raises(ServerStartError, match="Debian package 'mosquitto'"):
        MosquittoBroker(tmp_path / "b", dev_ca).start()
