"""Merging what parallel branches wrote into the workflow's context.

Each branch starts from a copy of the context at the fork. What it changed is summed up
per key as one write: ``("append", items)`` or ``("increment", amount)`` when those were
the only writes to the key (and the value shows nothing else changed it), else
``("set", value)`` or ``("delete", None)``. Writes are merged in branch order: appends
concatenate, increments add up, and a key set (or deleted) by one branch and written by
another in any way is a ``ContextConflict``.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from typing import Any

from durable.errors import ContextConflict

__all__ = ["Ops", "branch_writes", "merge"]

_MISSING: Any = object()

#: per key, what a run did to it: ("set",), ("append", items, value_after),
#: ("increment", amount, value_after)
Ops = dict[str, tuple[Any, ...]]


def note(ops: Ops, key: str, kind: str, amount: Any = None, after: Any = None) -> None:
    """Record a write of ``key`` in ``ops``: an append or increment adds to the earlier
    ones of its kind; anything else (or a mix) makes it a set."""
    old = ops.get(key)
    if kind == "append" and (old is None or old[0] == "append"):
        items = [*(old[1] if old else ()), amount]
        ops[key] = ("append", items, copy.deepcopy(after))
    elif kind == "increment" and (old is None or old[0] == "increment"):
        ops[key] = ("increment", (old[1] if old else 0) + amount, after)
    else:
        ops[key] = ("set",)


def branch_writes(
    base: Mapping[str, Any], final: Mapping[str, Any], ops: Ops
) -> dict[str, list[Any]]:
    """What a branch changed, per key, as JSON-ready ``[kind, value]`` pairs."""
    writes: dict[str, list[Any]] = {}
    for key in {*base, *final}:
        before, after = base.get(key, _MISSING), final.get(key, _MISSING)
        op = ops.get(key)
        if op is not None and op[0] in ("append", "increment") and after == op[2]:
            writes[key] = [op[0], op[1]]
        elif op is not None or before != after:
            writes[key] = ["delete", None] if after is _MISSING else ["set", after]
    return writes


def merge(
    base: Mapping[str, Any], branches: Sequence[tuple[str, Mapping[str, Sequence[Any]]]]
) -> dict[str, Any]:
    """``base`` with every branch's writes applied, in branch order."""
    by_key: dict[str, list[tuple[str, str, Any]]] = {}
    for name, writes in branches:
        for key, (kind, value) in writes.items():
            by_key.setdefault(key, []).append((name, kind, value))
    out = dict(base)
    for key in sorted(by_key):
        entries = by_key[key]
        kinds = {kind for _, kind, _ in entries}
        if len(entries) > 1 and (kinds & {"set", "delete"} or len(kinds) > 1):
            names = tuple(name for name, _, _ in entries)
            raise ContextConflict(
                f"context key {key!r} was written by branches {names[0]!r} and {names[1]!r}"
                f"{' and others' if len(names) > 2 else ''}; only append_context and "
                "increment_context merge — write different keys, or append/increment",
                key=key,
                branches=names,
            )
        kind = entries[0][1]
        if kind == "set":
            out[key] = copy.deepcopy(entries[0][2])
        elif kind == "delete":
            out.pop(key, None)
        elif kind == "append":
            start = base.get(key, [])
            out[key] = [
                *copy.deepcopy(start),
                *(i for _, _, v in entries for i in copy.deepcopy(v)),
            ]
        else:
            out[key] = base.get(key, 0) + sum(v for _, _, v in entries)
    return out
