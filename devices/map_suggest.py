"""`cli.py meters probe --suggest`: the register order that satisfies the physics best, as a YAML diff.

It tries the plausible orders of the known blocks of each instance (101: L-N, L-L and current blocks
in any order, system value last or first; 102: kW, kvar, kVA and PF blocks in any order, system value
last or first, frequency and phase sequence at either end; 107: the (giga, kilo) pairs side by side
or in two halves, either half first), each also shifted by one element either way. Candidates are
scored with `collector.consistency.failures` on the elements the probe read (coordinate descent over
the instances, two rounds, because `kVA = V x I` ties 101 to 102); the current map wins ties, so a
right map is never "corrected". The result is a diff of the map file in which every register line
keeps its text and moves to its new offset.
"""

from __future__ import annotations

import difflib
import itertools
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from collector.consistency import Violation, check, failures
from collector.registers import RegisterMap
from devices.meter_probe import ProbeReport

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
