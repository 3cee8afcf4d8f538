"""An independent Sparkplug B reader for tests: Tahu's proto compiled here, never the collector's code.

The collector's own classes come from the committed `sparkplug_b_pb2`. This reader compiles the vendored
Tahu `.proto` with protoc (grpcio-tools) at test time into a private descriptor pool and decodes with
the message class built from that, then checks the specification's rules with logic written here.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

from sandbox.mqtt import Message

REPO = Path(__file__).resolve().parents[2]
TAHU_PROTO = REPO / "collector" / "proto" / "sparkplug_b.proto"
# sha256 of sparkplug_b/sparkplug_b.proto at Eclipse Tahu commit 5736e404889d4b95910613040a99ba79589ffb13.
TAHU_PROTO_SHA256 = "4432c5c483b7fb9732d0594c98a2e97dca5e517e39c5374a8b918d837f0b4a19"
# Sparkplug B DataType values (Tahu proto enum): written out, not read from any generated code.
INT32, INT64, DOUBLE, BOOLEAN, STRING = 3, 4, 10, 11, 12


def protoc(args: Sequence[str]) -> None:
    subprocess.run([sys.executable, "-m", "grpc_tools.protoc", *args], check=True, capture_output=True)


def compile_payload_class(workdir: Path) -> Any:
    """`org.eclipse.tahu.protobuf.Payload` from a fresh protoc run, in a pool of its own."""
    workdir.mkdir(parents=True, exist_ok=True)
    desc = workdir / "tahu.desc"
    protoc([f"-I{TAHU_PROTO.parent}", f"--descriptor_set_out={desc}", str(TAHU_PROTO)])
    pool = descriptor_pool.DescriptorPool()
    for file_proto in descriptor_pb2.FileDescriptorSet.FromString(desc.read_bytes()).file:
        pool.Add(file_proto)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName("org.eclipse.tahu.protobuf.Payload"))


@dataclass
class Decoded:
    topic: str
    kind: str  # NBIRTH, NDEATH, DBIRTH, DDATA, DDEATH
    device: str | None
    payload: Any  # the independently built Payload message


@dataclass
class Session:
    """Messages from one NBIRTH up to the next (the unit in which seq must be continuous)."""

    nbirth: Decoded
    messages: list[Decoded] = field(default_factory=list)


def decode_all(messages: Sequence[Message], payload_class: Any, edge_node: str) -> list[Decoded]:
    out = []
    for m in messages:
        levels = m.topic.split("/")
        if levels[:2] != ["spBv1.0", "pm500"] or levels[3] != edge_node:
            continue
        kind = levels[2]
        if kind == "NCMD":
            continue
        device = levels[4] if len(levels) > 4 else None
        out.append(Decoded(m.topic, kind, device, payload_class.FromString(m.payload)))
    return out


def metric(payload: Any, name: str) -> Any:
    matches = [m for m in payload.metrics if m.name == name]
    assert len(matches) == 1, f"{name!r} appears {len(matches)} times"
    return matches[0]


def sessions(decoded: Sequence[Decoded]) -> list[Session]:
    """Split at each NBIRTH; NDEATHs (no seq by the spec) are left out."""
    out: list[Session] = []
    for d in decoded:
        if d.kind == "NBIRTH":
            out.append(Session(d))
        elif d.kind != "NDEATH":
            assert out, f"{d.kind} before any NBIRTH"
            out[-1].messages.append(d)
    return out


def assert_seq_continuity(session: Session) -> list[int]:
    """seq: present in every message, 0..255, each one more than the previous (255 -> 0)."""
    assert session.nbirth.payload.HasField("seq")
    seqs = [session.nbirth.payload.seq]
    for d in session.messages:
        assert d.payload.HasField("seq"), f"{d.topic}: no seq"
        expected = (seqs[-1] + 1) % 256
        assert d.payload.seq == expected, f"{d.topic}: seq {d.payload.seq}, expected {expected}"
        seqs.append(d.payload.seq)
    assert all(0 <= s <= 255 for s in seqs)
    return seqs


def resolve_ddata(session: Session) -> dict[str, list[tuple[int, dict[str, float], bool]]]:
    """Per device: (timestamp, {metric name: value}, historical) of each DDATA, names via its DBIRTH."""
    aliases: dict[str, dict[int, str]] = {}
    out: dict[str, list[tuple[int, dict[str, float], bool]]] = {}
    for d in session.messages:
        assert d.device is not None
        if d.kind == "DBIRTH":
            aliases[d.device] = {m.alias: m.name for m in d.payload.metrics}
        elif d.kind == "DDATA":
            assert d.device in aliases, f"DDATA for {d.device} before its DBIRTH"
            values = {}
            flags = set()
            for m in d.payload.metrics:
                assert not m.HasField("name"), "DDATA must send aliases only"
                assert m.alias in aliases[d.device], f"alias {m.alias} not declared in DBIRTH"
                values[aliases[d.device][m.alias]] = m.double_value
                flags.add(m.is_historical)
            assert len(flags) == 1, "a DDATA is either all historical or all live"
            out.setdefault(d.device, []).append((d.payload.timestamp, values, flags.pop()))
    return out
