"""The PM500 Grafana dashboard: it queries what the collector really writes, through the provisioned
datasource, and its queries return data from a real InfluxDB 1.x loaded by the collector's builder."""

from __future__ import annotations

import json
import re
import time
from typing import Any

import pytest
import yaml

from collector.lineprotocol import MEASUREMENT, TAGS, field_names, lines
from collector.metrics import METRICS, PHASES, TOTAL
from collector.reading import Reading
from infra import edge as edge_mod
from sandbox.influx import InfluxServer

DASHBOARD = json.loads(edge_mod.DASHBOARD_FILE.read_text())
DATASOURCES = yaml.safe_load(edge_mod.DATASOURCE_FILE.read_text())["datasources"]
PROVIDERS = yaml.safe_load(edge_mod.DASHBOARD_PROVIDER_FILE.read_text())["providers"]


def panels() -> list[dict[str, Any]]:
    return [p for p in DASHBOARD["panels"] if p["type"] != "row"]


def targets() -> list[tuple[str, dict[str, Any]]]:
    return [(p["title"], t) for p in panels() for t in p["targets"]]


def variables() -> dict[str, dict[str, Any]]:
    return {v["name"]: v for v in DASHBOARD["templating"]["list"]}


def test_datasource_uid_is_consistent() -> None:
    (ds,) = DATASOURCES
    assert ds["type"] == "influxdb"
    uid = ds["uid"]
    refs = [p["datasource"] for p in panels()] + [t["datasource"] for _, t in targets()]
    refs += [v["datasource"] for v in variables().values() if v["type"] == "query"]
    assert refs and all(r == {"type": "influxdb", "uid": uid} for r in refs)


def test_datasource_reads_the_environment_grafana_gets() -> None:
    """Every `${VAR}` in the provisioning file is set on the Grafana container by infra/edge.py."""
    text = edge_mod.DATASOURCE_FILE.read_text()
    used = set(re.findall(r"\$\{(\w+)\}", text))
    provided = {edge_mod.GRAFANA_ENV_INFLUX_URL, edge_mod.GRAFANA_ENV_INFLUX_DATABASE,
                edge_mod.GRAFANA_ENV_INFLUX_USER, edge_mod.GRAFANA_ENV_INFLUX_PASSWORD}
    assert used == provided
    (ds,) = DATASOURCES
    assert "password" not in ds, "the password belongs in secureJsonData (encrypted by Grafana)"
    assert ds["secureJsonData"]["password"] == f"${{{edge_mod.GRAFANA_ENV_INFLUX_PASSWORD}}}"


def test_provider_loads_the_folder_the_dashboard_is_uploaded_to() -> None:
    (provider,) = PROVIDERS
    assert provider["type"] == "file"
    assert provider["options"]["path"] == edge_mod.GRAFANA_DASHBOARD_PATH.rsplit("/", 1)[0]
    assert provider["allowUiUpdates"] is False


def _phases_of(query: str) -> tuple[str, ...]:
    if "\"phase\" = 'total'" in query:
        return (TOTAL,)
    if '"phase" =~ /^(A|B|C)$/' in query:
        return PHASES
    raise AssertionError(f"query does not pick a phase row: {query}")


def test_queries_use_only_fields_and_tags_the_collector_writes() -> None:
    written = field_names()
    for title, target in targets():
        q = target["query"]
        assert f'FROM "{MEASUREMENT}"' in q, title
        fields = re.findall(r'\w+\("(\w+)"\)', q)
        assert fields, f"{title}: no field selected"
        for phase in _phases_of(q):
            missing = set(fields) - written[phase]
            assert not missing, f"{title}: {sorted(missing)} not written on phase {phase} rows"
        tag_keys = set(re.findall(r'"(\w+)" =~?', q)) | set(re.findall(r'GROUP BY .*?"(\w+)"', q))
        group_by = q.split("GROUP BY", 1)[1] if "GROUP BY" in q else ""
        tag_keys |= set(re.findall(r'"(\w+)"', group_by))
        assert tag_keys <= set(TAGS), f"{title}: unknown tag keys {tag_keys - set(TAGS)}"
        assert {"site", "asset", "breaker"} <= tag_keys, f"{title}: not filtered by the dashboard variables"
    for name in ("site", "asset", "breaker"):
        var = variables()[name]
        assert f'FROM "{MEASUREMENT}" WITH KEY = "{name}"' in var["query"]
        assert var["multi"] and var["includeAll"]


def test_dashboard_covers_what_plant_people_look_at() -> None:
    selected: dict[str, set[str]] = {}
    for _, target in targets():
        for field in re.findall(r'\w+\("(\w+)"\)', target["query"]):
            selected.setdefault(field, set()).update(_phases_of(target["query"]))
    # Per phase: voltage (L-N and L-L), current, kW, kVAR, kVA, PF; totals add frequency and energy.
    for field in ("voltage", "voltage_ll", "current", "kW", "kVAR", "kVA", "pf"):
        assert set(PHASES) <= selected[field], field
    for field in ("kW", "kVAR", "kVA", "pf", "frequency", "kWh"):
        assert TOTAL in selected[field], field
    titles = {p["title"] for p in panels()}
    assert "Energy per day" in titles
    (energy,) = [p for p in panels() if p["title"] == "Energy per day"]
    assert "GROUP BY time(1d)" in energy["targets"][0]["query"]
    units = {p["fieldConfig"]["defaults"].get("unit") for p in panels()}
    assert {"volt", "amp", "kwatt", "kvoltampreact", "kvoltamp", "hertz", "kwatth"} <= units


def test_panels_do_not_overlap() -> None:
    cells: set[tuple[int, int]] = set()
    for p in DASHBOARD["panels"]:
        g = p["gridPos"]
        assert g["x"] + g["w"] <= 24, p["title"]
        mine = {(x, y) for x in range(g["x"], g["x"] + g["w"]) for y in range(g["y"], g["y"] + g["h"])}
        assert not cells & mine, f"{p['title']} overlaps another panel"
        cells |= mine


# --- the queries against a real InfluxDB 1.x loaded through the collector's line-protocol builder ---

HOUR_MS = 3_600_000


def _readings(now_ms: int) -> list[Reading]:
    """Two assets, a reading every 30 minutes for 3 days, energy counting up 10 kWh per step."""
    out = []
    for asset, breaker in (("mcc-1", "CB 1"), ("mcc-2", "CB-2")):
        for step in range(6 * 24):
            ts = now_ms - (6 * 24 - step) * HOUR_MS // 2
            values = {m.name: 100.0 + step for m in METRICS}
            values.update(energy=1000.0 + 10 * step, frequency=50.0)
            # Unit-less metrics must be plausible or the collector leaves them out (collector.quality):
            # power factors within +/-1, alarm/output states 0 or 1.
            values.update({m.name: 0.93 for m in METRICS if m.name.startswith("powerFactor")})
            states = (m.name for m in METRICS if m.name.startswith(("alarm", "output")))
            values.update({name: float(step % 2) for name in states})
            out.append(Reading(site="plant-a", asset=asset, breaker=breaker, timestamp_ms=ts, values=values))
    return out


def _render(query: str, **variables: str) -> str:
    """Grafana's substitutions for a 3-day window, as the InfluxDB datasource makes them."""
    q = query.replace("$timeFilter", "time > now() - 4d").replace("$__interval", "10m")
    for name, value in variables.items():
        q = q.replace(f"${name}", value)
    assert not re.search(r"\$[a-z_]", q), f"unrendered variable in {q}"
    return q


def _values(result: dict[str, Any]) -> list[Any]:
    return [v for r in result["results"] for s in r.get("series", []) for row in s["values"] for v in row[1:]]


@pytest.fixture
def loaded_db(influx_server: InfluxServer, influx_db: str) -> str:
    now_ms = int(time.time() * 1000)
    body = "\n".join(line for r in _readings(now_ms) for line in lines(r))
    influx_server.write(influx_db, body, precision="ms")
    return influx_db


def test_template_variable_queries_list_the_written_tags(influx_server: InfluxServer, loaded_db: str) -> None:
    sel = {"site": "plant-a", "asset": "(mcc-1|mcc-2)"}
    expect = {"site": {"plant-a"}, "asset": {"mcc-1", "mcc-2"}, "breaker": {"CB 1", "CB-2"}}
    for name, var in variables().items():
        if var["type"] != "query":
            continue
        result = influx_server.query(_render(var["query"], **sel), db=loaded_db)
        got = {row[1] for r in result["results"] for s in r.get("series", []) for row in s["values"]}
        assert got == expect[name], name


@pytest.mark.parametrize("selection", [
    {"site": ".*", "asset": ".*", "breaker": ".*", "tz": "UTC"},  # "All"
    {"site": "plant-a", "asset": "mcc-1", "breaker": r"CB\ 1", "tz": "Europe/Berlin"},
])
def test_every_panel_query_returns_data(influx_server: InfluxServer, loaded_db: str,
                                        selection: dict[str, str]) -> None:
    for title, target in targets():
        result = influx_server.query(_render(target["query"], **selection), db=loaded_db)
        values = [v for v in _values(result) if v is not None]
        assert values, f"{title}: no data for {selection}"
        if title == "Energy per day":
            assert all(v > 0 for v in values), "a counting-up kWh register gives positive daily energy"

def test_alarm_panel_shows_every_alarm_and_output_of_the_total_row() -> None:
    (panel,) = [p for p in panels() if p["title"] == "Alarms and outputs"]
    assert panel["type"] == "state-timeline"
    (target,) = panel["targets"]
    assert _phases_of(target["query"]) == (TOTAL,)
    fields = re.findall(r'\w+\("(\w+)"\)', target["query"])
    assert fields == ["alarm_1", "alarm_2", "alarm_3", "alarm_4", "output_1", "output_2"]


def test_alarm_panel_shows_a_raised_alarm_from_real_influxdb(
    influx_server: InfluxServer, influx_db: str
) -> None:
    """Alarm 2 raised for one hour of three: the panel's query sees 1 in that hour and 0 around it."""
    now_ms = int(time.time() * 1000)
    readings = []
    for minute in range(180):
        values = {m.name: 0.0 for m in METRICS}
        values["alarm2"] = 1.0 if 60 <= minute < 120 else 0.0
        ts = now_ms - (180 - minute) * 60_000
        readings.append(
            Reading(site="plant-a", asset="mcc-1", breaker="CB 1", timestamp_ms=ts, values=values)
        )
    influx_server.write(influx_db, "\n".join(line for r in readings for line in lines(r)), precision="ms")
    (panel,) = [p for p in panels() if p["title"] == "Alarms and outputs"]
    query = _render(panel["targets"][0]["query"], site=".*", asset="mcc-1", breaker=".*").replace(
        "10m", "30m"
    )
    result = influx_server.query(query, db=influx_db)
    (series,) = result["results"][0]["series"]
    alarm2 = [row[series["columns"].index("alarm 2")] for row in series["values"]]
    alarm1 = [row[series["columns"].index("alarm 1")] for row in series["values"]]
    assert 1.0 in alarm2 and alarm2[0] == 0.0 and alarm2[-1] == 0.0
    assert set(alarm1) == {0.0}
