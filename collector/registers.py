"""The PM500 register map (`pm500_registers.yaml`): loaded and validated once, then used to decode
assembly payloads into `{metric: value}` (collector) and to encode them (simulator).

Decoding is on the hot path (every instance of every meter, every poll), so the plan is compiled at
load time: per instance one `struct.Struct`, and an `ElementDecoder` that turns a flat tuple of
elements into metrics. `ElementDecoder.over(instances)` compiles one decoder for a whole poll, whose
elements arrive from one struct call over the Multiple Service Packet reply
(`collector.cip_multiple.SuccessLayout`).
"""

from __future__ import annotations

import math
import struct
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cache
from operator import itemgetter
from pathlib import Path
from typing import Any

from collector.metrics import METRICS_BY_NAME
from collector.validation import read_yaml

DEFAULT_MAP = Path(__file__).with_name("pm500_registers.yaml")
# CIP elementary types an assembly instance may hold: struct format character and size in bytes.
ELEMENT_TYPES: dict[str, tuple[str, int]] = {"REAL": ("f", 4), "INT": ("h", 2), "UINT": ("H", 2)}


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
    bits: tuple[tuple[int, str], ...] = ()  # (bit number, metric): status words published bit by bit


# (element index, ((metric, bit number), ...), mask of those bits, {masked word: {metric: 0.0 | 1.0}})
_StatusWord = tuple[int, tuple[tuple[str, int], ...], int, dict[int, dict[str, float]]]


class ElementDecoder:
    """A compiled decode plan over a flat tuple of elements (one instance's, or a whole poll's).

    Most metrics are one element with scale 1: they are picked with one `itemgetter` and zipped into
    the result, and one `sum` over them tells whether any is NaN (NaN propagates through a sum; only
    then, or when +inf and -inf cancel into NaN, are they looked at one by one). Scaled and combined
    metrics (net energy) are computed term by term; a status word's bits once per distinct value.
    """

    def __init__(
        self,
        plan: Sequence[tuple[str, Sequence[tuple[int, float]]]],
        bit_plan: Sequence[tuple[str, int, int]],
        register_names: Sequence[str],
    ) -> None:
        direct = [(metric, terms[0][0]) for metric, terms in plan if len(terms) == 1 and terms[0][1] == 1.0]
        self._direct_metrics = tuple(metric for metric, _ in direct)
        indexes = [index for _, index in direct]
        self._pick: Callable[[Sequence[Any]], tuple[Any, ...]] = (
            itemgetter(*indexes) if len(indexes) > 1 else lambda raw: tuple(raw[i] for i in indexes)
        )
        direct_names = set(self._direct_metrics)
        self._computed = tuple((m, tuple(terms)) for m, terms in plan if m not in direct_names)
        words: dict[int, list[tuple[str, int]]] = {}
        for metric, index, bit in bit_plan:
            words.setdefault(index, []).append((metric, bit))
        # Per status word: its bits, the mask of those bits, and the metrics of each masked value seen
        # so far (a word's value rarely changes, and masking bounds the cache to 2^bits entries).
        self._words: tuple[_StatusWord, ...] = tuple(
            (index, tuple(bits), sum(1 << bit for _, bit in bits), {}) for index, bits in words.items()
        )
        self._register_names = tuple(register_names)

    @classmethod
    def over(cls, instances: Sequence[InstanceMap]) -> ElementDecoder:
        """One decoder for the elements of `instances` concatenated in that order (one poll)."""
        plan: list[tuple[str, tuple[tuple[int, float], ...]]] = []
        bit_plan: list[tuple[str, int, int]] = []
        names: list[str] = []
        base = 0
        for inst in instances:
            plan += [(m, tuple((base + i, scale) for i, scale in terms)) for m, terms in inst._plan]
            bit_plan += [(m, base + i, bit) for m, i, bit in inst._bit_plan]
            names += [r.name for r in inst.registers]
            base += inst.elements
        return cls(plan, bit_plan, names)

    def decode(self, raw: Sequence[Any]) -> tuple[dict[str, float], list[str]]:
        """Metric values, and the metrics left out because an element they use is NaN."""
        picked = self._pick(raw)
        total = sum(picked)
        nan: list[str] = []
        if total == total:
            values = dict(zip(self._direct_metrics, picked, strict=True))
        else:
            values = {}
            for metric, value in zip(self._direct_metrics, picked, strict=True):
                if math.isnan(value):
                    nan.append(metric)
                else:
                    values[metric] = value
        for metric, terms in self._computed:
            combined = 0.0
            for index, scale in terms:
                combined += raw[index] * scale
            if math.isnan(combined):
                nan.append(metric)
            else:
                values[metric] = combined
        for index, bits, mask, seen in self._words:
            word = int(raw[index]) & mask
            decoded = seen.get(word)
            if decoded is None:
                decoded = seen[word] = {metric: float((word >> bit) & 1) for metric, bit in bits}
            values.update(decoded)
        return values, nan

    def by_name(self, raw: Sequence[Any]) -> dict[str, float]:
        """Every element (published or not) by register name: what the physics self-check reads."""
        return {name: float(v) for name, v in zip(self._register_names, raw, strict=True)}


@dataclass(frozen=True)
class InstanceMap:
    instance: int
    title: str
    elements: int
    provenance: str
    registers: tuple[Register, ...]
    _struct: struct.Struct
    _plan: tuple[tuple[str, tuple[tuple[int, float], ...]], ...]
    element_type: str
    _bit_plan: tuple[tuple[str, int, int], ...] = ()  # (metric, element index, bit number)
    decoder: ElementDecoder = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "decoder", ElementDecoder.over([self]))

    @property
    def size_bytes(self) -> int:
        """What attribute 4 (size) must report and what attribute 3 (data) must return."""
        return self._struct.size

    @property
    def element_format(self) -> str:
        """The struct code of the data attribute without byte order, e.g. `12f` (12 REAL)."""
        return f"{self.elements}{ELEMENT_TYPES[self.element_type][0]}"

    @property
    def metrics(self) -> tuple[str, ...]:
        """Every metric this instance fills (scaled elements and status bits)."""
        return tuple(m for m, _ in self._plan) + tuple(m for m, _, _ in self._bit_plan)

    def unpack(self, payload: bytes) -> tuple[float, ...]:
        if len(payload) != self._struct.size:
            raise PayloadError(
                f"instance {self.instance}: payload is {len(payload)} bytes, expected {self._struct.size}"
            )
        return self._struct.unpack(payload)

    def decode(self, payload: bytes, out: dict[str, float]) -> list[str]:
        """Add this instance's metrics to `out`; return the metrics left out because an element was NaN."""
        values, nan = self.decoder.decode(self.unpack(payload))
        out.update(values)
        return nan

    def by_name(self, payload: bytes) -> dict[str, float]:
        """Every element (published or not) by register name: what the physics self-check reads."""
        return self.decoder.by_name(self.unpack(payload))

    def encode(self, raw: Mapping[str, float]) -> bytes:
        """Pack element values given by register name (missing ones are 0) — used by the simulator."""
        if self.element_type == "REAL":
            return self._struct.pack(*(float(raw.get(r.name, 0.0)) for r in self.registers))
        return self._struct.pack(*(int(raw.get(r.name, 0)) for r in self.registers))


@dataclass(frozen=True)
class ProductInfoElement:
    element: int  # numbered from 1, as in the manual's Table 9
    name: str
    meaning: str


@dataclass(frozen=True)
class ProductInfoMap:
    """Instance 100 (model, firmware): read once by the commissioning probe, never polled."""

    instance: int
    title: str
    element_type: str
    provenance: str
    elements: tuple[ProductInfoElement, ...]


@dataclass(frozen=True)
class RegisterMap:
    source: str
    assembly_class: int
    data_attribute: int
    size_attribute: int
    instances: Mapping[int, InstanceMap]  # the polled instances
    product_info: ProductInfoMap | None = None

    def decode(self, payloads: Mapping[int, bytes]) -> tuple[dict[str, float], list[str]]:
        """Decode one poll (payload per instance) into metric values and the metrics dropped as NaN."""
        values: dict[str, float] = {}
        nan: list[str] = []
        for instance, payload in payloads.items():
            nan += self.instances[instance].decode(payload, values)
        return values, nan

    def by_name(self, payloads: Mapping[int, bytes]) -> dict[str, float]:
        """One poll's elements by register name, across instances (input of the physics self-check)."""
        out: dict[str, float] = {}
        for instance, payload in payloads.items():
            out.update(self.instances[instance].by_name(payload))
        return out


def _fail(source: str, where: str, message: str) -> RegisterMapError:
    return RegisterMapError(f"{source}: {where}: {message}")


def _bits(source: str, where: str, raw: Any) -> tuple[tuple[int, str], ...]:
    if not isinstance(raw, dict) or not raw:
        raise _fail(source, where, "expected a mapping of bit number (0..15) -> metric")
    out = []
    for bit, metric in raw.items():
        if not isinstance(bit, int) or not 0 <= bit <= 15:
            raise _fail(source, f"{where}.{bit}", "bit number must be an integer 0..15")
        if metric not in METRICS_BY_NAME:
            raise _fail(source, f"{where}.{bit}", f"{metric!r} is not a metric in collector/metrics.py")
        out.append((bit, str(metric)))
    return tuple(out)


def _register(source: str, where: str, item: Any, element_size: int) -> Register:
    if not isinstance(item, dict):
        raise _fail(source, where, "expected a mapping with offset, name, metric, unit")
    unknown = set(item) - {"offset", "name", "metric", "unit", "scale", "provenance", "bits"}
    if unknown:
        raise _fail(source, where, f"unknown field(s) {sorted(unknown)}")
    name, offset, metric = item.get("name"), item.get("offset"), item.get("metric")
    if not isinstance(name, str) or not name:
        raise _fail(source, f"{where}.name", "required non-empty string")
    if not isinstance(offset, int) or offset < 0 or offset % element_size:
        raise _fail(source, f"{where}.offset", f"expected a byte offset, multiple of {element_size}")
    bits = _bits(source, f"{where}.bits", item["bits"]) if "bits" in item else ()
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
    return Register(name, offset, metric, str(unit), float(scale), item["provenance"], bits)


def _instance(source: str, number: Any, body: Any) -> InstanceMap:
    where = f"instances.{number}"
    if not isinstance(number, int) or not 1 <= number <= 0xFFFF:
        raise _fail(source, where, "instance number must be an integer 1..65535")
    if not isinstance(body, dict):
        raise _fail(source, where, "expected a mapping")
    elements = body.get("elements")
    if not isinstance(elements, int) or elements < 1:
        raise _fail(source, f"{where}.elements", "expected a positive integer")
    element_type = body.get("element_type", "REAL")
    if element_type not in ELEMENT_TYPES:
        raise _fail(source, f"{where}.element_type", f"expected one of {sorted(ELEMENT_TYPES)}")
    code, size = ELEMENT_TYPES[element_type]
    items = body.get("registers")
    if not isinstance(items, list):
        raise _fail(source, f"{where}.registers", "expected a list")
    registers = tuple(
        _register(source, f"{where}.registers[{i}]", item, size) for i, item in enumerate(items)
    )
    offsets = [r.offset for r in registers]
    expected = [i * size for i in range(elements)]
    if offsets != expected:
        raise _fail(
            source,
            f"{where}.registers",
            f"offsets must be {expected[0]}..{expected[-1]} step {size}, "
            f"one per element ({elements}), in order; got {offsets}",
        )
    if element_type != "REAL" and any(r.metric is not None for r in registers):
        raise _fail(source, f"{where}.registers", f"{element_type} elements publish through `bits` only")
    names = [r.name for r in registers]
    if len(set(names)) != len(names):
        raise _fail(source, f"{where}.registers", "register names must be unique")
    terms: dict[str, list[tuple[int, float]]] = {}
    for index, r in enumerate(registers):
        if r.metric is not None:
            terms.setdefault(r.metric, []).append((index, r.scale))
    plan = tuple((metric, tuple(t)) for metric, t in terms.items())
    bit_plan = tuple((metric, index, bit) for index, r in enumerate(registers) for bit, metric in r.bits)
    for key in ("title", "provenance"):
        if not isinstance(body.get(key), str) or not body[key]:
            raise _fail(source, f"{where}.{key}", "required non-empty string")
    return InstanceMap(
        number,
        body["title"],
        elements,
        body["provenance"],
        registers,
        struct.Struct(f"<{elements}{code}"),
        plan,
        element_type,
        bit_plan,
    )


def _product_info(source: str, body: Any) -> ProductInfoMap:
    where = "product_info"
    if not isinstance(body, dict):
        raise _fail(source, where, "expected a mapping")
    number = body.get("instance")
    if not isinstance(number, int) or not 1 <= number <= 0xFFFF:
        raise _fail(source, f"{where}.instance", "instance number must be an integer 1..65535")
    if body.get("element_type") not in ("UINT", "INT"):
        raise _fail(source, f"{where}.element_type", "expected UINT or INT")
    for key in ("title", "provenance"):
        if not isinstance(body.get(key), str) or not body[key]:
            raise _fail(source, f"{where}.{key}", "required non-empty string")
    items = body.get("elements")
    if not isinstance(items, list) or not items:
        raise _fail(source, f"{where}.elements", "expected a list of {element, name, meaning}")
    elements = []
    for i, item in enumerate(items):
        ok = isinstance(item, dict) and isinstance(item.get("element"), int) and item["element"] >= 1
        if not ok or not all(isinstance(item.get(k), str) and item[k] for k in ("name", "meaning")):
            raise _fail(source, f"{where}.elements[{i}]", "expected {element: >= 1, name, meaning}")
        elements.append(ProductInfoElement(item["element"], item["name"], item["meaning"]))
    return ProductInfoMap(number, body["title"], body["element_type"], body["provenance"], tuple(elements))


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
        for metric in dict.fromkeys(inst.metrics):
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
        _product_info(source, data["product_info"]) if "product_info" in data else None,
    )


def load_register_map(path: Path = DEFAULT_MAP) -> RegisterMap:
    data = read_yaml(path, "register map", error=RegisterMapError)
    return parse_register_map(data, str(path))


@cache
def register_map() -> RegisterMap:
    """The bundled map, loaded and validated once per process."""
    return load_register_map()
