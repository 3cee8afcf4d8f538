"""The fleet benchmark's cheap meter stand-in: it must answer the collector exactly as cpppo did."""

from __future__ import annotations

import threading
from pathlib import Path

from bench.replay_meters import ReplayMeters, record, request_key
from collector.config import MeterConfig
from collector.metrics import METRICS
from collector.poller import Poller
from collector.reading import Reading
from tests.meter.conftest import wait_for


def test_request_key_ignores_only_session_handle_and_sender_context() -> None:
    frame = bytes(range(40))
    key = request_key(frame)
    assert key[4:8] == bytes(4) and key[12:20] == bytes(8)
    assert key[:4] == frame[:4] and key[8:12] == frame[8:12] and key[20:] == frame[20:]


def test_replayed_meters_serve_the_recorded_cpppo_poll_to_the_real_poller(tmp_path: Path) -> None:
    recording = tmp_path / "recording.json"
    record(recording)
    got: list[Reading] = []
    lock = threading.Lock()

    def collect(reading: Reading) -> None:
        with lock:
            got.append(reading)

    with ReplayMeters(recording, meters=2) as replay:
        meters = [
            MeterConfig(asset=f"m{i}", breaker=f"B{i}", host="127.0.0.1", port=port)
            for i, port in enumerate(replay.ports)
        ]
        poller = Poller("plant-a", meters, 0.1, collect, timeout_s=2.0)
        poller.start()
        try:
            wait_for(lambda: {r.asset for r in got} == {"m0", "m1"} and len(got) >= 6, "replayed readings")
            status = poller.status()
        finally:
            poller.stop()
    assert {s.request_mode for s in status.values()} == {"multiple_service_packet"}
    assert all(s.state == "ok" and sum(s.errors.values()) == 0 for s in status.values())
    # The recorded meter was the simulator's frozen meter 0 (480Y/277 V, 60 Hz): every reading is the
    # same poll of every metric.
    assert all(r.values == got[0].values for r in got)
    assert set(got[0].values) == {m.name for m in METRICS}
    assert 59.9 < got[0].values["frequency"] < 60.1 and 270 < got[0].values["voltageAN"] < 285
