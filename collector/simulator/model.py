"""Plausible, slowly changing electrical values for one simulated PM500 (480Y/277 V, 60 Hz).

Values are a pure function of the meter's index and time, except energy, which integrates real
power so it only ever increases. They are produced per register *name* of the shared register map,
so the simulator and the collector cannot disagree on the layout.

The values are physically consistent, because the collector's register-map self-check
(`collector.consistency`) tests exactly that: L-L = sqrt(3) x L-N for 120-degree phases, kVA = V x I,
kW = kVA x PF, kvar = sqrt(kVA^2 - kW^2), system values = sums/averages of the phases, partial
counters <= total counters. A meter wired 3-wire (no neutral) serves no L-N voltages and no per-phase
powers, like a meter whose electrical system setting has no neutral. Alarms and output ports
(instance 108) are set from the control API; instance 100 carries product information.
"""

from __future__ import annotations

import math
import threading
import time

from collector.registers import RegisterMap

_PHASES = (0.0, 2 * math.pi / 3, 4 * math.pi / 3)
WIRINGS = ("4-wire", "3-wire")
# Instance 100 as the simulator serves it (10 UINT, 1420-UM001E Table 9): model code "A" (V2)
# firmware 1.12, EtherNet/IP module 2.03, no analog output module, product name in ASCII pairs.
PRODUCT_NAME = "PM500 EtherNet"
PRODUCT_INFO = (
    ord("A") << 8 | 12,
    2 << 8 | 3,
    0,
    *(ord(PRODUCT_NAME[i]) << 8 | ord(PRODUCT_NAME[i + 1]) for i in range(0, 14, 2)),
)
_PER_PHASE_POWER = ("kw", "kvar", "kva", "pf")


class MeterModel:
    def __init__(self, index: int, regmap: RegisterMap) -> None:
        self.index = index
        self._regmap = regmap
        self._lock = threading.Lock()
        self._started = time.monotonic()
        self._last = self._started
        self._seed = index * 0.7
        self._base_current = 60.0 + (index * 37) % 140  # 60..199 A per phase
        self._import_kwh = 1_234_567.25 + 1_000.0 * index  # crosses a giga boundary: exercises the pair split
        self._export_kwh = 12.5 + index
        self._partial_reset_kwh = self._import_kwh - 4_321.5  # partial counters were reset 4321.5 kWh ago
        self._frozen: dict[str, float] | None = None
        self.wiring = WIRINGS[0]
        self.alarms: set[int] = set()  # active virtual alarms 1..4
        self.outputs: set[int] = set()  # output ports 1..2 that are on

    def set_wiring(self, wiring: str) -> None:
        if wiring not in WIRINGS:
            raise ValueError(f"wiring must be one of {list(WIRINGS)}, got {wiring!r}")
        with self._lock:
            self.wiring = wiring

    def set_status(self, alarms: list[int], outputs: list[int]) -> None:
        """Instance 108: which virtual alarms (1..4) are active and which output ports (1..2) are on."""
        if not set(alarms) <= {1, 2, 3, 4} or not set(outputs) <= {1, 2}:
            raise ValueError(f"alarms must be within 1..4 and outputs within 1..2, got {alarms}, {outputs}")
        with self._lock:
            self.alarms, self.outputs = set(alarms), set(outputs)

    def freeze(self, frozen: bool) -> None:
        """Frozen: every read returns the same values (tests compare them with `registers()`)."""
        with self._lock:
            self._frozen = self._compute() if frozen else None

    def registers(self) -> dict[str, float]:
        """Current value of every register, by register name."""
        with self._lock:
            values = dict(self._frozen) if self._frozen is not None else self._compute()
            values["virtual_alarms"] = float(sum(1 << (n - 1) for n in self.alarms))
            values["output_status"] = float(sum(1 << (n - 1) for n in self.outputs))
            return values

    def payloads(self) -> dict[int, bytes]:
        raw = self.registers()
        return {n: inst.encode(raw) for n, inst in self._regmap.instances.items()}

    def _compute(self) -> dict[str, float]:
        now = time.monotonic()
        t = now - self._started
        s = self._seed
        v_ln = [277.0 * (1 + 0.01 * math.sin(2 * math.pi * t / 60 + s + p)) for p in _PHASES]
        amps = [self._base_current * (1 + 0.15 * math.sin(2 * math.pi * t / 300 + s + p)) for p in _PHASES]
        pf = [0.90 + 0.05 * math.sin(2 * math.pi * t / 120 + s + p) for p in _PHASES]
        kva = [v * i / 1000 for v, i in zip(v_ln, amps, strict=True)]
        kw = [a * f for a, f in zip(kva, pf, strict=True)]
        kvar = [math.sqrt(max(a * a - w * w, 0.0)) for a, w in zip(kva, kw, strict=True)]
        v_ll = [math.sqrt(a * a + b * b + a * b) for a, b in zip(v_ln, v_ln[1:] + v_ln[:1], strict=True)]
        self._import_kwh += sum(kw) * (now - self._last) / 3600
        self._last = now
        total_kva = sum(kva)
        values = {
            "v_l1_n": v_ln[0],
            "v_l2_n": v_ln[1],
            "v_l3_n": v_ln[2],
            "v_ln_system": sum(v_ln) / 3,
            "v_l1_l2": v_ll[0],
            "v_l2_l3": v_ll[1],
            "v_l3_l1": v_ll[2],
            "v_ll_system": sum(v_ll) / 3,
            "a_l1": amps[0],
            "a_l2": amps[1],
            "a_l3": amps[2],
            "a_system": sum(amps) / 3,
            "kw_l1": kw[0],
            "kw_l2": kw[1],
            "kw_l3": kw[2],
            "kw_system": sum(kw),
            "kvar_l1": kvar[0],
            "kvar_l2": kvar[1],
            "kvar_l3": kvar[2],
            "kvar_system": sum(kvar),
            "kva_l1": kva[0],
            "kva_l2": kva[1],
            "kva_l3": kva[2],
            "kva_system": total_kva,
            "pf_l1": pf[0],
            "pf_l2": pf[1],
            "pf_l3": pf[2],
            "pf_system": sum(kw) / total_kva,
            "frequency": 60.0 + 0.02 * math.sin(2 * math.pi * t / 30 + s),
            "phase_sequence": 0.0,
            "hours_counter_giga": 0.0,
            "hours_counter_kilo": t / 3600,
        }
        values.update(_split("total_kwh_import", self._import_kwh))
        values.update(_split("total_kwh_export", self._export_kwh))
        values.update(_split("total_kvarh_import", self._import_kwh * 0.45))
        values.update(_split("partial_kwh_import", self._import_kwh - self._partial_reset_kwh))
        values.update(_split("partial_kvarh_import", (self._import_kwh - self._partial_reset_kwh) * 0.45))
        if self.wiring == "3-wire":  # no neutral: no L-N voltages, no per-phase powers
            for name in ("v_l1_n", "v_l2_n", "v_l3_n", "v_ln_system"):
                values[name] = 0.0
            for quantity in _PER_PHASE_POWER:
                for phase in ("l1", "l2", "l3"):
                    values[f"{quantity}_{phase}"] = 0.0
        return values


def _split(prefix: str, kwh: float) -> dict[str, float]:
    """A counter as the (giga, kilo) REAL pair of the register map: value = giga * 1e6 + kilo."""
    giga = math.floor(kwh / 1_000_000)
    return {f"{prefix}_giga": float(giga), f"{prefix}_kilo": kwh - giga * 1_000_000}
