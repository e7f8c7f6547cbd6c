"""JSON checks for context and input values: fail at the call that put them."""

from __future__ import annotations

import json
import math
from typing import Any

from durable.errors import SerializationError

_HINT = (
    "Use str, int, float, bool, None, lists and dicts with str keys "
    "(convert datetimes, decimals and objects first)."
)


def _explain(value: Any) -> str:
    """Find the first non-JSON part of value, as a path and a type name."""
    stack: list[tuple[str, Any]] = [("", value)]
    while stack:
        path, v = stack.pop()
        if isinstance(v, dict):
            for k, item in v.items():
                if not isinstance(k, str):
                    return f"key {k!r} at {path or 'top level'} is {type(k).__name__}, not str"
                stack.append((f"{path}[{k!r}]", item))
        elif isinstance(v, list | tuple):
            stack.extend((f"{path}[{i}]", item) for i, item in enumerate(v))
        elif v is not None and not isinstance(v, str | int | float | bool):
            t = type(v)
            name = (
                t.__qualname__ if t.__module__ == "builtins" else f"{t.__module__}.{t.__qualname__}"
            )
            return f"{path or 'the value'} is {name}"
        elif isinstance(v, float) and math.isnan(v):
            return f"{path or 'the value'} is NaN"
    return "it is not JSON"


def _bad_key(value: Any) -> str | None:
    """json.dumps turns int/None/bool keys into strings silently (and may merge two keys
    into one): find such a key so it can be refused instead."""
    stack = [value]
    while stack:
        v = stack.pop()
        if isinstance(v, dict):
            for k, item in v.items():
                if not isinstance(k, str):
                    return _explain(value)
                if isinstance(item, dict | list | tuple):
                    stack.append(item)
        elif isinstance(v, list | tuple):
            stack.extend(item for item in v if isinstance(item, dict | list | tuple))
    return None


def to_json(value: Any, what: str) -> str:
    """Serialise value or raise SerializationError that names what and the offending type."""
    try:
        text = json.dumps(value, allow_nan=False, separators=(",", ":"))
    except (TypeError, ValueError) as exc:
        raise SerializationError(
            f"{what} cannot be stored as JSON: {_explain(value)}. {_HINT}"
        ) from exc
    problem = _bad_key(value)
    if problem is not None:
        raise SerializationError(f"{what} cannot be stored as JSON: {problem}. {_HINT}")
    return text


def normalise(value: Any, what: str) -> Any:
    """The value as it will read back from the store (tuples become lists, etc.)."""
    if value is None or type(value) in (str, int, bool):
        return value
    if type(value) is float and math.isfinite(value):
        return value
    return json.loads(to_json(value, what))


def clone(value: Any) -> Any:
    """A deep copy of a JSON value (much cheaper than copy.deepcopy)."""
    if isinstance(value, dict):
        return {k: clone(v) for k, v in value.items()}
    if isinstance(value, list):
        return [clone(v) for v in value]
    return value
