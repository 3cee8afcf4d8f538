"""A captured Sparkplug B session against real Mosquitto, checked with an independent decoder.

simulator -> `python -m collector` (mqtt.encoding: sparkplug-b) -> Mosquitto (mutual TLS, ACL), recorded
by a QoS 0 subscriber (the broker forwards QoS 0 in publish order). The session covers: seq wrapping
past 255, a host's rebirth request (NCMD), a kill -9 and restart (the broker sends the will NDEATH), a
graceful stop. Every message is decoded with Tahu's proto compiled by the test, and the specification's
rules are checked on the whole capture.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from collector import topics
from collector.backoff import Backoff
from collector.buffer import Buffer
from collector.config import load_config
from collector.metrics import METRICS
from collector.mqtt_sink import MqttSink
from collector.reading import Reading
from collector.wire import SparkplugWire
from sandbox.ca import DevCA
from sandbox.mosquitto import MosquittoBroker
from sandbox.mqtt import Message, Recorder
from sandbox.net import free_port
from tests.collector.harness import (
    SITE,
    THING,
    CollectorProcess,
    PersistentObserver,
    Simulator,
    wait_until,
    write_bundle,
)
from tests.collector.sparkplug_reader import (
    BOOLEAN,
    assert_seq_continuity,
    compile_payload_class,
    decode_all,
    metric,
    resolve_ddata,
    sessions,
)

pytestmark = pytest.mark.slow

HOST_CN = "pm500-test-host-application"
NCMD_TOPIC = topics.NCMD.render(THING)
ASSETS = {"meter-0", "meter-1"}


@pytest.fixture
def broker(tmp_path: Path, dev_ca: DevCA) -> Iterator[MosquittoBroker]:
    """The collector's ACL plus a host application allowed to send it NCMD."""
    broker = MosquittoBroker(
        tmp_path / "mosquitto", dev_ca, acl_extra=[f"user {HOST_CN}", f"topic write {NCMD_TOPIC}"]
    )
    broker.start()
    yield broker
    broker.stop()


def request_rebirth(broker: MosquittoBroker, ca: DevCA, directory: Path, payload_class: Any) -> None:
    """What a Sparkplug host sends: NCMD with `Node Control/Rebirth` = true (Boolean)."""
    request = payload_class(timestamp=int(time.time() * 1000))
    request.metrics.add(name="Node Control/Rebirth", datatype=BOOLEAN, boolean_value=True)
    cert, key = ca.issue(HOST_CN, directory)
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=HOST_CN)
    client.tls_set(ca_certs=str(broker.ca_file), certfile=str(cert), keyfile=str(key))
    connected = threading.Event()
    client.on_connect = lambda *args: connected.set()
    client.connect(broker.host, broker.port)
    client.loop_start()
    try:
        assert connected.wait(10), "host application not connected"
        client.publish(NCMD_TOPIC, request.SerializeToString(), qos=0).wait_for_publish(10)
    finally:
        client.disconnect()
        client.loop_stop()


def count(messages: Sequence[Message], kind: str, after: int = 0) -> int:
    return sum(m.topic.startswith(f"spBv1.0/pm500/{kind}/{THING}") for m in messages[after:])


def committed_readings(buffer_path: Path) -> dict[str, int]:
    """Readings the collector took per asset (its per-asset counter in the buffer, across restarts)."""
    with sqlite3.connect(buffer_path) as db:
        return dict(db.execute("SELECT asset, last_seq FROM seqs").fetchall())


def pending_mqtt(buffer_path: Path) -> int:
    with sqlite3.connect(buffer_path) as db:
        return int(db.execute("SELECT COUNT(*) FROM pending_mqtt").fetchone()[0])


def test_sparkplug_b_session_follows_the_specification(
    tmp_path: Path, dev_ca: DevCA, broker: MosquittoBroker, simulator: Simulator
) -> None:
    payload_class = compile_payload_class(tmp_path / "tahu")
    config = write_bundle(
        tmp_path / "bundle", dev_ca, broker, simulator.ports, influx_url=None,
        poll_interval_s=0.1, mqtt__encoding="sparkplug-b", mqtt__keepalive_s=5,
    )
    cert, key = broker.observer_credentials(tmp_path / "observer")
    with Recorder(broker.host, broker.port, broker.ca_file, cert, key, qos=0) as observer:
        first = CollectorProcess(config, tmp_path).start()
        try:
            # 300 DDATA in one session: the edge node's seq runs past 255 and wraps.
            observer.wait_for(lambda ms: count(ms, "DDATA") >= 300, timeout=120)
            mark = len(observer.messages())
            request_rebirth(broker, dev_ca, tmp_path / "host", payload_class)
            observer.wait_for(
                lambda ms: count(ms, "NBIRTH", mark) == 1 and count(ms, "DDATA", mark) >= 20, 30
            )
            mark = len(observer.messages())  # before the kill: the will may arrive at once
        finally:
            first.kill9()  # no NDEATH of its own: the broker publishes the will
        second = CollectorProcess(config, tmp_path).start()
        try:
            observer.wait_for(
                lambda ms: count(ms, "NDEATH", mark) == 1 and count(ms, "NBIRTH", mark) == 1
                and count(ms, "DDATA", mark) >= 20,
                60,
            )
            simulator.process.kill9()  # no new readings: what was taken must all arrive
            wait_until(lambda: pending_mqtt(second.buffer_path) == 0, 60, "buffer drained", interval=0.3)
        finally:
            assert second.stop() == 0
        observer.wait_for(lambda ms: count(ms, "NDEATH") == 2, 20)
        messages = observer.messages()
    readings = committed_readings(second.buffer_path)

    decoded = decode_all(messages, payload_class, THING)
    assert decoded[0].kind == "NBIRTH"
    nbirths = [d for d in decoded if d.kind == "NBIRTH"]
    # bdSeq: 0 at the first CONNECT, repeated by the rebirth (no new CONNECT), 1 after the restart.
    assert [metric(n.payload, "bdSeq").long_value for n in nbirths] == [0, 0, 1]
    for n in nbirths:
        rebirth = metric(n.payload, "Node Control/Rebirth")
        assert (rebirth.datatype, rebirth.boolean_value, rebirth.HasField("alias")) == (BOOLEAN, False, False)
    # NDEATH: the first process's will (bdSeq 0, ignored by hosts once bdSeq 1 was born), then the
    # second's own NDEATH at the graceful stop (bdSeq 1), the last message of the capture.
    ndeaths = [d for d in decoded if d.kind == "NDEATH"]
    assert [metric(n.payload, "bdSeq").long_value for n in ndeaths] == [0, 1]
    assert all(not n.payload.HasField("seq") for n in ndeaths)
    assert decoded[-1].kind == "NDEATH"

    captured = sessions(decoded)
    assert len(captured) == 3
    for session in captured:
        seqs = assert_seq_continuity(session)
        assert seqs[0] == 0  # NBIRTH first
        # The births of every device follow the NBIRTH before any data.
        assert {d.device for d in session.messages[:2]} == ASSETS
        assert all(d.kind == "DBIRTH" for d in session.messages[:2])
    assert 255 in assert_seq_continuity(captured[0]) and len(captured[0].messages) > 256  # wrapped
    # The graceful stop: a DDEATH per device before the NDEATH.
    assert {d.device for d in captured[2].messages if d.kind == "DDEATH"} == ASSETS

    now_ms = time.time() * 1000
    for d in decoded:
        assert 1_600_000_000_000 < d.payload.timestamp <= now_ms  # ms since the epoch

    names = {m.name for m in METRICS}
    delivered: dict[str, set[int]] = {asset: set() for asset in ASSETS}
    for session in captured:
        birth_ts = session.nbirth.payload.timestamp
        for asset, rows in resolve_ddata(session).items():
            for timestamp, values, historical in rows:
                assert set(values) <= names and "voltageAN" in values
                if historical:  # replayed: taken before this MQTT session began
                    assert timestamp < birth_ts
                delivered[asset].add(timestamp)
    # Store and forward across kill -9: every reading the collector took reached the subscriber.
    assert {a: len(ts) for a, ts in delivered.items()} == readings



def test_broker_outage_loses_no_reading_and_replays_into_the_new_session(
    tmp_path: Path, dev_ca: DevCA, simulator: Simulator
) -> None:
    """Broker down 6 s: unacknowledged publishes are not resent with the old session's seq; they are
    replayed from the buffer after the new births, those taken before the new session flagged historical.

    The persistent observer gets every DDATA (QoS 1, queued by the broker while it is away) but may miss
    QoS 0 births around the restart, so this test reads DDATA only.
    """
    payload_class = compile_payload_class(tmp_path / "tahu")
    broker = MosquittoBroker(tmp_path / "mosquitto", dev_ca, persistence=True)
    broker.start()
    observer = PersistentObserver(broker, tmp_path)
    config = write_bundle(
        tmp_path / "bundle", dev_ca, broker, simulator.ports, influx_url=None, mqtt__encoding="sparkplug-b"
    )
    collector = CollectorProcess(config, tmp_path).start()
    try:
        wait_until(lambda: count(observer.messages(), "DDATA") >= 10, 30, "first DDATA")
        broker.stop()
        time.sleep(6)
        broker.start()
        wait_until(lambda: (h := collector.health()) and h["sinks"]["mqtt"]["connects"] >= 2, 60, "reconnect")
        simulator.process.kill9()
        wait_until(lambda: pending_mqtt(collector.buffer_path) == 0, 60, "buffer drained", interval=0.3)
    finally:
        collector.stop()
        observer.stop()
        broker.stop()
    readings = committed_readings(collector.buffer_path)
    # The broker redelivers to the persistent observer what it had not acknowledged before the broker
    # stopped (MQTT's at-least-once): byte-identical copies are counted once.
    unique = list({m.payload: m for m in observer.messages()}.values())
    numbered = [d for d in decode_all(unique, payload_class, THING) if d.kind in ("DDATA", "DBIRTH")]
    ddata = [d for d in numbered if d.kind == "DDATA"]
    delivered: dict[str, set[int]] = {asset: set() for asset in ASSETS}
    for d in ddata:
        assert d.device is not None
        delivered[d.device].add(d.payload.timestamp)
    assert {a: len(ts) for a, ts in delivered.items()} == readings
    # seq runs on by one; the one jump is the new session, whose first DDATA follows NBIRTH (0) and the
    # two DBIRTHs (1, 2). A publish of the old session resent after the reconnect would jump elsewhere.
    # Within a session a DBIRTH re-announced with the meter's register-map verdict takes the next seq
    # too: a step over exactly the DBIRTHs seen in between is no jump.
    births_since: list[int] = []
    steps: list[tuple[int, int, list[int]]] = []  # (previous DDATA seq, DDATA seq, DBIRTH seqs between)
    previous: int | None = None
    for d in numbered:
        if d.kind == "DBIRTH":
            births_since.append(d.payload.seq)
            continue
        if previous is not None:
            steps.append((previous, d.payload.seq, births_since))
        previous, births_since = d.payload.seq, []
    jumps = [
        (i, b) for i, (a, b, births) in enumerate(steps, start=1)
        if [(a + k) % 256 for k in range(1, len(births) + 2)] != [*births, b]
    ]
    assert [b for _, b in jumps] == [3]
    replayed = ddata[jumps[0][0] :]
    historical = [all(m.is_historical for m in d.payload.metrics) for d in replayed]
    assert sum(historical) >= 2 * 5  # ~6 s of 0.2 s polls of two meters were stored meanwhile
    assert historical == sorted(historical, reverse=True)  # the replayed backlog first, then live data


def test_publishes_unacknowledged_at_a_disconnect_are_replayed_in_the_next_session(
    tmp_path: Path, dev_ca: DevCA
) -> None:
    """Broker frozen (SIGSTOP) while DDATA are in flight, then killed and restarted: the new session
    must not carry the old session's seq. paho would resend those messages as they were; the collector
    instead replays the rows from its buffer with new seq numbers, flagged historical."""
    payload_class = compile_payload_class(tmp_path / "tahu")
    broker = MosquittoBroker(tmp_path / "mosquitto", dev_ca)
    broker.start()
    cfg = load_config(write_bundle(
        tmp_path / "bundle", dev_ca, broker, [free_port()], influx_url=None, mqtt__encoding="sparkplug-b"
    ))
    wire = SparkplugWire(cfg)
    buffer = Buffer(
        cfg.buffer.path, cfg.buffer.max_bytes, cfg.thing_name, ("mqtt",), ddata_encoder=wire.ddata_row
    )
    sink = MqttSink(cfg, buffer, wire=wire)
    # Reconnect 4-5 s after the loss, so the test's subscriber is back first and sees the new births.
    sink.link._backoff = Backoff(base_s=5.0, cap_s=5.0, floor_s=4.0)
    start_ms = int(time.time() * 1000)

    def take(first: int, n: int) -> None:
        for i in range(first, first + n):
            buffer.append(Reading(SITE, "meter-0", "F0", start_ms + i, {"voltageAN": float(i)}))
        sink.notify()

    cert, key = broker.observer_credentials(tmp_path / "observer")
    try:
        with Recorder(broker.host, broker.port, broker.ca_file, cert, key, qos=0) as observer:
            sink.start()
            take(0, 20)
            observer.wait_for(lambda ms: count(ms, "DDATA") >= 20, 30)
            os.kill(broker.pid or 0, signal.SIGSTOP)
            take(20, 10)
            wait_until(lambda: sink.status()["in_flight"] >= 10, 10, "DDATA in flight to the frozen broker")
            broker.kill9()
            broker.start()
            assert observer.wait_live(30)
            wait_until(lambda: buffer.depth("mqtt") == 0, 60, "buffer drained after the reconnect")
            observer.wait_for(lambda ms: count(ms, "DDATA") >= 30, 30)
            messages = observer.messages()
    finally:
        sink.stop()
        buffer.close()
        broker.stop()
    first, second = sessions(decode_all(messages, payload_class, THING))
    assert metric(second.nbirth.payload, "bdSeq").long_value == 1  # the second CONNECT
    assert_seq_continuity(second)  # a resent message of the first session would break it
    replayed = {ts - start_ms: historical for ts, _, historical in resolve_ddata(second)["meter-0"]}
    assert set(range(20, 30)) <= set(replayed)  # what was in flight at the loss, sent again
    assert all(replayed.values())  # all taken before the second session: historical
    delivered = {ts - start_ms for s in (first, second) for ts, _, _ in resolve_ddata(s)["meter-0"]}
    assert delivered == set(range(30))
