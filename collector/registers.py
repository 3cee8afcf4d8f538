"""The PM500 register map (`pm500_registers.yaml`): loaded and validated once, then used to decode
assembly payloads into `{metric: value}` (collector) and to encode them (simulator).

Decoding is on the hot path (3 payloads per meter per poll), so each instance pre-compiles one
`struct.Struct` and a flat plan of (metric, [(element index, scale)]) pairs at load time.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from collector.metrics import METRICS_BY_NAME
from collector.validation import read_yaml

DEFAULT_MAP = Path(__file__).with_name("pm500_registers.yaml")
ELEMENT_SIZE = 4  # REAL = IEEE-754 float32


class RegisterMapError(ValueError):
    """The register map file is malformed (message names the file and the field)."""


class PayloadError(ValueError):
    """An assembly payload cannot be decoded with the map (wrong length)."""


@dataclass(frozen=True)
class Register:
    name: str
    offset: int  # bytes from the start of the instance's data attribute
    metric: str | None  # collector.metrics name, or None: decoded by nobody, kept for the layout
    unit: str
    scale: float
    provenance: str


@dataclass(frozen=True)
class InstanceMap:
    instance: int
    title: str
    elements: int
    provenance: str
    registers: tuple[Register, ...]
    _struct: struct.Struct
    _plan: tuple[tuple[str, tuple[tuple[int, float], ...]], ...]

    @property
    def size_bytes(self) -> int:
        """What attribute 4 (size) must report and what attribute 3 (data) must return."""
        return self.elements * ELEMENT_SIZE

    def unpack(self, payload: bytes) -> tuple[float, ...]:
        if len(payload) != self._struct.size:
            raise PayloadError(
                f"instance {self.instance}: payload is {len(payload)} bytes, expected {self._struct.size}"
            )
        return self._struct.unpack(payload)

    def decode(self, payload: bytes, out: dict[str, float]) -> list[str]:
        """Add this instance's metrics to `out`; return the metrics left out because an element was NaN."""
        raw = self.unpack(payload)
        nan: list[str] = []
        for metric, terms in self._plan:
            value = 0.0
            for index, scale in terms:
                value += raw[index] * scale
            if math.isnan(value):
                nan.append(metric)
            else:
                out[metric] = value
        return nan

    def encode(self, raw: Mapping[str, float]) -> bytes:
        """Pack element values given by register name (missing ones are 0.0) — used by the simulator."""
        return self._struct.pack(*(float(raw.get(r.name, 0.0)) for r in self.registers))


@dataclass(frozen=True)
class RegisterMap:
    source: str
    assembly_class: int
    data_attribute: int
    size_attribute: int
    instances: Mapping[int, InstanceMap]

    def decode(self, payloads: Mapping[int, bytes]) -> tuple[dict[str, float], list[str]]:
        """Decode one poll (payload per instance) into metric values and the metrics dropped as NaN."""
        values: dict[str, float] = {}
        nan: list[str] = []
        for instance, payload in payloads.items():
            nan += self.instances[instance].decode(payload, values)
        return values, nan


def _fail(source: str, where: str, message: str) -> RegisterMapError:
    return RegisterMapError(f"{source}: {where}: {message}")


def _register(source: str, where: str, item: Any) -> Register:
    if not isinstance(item, dict):
        raise _fail(source, where, "expected a mapping with offset, name, metric, unit")
    unknown = set(item) - {"offset", "name", "metric", "unit", "scale", "provenance"}
    if unknown:
        raise _fail(source, where, f"unknown field(s) {sorted(unknown)}")
    name, offset, metric = item.get("name"), item.get("offset"), item.get("metric")
    if not isinstance(name, str) or not name:
        raise _fail(source, f"{where}.name", "required non-empty string")
    if not isinstance(offset, int) or offset < 0 or offset % ELEMENT_SIZE:
        raise _fail(source, f"{where}.offset", f"expected a byte offset, multiple of {ELEMENT_SIZE}")
    if metric is not None and metric not in METRICS_BY_NAME:
        raise _fail(source, f"{where}.metric", f"{metric!r} is not a metric in collector/metrics.py")
    scale = item.get("scale", 1.0)
    if (
        not isinstance(scale, int | float)
        or isinstance(scale, bool)
        or not math.isfinite(scale)
        or scale == 0
    ):
        raise _fail(source, f"{where}.scale", "expected a finite non-zero number")
    if not isinstance(item.get("provenance"), str) or not item["provenance"]:
        raise _fail(source, f"{where}.provenance", "required: say what is confirmed and what is assumed")
    unit = item.get("unit", "")
    if metric is not None and abs(scale) == 1.0 and unit != METRICS_BY_NAME[metric].unit:
        raise _fail(
            source,
            f"{where}.unit",
            f"{unit!r} differs from metric {metric}'s unit {METRICS_BY_NAME[metric].unit!r}",
        )
    return Register(name, offset, metric, str(unit), float(scale), item["provenance"])


def _instance(source: str, number: Any, body: Any) -> InstanceMap:
    where = f"instances.{number}"
    if not isinstance(number, int) or not 1 <= number <= 0xFFFF:
        raise _fail(source, where, "instance number must be an integer 1..65535")
    if not isinstance(body, dict):
        raise _fail(source, where, "expected a mapping")
    elements = body.get("elements")
    if not isinstance(elements, int) or elements < 1:
        raise _fail(source, f"{where}.elements", "expected a positive integer")
    items = body.get("registers")
    if not isinstance(items, list):
        raise _fail(source, f"{where}.registers", "expected a list")
    registers = tuple(_register(source, f"{where}.registers[{i}]", item) for i, item in enumerate(items))
    offsets = [r.offset for r in registers]
    expected = [i * ELEMENT_SIZE for i in range(elements)]
    if offsets != expected:
        raise _fail(
            source,
            f"{where}.registers",
            f"offsets must be {expected[0]}..{expected[-1]} step {ELEMENT_SIZE}, "
            f"one per element ({elements}), in order; got {offsets}",
        )
    names = [r.name for r in registers]
    if len(set(names)) != len(names):
        raise _fail(source, f"{where}.registers", "register names must be unique")
    terms: dict[str, list[tuple[int, float]]] = {}
    for index, r in enumerate(registers):
        if r.metric is not None:
            terms.setdefault(r.metric, []).append((index, r.scale))
    plan = tuple((metric, tuple(t)) for metric, t in terms.items())
    for key in ("title", "provenance"):
        if not isinstance(body.get(key), str) or not body[key]:
            raise _fail(source, f"{where}.{key}", "required non-empty string")
    return InstanceMap(
        number, body["title"], elements, body["provenance"], registers, struct.Struct(f"<{elements}f"), plan
    )


def parse_register_map(data: Any, source: str) -> RegisterMap:
    if not isinstance(data, dict):
        raise _fail(source, "(root)", "expected a mapping")
    if data.get("element_type") != "REAL" or data.get("byte_order") != "little":
        raise _fail(source, "element_type/byte_order", "only little-endian REAL (float32) is supported")
    for key in ("assembly_class", "data_attribute", "size_attribute"):
        if not isinstance(data.get(key), int):
            raise _fail(source, key, "required integer")
    raw_instances = data.get("instances")
    if not isinstance(raw_instances, dict) or not raw_instances:
        raise _fail(source, "instances", "expected a non-empty mapping of instance number -> layout")
    built = [_instance(source, n, body) for n, body in raw_instances.items()]  # validates n first
    instances = {inst.instance: inst for inst in built}
    owners: dict[str, int] = {}
    for inst in instances.values():
        for metric, _ in inst._plan:
            if owners.setdefault(metric, inst.instance) != inst.instance:
                raise _fail(
                    source,
                    f"instances.{inst.instance}",
                    f"metric {metric} is also decoded from "
                    f"instance {owners[metric]}; a metric must come from one instance",
                )
    return RegisterMap(
        str(data.get("source", "")),
        data["assembly_class"],
        data["data_attribute"],
        data["size_attribute"],
        instances,
    )


def load_register_map(path: Path = DEFAULT_MAP) -> RegisterMap:
    data = read_yaml(path, "register map", error=RegisterMapError)
    return parse_register_map(data, str(path))


@cache
def register_map() -> RegisterMap:
    """The bundled map, loaded and validated once per process."""
    return load_register_map()
