"""Did data flow end to end? One line per failed leg, naming the leg and the meters it lost.

The pipeline has two legs out of the collector (broker, InfluxDB) and one into it (the meters). A
reading for every meter must arrive at both sinks; if neither sink saw any reading, the break is
upstream of them, at the meters or inside the collector, and the verdict says that instead.
"""

from __future__ import annotations

from dataclasses import dataclass

from demo.observe import Snapshot

LEG_METERS = "meters -> collector"
LEG_MQTT = "collector -> broker (MQTT DDATA)"
LEG_INFLUX = "collector -> InfluxDB (line protocol)"


@dataclass(frozen=True)
class Verdict:
    failures: tuple[str, ...]

    @property
    def ok(self) -> bool:
        return not self.failures


def judge(snapshot: Snapshot) -> Verdict:
    assets = sorted(snapshot.assets)
    no_mqtt = [a for a in assets if snapshot.assets[a].mqtt_messages == 0]
    no_influx = [a for a in assets if snapshot.assets[a].influx_points == 0]
    if not assets:
        return Verdict(("the local stack declares no meters",))
    if no_mqtt == assets and no_influx == assets:
        return Verdict((f"{LEG_METERS}: no reading of any meter reached the broker or InfluxDB "
                        "(see logs/simulator.log and logs/collector.log)",))
    failures = []
    if no_mqtt:
        failures.append(f"{LEG_MQTT}: no message for {', '.join(no_mqtt)} (see logs/collector.log, "
                        "logs/mosquitto.log)")
    if no_influx:
        why = f"; {snapshot.influx_error}" if snapshot.influx_error else ""
        failures.append(f"{LEG_INFLUX}: no point for {', '.join(no_influx)}{why} (see logs/collector.log, "
                        "logs/influxd.log)")
    return Verdict(tuple(failures))
