"""JSON checks for context and input values: fail at the call that put them."""

from __future__ import annotations

import json
import math
from typing import Any

from durable.errors import SerializationError


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


def to_json(value: Any, what: str) -> str:
    """Serialise value or raise SerializationError that names what and the offending type."""
    try:
        return json.dumps(value, allow_nan=False, separators=(",", ":"))
    except (TypeError, ValueError) as exc:
        raise SerializationError(
            f"{what} cannot be stored as JSON: {_explain(value)}. "
            "Use str, int, float, bool, None, lists and dicts with str keys "
            "(convert datetimes, decimals and objects first)."
        ) from exc


def normalise(value: Any, what: str) -> Any:
    """The value as it will read back from the store (tuples become lists, etc.)."""
    return json.loads(to_json(value, what))
