"""The store-and-forward buffer: seq assignment, per-sink cursors, acks, bound, kill -9 durability."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from collector.buffer import Buffer, BufferFormatError
from collector.lineprotocol import lines
from collector.metrics import METRICS
from collector.payload import ddata, encode
from collector.reading import Reading

THING = "test:plant-a:edge-01"


def reading(asset: str = "m1", ts: int = 1_700_000_000_000, value: float = 230.0) -> Reading:
    return Reading(site="plant-a", asset=asset, breaker="F1", timestamp_ms=ts, values={"voltageAN": value})


def full_reading(i: int, asset: str = "m1") -> Reading:
    """Every metric, with float32-like values as the poller produces them."""
    values = {m.name: 100.0 + j + i / 7 for j, m in enumerate(METRICS)}
    return Reading("plant-a", asset, "F1", 1_700_000_000_000 + i, values)


def test_seq_counts_per_asset_and_survives_reopen(tmp_path: Path) -> None:
    path = tmp_path / "b.sqlite"
    buf = Buffer(path, 10 * 1024 * 1024, THING)
    assert [buf.append(reading("m1")) for _ in range(3)] == [1, 2, 3]
    assert buf.append(reading("m2")) == 1
    buf.close()
    buf = Buffer(path, 10 * 1024 * 1024, THING)
    assert buf.append(reading("m1")) == 4
    assert buf.append_many([reading("m2"), reading("m2")]) == [2, 3]


def test_row_leaves_only_after_every_sink_acked(tmp_path: Path) -> None:
    buf = Buffer(tmp_path / "b.sqlite", 10 * 1024 * 1024, THING)
    buf.append_many([reading(ts=i) for i in range(5)])
    mqtt, influx = buf.cursor("mqtt"), buf.cursor("influx")
    batch = mqtt.next_batch(10)
    assert [e.seq for e in batch] == [1, 2, 3, 4, 5]
    assert [e.timestamp_ms for e in batch] == [0, 1, 2, 3, 4]
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
    buf = Buffer(path, 10 * 1024 * 1024, THING)
    buf.append_many([reading("m1"), reading("m2"), reading("m1"), reading("m2")])
    cur = buf.cursor("mqtt")
    cur.ack([cur.next_batch(1)[0].id])
    buf.close()
    replay = Buffer(path, 10 * 1024 * 1024, THING).cursor("mqtt").next_batch(100)
    assert [(e.asset, e.seq) for e in replay] == [("m2", 1), ("m1", 2), ("m2", 2)]


def test_entries_carry_the_payloads_each_sink_sends(tmp_path: Path) -> None:
    """Encoded once at append time: DDATA with the assigned seq for MQTT, the line protocol for InfluxDB."""
    buf = Buffer(tmp_path / "b.sqlite", 10 * 1024 * 1024, THING)
    first, second = full_reading(1, "m1"), full_reading(2, "m2")
    buf.append_many([first, second, full_reading(3, "m1")])
    mqtt = buf.cursor("mqtt").next_batch(10)
    assert [(e.asset, e.seq) for e in mqtt] == [("m1", 1), ("m2", 1), ("m1", 2)]
    assert mqtt[0].payload == encode(ddata(first, THING, 1, buffer_id=buf.buffer_id))
    assert mqtt[1].payload == encode(ddata(second, THING, 1, buffer_id=buf.buffer_id))
    assert mqtt[1].timestamp_ms == second.timestamp_ms
    influx = buf.cursor("influx").next_batch(10)
    assert influx[0].payload.decode().splitlines() == lines(first)
    assert [e.id for e in influx] == [e.id for e in mqtt]


def test_acks_in_one_batch_free_the_bytes_of_rows_no_sink_needs(tmp_path: Path) -> None:
    buf = Buffer(tmp_path / "b.sqlite", 10 * 1024 * 1024, THING)
    buf.append_many(full_reading(i) for i in range(300))
    full = int(buf.stats()["bytes"])  # type: ignore[call-overload]
    mqtt, influx = buf.cursor("mqtt"), buf.cursor("influx")
    mqtt.ack([e.id for e in mqtt.next_batch(300)])
    assert buf.stats()["bytes"] == full  # InfluxDB still needs every row
    influx.ack([e.id for e in reversed(influx.next_batch(100))])
    assert 0 < int(buf.stats()["bytes"]) < full  # type: ignore[call-overload]
    influx.ack([e.id for e in influx.next_batch(300)])
    assert buf.stats()["bytes"] == 0 and buf.stats()["depth"] == {"mqtt": 0, "influx": 0}
    buf.close()
    assert Buffer(tmp_path / "b.sqlite", 10 * 1024 * 1024, THING).stats()["bytes"] == 0


def test_buffer_in_another_format_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "b.sqlite"
    Buffer(path, 10 * 1024 * 1024, THING).close()
    with sqlite3.connect(path) as db:
        db.execute("PRAGMA user_version = 1")
    with pytest.raises(BufferFormatError, match="format 1"):
        Buffer(path, 10 * 1024 * 1024, THING)


def test_full_buffer_drops_oldest_and_counts(tmp_path: Path) -> None:
    path = tmp_path / "b.sqlite"
    max_bytes = 64 * 1024
    buf = Buffer(path, max_bytes, THING)
    for i in range(400):  # ~1.4 KB per row: about 45 fit
        buf.append(full_reading(i))
    stats = buf.stats()
    assert 0 < int(stats["dropped"]) < 400  # type: ignore[call-overload]
    assert int(stats["bytes"]) <= max_bytes  # type: ignore[call-overload]
    entries = buf.cursor("mqtt").next_batch(1000)
    # The newest readings are kept, contiguous, oldest dropped first.
    assert entries[-1].seq == 400
    assert [e.seq for e in entries] == list(range(entries[0].seq, 401))
    assert entries[0].seq == int(stats["dropped"]) + 1  # type: ignore[call-overload]
    buf.close()
    assert Buffer(path, max_bytes, THING).stats()["dropped"] == stats["dropped"]


def test_disabled_sink_does_not_pin_rows(tmp_path: Path) -> None:
    path = tmp_path / "b.sqlite"
    Buffer(path, 10 * 1024 * 1024, THING).append_many([reading(), reading()])
    buf = Buffer(path, 10 * 1024 * 1024, THING, sinks=("mqtt",))  # InfluxDB switched off since
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
        buf = Buffer(Path({str(path)!r}), 64 * 1024 * 1024, "t")
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
    stored = [e.seq for e in Buffer(path, 64 * 1024 * 1024, THING).cursor("mqtt").next_batch(1_000_000)]
    assert set(printed) <= set(stored)
    assert stored == list(range(1, len(stored) + 1))
