"""What the operator reads: results on stdout, one red line on stderr and exit code 1 per domain error."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import typer
from rich.console import Console

from devices.aws import aws_errors
from devices.errors import DeviceError

out = Console()
err = Console(stderr=True)


@contextmanager
def operator_errors() -> Iterator[None]:
    """One clear red line on stderr and exit code 1 for every problem the operator can act on."""
    try:
        with aws_errors():
            yield
    except DeviceError as exc:
        err.print(f"[red]error:[/red] {exc}", highlight=False, soft_wrap=True)
        raise typer.Exit(1) from None


def emit(as_json: bool, data: Any, text: str) -> None:
    if as_json:
        out.print_json(json.dumps(data))
    else:
        out.print(text, highlight=False)
