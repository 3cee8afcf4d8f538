"""5-6. The edge stack's declared containers on a real engine, deployed in the documented first-deploy order.

The containers, volumes, mounts, environment and healthchecks are the program's own declarations
(mock runtime), created with docker-py by `sandbox.docker_deploy` as pulumi-docker would create them.
The collector image is built from the declared `docker.Image` build (context and Dockerfile);
`influxdb:1.8` is the Debian-built stand-in (`sandbox.docker_images`). Grafana is off in these stacks:
no Grafana image can be had here (docs/edge.md names the gap).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from collector.topics import NDEATH, thing_name
from infra.edge import COLLECTOR_STOP_TIMEOUT_S, COLLECTOR_TMPFS, INFLUXDB_CAPABILITIES, LOG_OPTS
from sandbox.ca import DevCA
from sandbox.docker_deploy import (
    CONTAINER,
    IMAGE,
    REMOTE_IMAGE,
    VOLUME,
    EdgeDeployment,
    build_declared_image,
    wait_healthy,
)
from sandbox.docker_engine import DockerEngine
from sandbox.docker_images import BASE_IMAGE_ARG
from sandbox.mosquitto import MosquittoBroker
from sandbox.mqtt import Recorder
from sandbox.net import LOOPBACK, free_port
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

SITE = "plant-a"


@pytest.fixture
def simulator(tmp_path: Path) -> Iterator[Simulator]:
    sim = Simulator(tmp_path, meters=2).start()
    yield sim
    sim.stop()


def deploy(engine: DockerEngine, stack: DeployedStack, site: str, python_base: str) -> EdgeDeployment:
    """The site's part of `pulumi up`: build the declared image, then create what the host declares."""
    resources = stack.docker_resources(site)
    (image,) = [r for r in resources if r.type == IMAGE]
    built = build_declared_image(engine, image, {BASE_IMAGE_ARG: python_base})
    repository = image.inputs["imageName"].rsplit(":", 1)[0]
    local = {}
    for remote in (r for r in resources if r.type == REMOTE_IMAGE):
        pulled = remote.inputs["name"]  # the pushed digest for the collector, the tag for InfluxDB
        local[stack.remote_image_id(remote)] = built if pulled.startswith(repository + "@") else pulled

    def health_port(container: Any) -> dict[str, str]:  # host network: one health port per collector
        return {"PM500C_HEALTH__PORT": str(free_port())} if "collector" in container.inputs["name"] else {}

    return EdgeDeployment(engine, resources, local, extra_env=health_port).apply()


def influx_query(deployment: EdgeDeployment, q: str) -> list[Any]:
    """InfluxQL against the containerised InfluxDB, as its admin (credentials from the declared env)."""
    (influx,) = [c for c in deployment.of_type(CONTAINER) if c.inputs["name"].endswith("_influxdb")]
    env = dict(e.split("=", 1) for e in influx.inputs["envs"])
    port = deployment.network.ports[8086]  # the declared 8086 on the host network (see HostNetwork)
    response = requests.post(f"http://{LOOPBACK}:{port}/query", timeout=10,
                             params={"q": q, "db": env["INFLUXDB_DB"]},
                             auth=(env["INFLUXDB_ADMIN_USER"], env["INFLUXDB_ADMIN_PASSWORD"]))
    response.raise_for_status()
    series: list[Any] = response.json()["results"][0].get("series", [])
    return series


# Linux capability numbers (linux/capability.h) of the capabilities a container may add back.
CAPABILITY_BITS = {"CHOWN": 0, "DAC_OVERRIDE": 1, "FOWNER": 3, "SETGID": 6, "SETUID": 7,
                   "NET_BIND_SERVICE": 10}


def test_influxdb_needs_dac_override_for_its_data_folder_and_nothing_else(
        docker_engine: DockerEngine, influxdb_image: str) -> None:
    """Why InfluxDB adds back DAC_OVERRIDE: its process is root, the image gives /var/lib/influxdb to its
    `influxdb` user; with every capability dropped root cannot create the `meta/` folder influxd needs."""
    def mkdir_meta(adds: list[str]) -> tuple[int, bytes]:
        container = docker_engine.client.containers.run(
            influxdb_image, ["mkdir", "/var/lib/influxdb/meta"], entrypoint=[], detach=True,
            cap_drop=["ALL"], cap_add=adds, security_opt=["no-new-privileges:true"], read_only=True,
            network_mode="host")
        try:
            return container.wait(timeout=60)["StatusCode"], container.logs()
        finally:
            container.remove(force=True)

    code, logs = mkdir_meta([])
    assert code != 0 and b"Permission denied" in logs
    assert mkdir_meta(INFLUXDB_CAPABILITIES) == (0, b"")


def process_status(engine: DockerEngine, container: str) -> dict[str, str]:
    """/proc/1/status of the container's main process, as the kernel reports it."""
    result = engine.client.containers.get(container).exec_run(["cat", "/proc/1/status"])
    assert result.exit_code == 0, result.output
    lines = result.output.decode().splitlines()
    return {k.strip(): v.strip() for k, v in (line.split(":", 1) for line in lines if ":" in line)}


def assert_as_declared(engine: DockerEngine, deployment: EdgeDeployment) -> None:
    """What the engine runs is what the program declares (host-network adaptation aside)."""
    for declared in deployment.of_type(VOLUME):
        assert engine.client.volumes.get(declared.inputs["name"]).name == declared.inputs["name"]
    for declared in deployment.of_type(CONTAINER):
        inputs = declared.inputs
        info = engine.inspect(inputs["name"])
        host = info["HostConfig"]
        assert info["Name"] == "/" + inputs["name"]
        assert host["RestartPolicy"]["Name"] == inputs["restart"] == "unless-stopped"
        assert host["LogConfig"] == {"Type": "json-file", "Config": LOG_OPTS}
        env = set(info["Config"]["Env"])
        for entry in inputs["envs"]:
            assert deployment.network.rewrite(entry) in env
        mounts = {(m["Type"], m.get("Name") or m["Source"], m["Destination"], m["RW"])
                  for m in info["Mounts"]}
        for m in inputs.get("mounts") or []:
            assert ("volume", m["source"], m["target"], not m.get("readOnly", False)) in mounts
        for v in inputs.get("volumes") or []:
            assert ("bind", v["hostPath"], v["containerPath"], not v.get("readOnly", False)) in mounts
        health = info["Config"]["Healthcheck"]
        assert health["Test"] == [deployment.network.rewrite(t) for t in inputs["healthcheck"]["tests"]]
        assert health["Retries"] == inputs["healthcheck"]["retries"]
        # Issue 24: no capability beyond what the container was shown to need, no privilege gain, and a
        # read-only root; checked on the running process itself, not only on the container's config.
        adds = inputs["capabilities"].get("adds")
        assert (host["CapDrop"], host["CapAdd"]) == (["ALL"], adds)
        assert host["SecurityOpt"] == ["no-new-privileges:true"] and host["ReadonlyRootfs"] is True
        status = process_status(engine, inputs["name"])
        assert status["NoNewPrivs"] == "1", inputs["name"]
        allowed = sum(1 << CAPABILITY_BITS[c] for c in adds or [])
        assert int(status["CapBnd"], 16) == allowed, (inputs["name"], status)
        assert int(status["CapEff"], 16) & ~allowed == 0, (inputs["name"], status)
    collectors = [c for c in deployment.of_type(CONTAINER) if "_collector-" in c.inputs["name"]]
    assert collectors
    for declared in collectors:
        info = engine.inspect(declared.inputs["name"])
        assert info["HostConfig"]["ReadonlyRootfs"] is True
        assert info["HostConfig"]["Tmpfs"] == COLLECTOR_TMPFS
        assert info["Config"]["StopTimeout"] == COLLECTOR_STOP_TIMEOUT_S


@pytest.mark.slow
def test_first_deploy_from_an_empty_host_without_bundles(
    tmp_path: Path, docker_engine: DockerEngine, python_base: str, influxdb_image: str,
    aws_env: dict[str, str], dev_ca: DevCA, mqtt_broker: MosquittoBroker, mqtt_observer: Recorder,
    simulator: Simulator, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """docs/edge.md "First deploy of an edge site", step by step, on the engine."""
    thing = thing_name(STACK, SITE, "edge-01")
    ddata = f"spBv1.0/pm500/DDATA/{thing}/"
    # Step 1: `pulumi up` on an empty edge host: no bundle folder exists, and none can yet (the
    # thing it needs is created by this same `up`).
    stack = pulumi_up(tmp_path, [EdgeSite(SITE, simulator.ports)], docker_engine.host)
    seed_aws(stack, aws_env, dev_ca)
    assert not stack.bundle_root.exists()
    deployment = deploy(docker_engine, stack, SITE, python_base)  # InfluxDB waited for until healthy
    assert_as_declared(docker_engine, deployment)
    collector = f"pm500_{STACK}_{SITE}_collector-edge-01"
    bundle = stack.bundle_root / STACK / SITE / "edge-01"
    assert bundle.is_dir()  # created by Docker for the bind
    wait_until(lambda: "config error" in docker_engine.client.api.logs(collector).decode(), 60,
               "the collector waiting for its bundle")
    state = docker_engine.inspect(collector)
    assert state["State"]["Running"] and state["RestartCount"] == 0
    assert influx_query(deployment, "SHOW USERS")  # the init created the declared users

    # Step 2: provision the collector on the operator's machine; step 3: copy the site's bundles.
    provision_device(stack, SITE, "edge-01", dev_ca, mqtt_broker, monkeypatch)
    copy_bundles(stack, SITE)

    # Step 4: the waiting collector picks its bundle up (no restart), publishes, writes the site's
    # InfluxDB (declared URL, user and password), and turns healthy.
    mqtt_observer.wait_for_topic(ddata, count=4, timeout=90)

    def assets() -> set[str]:
        series = influx_query(deployment, 'SHOW TAG VALUES FROM "powermonitor_500" WITH KEY = "asset"')
        return {value for s in series for _, value in s["values"]}

    wait_until(lambda: assets() == {"meter-1", "meter-2"}, 90, "both meters in the containerised InfluxDB")
    wait_healthy(docker_engine, collector, 150)
    assert docker_engine.inspect(collector)["RestartCount"] == 0

    # The next image change replaces the container: the provider stops it within the declared grace
    # period (a clean stop, NDEATH published) instead of force-removing a running collector.
    (declared,) = [c for c in deployment.of_type(CONTAINER) if c.inputs["name"] == collector]
    assert deployment.remove(declared)["ExitCode"] == 0
    deaths = [json.loads(m.payload) for m in mqtt_observer.messages(NDEATH.render(thing))]
    assert deaths and deaths[-1]["online"] is False


@pytest.mark.slow
def test_two_sites_share_one_docker_host(
    tmp_path: Path, docker_engine: DockerEngine, python_base: str, influxdb_image: str,
) -> None:
    sites = [EdgeSite("plant-a", [free_port()], "127.0.0.1"), EdgeSite("plant-b", [free_port()], "127.0.0.2")]
    stack = pulumi_up(tmp_path, sites, docker_engine.host)
    first = deploy(docker_engine, stack, "plant-a", python_base)
    second = deploy(docker_engine, stack, "plant-b", python_base)  # no clash with plant-a's names
    for deployment in (first, second):
        assert_as_declared(docker_engine, deployment)
        assert influx_query(deployment, "SHOW DATABASES")
    names = sorted(c.name for c in docker_engine.client.containers.list())
    assert names == [f"pm500_{STACK}_{site}_{purpose}" for site in ("plant-a", "plant-b")
                     for purpose in ("collector-edge-01", "influxdb")]


@pytest.mark.slow
def test_with_tls_influxdb_serves_https_and_the_collector_trusts_the_site_ca(
    tmp_path: Path, docker_engine: DockerEngine, python_base: str, influxdb_image: str, dev_ca: DevCA,
) -> None:
    """`edge.tls` (required beyond loopback, issue 24): InfluxDB serves HTTPS only, its own probe verifies
    the certificate, and the collector container reaches `https://influxdb` trusting the site CA."""
    certificate, key = dev_ca.issue("influxdb", tmp_path, server_hostnames=["influxdb"],
                                    ip_addresses=[LOOPBACK])
    tls = {"certificatePath": str(certificate), "privateKeyPath": str(key), "caPath": str(dev_ca.cert_path)}
    stack = pulumi_up(tmp_path, [EdgeSite(SITE, [free_port()], tls=tls)], docker_engine.host)
    deployment = deploy(docker_engine, stack, SITE, python_base)  # InfluxDB healthy: the TLS probe passed
    assert_as_declared(docker_engine, deployment)
    port = deployment.network.ports[8086]
    response = requests.get(f"https://{LOOPBACK}:{port}/ping", timeout=10, verify=str(dev_ca.cert_path))
    assert response.status_code == 204
    plain = requests.get(f"http://{LOOPBACK}:{port}/ping", timeout=10)  # no plain HTTP on that port
    assert plain.status_code == 400 and "HTTPS" in plain.text
    collector = f"pm500_{STACK}_{SITE}_collector-edge-01"
    probe = ("import os, urllib.request; url = os.environ['PM500C_INFLUX__URL'];"
             "print(url.split(':')[0], urllib.request.urlopen(url + '/ping', timeout=10).status)")
    result = docker_engine.client.containers.get(collector).exec_run(["python", "-c", probe])
    assert (result.exit_code, result.output.decode().split()) == (0, ["https", "204"]), result.output
