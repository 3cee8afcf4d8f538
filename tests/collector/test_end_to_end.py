"""simulator -> `python -m collector` -> Mosquitto (mutual TLS, ACL) and InfluxDB 1.x: real processes."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from collector.lineprotocol import MEASUREMENT, field_names
from collector.metrics import METRICS, METRICS_BY_NAME
from collector.payload import asset_uuid
from sandbox.influx import InfluxServer
from sandbox.mqtt import Recorder
from tests.collector.harness import (
    SITE,
    THING,
    CollectorProcess,
    Simulator,
    assert_no_gaps,
    ddata_by_asset,
    wait_until,
)

pytestmark = pytest.mark.slow



def test_readings_reach_broker_and_influx(
    tmp_path: Path,
    mqtt_observer: Recorder,
    influx_server: InfluxServer,
    influx_db: str,
    simulator: Simulator,
    bundle_config: Path,
) -> None:
    assert simulator.control is not None
    simulator.control.freeze(0)
    registers = simulator.control.registers(0)
    simulator.control.set_faults(1, multiple_service="refuse")  # meter-1 has no 0x0A: read one by one
    started_ms = int(time.time() * 1000)
    collector = CollectorProcess(bundle_config, tmp_path).start()
    try:
        mqtt_observer.wait_for(
            lambda ms: (
                all(len(v) >= 10 for v in ddata_by_asset(ms).values()) and len(ddata_by_asset(ms)) == 2
            ),
            timeout=60,
        )
        health = wait_until(
            lambda: (h := collector.health()) and h["status"] == "ok" and h, 30, "health status ok"
        )
    finally:
        assert collector.stop() == 0  # SIGTERM: clean stop
    stopped_ms = int(time.time() * 1000)
    messages = mqtt_observer.messages()
    by_asset = ddata_by_asset(messages)

    # Births: NBIRTH for the node, a DBIRTH per asset announcing every metric with its unit.
    nbirth = json.loads(mqtt_observer.messages(f"spBv1.0/pm500/NBIRTH/{THING}")[0].payload)
    assert nbirth == {"timestamp": nbirth["timestamp"], "site": SITE, "node": THING, "online": True}
    assert started_ms <= nbirth["timestamp"] <= stopped_ms
    for number, asset in enumerate(("meter-0", "meter-1")):
        dbirth = json.loads(mqtt_observer.messages(f"spBv1.0/pm500/DBIRTH/{THING}/{asset}")[0].payload)
        assert {m["name"]: m["properties"]["unit"] for m in dbirth["metrics"]} == {
            m.name: m.unit for m in METRICS
        }
        assert {m["name"]: (m["alias"], m["value"]) for m in dbirth["metrics"]} == {
            m.name: (m.alias, None) for m in METRICS
        }
        # The register-map verdict is there once the meter has been read (docs/integration.md): the
        # first poll may or may not come before the connect, so the first DBIRTH may or may not have it.
        verdict = dbirth.pop("registerMap", None)
        if verdict is not None:
            assert verdict["checks"] >= 1 and verdict["wiring"] == "4-wire"
            assert verdict["verdict"] in ("consistent", "inconsistent")
        assert {k: v for k, v in dbirth.items() if k not in ("metrics", "timestamp", "seq")} == {
            "uuid": asset_uuid(THING, asset), "site": SITE, "asset": asset, "breaker": f"F{number}",
            "buffer_id": health["buffer"]["buffer_id"],  # the buffer whose seq it counts in
        }
        # The asset's last seq when the session began (0 for a fresh buffer; polling may already run).
        assert isinstance(dbirth["seq"], int) and 0 <= dbirth["seq"] < len(by_asset[asset])
        assert nbirth["timestamp"] <= dbirth["timestamp"] <= stopped_ms
    # A clean stop publishes NDEATH itself (the will only fires on an unclean disconnect).
    ndeath = wait_until(lambda: mqtt_observer.messages(f"spBv1.0/pm500/NDEATH/{THING}"), 10, "NDEATH")
    death = json.loads(ndeath[0].payload)
    assert death == {"timestamp": death["timestamp"], "site": SITE, "node": THING, "online": False}
    assert nbirth["timestamp"] <= death["timestamp"] <= int(time.time() * 1000)

    # DDATA: schema, topic per asset, seq continuous from 1, values as the frozen meter holds them.
    seqs = assert_no_gaps(messages)
    assert {a: s[0] for a, s in seqs.items()} == {"meter-0": 1, "meter-1": 1}
    frozen = by_asset["meter-0"][-1]
    assert set(frozen) == {"metrics", "timestamp", "seq", "uuid", "buffer_id", "site", "asset"}
    assert frozen["uuid"] == asset_uuid(THING, "meter-0") and frozen["site"] == SITE
    assert frozen["buffer_id"] == health["buffer"]["buffer_id"]  # the buffer that numbered it
    values = {m["name"]: m["value"] for m in frozen["metrics"]}
    for metric in frozen["metrics"]:
        assert metric["alias"] == METRICS_BY_NAME[metric["name"]].alias
        assert metric["properties"]["unit"] == METRICS_BY_NAME[metric["name"]].unit
    required = {
        "voltageAN",
        "voltageBN",
        "voltageCN",
        "voltageAB",
        "voltageBC",
        "voltageCA",
        "currentA",
        "currentB",
        "currentC",
        "realPower",
        "reactivePower",
        "apparentPower",
        "powerFactor",
        "frequency",
        "energy",
    }
    assert required <= set(values)
    assert values["voltageAN"] == pytest.approx(registers["v_l1_n"], rel=1e-6)
    assert values["currentB"] == pytest.approx(registers["a_l2"], rel=1e-6)
    assert values["frequency"] == pytest.approx(registers["frequency"], rel=1e-6)

    # Health reported both meters with a recent success and the buffer drained for MQTT, and how each
    # is read: meter-1 refused the Multiple Service Packet, yet delivered as many readings (above).
    assert set(health["meters"]) == {"meter-0", "meter-1"}
    assert all(m["last_success_ms"] for m in health["meters"].values())
    assert health["meters"]["meter-0"]["request_mode"] == "multiple_service_packet"
    assert health["meters"]["meter-1"]["request_mode"] == "single_requests"
    assert "CIP status 0x08" in health["meters"]["meter-1"]["request_mode_reason"]

    # InfluxDB: one row per phase (A, B, C, total) per reading, tags and fields as specified.
    published = {(a, p["timestamp"]) for a, ps in by_asset.items() for p in ps}
    points = wait_until(
        lambda: (
            (pts := influx_server.points(MEASUREMENT, influx_db, epoch="ms"))
            and {(p["asset"], p["time"]) for p in pts} >= published
            and pts
        ),
        30,
        "every published reading in InfluxDB",
    )
    fields = field_names()
    for p in points:
        assert p["site"] == SITE and p["breaker"] in ("F0", "F1") and p["phase"] in fields
    latest = [p for p in points if p["asset"] == "meter-0" and p["time"] == frozen["timestamp"]]
    rows = {p["phase"]: p for p in latest}
    assert set(rows) == {"A", "B", "C", "total"}
    assert rows["A"]["voltage"] == pytest.approx(values["voltageAN"])
    assert rows["B"]["current"] == pytest.approx(values["currentB"])
    assert rows["total"]["kWh"] == pytest.approx(values["energy"])
    assert rows["total"]["frequency"] == pytest.approx(values["frequency"])
    assert all(rows["total"][f] is not None for f in fields["total"])
