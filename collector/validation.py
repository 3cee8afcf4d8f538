"""Turn pydantic validation errors into one line per problem that names the field path."""

from __future__ import annotations

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
