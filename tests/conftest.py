"""Shared pytest fixtures: real local stand-ins from `sandbox`, bound to 127.0.0.1 only.

Fixtures (import nothing: pytest injects them by name):

- `dev_ca` (session): a `sandbox.ca.DevCA` in a session temp dir. `dev_ca.issue(cn, dir)` returns
  (cert, key) for a client whose certificate CN is `cn` (use a thing name, e.g.
  `collector.topics.thing_name("test", "plant-a", "edge-01")`); `dev_ca.sign_csr(pem)` signs a CSR.
- `mqtt_broker` (function): a started `sandbox.mosquitto.MosquittoBroker` trusting `dev_ca`, mutual
  TLS on `mqtt_broker.host:mqtt_broker.port`, ACL rendered from `collector.topics`. Cheap (~0.1 s),
  so every test gets its own broker; `mqtt_broker.restart()` for chaos tests.
- `mqtt_observer` (function): a started `sandbox.mqtt.Recorder` on `mqtt_broker` with the observer
  identity, subscribed to `spBv1.0/#`; `.wait_for_topic(prefix)`, `.messages(prefix)`.
- `influx_server` (session): a started `sandbox.influx.InfluxServer` (`.url`, `.query()`,
  `.points()`, `.write()`); share it via `influx_db`, do not restart it (start your own for that).
- `influx_db` (function): the name of a fresh database created on `influx_server`, dropped afterwards.
- `moto_server` (session): a started `sandbox.moto.MotoServer` (`.endpoint_url`).
- `aws_env` (function): resets moto, then sets `AWS_ENDPOINT_URL`, fake credentials and
  `AWS_DEFAULT_REGION=eu-west-1` in `os.environ` (monkeypatched, undone after the test) and unsets
  variables that could route boto3 elsewhere; returns the dict of what was set, to hand to a subprocess.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from sandbox.ca import DevCA
from sandbox.influx import InfluxServer
from sandbox.mosquitto import MosquittoBroker
from sandbox.moto import MotoServer, overriding_aws_vars
from sandbox.mqtt import Recorder


@pytest.fixture(scope="session")
def dev_ca(tmp_path_factory: pytest.TempPathFactory) -> DevCA:
    return DevCA.create(tmp_path_factory.mktemp("dev-ca"))


@pytest.fixture
def mqtt_broker(dev_ca: DevCA, tmp_path: Path) -> Iterator[MosquittoBroker]:
    broker = MosquittoBroker(tmp_path / "mosquitto", dev_ca)
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()


@pytest.fixture
def mqtt_observer(mqtt_broker: MosquittoBroker, tmp_path: Path) -> Iterator[Recorder]:
    cert, key = mqtt_broker.observer_credentials(tmp_path / "observer")
    with Recorder(mqtt_broker.host, mqtt_broker.port, mqtt_broker.ca_file, cert, key) as recorder:
        yield recorder


@pytest.fixture(scope="session")
def influx_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[InfluxServer]:
    server = InfluxServer(tmp_path_factory.mktemp("influxdb"))
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def influx_db(influx_server: InfluxServer) -> Iterator[str]:
    name = f"test_{uuid.uuid4().hex[:12]}"
    influx_server.create_database(name)
    yield name
    influx_server.query(f'DROP DATABASE "{name}"')


@pytest.fixture(scope="session")
def moto_server() -> Iterator[MotoServer]:
    with MotoServer() as server:
        yield server


@pytest.fixture
def aws_env(moto_server: MotoServer, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    moto_server.reset()
    for name in overriding_aws_vars():
        monkeypatch.delenv(name)
    env = moto_server.aws_env()
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return env
