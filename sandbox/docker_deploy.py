"""Create an edge host's declared Docker resources on a local engine, the way pulumi-docker would.

The input is what the real Pulumi program declares (`preflight.mock_runtime.evaluate_stack`): every
`docker:index/...` registration with its inputs. Each one is turned into the Docker Engine API
request the provider sends (docker-py), field by field; an input this module does not know raises
`UnsupportedInput`, so a new declared setting can never be silently left out of the test.

- `docker.Image` is built from its declared context and Dockerfile (`docker build --network host`),
  tagged with its declared name. A container names its image by the id its `docker.RemoteImage`
  reports (pulled by repo digest or tag on a real host, impossible here); the caller maps each such id
  to a local image (the built collector image, the InfluxDB stand-in).
- `docker.Volume` -> a named volume. `docker.Container` -> create (mounts, `volumes` as binds, env,
  healthcheck, restart policy, log config, read-only root, tmpfs, capabilities, security options,
  stop timeout), upload the declared files, start; with `wait`, block until healthy as the provider does.

One adaptation, forced by this workplace and kept in `HostNetwork`: no container may get an address
outside the loopback range, so the engine has no bridge and every container runs on the host network.
The declared user-defined network is therefore not created; instead its aliases resolve to 127.0.0.1
(`extra_hosts`), each published port becomes a free loopback port that the service is told to listen
on, and every declared URL and healthcheck naming the published port is rewritten to it.
"""

from __future__ import annotations

import io
import re
import tarfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import docker
from docker.types import LogConfig, Mount
from pulumi.runtime import rpc

from sandbox.docker_engine import DockerEngine
from sandbox.net import LOOPBACK, free_port

CONTAINER = "docker:index/container:Container"
VOLUME = "docker:index/volume:Volume"
NETWORK = "docker:index/network:Network"
IMAGE = "docker:index/image:Image"
REMOTE_IMAGE = "docker:index/remoteImage:RemoteImage"
_NS = {"ns": 1, "us": 1_000, "ms": 1_000_000, "s": 1_000_000_000, "m": 60_000_000_000, "h": 3_600_000_000_000}


class UnsupportedInput(ValueError):
    """A declared input this translation does not implement (name and resource in the message)."""


def plain(value: Any) -> Any:
    """Inputs as the provider finally receives them: Pulumi's secret wrappers removed."""
    if isinstance(value, dict):
        if value.get(rpc._special_sig_key) == rpc._special_secret_sig:
            return plain(value["value"])
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [plain(v) for v in value]
    return value


def duration_ns(text: str) -> int:
    """A Go duration as the provider takes it (`15s`, `1m30s`) in nanoseconds."""
    parts = re.findall(r"(\d+(?:\.\d+)?)(ns|us|ms|s|m|h)", text)
    if not parts or "".join(n + u for n, u in parts) != text:
        raise UnsupportedInput(f"healthcheck duration {text!r}: expected e.g. 15s or 1m30s")
    return int(sum(float(n) * _NS[u] for n, u in parts))


@dataclass
class Declared:
    """One docker resource of the evaluated program: type, logical name, inputs (secrets unwrapped)."""

    type: str
    name: str
    inputs: dict[str, Any]


@dataclass
class HostNetwork:
    """How declared bridge networking maps onto the host network of the test engine (see module doc).

    `service_env` tells a service which address to listen on, per published internal port. Only
    InfluxDB publishes a port in the tests (Grafana cannot run here): its HTTP bind address, its RPC
    bind address and the port its init script uses while creating users are its own variables.
    """

    ports: dict[int, int] = field(default_factory=dict)  # declared published port -> loopback port
    aliases: dict[str, str] = field(default_factory=dict)  # network alias -> 127.0.0.1

    def local_port(self, declared: int) -> int:
        if declared not in self.ports:
            self.ports[declared] = free_port()
        return self.ports[declared]

    def rewrite(self, text: str) -> str:
        """Every `:<published port>` in a URL or probe becomes `:<local port>`."""
        for declared, local in self.ports.items():
            text = re.sub(rf":{declared}\b", f":{local}", text)
        return text

    def service_env(self, published: list[dict[str, Any]]) -> dict[str, str]:
        env: dict[str, str] = {}
        for port in published:
            local = self.local_port(int(port["internal"]))
            if int(port["internal"]) == 8086:  # InfluxDB 1.x: config keys as INFLUXDB_* variables
                env.update(INFLUXDB_HTTP_BIND_ADDRESS=f"{LOOPBACK}:{local}",
                           INFLUXDB_BIND_ADDRESS=f"{LOOPBACK}:{free_port()}",
                           INFLUXDB_INIT_PORT=str(free_port()))
            else:
                raise UnsupportedInput(f"published port {port['internal']}: no host-network mapping known")
        return env


_CONTAINER_INPUTS = {
    "name", "image", "restart", "envs", "mounts", "volumes", "ports", "networksAdvanced", "healthcheck",
    "logDriver", "logOpts", "wait", "waitTimeout", "uploads", "readOnly", "tmpfs", "stopTimeout",
    "stopSignal", "user", "init", "mustRun", "destroyGraceSeconds", "capabilities", "securityOpts",
}


class EdgeDeployment:
    """Applies one edge host's declared resources to `engine` (see the module doc)."""

    def __init__(self, engine: DockerEngine, resources: list[Declared],
                 local_images: Mapping[str, str],
                 extra_env: Callable[[Declared], Mapping[str, str]] | None = None) -> None:
        self.engine = engine
        self.resources = resources
        self.local_images = dict(local_images)  # image id a container declares -> local reference
        self.network = HostNetwork()
        self.extra_env = extra_env
        self.containers: dict[str, docker.models.containers.Container] = {}

    def of_type(self, typ: str) -> list[Declared]:
        return [r for r in self.resources if r.type == typ]

    def apply(self) -> EdgeDeployment:
        """Volumes, then containers in declaration order (InfluxDB first: the others depend on it)."""
        networks = {n.inputs["name"] for n in self.of_type(NETWORK)}
        for c in self.of_type(CONTAINER):
            for attached in c.inputs.get("networksAdvanced") or []:
                if attached["name"] not in networks:
                    raise UnsupportedInput(f"{c.name}: network {attached['name']!r} is not declared")
                self.network.aliases.update(dict.fromkeys(attached.get("aliases") or [], LOOPBACK))
        for volume in self.of_type(VOLUME):
            self.engine.client.volumes.create(name=volume.inputs["name"])
        # Published ports first, so every container's URLs are rewritten with the same mapping.
        published = {c.name: self.network.service_env(c.inputs.get("ports") or [])
                     for c in self.of_type(CONTAINER)}
        for container in self.of_type(CONTAINER):
            self.containers[container.name] = self._run(container, published[container.name])
        return self

    def _image(self, image_id: str) -> str:
        if image_id not in self.local_images:
            raise UnsupportedInput(f"image {image_id!r}: no local image stands in for it")
        return self.local_images[image_id]

    def create_request(self, declared: Declared, service_env: Mapping[str, str]) -> dict[str, Any]:
        """docker-py `APIClient.create_container` arguments (host config included) for a container."""
        inputs = declared.inputs
        unknown = set(inputs) - _CONTAINER_INPUTS
        if unknown:
            raise UnsupportedInput(f"{declared.name}: declared inputs not translated: {sorted(unknown)}")
        env = {k: self.network.rewrite(v) for k, v in (e.split("=", 1) for e in inputs.get("envs") or [])}
        env.update(service_env)
        if self.extra_env is not None:
            env.update(self.extra_env(declared))
        host: dict[str, Any] = {
            "network_mode": "host",
            "extra_hosts": dict(self.network.aliases),
            "mounts": [self._mount(m) for m in inputs.get("mounts") or []],
            "binds": [self._bind(v) for v in inputs.get("volumes") or []],
        }
        if "restart" in inputs:
            host["restart_policy"] = {"Name": inputs["restart"], "MaximumRetryCount": 0}
        if "logDriver" in inputs:
            host["log_config"] = LogConfig(type=inputs["logDriver"], config=inputs.get("logOpts") or {})
        for key, arg in (("readOnly", "read_only"), ("tmpfs", "tmpfs"), ("init", "init"),
                         ("securityOpts", "security_opt")):
            if key in inputs:
                host[arg] = inputs[key]
        capabilities = inputs.get("capabilities") or {}
        if capabilities.get("drops"):
            host["cap_drop"] = capabilities["drops"]
        if capabilities.get("adds"):
            host["cap_add"] = capabilities["adds"]
        request: dict[str, Any] = {
            "name": inputs["name"],
            "image": self._image(inputs["image"]),
            "environment": env,
            "host_config": self.engine.client.api.create_host_config(**host),
        }
        if "healthcheck" in inputs:
            hc = inputs["healthcheck"]
            request["healthcheck"] = {
                "test": [self.network.rewrite(t) for t in hc["tests"]],
                "interval": duration_ns(hc.get("interval", "30s")),
                "timeout": duration_ns(hc.get("timeout", "30s")),
                "retries": int(hc.get("retries", 3)),
                "start_period": duration_ns(hc.get("startPeriod", "0s")),
            }
        for key, arg in (("stopSignal", "stop_signal"), ("user", "user")):
            if key in inputs:
                request[arg] = inputs[key]
        if "stopTimeout" in inputs:
            request["stop_timeout"] = int(inputs["stopTimeout"])
        return request

    @staticmethod
    def _mount(m: Mapping[str, Any]) -> Mount:
        return Mount(target=m["target"], source=m.get("source"), type=m.get("type", "volume"),
                     read_only=bool(m.get("readOnly", False)))

    @staticmethod
    def _bind(v: Mapping[str, Any]) -> str:
        """The provider's `volumes` entry as a HostConfig.Binds string (host_path or volume_name)."""
        source = v.get("hostPath") or v.get("volumeName")
        if not source:
            raise UnsupportedInput(f"volumes entry {v}: only host_path/volume_name binds are translated")
        return f"{source}:{v['containerPath']}{':ro' if v.get('readOnly') else ''}"

    def remove(self, declared: Declared) -> dict[str, Any]:
        """What the provider does to a container it deletes or replaces (e.g. on a new image): stop it
        within `destroyGraceSeconds` if declared, then force-remove. Returns its final state."""
        name = declared.inputs["name"]
        grace = declared.inputs.get("destroyGraceSeconds")
        if grace is not None:
            self.engine.client.api.stop(name, timeout=int(grace))
        state: dict[str, Any] = self.engine.inspect(name)["State"]
        self.engine.client.api.remove_container(name, force=True)
        return state

    def _run(self, declared: Declared, service_env: Mapping[str, str]) -> Any:
        request = self.create_request(declared, service_env)
        container_id = self.engine.client.api.create_container(**request)["Id"]
        container = self.engine.client.containers.get(container_id)
        for upload in declared.inputs.get("uploads") or []:
            container.put_archive("/", _tar_one(upload["file"], upload["content"].encode()))
        container.start()
        if declared.inputs.get("wait"):
            wait_healthy(self.engine, request["name"], float(declared.inputs.get("waitTimeout", 60)))
        return container


def wait_healthy(engine: DockerEngine, name: str, timeout: float) -> dict[str, Any]:
    """Block until `docker inspect` says healthy, as the provider's `wait` does; the state otherwise."""
    deadline = time.monotonic() + timeout
    while True:
        state: dict[str, Any] = engine.inspect(name)["State"]
        if state.get("Health", {}).get("Status") == "healthy":
            return state
        if not state.get("Running") and not state.get("Restarting"):
            raise RuntimeError(f"{name} is not running: {state}\n{_logs(engine, name)}")
        if time.monotonic() > deadline:
            raise TimeoutError(f"{name} not healthy after {timeout:g}s: {state.get('Health')}\n"
                               f"{_logs(engine, name)}")
        time.sleep(1)


def _logs(engine: DockerEngine, name: str) -> str:
    logs: bytes = engine.client.api.logs(name, tail=30)
    return logs.decode(errors="replace")


def _tar_one(path: str, data: bytes) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        info = tarfile.TarInfo(path.lstrip("/"))
        info.size = len(data)
        info.mode = 0o644
        tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def build_declared_image(engine: DockerEngine, image: Declared,
                         standin_args: Mapping[str, str] | None = None) -> str:
    """`docker build` of a declared `docker.Image` from its context and Dockerfile; returns its name.
    `standin_args`: build arguments naming local stand-ins of its base (no registry here)."""
    build = image.inputs["build"]
    name: str = image.inputs["imageName"]
    args = ["build", "--network", "host", "-f", build["dockerfile"], "-t", name]
    for key, value in (standin_args or {}).items():
        args += ["--build-arg", f"{key}={value}"]
    if build.get("platform"):
        args += ["--platform", build["platform"]]
    engine.cli([*args, build["context"]], cwd=Path(build["context"]))
    return name
