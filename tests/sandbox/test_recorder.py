"""The Recorder sees every message, in order, and says clearly what it saw when a wait fails."""

from pathlib import Path

import pytest

from collector.topics import DDATA, DDEATH, thing_name
from sandbox.ca import DevCA
from sandbox.mosquitto import MosquittoBroker
from sandbox.mqtt import Recorder, close_client, tls_client

THING = thing_name("test", "plant-a", "edge-01")


def test_a_burst_arrives_complete_and_in_order(mqtt_broker: MosquittoBroker, mqtt_observer: Recorder,
                                               dev_ca: DevCA, tmp_path: Path) -> None:
    cert, key = dev_ca.issue(THING, tmp_path)
    client = tls_client(mqtt_broker.host, mqtt_broker.port, mqtt_broker.ca_file, cert, key, client_id=THING)
    total = 3000
    try:
        for i in range(total):
            client.publish(DDATA.render(THING, f"meter-{i % 2}"), str(i).encode(), qos=1)
        client.publish(DDEATH.render(THING, "meter-0"), b"end", qos=1).wait_for_publish(60)
    finally:
        close_client(client)
    mqtt_observer.wait_for_topic(DDEATH.render(THING, "meter-0"), timeout=120)
    received = mqtt_observer.wait_for_topic(DDATA.render(THING, ""), count=total, timeout=120)
    assert [int(m.payload) for m in received] == list(range(total))
    assert [int(m.payload) for m in mqtt_observer.messages(DDATA.render(THING, "meter-1"))] == list(
        range(1, total, 2)
    )
    times = [m.received_at for m in received]
    assert times == sorted(times)


def test_wait_for_timeout_reports_what_arrived(mqtt_observer: Recorder, mqtt_broker: MosquittoBroker,
                                               dev_ca: DevCA, tmp_path: Path) -> None:
    cert, key = dev_ca.issue(THING, tmp_path)
    client = tls_client(mqtt_broker.host, mqtt_broker.port, mqtt_broker.ca_file, cert, key, client_id=THING)
    try:
        client.publish(DDATA.render(THING, "meter-1"), b"1", qos=1).wait_for_publish(30)
    finally:
        close_client(client)
    snapshot = mqtt_observer.wait_for(lambda ms: len(ms) == 1)
    assert [m.payload for m in snapshot] == [b"1"]
    with pytest.raises(TimeoutError, match=r"1 messages received on \['spBv1.0/pm500/DDATA/"):
        mqtt_observer.wait_for(lambda ms: len(ms) >= 2, timeout=0.3)
