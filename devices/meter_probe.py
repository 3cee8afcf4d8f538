"""Commissioning probe for one PowerMonitor 500: what the meter really serves, next to what the map says.

The element order inside instances 101, 102 and 107 is assumed. The engineer at the panel runs
`cli.py meter probe --host H`: it reads attribute 4 (size) and attribute 3 (data) of every Assembly
instance 100..108, decodes the product information (instance 100), lists every element as raw value
(index, offset, value) next to the register name, metric and unit the map gives it, and runs the
physics self-check (`collector.consistency`) on the map as loaded. Comparing the raw column with the
meter's front panel confirms or corrects the YAML.

`suggest` goes further: it tries the plausible orders of the known blocks (L-N, L-L, current; kW,
kvar, kVA, PF and the frequency; the (giga, kilo) energy pairs), each also shifted by one element,
keeps the order that breaks the fewest relations, and renders the change as a diff of the YAML file.
"""

from __future__ import annotations

import difflib
import itertools
import re
import struct
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from collector.consistency import Violation, check, failures
from collector.meter import CipStatusError, CommError, MeterDriver, PycommDriver
from collector.registers import ELEMENT_TYPES, RegisterMap
from devices.errors import DeviceError

PROBED_INSTANCES = tuple(range(100, 109))
DEFAULT_TIMEOUT_S = 5.0
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
                "verdict": "inconsistent" if self.violations else "consistent",
                "wiring": self.wiring,
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


# -- suggest -----------------------------------------------------------------------------------------

_PHASE_SUFFIXES = ("l1", "l2", "l3")


def _block(prefix: str, suffixes: Sequence[str], system: str) -> list[str]:
    return [f"{prefix}{s}" for s in suffixes] + [system]


KNOWN_BLOCKS: dict[int, list[list[str]]] = {
    101: [
        _block("v_", ("l1_n", "l2_n", "l3_n"), "v_ln_system"),
        _block("v_", ("l1_l2", "l2_l3", "l3_l1"), "v_ll_system"),
        _block("a_", _PHASE_SUFFIXES, "a_system"),
    ],
    102: [_block(f"{q}_", _PHASE_SUFFIXES, f"{q}_system") for q in ("kw", "kvar", "kva", "pf")],
}
TAIL_102 = ["frequency", "phase_sequence"]
ENERGY_COUNTERS = [
    "total_kwh_import",
    "total_kvarh_import",
    "total_kwh_export",
    "total_kvarh_export",
    "partial_kwh_import",
    "partial_kvarh_import",
    "partial_kwh_export",
    "partial_kvarh_export",
    "hours_counter",
]


def _system_first(block: list[str]) -> list[str]:
    return block[-1:] + block[:-1]


def _candidates_101() -> Iterator[list[str]]:
    for order in itertools.permutations(KNOWN_BLOCKS[101]):
        for system_first in (False, True):
            yield [n for b in order for n in (_system_first(b) if system_first else b)]


def _candidates_102() -> Iterator[list[str]]:
    tails = [TAIL_102, TAIL_102[::-1]]
    for order in itertools.permutations(KNOWN_BLOCKS[102]):
        for system_first in (False, True):
            body = [n for b in order for n in (_system_first(b) if system_first else b)]
            for tail in tails:
                yield body + tail
                yield tail + body


def _candidates_107() -> Iterator[list[str]]:
    for halves in (("giga", "kilo"), ("kilo", "giga")):
        yield [f"{c}_{h}" for c in ENERGY_COUNTERS for h in halves]  # pairs side by side
        yield [f"{c}_{h}" for h in halves for c in ENERGY_COUNTERS]  # all first halves, then the others


CANDIDATES: dict[int, Callable[[], Iterator[list[str]]]] = {
    101: _candidates_101,
    102: _candidates_102,
    107: _candidates_107,
}


def _shifted(order: list[str]) -> Iterator[list[str]]:
    yield order
    yield order[1:] + order[:1]
    yield order[-1:] + order[:-1]


@dataclass
class Suggestion:
    orders: dict[int, list[str]]  # instance -> register names in offset order (only changed instances)
    violations_before: int
    violations_after: list[Violation]
    ties: dict[int, int]  # instance -> how many orders scored as well as the chosen one (1 = unique)
    skipped: dict[int, str]  # instance -> why it was not searched
    diff: str

    def as_dict(self) -> dict[str, Any]:
        return {
            "orders": {str(k): v for k, v in self.orders.items()},
            "failures_before": self.violations_before,
            "violations_after": [{"relation": v.relation, "detail": v.detail} for v in self.violations_after],
            "ties": {str(k): v for k, v in self.ties.items()},
            "skipped": {str(k): v for k, v in self.skipped.items()},
            "diff": self.diff,
        }


def suggest(report: ProbeReport, regmap: RegisterMap, map_path: Path) -> Suggestion:
    """The block order per instance that breaks the fewest relations (coordinate descent, 2 rounds)."""
    raw = {n: regmap.instances[n].unpack(p) for n, p in report.payloads.items()}
    current = {n: [r.name for r in regmap.instances[n].registers] for n in raw}
    orders = {n: list(o) for n, o in current.items()}
    skipped: dict[int, str] = {}
    for number, make in CANDIDATES.items():
        if number not in raw:
            skipped[number] = "not read with a matching size"
        elif sorted(current[number]) != sorted(next(make())):
            skipped[number] = "its register names are not the known blocks"

    def score(candidate: dict[int, list[str]]) -> int:
        values = {name: float(raw[n][i]) for n, names in candidate.items() for i, name in enumerate(names)}
        return failures(values, report.wiring)

    before = score(orders)
    ties: dict[int, int] = {}
    for _ in range(2):
        for number, make in CANDIDATES.items():
            if number in skipped:
                continue
            options = [orders[number]] + [s for c in make() for s in _shifted(c)]
            scored = [(score({**orders, number: o}), o) for o in options]
            best = min(s for s, _ in scored)
            orders[number] = next(o for s, o in scored if s == best)
            ties[number] = len({tuple(o) for s, o in scored if s == best})
    changed = {n: o for n, o in orders.items() if o != current[n]}
    values = {name: float(raw[n][i]) for n, names in orders.items() for i, name in enumerate(names)}
    return Suggestion(
        changed, before, check(values, report.wiring), ties, skipped, yaml_diff(map_path, changed)
    )


_REGISTER_LINE = re.compile(r"^(\s*- \{offset: )(\d+)(, name: )([A-Za-z0-9_]+)(.*)$")
_INSTANCE_LINE = re.compile(r"^  (\d+):\s*$")


def yaml_diff(map_path: Path, orders: dict[int, list[str]]) -> str:
    """The change to the map file that gives each instance in `orders` that register order: each
    register line keeps its text (metric, unit, scale, provenance) and moves to its new offset."""
    lines = map_path.read_text().splitlines(keepends=True)
    sections: dict[int, list[int]] = {}  # instance -> indexes of its register lines
    instance: int | None = None
    for i, line in enumerate(lines):
        if header := _INSTANCE_LINE.match(line):
            instance = int(header.group(1))
        elif instance is not None and _REGISTER_LINE.match(line):
            sections.setdefault(instance, []).append(i)
    new = list(lines)
    for number, order in orders.items():
        indexes = sections.get(number, [])
        matches = [m for i in indexes if (m := _REGISTER_LINE.match(lines[i].rstrip("\n")))]
        by_name = {m.group(4): m for m in matches}
        if sorted(by_name) != sorted(order):
            return _registers_block(map_path, orders)
        for i, at, name in zip(indexes, matches, order, strict=True):
            m = by_name[name]
            new[i] = f"{m.group(1)}{at.group(2)}{m.group(3)}{name}{m.group(5)}\n"
    return "".join(difflib.unified_diff(lines, new, str(map_path), f"{map_path} (suggested)"))


def _registers_block(map_path: Path, orders: dict[int, list[str]]) -> str:
    """For a map file not written one register per line: the new `registers:` lists to paste."""
    data = yaml.safe_load(map_path.read_text())
    out = [f"# {map_path}: replace these instances' registers with"]
    for number, order in orders.items():
        registers = data["instances"][number]["registers"]
        by_name = {r["name"]: r for r in registers}
        moved = [{**by_name[name], "offset": r["offset"]} for name, r in zip(order, registers, strict=True)]
        out.append(yaml.safe_dump({"instances": {number: {"registers": moved}}}, sort_keys=False))
    return "\n".join(out)


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
    if report.violations:
        out.append(f"register map consistency ({report.wiring}): INCONSISTENT")
        out += [f"  - {v.relation}: {v.detail}" for v in report.violations]
    else:
        out.append(f"register map consistency ({report.wiring}): consistent")
    return out


def describe_suggestion(s: Suggestion) -> list[str]:
    out = [f"suggest: {s.violations_before} failed comparisons with the map as it is"]
    out += [f"  instance {n} not searched: {why}" for n, why in s.skipped.items()]
    if not s.orders:
        out.append("  no block order does better than the current map: no change suggested")
        return out
    after = ", ".join(v.relation for v in s.violations_after) or "none"
    out.append(f"  with the suggested order, relations still broken: {after}")
    for number, count in s.ties.items():
        if count > 1 and number in s.orders:
            out.append(
                f"  ! instance {number}: {count} orders fit equally well (too little load?); "
                "check against the front panel before applying"
            )
    out.append(s.diff.rstrip("\n"))
    return out
