"""1. The collector image builds from collector/Dockerfile, unchanged, as users build it."""

from __future__ import annotations

from sandbox.docker_engine import DockerEngine
from tests.docker.conftest import COLLECTOR_IMAGE


def test_image_builds_from_the_dockerfile_as_users_build_it(docker_engine: DockerEngine,
                                                            collector_image: str) -> None:
    assert collector_image == COLLECTOR_IMAGE
    config = docker_engine.client.api.inspect_image(collector_image)["Config"]
    assert config["User"] == "10001:10001"
    assert config["Entrypoint"] == ["python", "-m", "collector"]
    assert config["Cmd"] == ["--config", "/bundle/config.yaml", "--wait-for-valid-config"]
    assert config["Healthcheck"]["Test"] == [
        "CMD", "python", "-m", "collector", "--config", "/bundle/config.yaml", "--healthcheck"]
    assert list(config["Volumes"]) == ["/var/lib/pm500"]


def test_image_holds_the_collector_extra_and_nothing_else(docker_engine: DockerEngine,
                                                          collector_image: str) -> None:
    """The collector and its pinned dependencies import; the simulator, infra and CLI extras are absent."""
    probe = (
        "import importlib.util as u, importlib.metadata as m;"
        "import collector.service, pycomm3, paho.mqtt.client, pydantic, yaml;"
        "print(m.version('pycomm3'), m.version('paho-mqtt'),"
        " [n for n in ('cpppo', 'pulumi', 'boto3', 'typer') if u.find_spec(n)])"
    )
    out = docker_engine.client.containers.run(collector_image, ["-c", probe], entrypoint=["python"],
                                              network_mode="host", remove=True)
    assert out.decode().split() == ["1.2.16", "2.2.0", "[]"]
