"""The collector image and the edge stack on a real Docker engine (Debian's dockerd, started here).

Session fixtures: `docker_engine` (a private dockerd, stopped by PID at the end even when tests fail;
if it cannot start, every test here fails with dockerd's log: they are never skipped),
`python_base` (the local stand-in for the Dockerfile's `FROM` image), `collector_image` (built from
`collector/Dockerfile` as users build it) and `influxdb_image` (the Debian-built stand-in tagged with
the stack's declared `edge.influxImage`). See `sandbox/docker_engine.py`, `sandbox/docker_images.py`.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from infra.config import EdgeSettingsSpec
from sandbox.docker_engine import DockerEngine
from sandbox.docker_images import BASE_IMAGE_ARG, dockerfile_base, load_influxdb_standin, load_python_base

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "collector" / "Dockerfile"
COLLECTOR_IMAGE = "pm500-collector"
# As the Dockerfile's header says, plus `--network host` (this engine has no bridge network) and the
# local stand-in of its digest-pinned base (no registry here: `sandbox.docker_images.standin_reference`).
def user_build(base: str) -> list[str]:
    return ["build", "--network", "host", "--build-arg", f"{BASE_IMAGE_ARG}={base}", "-f",
            "collector/Dockerfile", "-t", COLLECTOR_IMAGE, "."]


@pytest.fixture(scope="session")
def docker_engine() -> Iterator[DockerEngine]:
    engine = DockerEngine()
    try:
        engine.start()
        yield engine
    finally:
        engine.stop()


@pytest.fixture(autouse=True)
def clean_engine(docker_engine: DockerEngine) -> Iterator[None]:
    """Each test starts from an engine without containers or volumes (images stay: they are cached)."""
    yield
    for container in docker_engine.client.containers.list(all=True):
        container.remove(force=True)
    docker_engine.client.volumes.prune()


@pytest.fixture(scope="session")
def python_base(docker_engine: DockerEngine) -> str:
    return load_python_base(docker_engine, dockerfile_base(DOCKERFILE))


@pytest.fixture(scope="session")
def collector_image(docker_engine: DockerEngine, python_base: str) -> str:
    docker_engine.cli(user_build(python_base), cwd=ROOT)
    return COLLECTOR_IMAGE


@pytest.fixture(scope="session")
def influxdb_image(docker_engine: DockerEngine, python_base: str) -> str:
    reference = EdgeSettingsSpec().influx_image
    load_influxdb_standin(docker_engine, reference, python_base)
    return reference
