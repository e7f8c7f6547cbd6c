"""JSON checks for context, input and other stored values: fail at the call that put them.

A value is stored only if every store can keep it and give it back the same, and every
process can read it back: dicts with str keys, lists (tuples become lists), str, finite
floats, bool, None, and ints within 64 bits, nested at most ``MAX_DEPTH`` levels.
Deeper values would exceed Python's recursion limit when read back (one unreadable row
must never reach a store); wider ints are not carried the same way by the JSON readers of
other languages and of the databases themselves.

A pydantic model instance, anywhere in a value, is stored as its JSON form
(``model_dump(mode="json", by_alias=True)``): what reads it back gets that JSON, which the
model validates back into an equal instance.
"""

from __future__ import annotations

import json
import math
from typing import Any

from durable._typed import is_model, json_form
from durable.errors import SerializationError

__all__ = ["MAX_DEPTH", "MAX_INT", "MIN_INT", "clone", "normalise", "to_json"]

MAX_DEPTH = 100  # levels of lists and dicts inside each other
MIN_INT, MAX_INT = -(2**63), 2**63 - 1

_HINT = (
    "Use str, int, float, bool, None, lists and dicts with str keys "
    "(convert datetimes, decimals and objects first)."
)
_CONTAINERS = (dict, list, tuple)


def _type_name(v: Any) -> str:
    t = type(v)
    return t.__qualname__ if t.__module__ == "builtins" else f"{t.__module__}.{t.__qualname__}"


def _scalar_problem(v: Any) -> str | None:
    """What is wrong with a value that is not a list or dict, or None."""
    if v is None or isinstance(v, str | bool):
        return None
    if isinstance(v, int):
        if MIN_INT <= v <= MAX_INT:
            return None
        return (
            f"an int outside the 64-bit range -2**63 .. 2**63-1 ({v.bit_length()} bits; "
            "store it as a str)"
        )
    if isinstance(v, float):
        return None if math.isfinite(v) else f"{v} (only finite floats are JSON)"
    return _type_name(v)


def _find(value: Any, max_depth: int, *, paths: bool) -> str | None:
    """The first part of ``value`` that cannot be stored, described (with its path when
    ``paths``), or None. Iterative: a value nested too deep must not exhaust the stack."""
    stack: list[tuple[Any, int, str]] = [(value, 0, "")]
    while stack:
        v, depth, path = stack.pop()
        where = path or "the value"
        if isinstance(v, _CONTAINERS):
            if depth >= max_depth:
                at = f" (at {path[:60]}...)" if len(path) > 60 else f" (at {path})" if path else ""
                return f"it holds lists or dicts more than {max_depth} levels deep{at}, or itself"
            items = v.items() if isinstance(v, dict) else enumerate(v)
            for k, item in items:
                if isinstance(v, dict) and not isinstance(k, str):
                    return f"key {k!r} at {path or 'top level'} is {_type_name(k)}, not str"
                sub = f"{path}[{k!r}]" if paths else ""
                if isinstance(item, _CONTAINERS):
                    stack.append((item, depth + 1, sub))
                elif type(item) is not str:
                    problem = _scalar_problem(item)
                    if problem is not None:
                        return f"{sub or 'a part of it'} is {problem}"
        else:
            problem = _scalar_problem(v)
            if problem is not None:
                return f"{where} is {problem}"
    return None


def _refuse(value: Any, what: str, max_depth: int) -> SerializationError:
    problem = _find(value, max_depth, paths=True) or "it is not JSON"
    return SerializationError(f"{what} cannot be stored as JSON: {problem}. {_HINT}")


def _without_models(value: Any, what: str, max_depth: int) -> Any:
    """``value`` with each pydantic model instance in it replaced by its JSON form (the
    value itself when it holds none, or when pydantic is not imported: then none can)."""
    if not is_model(value) and not isinstance(value, _CONTAINERS):
        return value
    found = False

    def plain(v: Any, path: str, depth: int) -> Any:
        nonlocal found
        if is_model(v):
            found = True
            return json_form(v, f"{what} ({path or 'the value'})" if path else what)
        if depth > max_depth:  # (too deep anyway: _find says so)
            return v
        if isinstance(v, dict):
            return {k: plain(item, f"{path}[{k!r}]", depth + 1) for k, item in v.items()}
        if isinstance(v, list | tuple):
            return [plain(item, f"{path}[{i!r}]", depth + 1) for i, item in enumerate(v)]
        return v

    converted = plain(value, "", 0)
    return converted if found else value


def to_json(value: Any, what: str, *, max_depth: int = MAX_DEPTH) -> str:
    """Serialise value or raise SerializationError that names what and what is wrong (a
    pydantic model in it becomes its JSON form)."""
    if _find(value, max_depth, paths=False) is not None:
        value = _without_models(value, what, max_depth)
        if _find(value, max_depth, paths=False) is not None:
            raise _refuse(value, what, max_depth)
    try:
        return json.dumps(value, allow_nan=False, separators=(",", ":"))
    except (TypeError, ValueError, RecursionError) as exc:
        raise _refuse(value, what, max_depth) from exc


def normalise(value: Any, what: str) -> Any:
    """The value as it will read back from the store (tuples become lists, etc.)."""
    if value is None or type(value) in (str, bool):
        return value
    if type(value) is int and MIN_INT <= value <= MAX_INT:
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
