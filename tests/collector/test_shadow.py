"""Remote configuration through the named shadow `pm500`, end to end in the sandbox: the collector (in
process, real poller against the simulator) over Mosquitto (the ACL rendered like the IoT policy) to the
shadow documents and deltas moto implements (sandbox.shadow_service wires the topics to them); the
operator writes desired state over the HTTP API, as `cli.py collector set` does.
"""

from __future__ import annotations

import importlib.metadata
import json
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import boto3
import pytest
from cryptography import x509

from collector.config import MeterConfig, load_config
from collector.consistency import Verdict
from collector.poller import Poller
from collector.reading import Reading
from collector.service import Collector, PollerLike
from collector.shadow import TokenBucket, merge, patch, without_nulls
from sandbox.ca import DevCA
from sandbox.mosquitto import MosquittoBroker
from sandbox.moto import REGION, MotoServer
from sandbox.plan_replay import moto_clients
from sandbox.shadow_service import ShadowService, pruned
from tests.collector.harness import THING, Simulator, wait_until, write_bundle

pytestmark = pytest.mark.slow


def test_patch_sends_changes_and_nulls_for_removed_keys() -> None:
    old = {"a": 1, "meters": {"m1": {"state": "ok", "in_service": True}, "m2": {"state": "ok"}}, "gone": 2}
    new = {"a": 1, "meters": {"m1": {"state": "comm_error", "in_service": True}}, "b": [1]}
    assert patch(old, new) == {"meters": {"m1": {"state": "comm_error"}, "m2": None}, "b": [1], "gone": None}
    assert merge(old, patch(old, new)) == new
    assert patch(new, new) == {}
    assert without_nulls({"a": None, "b": {"c": None, "d": 1}}) == {"b": {"d": 1}}


def test_state_changes_pass_in_a_burst_then_one_a_minute() -> None:
    """A starting collector reports "starting" then "ok" at once; a flapping meter costs <= 1 update/min."""
    bucket = TokenBucket(3, 60.0, now=1000.0)
    assert [bucket.take(1000.0) for _ in range(4)] == [True, True, True, False]
    assert bucket.take(1030.0) is False and bucket.take(1060.0) is True and bucket.take(1061.0) is False
    assert [bucket.take(2000.0) for _ in range(4)] == [True, True, True, False]  # refilled, never above 3


@pytest.fixture
def simulator(tmp_path: Path) -> Iterator[Simulator]:
    sim = Simulator(tmp_path, meters=2).start()
    yield sim
    sim.stop()


@pytest.fixture
def shadow_service(
    mqtt_broker: MosquittoBroker, moto_server: MotoServer, aws_env: dict[str, str], tmp_path: Path
) -> Iterator[ShadowService]:
    boto3.client("iot").create_thing(thingName=THING)
    service = ShadowService(mqtt_broker, moto_clients(aws_env, REGION), tmp_path / "shadow-service").start()
    yield service
    service.stop()


def shadow() -> dict[str, Any]:
    try:
        answer = boto3.client("iot-data").get_thing_shadow(thingName=THING, shadowName="pm500")
    except boto3.client("iot-data").exceptions.ResourceNotFoundException:
        return {}
    document: dict[str, Any] = json.loads(answer["payload"].read())
    return document


def desire(state: dict[str, Any]) -> int:
    answer = boto3.client("iot-data").update_thing_shadow(
        thingName=THING, shadowName="pm500", payload=json.dumps({"state": {"desired": state}})
    )
    version: int = json.loads(answer["payload"].read())["version"]
    return version


def delta() -> dict[str, Any]:
    """The shadow's delta as AWS IoT computes it (moto keeps empty objects for matching nested ones)."""
    return pruned(shadow()["state"].get("delta", {}))


def reported() -> dict[str, Any]:
    state: dict[str, Any] = shadow().get("state", {}).get("reported", {})
    return state


def recording(intervals: list[float]) -> Callable[..., PollerLike]:
    def factory(
        site: str,
        meters: Sequence[MeterConfig],
        interval_s: float,
        on_reading: Callable[[Reading], None],
        on_verdict: Callable[[str, Verdict], None] | None = None,
    ) -> PollerLike:
        intervals.append(interval_s)
        return Poller(site, meters, interval_s, on_reading, on_verdict=on_verdict)

    return factory


def started(config: Path, intervals: list[float]) -> Collector:
    collector = Collector(load_config(config), poller_factory=recording(intervals))
    collector.start()
    return collector


def test_the_collector_reports_and_follows_the_desired_state(
    tmp_path: Path, dev_ca: DevCA, mqtt_broker: MosquittoBroker, shadow_service: ShadowService,
    simulator: Simulator,
) -> None:
    config = write_bundle(tmp_path / "bundle", dev_ca, mqtt_broker, simulator.ports, influx_url=None)
    intervals: list[float] = []
    collector = started(config, intervals)
    try:
        first = wait_until(lambda: (r := reported()) and r.get("meters") and r, 30, "first report")
        assert first["version"] == importlib.metadata.version("pm500")
        assert (first["encoding"], first["poll_interval_s"], first["debug"]) == ("json", 0.2, False)
        assert first["meters"]["meter-0"]["in_service"] is True and "state" in first["meters"]["meter-0"]
        assert set(first["backlog"]) == {"mqtt", "events"}
        cert = x509.load_pem_x509_certificate((config.parent / "device.pem.crt").read_bytes())
        assert first["certificate"]["not_after"] == cert.not_valid_after_utc.strftime("%Y-%m-%dT%H:%M:%SZ")
        assert "settings_refused" not in first

        desire({"poll_interval_s": 0.5, "meters": {"meter-1": {"in_service": False}}})
        done = wait_until(
            lambda: (r := reported()).get("poll_interval_s") == 0.5
            and r["meters"]["meter-1"].get("in_service") is False and r, 30, "change reported",
        )
        assert intervals == [0.2, 0.5]
        assert delta() == {}  # reported now matches desired
        wait_until(lambda: reported()["meters"]["meter-1"]["state"] == "out_of_service", 30, "meter-1 state")
        assert done["meters"]["meter-0"]["in_service"] is True
        record = collector.snapshot()["settings"]["history"][-1]
        assert (record["source"], record["outcome"]) == ("shadow", "applied")

        version = desire({"poll_interval_s": 0})
        refused = wait_until(lambda: reported().get("settings_refused"), 30, "refusal reported")
        assert refused["desired_version"] == version
        assert "0.1..3600" in refused["reasons"]["poll_interval_s"]
        assert collector.snapshot()["poll_interval_s"] == 0.5 and intervals == [0.2, 0.5]

        desire({"poll_interval_s": 1})
        wait_until(lambda: (r := reported()).get("poll_interval_s") == 1.0 and "settings_refused" not in r,
                   30, "refusal cleared by the next accepted change")
        assert intervals == [0.2, 0.5, 1.0]
    finally:
        collector.stop()


def test_a_change_desired_while_the_collector_was_away_is_applied_when_it_connects(
    tmp_path: Path, dev_ca: DevCA, mqtt_broker: MosquittoBroker, shadow_service: ShadowService,
    simulator: Simulator,
) -> None:
    desire({"debug": True})
    config = write_bundle(tmp_path / "bundle", dev_ca, mqtt_broker, simulator.ports, influx_url=None)
    collector = started(config, [])
    try:
        wait_until(lambda: reported().get("debug") is True, 30, "debug reported on")
        assert collector.debug is True
        assert collector.snapshot()["settings"]["history"][-1]["source"] == "shadow"
        assert delta() == {}
    finally:
        collector.stop()
