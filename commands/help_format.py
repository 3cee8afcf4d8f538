"""`--help` in typer's conventional form: TEXT / INTEGER / FILE / DIRECTORY labels, none on flags.

typer 0.29 labels every option with its Python type (`<str>`, `<list[str]>`, and `<bool>` even on
plain flags such as `--json` and `--help`, which take no value). Commands built with
`ConventionalHelpCommand` (and groups built with `ConventionalHelpGroup`) show the labels click and
earlier typer releases use instead; an option with its own `metavar` keeps it. Only the help text
changes: error messages name options by their flags.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any, get_args, get_origin

import typer
from typer.core import TyperArgument, TyperCommand, TyperGroup, TyperOption

_LABELS: dict[Any, str] = {str: "TEXT", int: "INTEGER", float: "FLOAT", Path: "PATH"}
_PATH_LABELS = {"file": "FILE", "dir": "DIRECTORY"}


def conventional_label(option: TyperOption | TyperArgument) -> str | None:
    """The label for `option`'s value: "" for a flag, None to keep typer's own (e.g. choices)."""
    if isinstance(option, TyperOption) and option.is_flag:
        return ""
    descriptor = option.type_descriptor
    if descriptor.is_choice:
        return None
    if descriptor.is_path:
        return _PATH_LABELS.get(descriptor.path_type, "PATH")
    annotation: Any = descriptor.annotation
    if get_origin(annotation) is list:  # a repeatable option: each occurrence takes one value
        (annotation,) = get_args(annotation)
    return _LABELS.get(annotation)


def _label(params: list[Any]) -> list[Any]:
    for param in params:
        if isinstance(param, TyperOption) and param.metavar is None:
            label = conventional_label(param)
            if label is not None:
                param.metavar = label
        elif isinstance(param, TyperArgument):  # its name is shown already; the type column gets the label
            label = conventional_label(param)
            if label is not None:
                param.display_type_rich = _fixed(label)  # type: ignore[method-assign]
    return params


def _fixed(label: str) -> Any:
    """A `display_type_rich` that answers `label` (typer asks each parameter for its type column)."""

    def display_type_rich(ctx: Any) -> str:
        return label

    return display_type_rich


class ConventionalHelpCommand(TyperCommand):
    def get_params(self, ctx: Any) -> list[Any]:  # ctx: typer's vendored click Context
        return _label(super().get_params(ctx))


class ConventionalHelpGroup(TyperGroup):
    """A command group (`cli.py --help`, `cli.py devices --help`) with the same labels."""

    def get_params(self, ctx: Any) -> list[Any]:
        return _label(super().get_params(ctx))


Decorator = Callable[[Callable[..., Any]], Callable[..., Any]]


def command_group(help: str) -> tuple[typer.Typer, Callable[..., Decorator]]:
    """A `cli.py <group>` app and its `command` decorator, both with the labels above."""
    app = typer.Typer(help=help, no_args_is_help=True, cls=ConventionalHelpGroup)
    return app, partial(app.command, cls=ConventionalHelpCommand)
