"""`python -m demo [--duration N] [--workdir DIR]`: the whole pm500 edge pipeline on 127.0.0.1."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from collector.config import DEFAULT_ENCODING, ENCODINGS, Encoding
from demo.run import EXIT_PIECE_FAILED, LEAVE_OUT, run
from demo.signals import stop_signals
from demo.workdir import DEFAULT_WORKDIR, WorkdirError, prepare

app = typer.Typer(add_completion=False, rich_markup_mode=None)


@app.command()
def main(
    duration: Annotated[
        float | None,
        typer.Option(
            min=1,
            help="Run for this many seconds once everything is up, then stop and exit 0 only if readings "
            "of every meter reached both the broker and InfluxDB (non-zero, naming the failed leg, "
            "otherwise). Without it the demo runs until Ctrl-C.",
        ),
    ] = None,
    workdir: Annotated[
        Path,
        typer.Option(
            help="Folder for this run's CA, bundle, databases and logs. Emptied at start if a previous "
            "demo created it; refused if it holds anything else. Kept after the run for inspection.",
        ),
    ] = DEFAULT_WORKDIR,
    without: Annotated[
        list[str] | None,
        typer.Option(
            help=f"Leave a piece out ({' or '.join(LEAVE_OUT)}; repeatable) to watch the pipeline react: "
            "without InfluxDB the collector buffers those readings and MQTT keeps flowing; without "
            "meters nothing flows. With --duration the exit status then names the failed leg.",
        ),
    ] = None,
    encoding: Annotated[
        str,
        typer.Option(
            help=f"MQTT payload encoding the local stack gives its collector ({' or '.join(ENCODINGS)}): "
            "json is the design note's JSON, sparkplug-b is Sparkplug B 3.0 protobuf. InfluxDB and the "
            "dashboard see the same data either way.",
        ),
    ] = DEFAULT_ENCODING,
) -> None:
    """Run the whole edge pipeline on this machine with local stand-ins for AWS and the meters."""
    console = Console()
    unknown = sorted(set(without or ()) - set(LEAVE_OUT))
    if unknown:
        console.print(f"[red]✗ --without {unknown[0]}: expected one of {', '.join(LEAVE_OUT)}[/]")
        raise typer.Exit(EXIT_PIECE_FAILED)
    if encoding not in ENCODINGS:
        console.print(f"[red]✗ --encoding {encoding}: expected one of {', '.join(ENCODINGS)}[/]")
        raise typer.Exit(EXIT_PIECE_FAILED)
    chosen: Encoding = "sparkplug-b" if encoding == "sparkplug-b" else "json"
    try:
        folder, leftovers = prepare(workdir)
    except WorkdirError as exc:
        console.print(f"✗ {exc}", style="red", markup=False)
        raise typer.Exit(EXIT_PIECE_FAILED) from None
    if leftovers:
        console.print(f"[yellow]stopped what a killed earlier run left running:[/] {', '.join(leftovers)}")
    console.rule("pm500 local demo: meters -> collector -> broker + InfluxDB, all on 127.0.0.1, no cloud")
    with stop_signals() as guard:
        code = run(console, folder, duration, guard, frozenset(without or ()), chosen)
    raise typer.Exit(code)


if __name__ == "__main__":
    app(prog_name="python -m demo")
