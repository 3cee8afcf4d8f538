"""The InfluxDB line protocol against literal lines, and hostile labels through a real InfluxDB 1.x."""

from __future__ import annotations

import pytest

from collector.lineprotocol import MEASUREMENT, TAGS, field_names, lines
from collector.reading import Reading
from sandbox.influx import InfluxServer

TS = 1_700_000_000_123


def test_one_line_per_phase_row_with_ms_timestamp() -> None:
    reading = Reading(
        "plant-a", "meter-1", "F1", TS,
        {"voltageAN": 230.5, "currentA": 12.0, "voltageBN": 231.0, "realPower": 7.25, "frequency": 50.0},
    )
    assert lines(reading) == [
        "powermonitor_500,site=plant-a,asset=meter-1,phase=A,breaker=F1 voltage=230.5,current=12.0 "
        "1700000000123",
        "powermonitor_500,site=plant-a,asset=meter-1,phase=B,breaker=F1 voltage=231.0 1700000000123",
        "powermonitor_500,site=plant-a,asset=meter-1,phase=total,breaker=F1 kW=7.25,frequency=50.0 "
        "1700000000123",
    ]


def test_integers_are_written_as_floats_and_empty_readings_write_nothing() -> None:
    reading = Reading("s", "a", "b", 5, {"energy": 3})
    assert lines(reading) == ["powermonitor_500,site=s,asset=a,phase=total,breaker=b kWh=3.0 5"]
    assert lines(Reading("s", "a", "b", 5, {})) == []


def test_tag_values_escape_comma_equals_and_space_not_backslash() -> None:
    """InfluxDB 1.x reads a backslash literally unless it precedes `,`, `=` or space (see round trip)."""
    reading = Reading("a b", "c,d", "e=f\\g", 1, {"frequency": 50.0})
    assert lines(reading) == [
        "powermonitor_500,site=a\\ b,asset=c\\,d,phase=total,breaker=e\\=f\\g frequency=50.0 1"
    ]


def test_labels_the_line_protocol_cannot_carry_are_refused_naming_the_tag() -> None:
    why = r" \(InfluxDB line protocol cannot carry it\)$"
    with pytest.raises(ValueError, match=r"^breaker 'F1\\\\': must not end with a backslash" + why):
        lines(Reading("a", "b", "F1\\", 1, {"frequency": 50.0}))
    with pytest.raises(ValueError, match=r"^asset 'm\\n1': control character U\+000A not allowed" + why):
        lines(Reading("a", "m\n1", "F1", 1, {"frequency": 50.0}))
    # Unicode line and paragraph separators end a line for some readers too.
    for separator, code in (("\u2028", "2028"), ("\u2029", "2029")):
        with pytest.raises(ValueError, match=rf"^site '.+': control character U\+{code} not allowed"):
            lines(Reading(f"a{separator}b", "m1", "F1", 1, {"frequency": 50.0}))


def test_schema_names() -> None:
    assert MEASUREMENT == "powermonitor_500"
    assert TAGS == ("site", "asset", "phase", "breaker")
    fields = field_names()
    assert set(fields) == {"A", "B", "C", "total"}
    assert fields["A"] == {"voltage", "voltage_ll", "current", "kW", "kVAR", "kVA", "pf"}
    assert fields["total"] == fields["A"] | {"frequency", "kWh"} | {
        "alarm_1", "alarm_2", "alarm_3", "alarm_4", "output_1", "output_2"  # instance 108 states
    }


def test_hostile_labels_round_trip_through_influxdb(influx_server: InfluxServer, influx_db: str) -> None:
    """What InfluxDB stores is exactly the labels we were given: escaping is checked by the real parser."""
    hostile = {"site": "plant a,b=c", "asset": "m\\1 =,x", "breaker": "F\\,1\\ \\\\=2"}
    reading = Reading(hostile["site"], hostile["asset"], hostile["breaker"], TS,
                      {"voltageAN": 230.5, "frequency": 50.0})
    influx_server.write(influx_db, "\n".join(lines(reading)), precision="ms")
    rows = influx_server.points(MEASUREMENT, influx_db, epoch="ms")
    assert sorted((r["phase"], r["site"], r["asset"], r["breaker"], r["time"]) for r in rows) == [
        ("A", "plant a,b=c", "m\\1 =,x", "F\\,1\\ \\\\=2", TS),
        ("total", "plant a,b=c", "m\\1 =,x", "F\\,1\\ \\\\=2", TS),
    ]
    by_phase = {r["phase"]: r for r in rows}
    assert by_phase["A"]["voltage"] == 230.5 and by_phase["total"]["frequency"] == 50.0
