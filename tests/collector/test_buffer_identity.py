"""Defect: a lost buffer restarted seq at 1 under the same uuid, so (uuid, seq) de-duplication ate new data.

Each buffer file gets its own identity (`buffer_id`, a random UUID made when the file is created) that
every DDATA and DBIRTH carries; consumers de-duplicate on (uuid, buffer_id, seq).
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path

from collector import payload
from collector.buffer import Buffer
from collector.reading import Reading

THING = "test:plant-a:edge-01"
MiB = 1024 * 1024


def _reading() -> Reading:
    return Reading("plant-a", "m1", "F1", 1_700_000_000_000, {"voltageAN": 230.0})


def _sent(buf: Buffer) -> dict:
    (entry,) = buf.cursor("mqtt").next_batch(10)
    return json.loads(entry.payload)


def test_a_replaced_buffer_file_gets_a_new_identity_that_ddata_carries(tmp_path: Path) -> None:
    path = tmp_path / "buffer.sqlite"
    first = Buffer(path, MiB, THING)
    first.append(_reading())
    before = _sent(first)
    first.close()
    for leftover in tmp_path.iterdir():  # a fresh volume: the file and its WAL are gone
        leftover.unlink()

    second = Buffer(path, MiB, THING)
    second.append(_reading())
    after = _sent(second)
    second.close()

    assert (before["uuid"], before["seq"]) == (after["uuid"], after["seq"])  # what used to collide
    assert before["buffer_id"] != after["buffer_id"]
    assert uuid.UUID(before["buffer_id"]).version == 4
    assert uuid.UUID(after["buffer_id"]).version == 4


def test_the_identity_survives_a_restart_on_the_same_file(tmp_path: Path) -> None:
    path = tmp_path / "buffer.sqlite"
    first = Buffer(path, MiB, THING)
    identity = first.buffer_id
    first.close()
    second = Buffer(path, MiB, THING)
    second.append(_reading())
    assert second.buffer_id == identity
    assert _sent(second)["buffer_id"] == identity
    second.close()


def test_stored_ddata_names_the_buffer_it_was_committed_to(tmp_path: Path) -> None:
    buf = Buffer(tmp_path / "b.sqlite", MiB, THING)
    buf.append(_reading())
    (entry,) = buf.cursor("mqtt").next_batch(1)
    expected = payload.encode(payload.ddata(_reading(), THING, 1, buffer_id=buf.buffer_id))
    assert entry.payload == expected
    buf.close()


def test_dbirth_carries_the_buffer_identity() -> None:
    body = payload.dbirth(THING, "plant-a", "m1", "F1", 1_700_000_000_000, 5, buffer_id="b-1")
    assert body["buffer_id"] == "b-1" and body["seq"] == 5
