"""The few AWS IoT SQL expressions the Sparkplug rules use, evaluated as the AWS IoT SQL reference says.

Types (developer guide "Data types"): Int, Decimal, String, Boolean, Null, Undefined, with JSON values as
the rules engine reads them (a JSON string stays a String). What is implemented, each from the guide:
- `cast(x AS Int|Decimal)` ("Functions: cast"; "Data types: Conversions": a String is read as a
  Decimal, then an Int keeps its integral part; a String that is no number is Undefined);
- `a % b` ("Operators": both Int, else Undefined);
- `get(array, index)` and `x.field` ("Functions: get", "JSON extensions");
- `CASE v WHEN t THEN r ... [ELSE e] END` ("CASE statements": the first t equal to v); equality
  ("Operators: =") holds between values of the same type only, Int and Decimal comparing as numbers:
  a String is never equal to an Int, which is why a uint64 rendered as a string must be cast first.

A parser of exactly that grammar; anything else is a `ValueError` naming it, never a guess.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

UNDEFINED = object()  # IoT SQL's Undefined: not a value, left out of JSON output

_TOKEN = re.compile(r"\s*(?:(?P<num>\d+)|(?P<str>'[^']*')|(?P<name>[A-Za-z_][A-Za-z0-9_]*)|(?P<op>[().,%]))")


@dataclass
class _Tokens:
    items: list[str]
    pos: int = 0

    def peek(self) -> str | None:
        return self.items[self.pos] if self.pos < len(self.items) else None

    def take(self, expected: str | None = None) -> str:
        token = self.peek()
        if token is None or (expected is not None and token.upper() != expected.upper()):
            raise ValueError(f"expected {expected or 'a token'} at {self.pos}, got {token!r}")
        self.pos += 1
        return token


def _tokens(text: str) -> _Tokens:
    out, pos = [], 0
    while pos < len(text.rstrip()):
        m = _TOKEN.match(text, pos)
        if m is None:
            raise ValueError(f"not in the supported IoT SQL subset at {pos}: {text[pos:pos + 20]!r}")
        out.append(next(v for v in m.groupdict().values() if v is not None))
        pos = m.end()
    return _Tokens(out)


def evaluate(expression: str, document: dict[str, Any]) -> Any:
    """The value of `expression` on the JSON `document` (the message the rule reads)."""
    tokens = _tokens(expression)
    value = _expression(tokens, document)
    if tokens.peek() is not None:
        raise ValueError(f"unexpected {tokens.peek()!r} in {expression!r}")
    return value


def _expression(t: _Tokens, doc: dict[str, Any]) -> Any:
    left = _term(t, doc)
    while t.peek() == "%":
        t.take("%")
        right = _term(t, doc)
        left = left % right if _is_int(left) and _is_int(right) else UNDEFINED
    return left


def _term(t: _Tokens, doc: dict[str, Any]) -> Any:
    token = t.take()
    if token.isdigit():
        value: Any = int(token)
    elif token.startswith("'"):
        value = token[1:-1]
    elif token.upper() == "CASE":
        value = _case(t, doc)
    elif token.lower() == "cast":
        t.take("(")
        inner = _expression(t, doc)
        t.take("AS")
        kind = t.take()
        t.take(")")
        value = _cast(inner, kind)
    elif token.lower() == "get" and t.peek() == "(":
        t.take("(")
        array = _expression(t, doc)
        t.take(",")
        index = _expression(t, doc)
        t.take(")")
        if isinstance(array, list) and _is_int(index):
            value = array[index] if 0 <= index < len(array) else UNDEFINED
        elif isinstance(array, dict) and isinstance(index, str):
            value = array.get(index, UNDEFINED)
        else:
            value = UNDEFINED
    elif token.lower() in ("true", "false"):
        value = token.lower() == "true"
    else:
        value = doc.get(token, UNDEFINED)
    while t.peek() == ".":
        t.take(".")
        field = t.take()
        value = value.get(field, UNDEFINED) if isinstance(value, dict) else UNDEFINED
    return value


def _case(t: _Tokens, doc: dict[str, Any]) -> Any:
    subject = _expression(t, doc)
    result: Any = UNDEFINED
    matched = False
    while t.peek() is not None and t.peek().upper() == "WHEN":  # type: ignore[union-attr]
        t.take("WHEN")
        candidate = _expression(t, doc)
        t.take("THEN")
        outcome = _expression(t, doc)
        if not matched and equal(subject, candidate):
            result, matched = outcome, True
    if t.peek() is not None and t.peek().upper() == "ELSE":  # type: ignore[union-attr]
        t.take("ELSE")
        otherwise = _expression(t, doc)
        if not matched:
            result = otherwise
    t.take("END")
    return result


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def equal(a: Any, b: Any) -> bool:
    """IoT SQL `=`: same type (Int and Decimal both numbers); across types, never equal."""
    numbers = (int, Decimal)
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    if isinstance(a, numbers) and isinstance(b, numbers):
        return Decimal(a) == Decimal(b)
    return type(a) is type(b) and a is not UNDEFINED and a == b


def _cast(value: Any, kind: str) -> Any:
    if isinstance(value, bool):
        number: Decimal | None = Decimal(int(value))
    elif isinstance(value, int | Decimal):
        number = Decimal(value)
    elif isinstance(value, str):
        try:
            number = Decimal(value)
        except InvalidOperation:
            number = None
    else:
        number = None
    if number is None or not number.is_finite():
        return UNDEFINED
    if kind.lower() == "int":
        return int(number)
    if kind.lower() == "decimal":
        return number
    raise ValueError(f"cast to {kind} is not in the supported subset")
