"""Chaos: broker down 10 s, InfluxDB down, a meter delayed past the timeout then killed, collector kill -9.

After each: every `seq` from first to last reached the subscriber at least once (duplicates allowed,
gaps not) and InfluxDB holds every reading. The meters are killed at the end of each test so the
collector stops producing; the test then waits for the buffer to drain and compares against the last
`seq` the collector committed (read from its buffer file).
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from collector.buffer import Buffer
from collector.lineprotocol import MEASUREMENT
from collector.metrics import METRICS
from collector.reading import Reading
from sandbox.ca import DevCA
from sandbox.influx import InfluxServer
from sandbox.mosquitto import MosquittoBroker
from sandbox.mqtt import Message, Recorder
from tests.collector.harness import (
    SITE,
    THING,
    CollectorProcess,
    PersistentObserver,
    Simulator,
    assert_no_gaps,
    ddata_by_asset,
    max_seqs,
    wait_until,
    write_bundle,
)

pytestmark = pytest.mark.slow



def committed_seqs(buffer_path: Path) -> dict[str, int]:
    with sqlite3.connect(buffer_path) as db:
        return dict(db.execute("SELECT asset, last_seq FROM seqs").fetchall())


def pending(buffer_path: Path, sink: str) -> int:
    table = {"mqtt": "pending_mqtt", "influx": "pending_influx"}[sink]
    with sqlite3.connect(buffer_path) as db:
        return int(db.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0])  # noqa: S608


def influx_counts(influx: InfluxServer, db: str) -> dict[str, int]:
    result = influx.query(
        f"SELECT count(\"kWh\") FROM {MEASUREMENT} WHERE phase = 'total' GROUP BY asset",  # noqa: S608
        db=db,
    )
    series = result["results"][0].get("series", [])
    return {s["tags"]["asset"]: s["values"][0][1] for s in series}


def both_at_least(seqs: dict[str, int], n: int) -> bool:
    return set(seqs) == {"meter-0", "meter-1"} and all(v >= n for v in seqs.values())


def drain_and_verify(
    collector: CollectorProcess,
    simulator: Simulator | None,
    messages: Callable[[], list[Message]],
    influx: InfluxServer,
    db: str,
    timeout: float = 90,
) -> dict[str, int]:
    """Kill the meters, wait for both sinks to drain, then check MQTT seq continuity and InfluxDB."""
    if simulator is not None:
        simulator.process.kill9()
    buffer_path = collector.buffer_path
    time.sleep(1)  # a poll in flight when the meters died still lands in the buffer
    wait_until(
        lambda: pending(buffer_path, "mqtt") == 0 and pending(buffer_path, "influx") == 0,
        timeout,
        "buffer drained to both sinks",
        interval=0.3,
    )
    last = committed_seqs(buffer_path)
    wait_until(lambda: max_seqs(messages()) == last, 30, f"subscriber saw up to {last}")
    seqs = assert_no_gaps(messages())
    assert {a: (s[0], s[-1]) for a, s in seqs.items()} == {a: (1, n) for a, n in last.items()}
    assert influx_counts(influx, db) == last
    return last


def test_broker_down_10s(
    tmp_path: Path, dev_ca: DevCA, influx_server: InfluxServer, influx_db: str, simulator: Simulator
) -> None:
    broker = MosquittoBroker(tmp_path / "mosquitto", dev_ca, persistence=True)
    broker.start()
    observer = PersistentObserver(broker, tmp_path)
    config = write_bundle(tmp_path / "bundle", dev_ca, broker, simulator.ports, influx_server.url, influx_db)
    collector = CollectorProcess(config, tmp_path).start()
    try:
        wait_until(lambda: both_at_least(max_seqs(observer.messages()), 5), 30, "first DDATA")
        broker.stop()
        before = committed_seqs(collector.buffer_path)
        time.sleep(10)
        # The collector kept polling and committing while the broker was away.
        assert all(n > before[a] + 5 for a, n in committed_seqs(collector.buffer_path).items())
        health = collector.health()
        assert health is not None and health["sinks"]["mqtt"]["connected"] is False
        assert health["buffer"]["depth"]["mqtt"] > 0
        broker.start()
        drain_and_verify(collector, simulator, observer.messages, influx_server, influx_db)
    finally:
        collector.stop()
        observer.stop()
        broker.stop()


def test_influxdb_down_and_back(
    tmp_path: Path,
    dev_ca: DevCA,
    mqtt_broker: MosquittoBroker,
    mqtt_observer: Recorder,
    simulator: Simulator,
) -> None:
    influx = InfluxServer(tmp_path / "influxdb")
    influx.start()
    influx.create_database("pm500")
    config = write_bundle(tmp_path / "bundle", dev_ca, mqtt_broker, simulator.ports, influx.url, "pm500")
    collector = CollectorProcess(config, tmp_path).start()
    try:
        wait_until(lambda: sum(influx_counts(influx, "pm500").values()) >= 5, 30, "first points in InfluxDB")
        influx.stop()
        seen = max_seqs(mqtt_observer.messages())
        # MQTT keeps flowing while InfluxDB is down: the sinks do not wait for each other.
        wait_until(
            lambda: all(n >= seen[a] + 10 for a, n in max_seqs(mqtt_observer.messages()).items()),
            30,
            "DDATA while InfluxDB is down",
        )
        assert pending(collector.buffer_path, "influx") > 0
        influx.start()
        drain_and_verify(collector, simulator, mqtt_observer.messages, influx, "pm500")
    finally:
        collector.stop()
        influx.stop()


def test_meter_delayed_past_timeout_then_killed(
    tmp_path: Path,
    mqtt_observer: Recorder,
    influx_server: InfluxServer,
    influx_db: str,
    simulator: Simulator,
    bundle_config: Path,
) -> None:
    assert simulator.control is not None
    collector = CollectorProcess(bundle_config, tmp_path).start()
    try:
        wait_until(lambda: len(ddata_by_asset(mqtt_observer.messages())) == 2, 30, "DDATA from both meters")
        simulator.control.set_faults(0, delay_ms=3000)  # poll every 0.2 s: socket timeout is far below
        wait_until(
            lambda: (h := collector.health()) and h["meters"]["meter-0"]["state"] != "ok",
            30,
            "meter-0 failing",
        )
        stalled = max_seqs(mqtt_observer.messages())
        # The healthy meter is not held up by the stalled one.
        wait_until(
            lambda: max_seqs(mqtt_observer.messages())["meter-1"] >= stalled["meter-1"] + 10,
            30,
            "meter-1 readings while meter-0 stalls",
        )
        simulator.control.set_faults(0, delay_ms=0)
        wait_until(
            lambda: max_seqs(mqtt_observer.messages())["meter-0"] > stalled["meter-0"],
            30,
            "meter-0 recovered",
        )
        simulator.process.kill9()
        wait_until(
            lambda: (h := collector.health()) and all(m["state"] != "ok" for m in h["meters"].values()),
            30,
            "both meters reported down",
        )
        health = collector.health()
        assert health is not None and health["status"] == "degraded"  # reported, not fatal
        drain_and_verify(collector, None, mqtt_observer.messages, influx_server, influx_db)
    finally:
        collector.stop()


def test_collector_kill9_during_backlog_drain(
    tmp_path: Path,
    mqtt_observer: Recorder,
    influx_server: InfluxServer,
    influx_db: str,
    simulator: Simulator,
    bundle_config: Path,
) -> None:
    collector = CollectorProcess(bundle_config, tmp_path)
    backlog = 10_000
    values = {m.name: 1.0 for m in METRICS}
    buffer = Buffer(collector.buffer_path, 256 * 1024 * 1024, THING)
    now = int(time.time() * 1000) - backlog * 10
    buffer.append_many(
        Reading(SITE, f"meter-{i % 2}", f"F{i % 2}", now + i * 5, values) for i in range(backlog)
    )
    buffer.close()
    collector.start()
    wait_until(lambda: len(mqtt_observer.messages()) >= 500, 30, "drain under way", interval=0.02)
    collector.kill9()
    assert pending(collector.buffer_path, "mqtt") > 0  # killed mid-drain, not after
    collector = CollectorProcess(bundle_config, tmp_path).start()
    try:
        drain_and_verify(collector, simulator, mqtt_observer.messages, influx_server, influx_db)
    finally:
        collector.stop()
