"""The metrics a PM500 reading carries: Sparkplug name/alias/unit and where each lands in InfluxDB.

This table is the contract between the register map (which fills readings by metric name), the MQTT
payload and the InfluxDB line protocol. Per-phase InfluxDB rows use phases A, B, C; the `total` row
carries three-phase totals plus kWh, frequency and the alarm/output states.
"""

from __future__ import annotations

from dataclasses import dataclass

PHASES = ("A", "B", "C")
TOTAL = "total"


@dataclass(frozen=True)
class Metric:
    name: str
    alias: str
    unit: str
    phase: str | None = None  # InfluxDB `phase` tag; None: not written to InfluxDB
    field: str | None = None  # InfluxDB field name in that row


def _phase_metrics() -> list[Metric]:
    out: list[Metric] = []
    line_to_line = {"A": "AB", "B": "BC", "C": "CA"}
    for p in PHASES:
        out += [
            Metric(f"voltage{p}N", f"PM500/voltage/{p}N", "V", p, "voltage"),
            Metric(f"voltage{line_to_line[p]}", f"PM500/voltage/{line_to_line[p]}", "V", p, "voltage_ll"),
            Metric(f"current{p}", f"PM500/current/{p}", "A", p, "current"),
            Metric(f"realPower{p}", f"PM500/realPower/{p}", "kW", p, "kW"),
            Metric(f"reactivePower{p}", f"PM500/reactivePower/{p}", "kVAR", p, "kVAR"),
            Metric(f"apparentPower{p}", f"PM500/apparentPower/{p}", "kVA", p, "kVA"),
            Metric(f"powerFactor{p}", f"PM500/powerFactor/{p}", "", p, "pf"),
        ]
    return out


ALARMS = (1, 2, 3, 4)  # the PM500's virtual alarms (instance 108, element 0, bits 0..3)
OUTPUTS = (1, 2)  # its output ports (instance 108, element 1, bits 0..1)


def _status_metrics() -> list[Metric]:
    """Alarm and output states, 1 = active/on, 0 = inactive/off (`total` row, fields alarm_N/output_N)."""
    return [Metric(f"alarm{n}", f"PM500/alarm/{n}", "", TOTAL, f"alarm_{n}") for n in ALARMS] + [
        Metric(f"output{n}", f"PM500/output/{n}", "", TOTAL, f"output_{n}") for n in OUTPUTS
    ]


METRICS: tuple[Metric, ...] = (
    *_phase_metrics(),
    Metric("voltageLNAverage", "PM500/voltage/LNavg", "V", TOTAL, "voltage"),
    Metric("voltageLLAverage", "PM500/voltage/LLavg", "V", TOTAL, "voltage_ll"),
    Metric("currentAverage", "PM500/current/avg", "A", TOTAL, "current"),
    Metric("realPower", "PM500/realPower/total", "kW", TOTAL, "kW"),
    Metric("reactivePower", "PM500/reactivePower/total", "kVAR", TOTAL, "kVAR"),
    Metric("apparentPower", "PM500/apparentPower/total", "kVA", TOTAL, "kVA"),
    Metric("powerFactor", "PM500/powerFactor/total", "", TOTAL, "pf"),
    Metric("frequency", "PM500/frequency", "Hz", TOTAL, "frequency"),
    Metric("energy", "PM500/energy/net", "kWh", TOTAL, "kWh"),
    *_status_metrics(),
)

METRICS_BY_NAME: dict[str, Metric] = {m.name: m for m in METRICS}
