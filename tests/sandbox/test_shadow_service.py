"""The sandbox's Device Shadow MQTT side: Mosquitto's named-shadow topics answered from moto's shadows.

Expected messages follow AWS IoT's "Device Shadow MQTT topics" and "Device Shadow service documents":
accepted/rejected answers echo the clientToken, a rejection carries `code` and `message`, and a delta
(`state` = desired keys that differ from reported, `version`) follows a desired change, also one made
over the HTTP API.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import MQTTProtocolVersion

from collector.topics import thing_name
from sandbox.ca import DevCA
from sandbox.mosquitto import MosquittoBroker
from sandbox.moto import REGION, MotoServer
from sandbox.mqtt import Recorder, close_client, tls_client
from sandbox.plan_replay import moto_clients
from sandbox.shadow_service import ShadowService

THING = thing_name("test", "plant-a", "edge-01")
OTHER = thing_name("test", "plant-a", "edge-02")
BASE = f"$aws/things/{THING}/shadow/name/pm500"


@pytest.fixture
def service(
    mqtt_broker: MosquittoBroker, moto_server: MotoServer, aws_env: dict[str, str], tmp_path: Path
) -> Iterator[ShadowService]:
    iot = boto3.client("iot")
    for thing in (THING, OTHER):
        iot.create_thing(thingName=thing)
    service = ShadowService(mqtt_broker, moto_clients(aws_env, REGION), tmp_path / "service").start()
    yield service
    service.stop()


def device(broker: MosquittoBroker, ca: DevCA, thing: str, directory: Path) -> mqtt.Client:
    cert, key = ca.issue(thing, directory)
    return tls_client(broker.host, broker.port, broker.ca_file, cert, key, client_id=thing,
                      protocol=MQTTProtocolVersion.MQTTv311)


def recorder(broker: MosquittoBroker, ca: DevCA, thing: str, directory: Path, topic: str) -> Recorder:
    cert, key = ca.issue(thing, directory)
    return Recorder(broker.host, broker.port, broker.ca_file, cert, key, topic_filter=topic)


def payloads(rec: Recorder, topic: str) -> list[dict[str, Any]]:
    return [json.loads(m.payload) for m in rec.messages(topic)]


def test_get_update_and_deltas_over_mqtt_and_http(
    service: ShadowService, mqtt_broker: MosquittoBroker, dev_ca: DevCA, tmp_path: Path
) -> None:
    with recorder(mqtt_broker, dev_ca, THING, tmp_path / "rec", f"{BASE}/#") as rec:
        client = device(mqtt_broker, dev_ca, THING, tmp_path / "device")
        try:
            client.publish(f"{BASE}/get", json.dumps({"clientToken": "g1"}), qos=1)
            [missing] = rec.wait_for_topic(f"{BASE}/get/rejected")
            assert json.loads(missing.payload)["code"] == 404
            assert json.loads(missing.payload)["clientToken"] == "g1"

            report = {"state": {"reported": {"poll_interval_s": 1.0}}, "clientToken": "u1"}
            client.publish(f"{BASE}/update", json.dumps(report), qos=1)
            [accepted] = rec.wait_for_topic(f"{BASE}/update/accepted")
            body = json.loads(accepted.payload)
            assert (body["state"], body["version"], body["clientToken"]) == (report["state"], 1, "u1")

            # An operator over the HTTP API: the device hears the delta.
            boto3.client("iot-data").update_thing_shadow(
                thingName=THING, shadowName="pm500",
                payload=json.dumps({"state": {"desired": {"poll_interval_s": 5, "debug": False}}}),
            )
            [delta] = rec.wait_for_topic(f"{BASE}/update/delta")
            assert json.loads(delta.payload)["state"] == {"poll_interval_s": 5, "debug": False}
            assert json.loads(delta.payload)["version"] == 2

            client.publish(f"{BASE}/get", json.dumps({"clientToken": "g2"}), qos=1)
            [got] = rec.wait_for_topic(f"{BASE}/get/accepted")
            state = json.loads(got.payload)["state"]
            assert state["delta"] == {"poll_interval_s": 5, "debug": False}
            assert state["reported"] == {"poll_interval_s": 1.0}

            # The device reports the change: accepted, and no new delta (reported-only update).
            done = {"state": {"reported": {"poll_interval_s": 5, "debug": False}}}
            client.publish(f"{BASE}/update", json.dumps(done), qos=1)
            rec.wait_for_topic(f"{BASE}/update/accepted", count=2)

            client.publish(f"{BASE}/update", b"{not json", qos=1)
            [bad] = rec.wait_for_topic(f"{BASE}/update/rejected")
            assert json.loads(bad.payload)["code"] == 400
            stale = {"state": {"reported": {"debug": True}}, "version": 1, "clientToken": "old"}
            client.publish(f"{BASE}/update", json.dumps(stale), qos=1)
            rejected = rec.wait_for_topic(f"{BASE}/update/rejected", count=2)
            assert [json.loads(r.payload)["code"] for r in rejected] == [400, 409]
        finally:
            close_client(client)
        assert len(payloads(rec, f"{BASE}/update/delta")) == 1
        # Every version is documented (the report rule reads these), the HTTP one too.
        documents = payloads(rec, f"{BASE}/update/documents")
        assert [d["current"]["version"] for d in documents] == [1, 2, 3]
        assert "previous" not in documents[0] and documents[1]["previous"]["version"] == 1
        assert documents[2]["current"]["state"]["reported"] == {"poll_interval_s": 5, "debug": False}
        got = boto3.client("iot-data").get_thing_shadow(thingName=THING, shadowName="pm500")
        assert "delta" not in json.loads(got["payload"].read())["state"]


def test_another_thing_neither_reads_nor_writes_this_shadow(
    service: ShadowService, mqtt_broker: MosquittoBroker, dev_ca: DevCA, tmp_path: Path
) -> None:
    """The sandbox ACL, rendered from collector.topics like the IoT policy: each thing its own shadow."""
    with recorder(mqtt_broker, dev_ca, OTHER, tmp_path / "other", f"{BASE}/#") as spy:
        intruder = device(mqtt_broker, dev_ca, OTHER, tmp_path / "intruder")
        owner = device(mqtt_broker, dev_ca, THING, tmp_path / "owner")
        try:
            forged = {"state": {"reported": {"poll_interval_s": 9.0}}}
            intruder.publish(f"{BASE}/update", json.dumps(forged), qos=1).wait_for_publish(10)
            owner.publish(f"{BASE}/update", json.dumps({"state": {"reported": {"debug": True}}}), qos=1)
            got = boto3.client("iot-data")
            with recorder(mqtt_broker, dev_ca, THING, tmp_path / "own", f"{BASE}/update/accepted") as own:
                owner.publish(f"{BASE}/update", json.dumps({"state": {"reported": {"debug": False}}}), qos=1)
                own.wait_for_topic(f"{BASE}/update/accepted")
        finally:
            close_client(intruder)
            close_client(owner)
        assert spy.messages() == []  # not one answer of edge-01's shadow reached edge-02
    reported = json.loads(got.get_thing_shadow(thingName=THING, shadowName="pm500")["payload"].read())
    assert reported["state"]["reported"] == {"debug": False}  # the forged poll interval never landed
