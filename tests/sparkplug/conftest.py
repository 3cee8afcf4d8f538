"""One captured run per scenario, shared by every judge that reads it (each run takes 10-40 s)."""

from __future__ import annotations

from typing import Any

import pytest

from sandbox.ca import DevCA
from tests.collector.sparkplug_reader import compile_payload_class
from tests.sparkplug import scenarios
from tests.sparkplug.scenarios import Run


@pytest.fixture(scope="session")
def payload_class(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """Tahu's Payload, compiled by protoc for the judges (never the collector's own classes)."""
    return compile_payload_class(tmp_path_factory.mktemp("tahu-judge"))


@pytest.fixture(scope="session")
def session_run(tmp_path_factory: pytest.TempPathFactory, dev_ca: DevCA, payload_class: Any) -> Run:
    return scenarios.session(tmp_path_factory.mktemp("session"), dev_ca, payload_class)


@pytest.fixture(scope="session")
def host_run(tmp_path_factory: pytest.TempPathFactory, dev_ca: DevCA, payload_class: Any) -> Run:
    return scenarios.primary_host(tmp_path_factory.mktemp("primary-host"), dev_ca, payload_class)
