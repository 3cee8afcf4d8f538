"""Turn pydantic validation errors into one line per problem that names the field path."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError


def field_path(loc: tuple[int | str, ...]) -> str:
    """`('meters', 1, 'host')` -> `meters[1].host`."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out or "(root)"


def describe(error: ValidationError, source: str, joiner: str = ": ") -> str:
    """`source: path: message` lines, e.g. `inventory/plant-a.yaml: collectors[3].meters[1].host: ...`."""
    lines = []
    for e in error.errors():
        msg = e["msg"].removeprefix("Value error, ")
        if e["type"] == "missing":
            msg = "required field is missing"
        elif e["type"] == "extra_forbidden":
            msg = "unknown field (check the spelling)"
        lines.append(f"{source}{joiner}{field_path(tuple(e['loc']))}: {msg}")
    return "\n".join(lines)


class ConfigError(ValueError):
    """A configuration problem, already described for the operator (one line per field)."""


_YAML_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # C loader: fleet inventories load fast


def read_yaml(path: Path, what: str, shown: Path | str | None = None,
              error: type[ValueError] = ConfigError) -> Any:
    """Parse a YAML file; an unreadable or malformed file raises `error` naming the file and `what` it is."""
    name = path if shown is None else shown
    try:
        return yaml.load(path.read_text(), Loader=_YAML_LOADER)  # noqa: S506 - a safe loader
    except OSError as e:
        raise error(f"{name}: cannot read {what}: {e.strerror}") from None
    except yaml.YAMLError as e:
        raise error(f"{name}: not valid YAML: {_yaml_problem(e)}") from None


def _yaml_problem(error: yaml.YAMLError) -> str:
    """PyYAML's multi-line message (context, snippet, caret) as one line: problem and position."""
    if isinstance(error, yaml.MarkedYAMLError) and error.problem:
        mark = error.problem_mark
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        context = f" ({error.context})" if error.context else ""
        return f"{error.problem}{context}{where}"
    return " ".join(str(error).split())
