"""2-4. The collector container with a provision-device bundle: runs, publishes, stops cleanly, waits.

Each test provisions its collector with `cli.py devices provision` (moto holds the stack's IoT side),
copies the bundle to the "edge host" as docs/edge.md says, and runs the image with the bundle
bind-mounted read-only at /bundle and a fresh named volume at /var/lib/pm500. Host network (the test
engine has no bridge): the health port is moved to a free loopback port with the collector's own
`PM500C_HEALTH__PORT` override.
"""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from collector.topics import NDEATH, thing_name
from infra.edge import COLLECTOR_STOP_TIMEOUT_S, RESTART
from sandbox.ca import DevCA
from sandbox.docker_deploy import wait_healthy
from sandbox.docker_engine import DockerEngine
from sandbox.influx import InfluxServer
from sandbox.mosquitto import MosquittoBroker
from sandbox.mqtt import Message, Recorder
from sandbox.net import free_port
from tests.collector.harness import Simulator, wait_until
from tests.docker.edge_site import (
    STACK,
    DeployedStack,
    EdgeSite,
    copy_bundles,
    provision_device,
    pulumi_up,
    seed_aws,
)

SITE, COLLECTOR = "plant-a", "edge-01"
THING = thing_name(STACK, SITE, COLLECTOR)
DDATA = f"spBv1.0/pm500/DDATA/{THING}/"


@pytest.fixture
def simulator(tmp_path: Path) -> Iterator[Simulator]:
    sim = Simulator(tmp_path, meters=2).start()
    yield sim
    sim.stop()


@dataclass
class Site:
    stack: DeployedStack
    bundle: Path  # on the edge host

    def provision(self, dev_ca: DevCA, broker: MosquittoBroker, monkeypatch: pytest.MonkeyPatch,
                  *influx: str) -> None:
        provision_device(self.stack, SITE, COLLECTOR, dev_ca, broker, monkeypatch, *influx)
        copy_bundles(self.stack, SITE)


@pytest.fixture
def site(tmp_path: Path, docker_engine: DockerEngine, aws_env: dict[str, str], dev_ca: DevCA,
         simulator: Simulator) -> Site:
    stack = pulumi_up(tmp_path, [EdgeSite(SITE, simulator.ports)], docker_engine.host)
    seed_aws(stack, aws_env, dev_ca)
    return Site(stack, stack.bundle_root / STACK / SITE / COLLECTOR)


def run_collector(engine: DockerEngine, image: str, bundle: Path, name: str) -> Any:
    """`docker run -d --restart unless-stopped -v <bundle>:/bundle:ro -v <fresh volume>:/var/lib/pm500`."""
    volume = engine.client.volumes.create(f"{name}-buffer")
    assert volume.attrs["Mountpoint"] and not any(Path(volume.attrs["Mountpoint"]).iterdir())
    return engine.client.containers.run(
        image, name=name, detach=True, network_mode="host",
        volumes=[f"{bundle}:/bundle:ro", f"{volume.name}:/var/lib/pm500"],
        environment={"PM500C_HEALTH__PORT": str(free_port())},
        restart_policy={"Name": RESTART, "MaximumRetryCount": 0},
    )


def ddata(messages: list[Message]) -> dict[str, list[int]]:
    seqs: dict[str, list[int]] = {}
    for m in messages:
        if m.topic.startswith(DDATA):
            seqs.setdefault(m.topic.rsplit("/", 1)[1], []).append(json.loads(m.payload)["seq"])
    return seqs


def assert_no_gaps(messages: list[Message]) -> dict[str, list[int]]:
    seqs = {asset: sorted(set(values)) for asset, values in ddata(messages).items()}
    assert sorted(seqs) == ["meter-1", "meter-2"]
    for asset, values in seqs.items():
        missing = sorted(set(range(values[0], values[-1] + 1)) - set(values))
        assert not missing, f"{asset}: seq gaps {missing[:20]}"
    return seqs


def more_ddata(observer: Recorder, after: int, count: int = 4) -> None:
    wait_until(lambda: len(observer.messages(DDATA)) >= after + count, 60, "more DDATA from the container")


def process_uid(engine: DockerEngine, name: str) -> int:
    pid = engine.inspect(name)["State"]["Pid"]
    status = Path(f"/proc/{pid}/status").read_text()
    return int(next(line.split()[1] for line in status.splitlines() if line.startswith("Uid:")))


@pytest.mark.slow
def test_provisioned_container_runs_as_non_root_publishes_writes_influx_and_is_healthy(
    site: Site, docker_engine: DockerEngine, collector_image: str, dev_ca: DevCA,
    mqtt_broker: MosquittoBroker, mqtt_observer: Recorder, influx_server: InfluxServer, influx_db: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    site.provision(dev_ca, mqtt_broker, monkeypatch,
                   "--influx-url", influx_server.url, "--influx-database", influx_db)
    run_collector(docker_engine, collector_image, site.bundle, "collector-healthy")

    mqtt_observer.wait_for_topic(DDATA, count=6, timeout=90)
    assert process_uid(docker_engine, "collector-healthy") == 10001
    # The fresh named volume is writable by uid 10001: the buffer lives there.
    volume = Path(docker_engine.client.volumes.get("collector-healthy-buffer").attrs["Mountpoint"])
    buffer = volume / "buffer.sqlite"
    assert buffer.stat().st_uid == 10001 and buffer.stat().st_size > 0
    wait_until(lambda: len(influx_server.points("powermonitor_500", influx_db)) >= 4, 60,
               "points in InfluxDB")
    assert {p["asset"] for p in influx_server.points("powermonitor_500", influx_db)} == {"meter-1", "meter-2"}
    # The image's own HEALTHCHECK (interval 30 s) reports healthy.
    state = wait_healthy(docker_engine, "collector-healthy", 150)
    assert state["Health"]["Log"][-1]["ExitCode"] == 0
    assert_no_gaps(mqtt_observer.messages(DDATA))


@pytest.mark.slow
def test_docker_stop_is_a_clean_ndeath_and_kill_or_crash_loses_no_seq(
    site: Site, docker_engine: DockerEngine, collector_image: str, dev_ca: DevCA,
    mqtt_broker: MosquittoBroker, mqtt_observer: Recorder, monkeypatch: pytest.MonkeyPatch,
) -> None:
    site.provision(dev_ca, mqtt_broker, monkeypatch)
    name = "collector-stop"
    container = run_collector(docker_engine, collector_image, site.bundle, name)
    more_ddata(mqtt_observer, 0, 6)

    # docker stop: SIGTERM to the collector as PID 1 -> it publishes NDEATH itself and exits 0 in time.
    stopped_at_ms = int(time.time() * 1000)
    container.stop(timeout=COLLECTOR_STOP_TIMEOUT_S)
    state = docker_engine.inspect(name)["State"]
    assert state["ExitCode"] == 0, f"not a clean exit (137 = SIGKILL after the timeout): {state}"
    deaths = [json.loads(m.payload) for m in mqtt_observer.messages(NDEATH.render(THING))]
    assert deaths and deaths[-1]["online"] is False
    # The last will carries the connect time; only the collector's own NDEATH is stamped at the stop.
    assert deaths[-1]["timestamp"] >= stopped_at_ms - 1000, deaths
    assert "collector stopped" in container.logs().decode()

    # docker start: the buffer on the volume carries on where it stopped.
    seen = len(mqtt_observer.messages(DDATA))
    container.start()
    more_ddata(mqtt_observer, seen)

    # A crash of PID 1: the engine restarts it under the declared restart policy, no operator involved.
    pid = docker_engine.inspect(name)["State"]["Pid"]
    seen = len(mqtt_observer.messages(DDATA))
    os.kill(pid, signal.SIGKILL)
    wait_until(lambda: docker_engine.inspect(name)["RestartCount"] >= 1
               and docker_engine.inspect(name)["State"]["Running"], 60, "restart by policy")
    more_ddata(mqtt_observer, seen)

    # docker kill (a power cut for the collector) and a restart.
    before_kill = {asset: max(values) for asset, values in ddata(mqtt_observer.messages(DDATA)).items()}
    container.kill()
    seen = len(mqtt_observer.messages(DDATA))
    container.start()
    more_ddata(mqtt_observer, seen)

    container.stop(timeout=COLLECTOR_STOP_TIMEOUT_S)
    seqs = assert_no_gaps(mqtt_observer.messages(DDATA))
    assert all(seqs[asset][-1] > before_kill[asset] for asset in seqs), (seqs, before_kill)


@pytest.mark.slow
def test_missing_then_broken_bundle_waits_with_one_line_each_and_starts_once_fixed(
    site: Site, docker_engine: DockerEngine, collector_image: str, dev_ca: DevCA,
    mqtt_broker: MosquittoBroker, mqtt_observer: Recorder, monkeypatch: pytest.MonkeyPatch,
) -> None:
    name = "collector-waits"
    site.bundle.mkdir(parents=True)  # what Docker creates for a missing bind source: an empty folder
    container = run_collector(docker_engine, collector_image, site.bundle, name)

    def logs() -> str:
        text: str = container.logs().decode()
        return text

    wait_until(lambda: "config error" in logs(), 60, "the config error line")
    time.sleep(12)  # two re-checks of the bundle (every 5 s): the problem is reported once
    missing = [line for line in logs().splitlines() if "config error" in line]
    assert len(missing) == 1 and "/bundle/config.yaml" in missing[0], logs()
    state = docker_engine.inspect(name)
    assert state["State"]["Running"] and state["RestartCount"] == 0

    # A broken bundle (the key did not make it into the copy): a new line naming the field.
    operator_bundle = provision_device(site.stack, SITE, COLLECTOR, dev_ca, mqtt_broker, monkeypatch)
    key = operator_bundle / "private.pem.key"
    key_bytes = key.read_bytes()
    key.unlink()
    copy_bundles(site.stack, SITE)
    wait_until(lambda: "mqtt.key_file" in logs(), 30, "the missing-key line")
    time.sleep(6)  # another re-check
    errors = [line for line in logs().splitlines() if "config error" in line]
    assert len(errors) == len(set(errors)), f"a problem was reported twice:\n{logs()}"
    assert "/bundle/config.yaml" in errors[0] and "mqtt.key_file" in errors[-1], logs()
    assert not mqtt_observer.messages(DDATA)

    # Fixed by copying again: the collector starts without a restart of the container.
    key.write_bytes(key_bytes)
    key.chmod(0o600)
    copy_bundles(site.stack, SITE)
    more_ddata(mqtt_observer, 0)
    assert docker_engine.inspect(name)["RestartCount"] == 0
