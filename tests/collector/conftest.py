"""Fixtures shared by the collector's end-to-end and chaos tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from sandbox.ca import DevCA
from sandbox.influx import InfluxServer
from sandbox.mosquitto import MosquittoBroker
from tests.collector.harness import Simulator, write_bundle


@pytest.fixture
def simulator(tmp_path: Path) -> Iterator[Simulator]:
    """Two simulated PM500s (cpppo) on 127.0.0.1, stopped after the test."""
    sim = Simulator(tmp_path, meters=2).start()
    yield sim
    sim.stop()


@pytest.fixture
def bundle_config(
    tmp_path: Path,
    dev_ca: DevCA,
    mqtt_broker: MosquittoBroker,
    influx_server: InfluxServer,
    influx_db: str,
    simulator: Simulator,
) -> Path:
    """A bundle for the simulated meters, the test's broker and its fresh InfluxDB database."""
    ports = simulator.ports
    return write_bundle(tmp_path / "bundle", dev_ca, mqtt_broker, ports, influx_server.url, influx_db)
