"""What the live view shows and the verdict judges: per-meter traffic at the broker and in InfluxDB.

Each source is read the way an operator would inspect it: MQTT messages as the observer subscriber
received them, InfluxDB through its v1 `/query` HTTP API (the same call the printed `curl` makes), the
collector through its loopback health endpoint.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from google.protobuf.message import DecodeError

from collector.lineprotocol import MEASUREMENT
from collector.proto.sparkplug_b_pb2 import Payload
from collector.sparkplug_b import NAMES_BY_NUMBER, metric_number
from collector.topics import DBIRTH, DDATA, DDEATH, NBIRTH, NDEATH

_HTTP_TIMEOUT_S = 2.0
# The values shown per meter: Sparkplug metric name -> column label.
SHOWN_METRICS = {"voltageAN": "V A-N", "currentA": "I A", "realPower": "kW", "powerFactor": "PF",
                 "frequency": "Hz", "energy": "kWh"}


@dataclass
class AssetTraffic:
    """One meter as seen downstream of the collector."""

    asset: str
    breaker: str
    mqtt_messages: int = 0
    last_seq: int | None = None
    last_values: dict[str, float] = field(default_factory=dict)
    influx_points: int = 0


@dataclass
class Snapshot:
    assets: dict[str, AssetTraffic]
    other_messages: int = 0  # births, deaths, other things' traffic: not this collector's data
    births: int = 0  # this collector's NBIRTH/DBIRTH: it (re)connected and announced its meters
    deaths: int = 0  # this collector's NDEATH/DDEATH
    influx_error: str | None = None
    health: dict[str, Any] | None = None
    health_error: str | None = None

    @property
    def mqtt_total(self) -> int:
        return sum(a.mqtt_messages for a in self.assets.values())

    @property
    def influx_total(self) -> int:
        return sum(a.influx_points for a in self.assets.values())


def new_snapshot(thing: str, meters: Iterable[tuple[str, str]]) -> Snapshot:
    """Empty counters for the meters (asset, breaker) the stack declares for collector `thing`."""
    del thing
    return Snapshot({asset: AssetTraffic(asset, breaker) for asset, breaker in meters})


def count_messages(snapshot: Snapshot, thing: str, messages: Iterable[tuple[str, bytes]]) -> None:
    """Fold MQTT (topic, payload) pairs into the snapshot: DDATA per asset, everything else aside."""
    ddata_topics = {DDATA.render(thing, asset): asset for asset in snapshot.assets}
    births = {NBIRTH.render(thing), *(DBIRTH.render(thing, a) for a in snapshot.assets)}
    deaths = {NDEATH.render(thing), *(DDEATH.render(thing, a) for a in snapshot.assets)}
    for topic, payload in messages:
        asset = ddata_topics.get(topic)
        if asset is None:
            snapshot.other_messages += 1
            snapshot.births += topic in births
            snapshot.deaths += topic in deaths
            continue
        traffic = snapshot.assets[asset]
        traffic.mqtt_messages += 1
        body = _ddata_fields(payload)
        if isinstance(body, dict):
            traffic.last_seq = body.get("seq", traffic.last_seq)
            for metric in body.get("metrics", []):
                if not isinstance(metric, dict) or metric.get("name") not in SHOWN_METRICS:
                    continue
                if isinstance(metric.get("value"), int | float):
                    traffic.last_values[metric["name"]] = float(metric["value"])


def _ddata_fields(payload: bytes) -> Any:
    """seq and metrics (name, value) of a DDATA, JSON or Sparkplug B (aliases named by the metric table)."""
    if payload[:1] == b"{":
        try:
            return json.loads(payload)
        except ValueError:
            return None
    try:
        decoded = Payload.FromString(payload)
    except DecodeError:
        return None
    metrics = [
        {"name": NAMES_BY_NUMBER.get(metric_number(m.alias)), "value": None if m.is_null else m.double_value}
        for m in decoded.metrics
    ]
    return {"seq": decoded.seq, "metrics": metrics}


def influx_query(base_url: str, database: str, query: str) -> dict[str, Any]:
    """Run one InfluxQL query over the v1 HTTP API; raises OSError/ValueError with the server's reason."""
    url = f"{base_url}/query?" + urllib.parse.urlencode({"db": database, "q": query})
    with urllib.request.urlopen(url, timeout=_HTTP_TIMEOUT_S) as response:  # noqa: S310 - http://127.0.0.1 only
        body: dict[str, Any] = json.load(response)
    for result in body.get("results", []):
        if "error" in result:
            raise ValueError(f"InfluxDB: {result['error']}")
    return body


POINTS_PER_ASSET = f'SELECT count("kW") FROM "{MEASUREMENT}" GROUP BY "asset"'  # noqa: S608 - constants only


def points_per_asset(base_url: str, database: str) -> dict[str, int]:
    """Rows of `powermonitor_500` per asset tag (one per phase A/B/C/total per reading)."""
    body = influx_query(base_url, database, POINTS_PER_ASSET)
    counts: dict[str, int] = {}
    for result in body.get("results", []):
        for series in result.get("series", []):
            asset = series.get("tags", {}).get("asset")
            if asset is not None and series.get("values"):
                counts[asset] = int(series["values"][0][1])
    return counts


def count_points(snapshot: Snapshot, base_url: str, database: str) -> None:
    try:
        counts = points_per_asset(base_url, database)
    except (OSError, ValueError) as exc:
        snapshot.influx_error = str(exc)
        return
    snapshot.influx_error = None
    for asset, traffic in snapshot.assets.items():
        traffic.influx_points = counts.get(asset, 0)


def read_health(snapshot: Snapshot, url: str) -> None:
    try:
        with urllib.request.urlopen(url, timeout=_HTTP_TIMEOUT_S) as response:  # noqa: S310 - loopback
            snapshot.health = json.load(response)
        snapshot.health_error = None
    except urllib.error.HTTPError as exc:  # 503 = unhealthy, body still describes why
        try:
            snapshot.health = json.load(exc)
        except ValueError:
            snapshot.health = None
        snapshot.health_error = f"HTTP {exc.code}"
    except (OSError, ValueError) as exc:
        snapshot.health, snapshot.health_error = None, str(exc)
