"""Commissioning probe for one PowerMonitor 500: what the meter really serves, next to what the map says.

The element order inside instances 101, 102 and 107 is assumed. The engineer at the panel runs
`cli.py meters probe --host H`: it reads attribute 4 (size) and attribute 3 (data) of every Assembly
instance 100..108, decodes the product information (instance 100), lists every element as raw value
(index, offset, value) next to the register name, metric and unit the map gives it, and runs the
physics self-check (`collector.consistency`) on the map as loaded. Comparing the raw column with the
meter's front panel confirms or corrects the YAML.

`devices.map_suggest` goes further, from the same report: the block order that satisfies the physics
best, as a change of the YAML file.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from typing import Any

from collector.consistency import Violation, check
from collector.meter import CipStatusError, CommError, MeterDriver, PycommDriver
from collector.registers import ELEMENT_TYPES, RegisterMap
from devices.errors import DeviceError

PROBED_INSTANCES = tuple(range(100, 109))
DEFAULT_TIMEOUT_S = 5.0
# `cli.py meters probe` exit code when an instance of the map could not be checked (docs/meter.md).
EXIT_INCOMPLETE = 3
# Elements of the instances the map does not poll (103-106: max and demand values) are REAL.
UNMAPPED_TYPE = "REAL"


@dataclass
class Element:
    index: int
    offset: int
    raw: float
    register: str | None = None
    metric: str | None = None
    unit: str | None = None


@dataclass
class InstanceReport:
    instance: int
    title: str
    size_bytes: int | None = None  # attribute 4 as the meter reports it
    expected_bytes: int | None = None  # what the map expects (None: not in the map)
    element_type: str = UNMAPPED_TYPE
    elements: list[Element] = field(default_factory=list)
    error: str | None = None  # e.g. a CIP status: the meter does not have this instance

    @property
    def matches_map(self) -> bool:
        return self.expected_bytes is not None and self.size_bytes == self.expected_bytes and not self.error


@dataclass
class ProbeReport:
    host: str
    port: int
    product: dict[str, Any]
    instances: list[InstanceReport]
    wiring: str
    violations: list[Violation]
    payloads: dict[int, bytes]  # data of the instances whose size matches the map (input of `suggest`)

    @property
    def unchecked(self) -> list[int]:
        """Instances of the map whose data could not be decoded with it (size mismatch, CIP error): the
        self-check says nothing about them, so the verdict must not read as if it did."""
        return [i.instance for i in self.instances if i.expected_bytes is not None and not i.matches_map]

    @property
    def verdict(self) -> str:
        if self.violations:
            return "inconsistent"
        return "incomplete" if self.unchecked else "consistent"

    @property
    def exit_code(self) -> int:
        """0 when every mapped instance was checked; EXIT_INCOMPLETE otherwise (the last line says which)."""
        return EXIT_INCOMPLETE if self.unchecked else 0

    def as_dict(self) -> dict[str, Any]:
        return {
            "host": self.host,
            "port": self.port,
            "product": self.product,
            "instances": [
                {
                    "instance": i.instance,
                    "title": i.title,
                    "size_bytes": i.size_bytes,
                    "expected_bytes": i.expected_bytes,
                    "element_type": i.element_type,
                    "error": i.error,
                    "elements": [vars(e) for e in i.elements],
                }
                for i in self.instances
            ],
            "register_map": {
                "verdict": self.verdict,
                "wiring": self.wiring,
                "unchecked": self.unchecked,
                "violations": [{"relation": v.relation, "detail": v.detail} for v in self.violations],
            },
        }


def connect(host: str, port: int, timeout_s: float = DEFAULT_TIMEOUT_S) -> MeterDriver:
    try:
        return PycommDriver(host, port, timeout_s)
    except CommError as e:
        raise DeviceError(f"meter {host}:{port}: {e}") from None


def probe(
    driver: MeterDriver, regmap: RegisterMap, host: str, port: int, wiring: str = "4-wire"
) -> ProbeReport:
    """Read instances 100..108 (size, then data) and check the map's physics on what was read."""
    reports, payloads = [], {}
    product: dict[str, Any] = {}
    for number in PROBED_INSTANCES:
        report, data = _read_instance(driver, regmap, number, host, port)
        reports.append(report)
        if data is not None and report.matches_map:
            payloads[number] = data
        if regmap.product_info is not None and number == regmap.product_info.instance and data is not None:
            product = product_info(data)
    violations = check(regmap.by_name(payloads), wiring) if payloads else []
    return ProbeReport(host, port, product, reports, wiring, violations, payloads)


def _read_instance(
    driver: MeterDriver, regmap: RegisterMap, number: int, host: str, port: int
) -> tuple[InstanceReport, bytes | None]:
    mapped = regmap.instances.get(number)
    info = regmap.product_info if regmap.product_info and regmap.product_info.instance == number else None
    title = mapped.title if mapped else info.title if info else "(not in the register map)"
    report = InstanceReport(number, title)
    if mapped is not None:
        report.expected_bytes, report.element_type = mapped.size_bytes, mapped.element_type
    elif info is not None:
        report.element_type = info.element_type
    try:
        size = driver.read_attribute(number, regmap.size_attribute)
        report.size_bytes = int.from_bytes(size[:2], "little") if len(size) >= 2 else None
        data = driver.read_attribute(number, regmap.data_attribute)
    except CipStatusError as e:
        report.error = str(e)
        return report, None
    except CommError as e:
        raise DeviceError(f"meter {host}:{port}: {e}") from None
    code, width = ELEMENT_TYPES[report.element_type]
    count = len(data) // width
    values = struct.unpack(f"<{count}{code}", data[: count * width])
    registers = mapped.registers if mapped is not None and report.matches_map else ()
    info_names = {e.element - 1: e.name for e in info.elements} if info is not None else {}
    for index, value in enumerate(values):
        element = Element(index, index * width, float(value))
        if index in info_names:  # Table 9 numbers the product information elements from 1
            element.register = f"element {index + 1}: {info_names[index]}"
        if index < len(registers):
            r = registers[index]
            bits = ", ".join(f"bit {b}: {m}" for b, m in r.bits)
            element.register, element.metric, element.unit = r.name, r.metric or bits or None, r.unit
        report.elements.append(element)
    if mapped is not None and not report.matches_map:
        report.error = (
            f"size {report.size_bytes} bytes, the register map expects {mapped.size_bytes} "
            f"({mapped.elements} {mapped.element_type}): not decoded with the map"
        )
    return report, data


def product_info(data: bytes) -> dict[str, Any]:
    """Instance 100 (1420-UM001E Table 9): elements numbered from 1, UINT, ASCII pairs MSB first."""
    words = struct.unpack(f"<{len(data) // 2}H", data[: len(data) // 2 * 2])
    if len(words) < 3:
        return {"raw": list(words)}
    model_code = chr(words[0] >> 8) if 0x20 < words[0] >> 8 < 0x7F else f"0x{words[0] >> 8:02x}"
    name = "".join(chr(c) for w in words[3:10] for c in (w >> 8, w & 0xFF) if 0x20 <= c < 0x7F).strip()
    return {
        "model_code": model_code,
        "model": {"A": "V2", "B": "V1"}.get(model_code, "unknown"),
        "base_firmware_revision": words[0] & 0xFF,
        "enip_firmware": f"0x{words[1]:04x}",
        "analog_output_firmware": f"0x{words[2]:04x}",
        "product_name": name,
        "elements": len(words),
    }


# -- text output ---------------------------------------------------------------------------------------


def describe(report: ProbeReport) -> list[str]:
    """The probe as the engineer reads it at the panel: product, every element, the verdict."""
    out = [f"meter {report.host}:{report.port}"]
    p = report.product
    if p.get("product_name") is not None:
        out.append(
            f"product: {p['product_name']!r}, model code {p['model_code']} ({p['model']}), base firmware "
            f"revision {p['base_firmware_revision']}, EtherNet/IP firmware {p['enip_firmware']}, "
            f"analog output firmware {p['analog_output_firmware']} ({p['elements']} UINT)"
        )
    for inst in report.instances:
        size = f"{inst.size_bytes} bytes" if inst.size_bytes is not None else "size unknown"
        expected = f", map expects {inst.expected_bytes}" if inst.expected_bytes is not None else ""
        out.append(f"instance {inst.instance} {inst.title}: {size}{expected}")
        if inst.error:
            out.append(f"  ! {inst.error}")
        for e in inst.elements:
            mapped = (
                f"{e.register} -> {e.metric or '(not published)'} [{e.unit or '-'}]" if e.register else ""
            )
            out.append(f"  [{e.index:2d}] +{e.offset:<3d} {e.raw:>16.6g}  {mapped}".rstrip())
    unchecked = ", ".join(str(n) for n in report.unchecked)
    not_checked = f"instance{'s' if len(report.unchecked) > 1 else ''} {unchecked} not checked"
    if report.violations:
        out.append(f"register map consistency ({report.wiring}): INCONSISTENT")
        out += [f"  - {v.relation}: {v.detail}" for v in report.violations]
        if report.unchecked:
            out.append(f"  ({not_checked})")
    elif report.unchecked:
        out.append(f"register map consistency ({report.wiring}): INCOMPLETE: {not_checked}")
    else:
        out.append(f"register map consistency ({report.wiring}): consistent")
    return out
