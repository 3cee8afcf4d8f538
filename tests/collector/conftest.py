"""Fixtures shared by the collector's end-to-end and chaos tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.collector.harness import Simulator


@pytest.fixture
def simulator(tmp_path: Path) -> Iterator[Simulator]:
    """Two simulated PM500s (cpppo) on 127.0.0.1, stopped after the test."""
    sim = Simulator(tmp_path, meters=2).start()
    yield sim
    sim.stop()
