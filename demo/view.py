"""The live console view: one row per meter, what reached the broker and what landed in InfluxDB."""

from __future__ import annotations

from typing import Any

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from demo.observe import SHOWN_METRICS, Snapshot


def _value(value: Any) -> str:
    return f"{value:,.2f}" if isinstance(value, int | float) else "-"


def _count(n: int) -> Text:
    return Text(f"{n:,}", style="green" if n else "red")


def buffer_depth(health: dict[str, Any] | None) -> str:
    """Readings waiting in the collector's store-and-forward buffer, per sink (its health JSON)."""
    depth = (health or {}).get("buffer", {}).get("depth")
    if not isinstance(depth, dict):
        return "-"
    return ", ".join(f"{sink} {n}" for sink, n in depth.items())


def meter_states(health: dict[str, Any] | None) -> str:
    """The collector's own view of each meter (ok / down ...), from its health JSON."""
    meters = (health or {}).get("meters")
    if not isinstance(meters, dict):
        return "-"
    return ", ".join(f"{asset} {state.get('state', '?') if isinstance(state, dict) else state}"
                     for asset, state in meters.items())


def render(snapshot: Snapshot, elapsed_s: float, duration_s: float | None) -> RenderableType:
    table = Table(title="meters -> collector -> broker / InfluxDB", title_justify="left", expand=False)
    table.add_column("asset")
    table.add_column("breaker")
    table.add_column("MQTT DDATA", justify="right")
    table.add_column("seq", justify="right")
    for label in SHOWN_METRICS.values():
        table.add_column(label, justify="right")
    table.add_column("InfluxDB rows", justify="right")
    for traffic in snapshot.assets.values():
        table.add_row(
            traffic.asset,
            traffic.breaker,
            _count(traffic.mqtt_messages),
            str(traffic.last_seq) if traffic.last_seq is not None else "-",
            *(_value(traffic.last_values.get(name)) for name in SHOWN_METRICS),
            _count(traffic.influx_points),
        )
    clock = f"{elapsed_s:,.0f}s" + (f" of {duration_s:g}s" if duration_s is not None else " (Ctrl-C stops)")
    health = str((snapshot.health or {}).get("status", "-"))
    if snapshot.health_error:
        health = f"{health} ({snapshot.health_error})"
    status = Text.assemble(
        ("running ", "bold"), clock,
        "   collector: ", (health, "green" if health == "ok" else "yellow"),
        "   meters: ", meter_states(snapshot.health),
        "   buffer pending: ", buffer_depth(snapshot.health),
        "   births/deaths at broker: ", f"{snapshot.births}/{snapshot.deaths}",
    )
    parts: list[RenderableType] = [table, status]
    if snapshot.influx_error:
        parts.append(Text(f"InfluxDB query: {snapshot.influx_error}", style="yellow"))
    return Group(*parts)


def status_line(snapshot: Snapshot, elapsed_s: float) -> str:
    """Plain one-line progress for logs and non-terminal output."""
    per_asset = "; ".join(
        f"{t.asset}: mqtt={t.mqtt_messages} influx={t.influx_points}" for t in snapshot.assets.values()
    )
    return (f"[{elapsed_s:5.0f}s] {per_asset}; births/deaths at broker: {snapshot.births}/{snapshot.deaths}; "
            f"buffer pending: {buffer_depth(snapshot.health)}")
