"""Physics self-check of the register map: does what we decode look like a real three-phase meter?

The element order inside instances 101, 102 and 107 is assumed (see `pm500_registers.yaml`). A map in
the wrong order does not fail to decode: it publishes a line voltage of 60 V or a current of 277 A,
and nothing downstream would notice. But any real meter's values obey relations that a wrong order
breaks, usually several at once. This module checks them on the elements *as the loaded map names
them* (register names, so unpublished counters are checked too):

| relation | what must hold |
|---|---|
| `frequency_range` | 45 Hz <= frequency <= 65 Hz |
| `currents_non_negative` | every current >= 0 |
| `voltages_non_negative` | every voltage >= 0 |
| `line_to_line_is_sqrt3_line_to_neutral` | V(L1-L2) = sqrt(3) x mean(V(L1-N), V(L2-N)), ... (4-wire only) |
| `averages_match_phases` | system L-N (4-wire), L-L and current = mean of the three phases |
| `totals_match_phases` | system kW, kvar, kVA = sum of the three phases (4-wire only) |
| `apparent_power_triangle` | kVA^2 = kW^2 + kvar^2 (system; per phase on 4-wire) |
| `power_factor_is_kw_over_kva` | abs(PF) = abs(kW) / kVA and abs(PF) <= 1 (system; per phase on 4-wire) |
| `apparent_power_is_v_times_i` | kVA(Lx) = V(Lx-N) x I(Lx) / 1000 (4-wire only) |
| `energy_pairs_well_formed` | each (giga, kilo) counter pair: giga a whole number >= 0, 0 <= kilo <= 1e6 |
| `partial_energy_within_total` | each partial counter <= its total counter |
| `energy_never_decreases` | total counters and the hours counter never go down between checks |

On a 3-wire system (no neutral) the meter has no line-to-neutral voltages and no per-phase powers, so
the relations built on them are skipped (`wiring: 3-wire` in the meter's config): a 3-wire meter is not
a false alarm. A 4-wire meter whose L-N voltages read 0 while L-L voltages are present is flagged with
that hint. Relations whose registers the map does not name are skipped, and so are relations on NaN
(the poller reports NaN separately) or infinite elements. Tolerances are loose (a few %) on purpose:
the point is to catch a wrong *order*, which is off by factors, not to grade the meter's accuracy.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, get_args

SQRT3 = math.sqrt(3)
Wiring = Literal["4-wire", "3-wire"]  # the meter's electrical system: with or without neutral
WIRINGS: tuple[str, ...] = get_args(Wiring)
PHASES = ("l1", "l2", "l3")
LINE_PAIRS = (("l1", "l2"), ("l2", "l3"), ("l3", "l1"))
MIN_VOLTAGE_V = 10.0  # below this an input is taken as not connected
MIN_KVA = 0.1  # below this PF and the power triangle are not decidable
ENERGY_KINDS = ("kwh_import", "kvarh_import", "kwh_export", "kvarh_export")
GIGA = 1_000_000.0

RELATIONS: dict[str, str] = {
    "frequency_range": "frequency between 45 and 65 Hz",
    "currents_non_negative": "currents >= 0",
    "voltages_non_negative": "voltages >= 0",
    "line_to_line_is_sqrt3_line_to_neutral": "L-L = sqrt(3) x L-N (4-wire)",
    "averages_match_phases": "system averages = mean of the phases",
    "totals_match_phases": "system kW/kvar/kVA = sum of the phases (4-wire)",
    "apparent_power_triangle": "kVA^2 = kW^2 + kvar^2",
    "power_factor_is_kw_over_kva": "|PF| = |kW| / kVA <= 1",
    "apparent_power_is_v_times_i": "kVA = V(L-N) x I (4-wire)",
    "energy_pairs_well_formed": "energy (giga, kilo) pairs: giga whole >= 0, 0 <= kilo <= 1e6",
    "partial_energy_within_total": "partial energy counters <= total counters",
    "energy_never_decreases": "total energy and hours counters never decrease",
}


@dataclass(frozen=True)
class Violation:
    relation: str  # a key of RELATIONS
    detail: str  # the values that broke it, e.g. "V(L1-L2) 277.0 V vs sqrt(3) x L-N 160.0 V = 277.1 V"


def _near(a: float, b: float, rel: float, absolute: float) -> bool:
    return abs(a - b) <= rel * max(abs(a), abs(b)) + absolute


class _Checker:
    """One evaluation over one poll's elements; relations whose inputs are missing are skipped."""

    def __init__(self, values: Mapping[str, float], four_wire: bool) -> None:
        self.v = {k: x for k, x in values.items() if math.isfinite(x)}
        self.four_wire = four_wire
        self.found: list[Violation] = []

    def has(self, *names: str) -> bool:
        return all(n in self.v for n in names)

    def fail(self, relation: str, detail: str) -> None:
        self.found.append(Violation(relation, detail))

    def run(self) -> list[Violation]:
        for check in (
            self.frequency,
            self.signs,
            self.line_to_line,
            self.averages,
            self.totals,
            self.power_triangle,
            self.power_factor,
            self.v_times_i,
            self.energy,
        ):
            check()
        # one entry per relation (the first detail), in table order
        first: dict[str, Violation] = {}
        for found in self.found:
            first.setdefault(found.relation, found)
        return [first[r] for r in RELATIONS if r in first]

    def frequency(self) -> None:
        if self.has("frequency") and not 45.0 <= self.v["frequency"] <= 65.0:
            self.fail("frequency_range", f"frequency {self.v['frequency']:g} Hz")

    def signs(self) -> None:
        for name in (*(f"a_{p}" for p in PHASES), "a_system"):
            if self.has(name) and self.v[name] < 0:
                self.fail("currents_non_negative", f"{name} {self.v[name]:g} A")
        voltages = [f"v_{p}_n" for p in PHASES] + [f"v_{a}_{b}" for a, b in LINE_PAIRS]
        for name in (*voltages, "v_ln_system", "v_ll_system"):
            if self.has(name) and self.v[name] < 0:
                self.fail("voltages_non_negative", f"{name} {self.v[name]:g} V")

    def line_to_line(self) -> None:
        if not self.four_wire:
            return
        for a, b in LINE_PAIRS:
            ll, an, bn = f"v_{a}_{b}", f"v_{a}_n", f"v_{b}_n"
            if not self.has(ll, an, bn):
                continue
            ln = (self.v[an] + self.v[bn]) / 2
            if ln < MIN_VOLTAGE_V <= self.v[ll]:
                self.fail(
                    "line_to_line_is_sqrt3_line_to_neutral",
                    f"{ll} {self.v[ll]:g} V but L-N {ln:g} V: no neutral? "
                    "if the meter is on a 3-wire system set the meter's wiring to 3-wire",
                )
            elif ln >= MIN_VOLTAGE_V and not _near(self.v[ll], SQRT3 * ln, 0.05, 0.0):
                self.fail(
                    "line_to_line_is_sqrt3_line_to_neutral",
                    f"{ll} {self.v[ll]:g} V vs sqrt(3) x mean({an}, {bn}) = {SQRT3 * ln:g} V",
                )

    def averages(self) -> None:
        groups = [
            ("v_ll_system", [f"v_{a}_{b}" for a, b in LINE_PAIRS]),
            ("a_system", [f"a_{p}" for p in PHASES]),
        ]
        if self.four_wire:
            groups.insert(0, ("v_ln_system", [f"v_{p}_n" for p in PHASES]))
        for system, phases in groups:
            if self.has(system, *phases):
                mean = sum(self.v[p] for p in phases) / 3
                if not _near(self.v[system], mean, 0.03, 0.5):
                    self.fail(
                        "averages_match_phases", f"{system} {self.v[system]:g} vs mean of phases {mean:g}"
                    )

    def totals(self) -> None:
        if not self.four_wire:
            return
        for quantity, rel in (("kw", 0.03), ("kvar", 0.03), ("kva", 0.05)):
            system, phases = f"{quantity}_system", [f"{quantity}_{p}" for p in PHASES]
            if self.has(system, *phases):
                total = sum(self.v[p] for p in phases)
                scale = self.v.get("kva_system", 0.0)
                if (
                    abs(self.v[system] - total)
                    > rel * max(abs(self.v[system]), abs(total), abs(scale)) + 0.05
                ):
                    self.fail(
                        "totals_match_phases", f"{system} {self.v[system]:g} vs sum of phases {total:g}"
                    )

    def _power_suffixes(self) -> list[str]:
        return ["system", *PHASES] if self.four_wire else ["system"]

    def power_triangle(self) -> None:
        for s in self._power_suffixes():
            kw, kvar, kva = f"kw_{s}", f"kvar_{s}", f"kva_{s}"
            if self.has(kw, kvar, kva):
                vector = math.hypot(self.v[kw], self.v[kvar])
                if not _near(self.v[kva], vector, 0.05, 0.05):
                    self.fail(
                        "apparent_power_triangle",
                        f"{kva} {self.v[kva]:g} vs sqrt({kw}^2 + {kvar}^2) = {vector:g}",
                    )

    def power_factor(self) -> None:
        for s in self._power_suffixes():
            pf, kw, kva = f"pf_{s}", f"kw_{s}", f"kva_{s}"
            if not self.has(pf):
                continue
            if abs(self.v[pf]) > 1.01:
                self.fail("power_factor_is_kw_over_kva", f"|{pf}| {abs(self.v[pf]):g} > 1")
            elif self.has(kw, kva) and self.v[kva] >= MIN_KVA:
                ratio = abs(self.v[kw]) / self.v[kva]
                if abs(abs(self.v[pf]) - ratio) > 0.05:
                    self.fail(
                        "power_factor_is_kw_over_kva", f"{pf} {self.v[pf]:g} vs |{kw}| / {kva} = {ratio:g}"
                    )

    def v_times_i(self) -> None:
        if not self.four_wire:
            return
        for p in PHASES:
            kva, v, a = f"kva_{p}", f"v_{p}_n", f"a_{p}"
            if self.has(kva, v, a) and self.v[v] >= MIN_VOLTAGE_V:
                product = self.v[v] * self.v[a] / 1000
                if not _near(self.v[kva], product, 0.05, 0.05):
                    self.fail(
                        "apparent_power_is_v_times_i",
                        f"{kva} {self.v[kva]:g} vs {v} x {a} / 1000 = {product:g}",
                    )

    def energy(self) -> None:
        for prefix in counter_prefixes(self.v):
            giga, kilo = self.v[f"{prefix}_giga"], self.v[f"{prefix}_kilo"]
            if giga < 0 or giga != math.floor(giga) or not 0 <= kilo <= GIGA:
                self.fail("energy_pairs_well_formed", f"{prefix}: giga {giga:g}, kilo {kilo:g}")
        counters = counter_values(self.v)
        for kind in ENERGY_KINDS:
            total, partial = counters.get(f"total_{kind}"), counters.get(f"partial_{kind}")
            if total is not None and partial is not None and partial > total + 0.5:
                self.fail(
                    "partial_energy_within_total", f"partial_{kind} {partial:g} > total_{kind} {total:g}"
                )


def counter_prefixes(values: Mapping[str, float]) -> list[str]:
    """Counters stored as (giga, kilo) pairs, by the prefix of their register names."""
    return sorted(n[:-5] for n in values if n.endswith("_giga") and n[:-5] + "_kilo" in values)


def counter_values(values: Mapping[str, float]) -> dict[str, float]:
    """Each (giga, kilo) counter combined: giga x 1e6 + kilo."""
    return {p: values[p + "_giga"] * GIGA + values[p + "_kilo"] for p in counter_prefixes(values)}


def _monotonic(previous: Mapping[str, float], current: Mapping[str, float]) -> list[Violation]:
    """Total counters and the hours counter never decrease (partial counters may be reset by hand)."""
    found = []
    for name, value in current.items():
        if not (name.startswith("total_") or name.startswith("hours")):
            continue
        before = previous.get(name)
        if before is None or not math.isfinite(value) or not math.isfinite(before):
            continue
        if value < before - max(0.1, 1e-6 * abs(before)):
            found.append(Violation("energy_never_decreases", f"{name} went from {before:g} to {value:g}"))
    return found[:1]


def _checker(values: Mapping[str, float], wiring: str) -> _Checker:
    if wiring not in WIRINGS:
        raise ValueError(f"wiring must be one of {list(WIRINGS)}, got {wiring!r}")
    return _Checker(values, four_wire=wiring == "4-wire")


def check(values: Mapping[str, float], wiring: str = "4-wire") -> list[Violation]:
    """The relations broken by one poll's elements (by register name), in RELATIONS order."""
    return _checker(values, wiring).run()


def failures(values: Mapping[str, float], wiring: str = "4-wire") -> int:
    """How many individual comparisons fail: finer than `check` (which names each relation once),
    so it ranks two wrong orders; `cli.py meters probe --suggest` minimises it."""
    checker = _checker(values, wiring)
    checker.run()
    return len(checker.found)


@dataclass
class Verdict:
    """The register map consistency verdict of one meter, as /health, DBIRTH and the log show it."""

    state: str = "unchecked"  # unchecked | consistent | inconsistent
    violations: tuple[Violation, ...] = ()
    wiring: str = "4-wire"
    checks: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {
            "verdict": self.state,
            "violations": [{"relation": v.relation, "detail": v.detail} for v in self.violations],
            "wiring": self.wiring,
            "checks": self.checks,
        }

    def summary(self) -> str:
        if self.state != "inconsistent":
            return self.state
        return "inconsistent: " + "; ".join(f"{v.relation} ({v.detail})" for v in self.violations)


@dataclass
class ConsistencyMonitor:
    """Checks every poll of one meter; a relation is reported as soon as it breaks, and cleared only
    after `clear_after` consecutive good polls, so a load step between two reads cannot make the
    verdict (and the log) flap."""

    wiring: str = "4-wire"
    clear_after: int = 5
    verdict: Verdict = field(init=False)
    _active: dict[str, Violation] = field(default_factory=dict, init=False)
    _good_streak: dict[str, int] = field(default_factory=dict, init=False)
    _counters: dict[str, float] = field(default_factory=dict, init=False)

    def __post_init__(self) -> None:
        if self.wiring not in WIRINGS:
            raise ValueError(f"wiring must be one of {list(WIRINGS)}, got {self.wiring!r}")
        self.verdict = Verdict(wiring=self.wiring)

    def observe(self, values: Mapping[str, float]) -> bool:
        """Check one poll; returns True when the verdict (state or the set of relations) changed."""
        found = {v.relation: v for v in check(values, self.wiring)}
        counters = counter_values(values)
        for v in _monotonic(self._counters, counters):
            found.setdefault(v.relation, v)
        self._counters = counters
        for relation, violation in found.items():
            self._active[relation] = violation
            self._good_streak[relation] = 0
        for relation in list(self._active):
            if relation not in found:
                self._good_streak[relation] = self._good_streak.get(relation, 0) + 1
                if self._good_streak[relation] >= self.clear_after:
                    del self._active[relation]
        before = (self.verdict.state, tuple(v.relation for v in self.verdict.violations))
        violations = tuple(self._active[r] for r in RELATIONS if r in self._active)
        state = "inconsistent" if violations else "consistent"
        self.verdict = Verdict(state, violations, self.wiring, self.verdict.checks + 1)
        return before != (state, tuple(v.relation for v in violations))
