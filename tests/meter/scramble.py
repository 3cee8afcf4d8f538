"""Wrong register orders on purpose: the bundled map with some elements' meaning moved to other offsets.

A scrambled map keeps every offset but moves the (name, metric, unit, scale, provenance) of the
registers, which is exactly what a wrong assumption in the YAML looks like. The orders below are the
plausible mistakes the physics self-check must flag.
"""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any

import yaml

from collector.registers import DEFAULT_MAP, RegisterMap, parse_register_map

LN = ["v_l1_n", "v_l2_n", "v_l3_n", "v_ln_system"]
LL = ["v_l1_l2", "v_l2_l3", "v_l3_l1", "v_ll_system"]
AMPS = ["a_l1", "a_l2", "a_l3", "a_system"]
KW = ["kw_l1", "kw_l2", "kw_l3", "kw_system"]
KVAR = ["kvar_l1", "kvar_l2", "kvar_l3", "kvar_system"]
KVA = ["kva_l1", "kva_l2", "kva_l3", "kva_system"]
PF = ["pf_l1", "pf_l2", "pf_l3", "pf_system"]
TAIL_102 = ["frequency", "phase_sequence"]
COUNTERS = [
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
PAIRS = [f"{c}_{half}" for c in COUNTERS for half in ("giga", "kilo")]


def _shift(names: list[str]) -> list[str]:
    """The map one element late: what it calls names[i] is really at offset i + 1."""
    return names[-1:] + names[:-1]


# name -> (instance, the register names in offset order as the WRONG map lists them)
WRONG_ORDERS: dict[str, tuple[int, list[str]]] = {
    "voltage and current blocks swapped": (101, AMPS + LL + LN),
    "L-L before L-N": (101, LL + LN + AMPS),
    "kW and kvar swapped": (102, KVAR + KW + KVA + PF + TAIL_102),
    "101 shifted by one element": (101, _shift(LN + LL + AMPS)),
    "102 shifted by one element": (102, _shift(KW + KVAR + KVA + PF + TAIL_102)),
    "107 shifted by one element": (107, _shift(PAIRS)),
    "energy pair halves swapped": (
        107,
        [f"{c}_{half}" for c in COUNTERS for half in ("kilo", "giga")],
    ),
    "energy total and partial halves swapped": (107, PAIRS[8:16] + PAIRS[:8] + PAIRS[16:]),
}


def bundled_data() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(DEFAULT_MAP.read_text())
    return data


def scrambled_data(instance: int, order: list[str]) -> dict[str, Any]:
    data = copy.deepcopy(bundled_data())
    registers = data["instances"][instance]["registers"]
    by_name = {r["name"]: r for r in registers}
    assert sorted(order) == sorted(by_name), "a scramble must use every register exactly once"
    data["instances"][instance]["registers"] = [
        {**by_name[name], "offset": r["offset"]} for name, r in zip(order, registers, strict=True)
    ]
    return data


def scrambled_map(instance: int, order: list[str]) -> RegisterMap:
    return parse_register_map(scrambled_data(instance, order), f"scrambled {instance}")


def write_scrambled(path: Path, instance: int, order: list[str]) -> Path:
    """The bundled map file with the register lines of `instance` moved, as an engineer would edit it:
    each line keeps its text, only the offsets stay where they were."""
    lines = DEFAULT_MAP.read_text().splitlines(keepends=True)
    pattern = re.compile(r"^(\s*- \{offset: )(\d+)(, name: )(\w+)(.*)$", re.S)
    start = lines.index(f"  {instance}:\n")
    indexes = [i for i in range(start, len(lines)) if pattern.match(lines[i])][: len(order)]
    matches = [m for i in indexes if (m := pattern.match(lines[i]))]
    by_name = {m.group(4): m for m in matches}
    for i, at, name in zip(indexes, matches, order, strict=True):
        m = by_name[name]
        lines[i] = f"{m.group(1)}{at.group(2)}{m.group(3)}{name}{m.group(5)}"
    path.write_text("".join(lines))
    parse_register_map(yaml.safe_load(path.read_text()), str(path))  # still a valid map
    return path
