"""The parts of the Docker stand-ins that need no engine: mirror discovery, FROM parsing, translation."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import docker
import pytest

from sandbox.docker_deploy import CONTAINER, Declared, EdgeDeployment, UnsupportedInput, duration_ns
from sandbox.docker_engine import DockerEngineError
from sandbox.docker_images import debian_mirror, dockerfile_base, standin_reference


def test_mirror_comes_from_the_machines_own_apt_sources(tmp_path: Path) -> None:
    (tmp_path / "sources.list.d").mkdir()
    (tmp_path / "sources.list.d" / "debian.sources").write_text(
        "Types: deb\nURIs: http://mirror.example/debian-security\nSuites: bookworm-security\n\n"
        "Types: deb deb-src\nURIs: http://mirror.example/debian\nSuites: bookworm bookworm-updates\n")
    assert debian_mirror(tmp_path) == "http://mirror.example/debian"
    (tmp_path / "sources.list.d" / "debian.sources").unlink()
    (tmp_path / "sources.list").write_text("deb [arch=amd64] http://other.example/debian bookworm main\n")
    assert debian_mirror(tmp_path) == "http://other.example/debian"
    (tmp_path / "sources.list").write_text("deb http://other.example/debian trixie main\n")
    with pytest.raises(DockerEngineError, match="no apt source for Debian bookworm"):
        debian_mirror(tmp_path)


def test_dockerfile_base_is_the_first_from(tmp_path: Path) -> None:
    dockerfile = tmp_path / "Dockerfile"
    dockerfile.write_text("# comment\nFROM --platform=linux/amd64 python:3.11.7-slim AS build\n"
                          "FROM scratch\n")
    assert dockerfile_base(dockerfile) == "python:3.11.7-slim"


def test_dockerfile_base_resolves_the_arg_default_and_the_stand_in_drops_the_digest(tmp_path: Path) -> None:
    dockerfile = tmp_path / "Dockerfile"
    dockerfile.write_text("ARG BASE=python:3.11.16-slim-bookworm@sha256:" + "ab" * 32 + "\nFROM ${BASE}\n")
    assert dockerfile_base(dockerfile) == "python:3.11.16-slim-bookworm@sha256:" + "ab" * 32
    assert standin_reference(dockerfile_base(dockerfile)) == "python:3.11.16-slim-bookworm"


def test_durations_as_the_provider_takes_them() -> None:
    assert duration_ns("15s") == 15_000_000_000
    assert duration_ns("1m30s") == 90_000_000_000
    with pytest.raises(UnsupportedInput, match="healthcheck duration '15 seconds'"):
        duration_ns("15 seconds")


class _Engine:
    """Just enough of DockerEngine for `create_request` (docker-py builds a host config offline)."""

    client = docker.DockerClient(base_url="unix:///nonexistent.sock", version="1.41")


def _container(**inputs: Any) -> Declared:
    return Declared(CONTAINER, "c", {"name": "pm500_s_a_c", "image": "sha256:abc", **inputs})


def test_a_declared_input_that_is_not_translated_is_refused() -> None:
    deployment = EdgeDeployment(_Engine(), [], {"sha256:abc": "local:1"})  # type: ignore[arg-type]
    with pytest.raises(UnsupportedInput, match=r"declared inputs not translated: \['privileged'\]"):
        deployment.create_request(_container(privileged=True), {})


def test_binds_mounts_and_rewritten_urls() -> None:
    deployment = EdgeDeployment(_Engine(), [], {"sha256:abc": "local:1"})  # type: ignore[arg-type]
    deployment.network.ports[8086] = 24000
    request = deployment.create_request(_container(
        envs=["URL=http://influxdb:8086", "OTHER=18086"],
        volumes=[{"hostPath": "/opt/b/s/a/c", "containerPath": "/bundle", "readOnly": True}],
        mounts=[{"type": "volume", "source": "buf", "target": "/var/lib/pm500"}],
        healthcheck={"tests": ["CMD", "curl", "http://127.0.0.1:8086/ping"], "interval": "15s"},
        stopTimeout=30, readOnly=True,
    ), {})
    assert request["image"] == "local:1"
    assert request["environment"] == {"URL": "http://influxdb:24000", "OTHER": "18086"}
    host = request["host_config"]
    assert host["Binds"] == ["/opt/b/s/a/c:/bundle:ro"]
    assert host["Mounts"][0]["Source"] == "buf" and host["Mounts"][0]["Target"] == "/var/lib/pm500"
    assert host["NetworkMode"] == "host" and host["ReadonlyRootfs"] is True
    assert request["healthcheck"]["test"] == ["CMD", "curl", "http://127.0.0.1:24000/ping"]
    assert request["stop_timeout"] == 30
