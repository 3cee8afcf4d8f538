"""The store-and-forward buffer: seq assignment, per-sink cursors, acks, bound, kill -9 durability."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from collector.buffer import Buffer
from collector.reading import Reading


def reading(asset: str = "m1", ts: int = 1_700_000_000_000, value: float = 230.0) -> Reading:
    return Reading(site="plant-a", asset=asset, breaker="F1", timestamp_ms=ts, values={"voltageAN": value})


def test_seq_counts_per_asset_and_survives_reopen(tmp_path: Path) -> None:
    path = tmp_path / "b.sqlite"
    buf = Buffer(path, 10 * 1024 * 1024)
    assert [buf.append(reading("m1")) for _ in range(3)] == [1, 2, 3]
    assert buf.append(reading("m2")) == 1
    buf.close()
    buf = Buffer(path, 10 * 1024 * 1024)
    assert buf.append(reading("m1")) == 4
    assert buf.append_many([reading("m2"), reading("m2")]) == [2, 3]


def test_row_leaves_only_after_every_sink_acked(tmp_path: Path) -> None:
    buf = Buffer(tmp_path / "b.sqlite", 10 * 1024 * 1024)
    buf.append_many([reading(ts=i) for i in range(5)])
    mqtt, influx = buf.cursor("mqtt"), buf.cursor("influx")
    batch = mqtt.next_batch(10)
    assert [e.seq for e in batch] == [1, 2, 3, 4, 5]
    assert [e.reading.timestamp_ms for e in batch] == [0, 1, 2, 3, 4]
    mqtt.ack([batch[0].id, batch[2].id])  # out of order acks are fine
    assert buf.depth("mqtt") == 3 and buf.depth("influx") == 5
    influx_batch = influx.next_batch(2)
    influx.ack([e.id for e in influx_batch])
    # Row 1 acked by both sinks: gone. Row 3 still wanted by influx, row 2 by mqtt.
    assert buf.depth("influx") == 3
    mqtt.rewind()
    assert [e.seq for e in mqtt.next_batch(10)] == [2, 4, 5]
    assert buf.stats()["depth"] == {"mqtt": 3, "influx": 3}


def test_unacked_rows_replay_in_order_after_restart(tmp_path: Path) -> None:
    path = tmp_path / "b.sqlite"
    buf = Buffer(path, 10 * 1024 * 1024)
    buf.append_many([reading("m1"), reading("m2"), reading("m1"), reading("m2")])
    cur = buf.cursor("mqtt")
    cur.ack([cur.next_batch(1)[0].id])
    buf.close()
    replay = Buffer(path, 10 * 1024 * 1024).cursor("mqtt").next_batch(100)
    assert [(e.reading.asset, e.seq) for e in replay] == [("m2", 1), ("m1", 2), ("m2", 2)]


def test_full_buffer_drops_oldest_and_counts(tmp_path: Path) -> None:
    path = tmp_path / "b.sqlite"
    max_bytes = 1024 * 1024
    buf = Buffer(path, max_bytes)
    big = {f"voltage{i}": float(i) for i in range(200)}  # a few KB per row
    for i in range(400):
        buf.append(Reading("plant-a", "m1", "F1", i, big))
    stats = buf.stats()
    assert 0 < int(stats["dropped"]) < 400  # type: ignore[call-overload]
    assert int(stats["bytes"]) <= max_bytes  # type: ignore[call-overload]
    entries = buf.cursor("mqtt").next_batch(1000)
    # The newest readings are kept, contiguous, oldest dropped first.
    assert entries[-1].seq == 400
    assert [e.seq for e in entries] == list(range(entries[0].seq, 401))
    assert entries[0].seq == int(stats["dropped"]) + 1  # type: ignore[call-overload]
    buf.close()
    assert Buffer(path, max_bytes).stats()["dropped"] == stats["dropped"]


def test_disabled_sink_does_not_pin_rows(tmp_path: Path) -> None:
    path = tmp_path / "b.sqlite"
    Buffer(path, 10 * 1024 * 1024).append_many([reading(), reading()])
    buf = Buffer(path, 10 * 1024 * 1024, sinks=("mqtt",))  # InfluxDB switched off since
    cur = buf.cursor("mqtt")
    cur.ack([e.id for e in cur.next_batch(10)])
    assert buf.stats()["bytes"] == 0
    with pytest.raises(ValueError, match="influx"):
        buf.cursor("influx")


def test_kill_9_loses_nothing_committed(tmp_path: Path) -> None:
    """A writer prints each seq after its commit returned; after SIGKILL every printed seq is there."""
    path = tmp_path / "b.sqlite"
    script = textwrap.dedent(
        f"""
        import sys
        from collector.buffer import Buffer
        from collector.reading import Reading
        from pathlib import Path
        buf = Buffer(Path({str(path)!r}), 64 * 1024 * 1024)
        while True:
            seq = buf.append(Reading("plant-a", "m1", "F1", 0, {{"voltageAN": 1.0}}))
            print(seq, flush=True)
        """
    )
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    printed = [int(proc.stdout.readline()) for _ in range(300)]
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    printed += [int(line) for line in proc.stdout.read().split()]
    stored = [e.seq for e in Buffer(path, 64 * 1024 * 1024).cursor("mqtt").next_batch(1_000_000)]
    assert set(printed) <= set(stored)
    assert stored == list(range(1, len(stored) + 1))
