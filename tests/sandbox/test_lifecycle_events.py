"""Lifecycle events in the sandbox come from the broker's own connect and disconnect records.

Expected fields and `disconnectReason` values are AWS IoT's ("Lifecycle events", Developer Guide):
a clean DISCONNECT is CLIENT_INITIATED_DISCONNECT (`clientInitiatedDisconnect` true), a socket that
just closes (a process killed) CONNECTION_LOST, a second connection with the same client id closes the
first with DUPLICATE_CLIENTID; a disconnect repeats its connection's session and version.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from collector.topics import thing_name
from sandbox.ca import DevCA
from sandbox.lifecycle_events import LifecycleEvents
from sandbox.mosquitto import MosquittoBroker
from sandbox.mqtt import Recorder, close_client, tls_client

THING = thing_name("test", "plant-a", "edge-01")


@pytest.fixture
def events(mqtt_broker: MosquittoBroker, dev_ca: DevCA, tmp_path: Path) -> Iterator[Recorder]:
    bridge = LifecycleEvents(mqtt_broker, tmp_path / "bridge").start()
    cert, key = mqtt_broker.observer_credentials(tmp_path / "observer")
    with Recorder(mqtt_broker.host, mqtt_broker.port, mqtt_broker.ca_file, cert, key,
                  topic_filter="$aws/events/presence/#") as recorder:
        yield recorder
    bridge.stop()


def of(recorder: Recorder, client_id: str, count: int) -> list[dict[str, Any]]:
    def mine(messages: Any) -> list[dict[str, Any]]:
        bodies = [json.loads(m.payload) for m in messages]
        return [b for b in bodies if b["clientId"] == client_id]

    recorder.wait_for(lambda ms: len(mine(ms)) >= count, timeout=30)
    found = mine(recorder.messages())
    for body in found:  # the topic names the event type and the client
        topic = next(m.topic for m in recorder.messages() if json.loads(m.payload) == body)
        assert topic == f"$aws/events/presence/{body['eventType']}/{client_id}"
    return found


def test_connect_clean_disconnect_and_duplicate_client_id(
    events: Recorder, mqtt_broker: MosquittoBroker, dev_ca: DevCA, tmp_path: Path
) -> None:
    cert, key = dev_ca.issue(THING, tmp_path / "thing")
    first = tls_client(mqtt_broker.host, mqtt_broker.port, mqtt_broker.ca_file, cert, key, client_id=THING)
    close_client(first)
    again = tls_client(mqtt_broker.host, mqtt_broker.port, mqtt_broker.ca_file, cert, key, client_id=THING)
    again.reconnect_delay_set(60, 60)  # after its takeover below it stays away
    takeover = tls_client(mqtt_broker.host, mqtt_broker.port, mqtt_broker.ca_file, cert, key, client_id=THING)
    try:
        found = of(events, THING, 5)
    finally:
        close_client(takeover)
        again.loop_stop()
    connected, clean, connected2, duplicate, connected3 = found[:5]
    assert connected["eventType"] == "connected" and connected["ipAddress"] == "127.0.0.1"
    assert connected["principalIdentifier"] == THING
    assert (clean["eventType"], clean["disconnectReason"], clean["clientInitiatedDisconnect"]) == (
        "disconnected", "CLIENT_INITIATED_DISCONNECT", True)
    assert clean["sessionIdentifier"] == connected["sessionIdentifier"]
    assert clean["versionNumber"] == connected["versionNumber"] == 0
    assert duplicate["disconnectReason"] == "DUPLICATE_CLIENTID"
    assert duplicate["clientInitiatedDisconnect"] is False
    assert duplicate["sessionIdentifier"] == connected2["sessionIdentifier"] != connected["sessionIdentifier"]
    assert [connected2["versionNumber"], connected3["versionNumber"]] == [1, 2]
    assert all(isinstance(e["timestamp"], int) for e in found)


def test_a_killed_process_is_connection_lost(
    events: Recorder, mqtt_broker: MosquittoBroker, dev_ca: DevCA, tmp_path: Path
) -> None:
    cert, key = dev_ca.issue(THING, tmp_path / "thing")
    script = textwrap.dedent(f"""
        import time
        from pathlib import Path
        from sandbox.mqtt import tls_client
        tls_client("127.0.0.1", {mqtt_broker.port}, Path({str(mqtt_broker.ca_file)!r}), Path({str(cert)!r}),
                   Path({str(key)!r}), client_id={THING!r})
        print("connected", flush=True)
        time.sleep(60)
    """)
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "connected"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    connected, lost = of(events, THING, 2)
    assert (lost["eventType"], lost["disconnectReason"], lost["clientInitiatedDisconnect"]) == (
        "disconnected", "CONNECTION_LOST", False)
    assert lost["sessionIdentifier"] == connected["sessionIdentifier"]


def test_lines_that_are_not_about_a_session_make_no_event(
    mqtt_broker: MosquittoBroker, tmp_path: Path
) -> None:
    bridge = LifecycleEvents(mqtt_broker, tmp_path)
    assert bridge.event_for("Client nobody closed its connection.") is None  # never completed CONNECT
    assert bridge.event_for("New connection from 127.0.0.1:4000 on port 1883.") is None
    assert bridge.event_for("mosquitto version 2.0.11 running") is None
