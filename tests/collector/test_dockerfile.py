"""collector/Dockerfile: hadolint clean, and its ENTRYPOINT/CMD/HEALTHCHECK really run (without Docker)."""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from collector.config import CONFIG_FILE, BufferConfig
from sandbox.ca import DevCA
from sandbox.docker_images import dockerfile_base
from sandbox.mosquitto import MosquittoBroker
from sandbox.net import free_port
from tests.collector.harness import CollectorProcess, write_bundle

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "collector" / "Dockerfile"
BUNDLE = "/bundle"


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with line continuations joined and comments dropped."""
    text = DOCKERFILE.read_text().replace("\\\n", " ")
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def exec_form(args: str) -> list[str]:
    parsed = json.loads(args)
    assert isinstance(parsed, list), f"use the exec (JSON) form, got {args!r}"
    return [str(a) for a in parsed]


def last(name: str) -> str:
    return [args for word, args in instructions() if word == name][-1]


def test_hadolint_clean() -> None:
    hadolint = Path(sys.executable).parent / "hadolint"
    result = subprocess.run([hadolint, str(DOCKERFILE)], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


def test_image_layout_matches_the_product() -> None:
    words = dict(instructions())
    base = dockerfile_base(DOCKERFILE)  # FROM ${PYTHON_IMAGE}: the ARG's default
    assert ":" in base and "slim" in base and ":latest" not in base
    assert words["USER"].split(":")[0] not in ("root", "0")
    # The buffer volume is where the config's default buffer path lives.
    assert exec_form(words["VOLUME"]) == [str(BufferConfig().path.parent)]
    # Installs exactly the `collector` extra, which exists in pyproject.toml.
    assert '".[collector]"' in last("RUN")
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    assert all("==" in dep for dep in extras["collector"])
    for word, args in instructions():
        if word == "COPY":
            for src in shlex.split(args)[:-1]:
                assert (ROOT / src).exists(), f"COPY source {src} missing"
    # The bundle's config, and waiting for a fixed bundle rather than crash-looping on a broken one.
    assert exec_form(last("CMD")) == ["--config", f"{BUNDLE}/{CONFIG_FILE}", "--wait-for-valid-config"]


@pytest.mark.slow
def test_entrypoint_cmd_and_healthcheck_run(
    tmp_path: Path, dev_ca: DevCA, mqtt_broker: MosquittoBroker
) -> None:
    """Run the image's command with a temp dir standing in for /bundle and another for the volume."""
    bundle = tmp_path / "bundle"
    config = write_bundle(bundle, dev_ca, mqtt_broker, [free_port()], influx_url=None)  # no meter there
    volume = tmp_path / "volume"

    def container_argv(args: list[str]) -> list[str]:
        argv = [sys.executable if a == "python" else a for a in args]
        return [a.replace(BUNDLE, str(bundle), 1) if a.startswith(BUNDLE + "/") else a for a in argv]

    command = container_argv(exec_form(last("ENTRYPOINT")) + exec_form(last("CMD")))
    healthcheck = last("HEALTHCHECK")
    check = container_argv(exec_form(healthcheck[healthcheck.index("CMD") + 3 :].strip()))
    assert command[1:3] == ["-m", "collector"]

    env = {"PM500C_BUFFER__PATH": str(volume / "buffer.sqlite")}
    collector = CollectorProcess(config, tmp_path, env=env)
    collector.process.args = command
    collector.start()
    try:
        result = subprocess.run(check, capture_output=True, text=True, check=False)
        assert result.returncode == 0, result.stdout + result.stderr
        assert (volume / "buffer.sqlite").exists()  # the env override put the buffer on the "volume"
    finally:
        assert collector.stop() == 0
    # With the collector gone the HEALTHCHECK must fail.
    result = subprocess.run(check, capture_output=True, text=True, check=False)
    assert result.returncode == 1
