"""A captured edge node session, as the judge reads it: MQTT packets (sandbox.mqtt_tap) + Sparkplug payloads.

Payloads are decoded with Eclipse Tahu's `sparkplug_b.proto` compiled by protoc at test time into a
descriptor pool of the test's own (tests/collector/sparkplug_reader.py): never the collector's classes.
Nothing here assumes how the collector works; it only groups what crossed the wire.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from sandbox.mqtt_tap import BROKER_TO_CLIENT, CLIENT_TO_BROKER, Packet

NAMESPACE = "spBv1.0"
GROUP = "pm500"
EDGE_KINDS = ("NBIRTH", "NDEATH", "DBIRTH", "DDATA", "DDEATH", "NDATA")
# Sparkplug B DataType numbers (the Tahu proto's enum), written out from the specification's table.
INT32, INT64, DOUBLE, BOOLEAN, STRING = 3, 4, 10, 11, 12
BASIC_TYPES = set(range(1, 16))  # Int8 .. Text (spec 6.4.16 "Basic Data Types")
PROPERTY_TYPES = BASIC_TYPES | {20, 21}  # + PropertySet, PropertySetList


@dataclass
class Published:
    """A PUBLISH the edge node wrote, with its Sparkplug reading."""

    packet: Packet
    kind: str  # NBIRTH, DBIRTH, DDATA, DDEATH, NDEATH, NDATA
    device: str | None
    payload: Any  # the independently built Payload message

    @property
    def topic(self) -> str:
        assert self.packet.topic is not None
        return self.packet.topic


@dataclass
class Session:
    """One Sparkplug session: an NBIRTH and what the edge node published after it on that connection,
    up to the next NBIRTH (a rebirth) or the connection's end. seq runs on within it."""

    connection: int
    nbirth: Published
    messages: list[Published] = field(default_factory=list)


class EdgeCapture:
    """Everything one edge node (`edge_node`, the MQTT client behind the tap) did on the wire."""

    def __init__(self, packets: list[Packet], payload_class: Any, edge_node: str) -> None:
        self.packets = packets
        self.edge_node = edge_node
        self.payload_class = payload_class
        self.published: list[Published] = []
        for p in packets:
            if p.direction == CLIENT_TO_BROKER and p.type == "PUBLISH":
                decoded = self._sparkplug(p)
                if decoded is not None:
                    self.published.append(decoded)

    def _sparkplug(self, packet: Packet) -> Published | None:
        assert packet.topic is not None
        levels = packet.topic.split("/")
        if len(levels) < 4 or levels[0] != NAMESPACE or levels[2] not in EDGE_KINDS:
            return None
        device = levels[4] if len(levels) > 4 else None
        return Published(packet, levels[2], device, self.payload_class.FromString(packet.payload))

    def connects(self) -> list[Packet]:
        return [p for p in self.packets if p.type == "CONNECT"]

    def of(self, *kinds: str) -> list[Published]:
        return [m for m in self.published if m.kind in kinds]

    def on_connection(self, connection: int) -> list[Packet]:
        return [p for p in self.packets if p.connection == connection]

    def connections(self) -> list[int]:
        return sorted({p.connection for p in self.packets})

    def will(self, connection: int) -> Any:
        """The will payload (decoded) of the CONNECT of `connection`."""
        connect = next(p for p in self.connects() if p.connection == connection)
        assert connect.will is not None
        return self.payload_class.FromString(connect.will.payload)

    def sessions(self) -> list[Session]:
        out: list[Session] = []
        for m in self.published:
            if m.kind == "NBIRTH":
                out.append(Session(m.packet.connection, m))
            elif m.kind != "NDEATH":
                current = out[-1] if out and out[-1].connection == m.packet.connection else None
                assert current is not None, f"{m.kind} {m.topic} without an NBIRTH on its connection"
                current.messages.append(m)
        return out

    def delivered_to_edge(self, topic: str) -> list[Packet]:
        """PUBLISH packets the broker delivered to the edge node on `topic` (STATE, NCMD)."""
        return [p for p in self.packets
                if p.direction == BROKER_TO_CLIENT and p.type == "PUBLISH" and p.topic == topic]


def metric(payload: Any, name: str) -> Any:
    matches = [m for m in payload.metrics if m.name == name]
    assert len(matches) == 1, f"{name!r} appears {len(matches)} times"
    return matches[0]


def has_value(m: Any) -> bool:
    """The metric carries a value of its declared datatype, or is explicitly null (spec 6.4.7)."""
    if m.is_null:
        return m.WhichOneof("value") is None
    field_by_type = {1: "int_value", 2: "int_value", 3: "int_value", 5: "int_value", 6: "int_value",
                     4: "long_value", 7: "long_value", 8: "long_value", 13: "long_value",
                     9: "float_value", DOUBLE: "double_value", BOOLEAN: "boolean_value",
                     STRING: "string_value", 14: "string_value", 15: "string_value"}
    return m.WhichOneof("value") == field_by_type.get(m.datatype)


def state_of(packet: Packet) -> dict[str, Any] | None:
    """A STATE payload as JSON, None if it is not the 3.0 `{"online", "timestamp"}` object."""
    try:
        data = json.loads(packet.payload)
    except ValueError:
        return None
    if isinstance(data, dict) and isinstance(data.get("online"), bool) and isinstance(
            data.get("timestamp"), int) and not isinstance(data.get("timestamp"), bool):
        return data
    return None
