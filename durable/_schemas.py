"""Input schemas: checking a schema (JSON Schema, or one made from a pydantic model), and
data against it.

A schema made from a model is the model's ``model_json_schema()`` plus ``MODEL_KEY``
naming the model: a process that imported the model validates with it (its validators
included), any other with the JSON Schema alone (the command line, a dashboard).
"""

from __future__ import annotations

import json
import weakref
from typing import TYPE_CHECKING, Any

from durable._json import normalise
from durable._typed import (
    describe_problems,
    find_model,
    json_form,
    json_schema,
    model_name,
    validate_model,
)
from durable.errors import ConfigError, InvalidInput

if TYPE_CHECKING:
    from pydantic import BaseModel

__all__ = [
    "MODEL_KEY",
    "check_data",
    "check_schema",
    "model_schema",
    "split_schema",
    "validate_input",
]

#: the keyword a schema made from a model carries, naming the model (``"module:Name"``)
MODEL_KEY = "x-durable-model"

_made: weakref.WeakKeyDictionary[type, dict[str, Any]] = weakref.WeakKeyDictionary()

_REF_KEYWORDS = ("$ref", "$dynamicRef", "$recursiveRef")


def _refs(schema: Any) -> tuple[list[str], bool]:
    """The references in ``schema``, and whether a subschema sets its own ``$id`` (which
    changes what its references are relative to)."""
    found: list[str] = []
    nested_id = False
    stack: list[tuple[Any, bool]] = [(schema, True)]
    while stack:
        node, root = stack.pop()
        if isinstance(node, dict):
            if not root and isinstance(node.get("$id"), str):
                nested_id = True
            for key, value in node.items():
                if key in _REF_KEYWORDS and isinstance(value, str):
                    found.append(value)
                elif isinstance(value, dict | list):
                    stack.append((value, False))
        elif isinstance(node, list):
            stack.extend((v, False) for v in node if isinstance(v, dict | list))
    return found, nested_id


def _check_local_refs(
    schema: dict[str, Any], refs: list[str], meta: dict[str, Any], what: str
) -> None:
    """Each ``#...`` reference must point at a part of the schema (else the wait is
    refused now, not every provide_input later)."""
    from referencing import Registry
    from referencing.exceptions import Unresolvable
    from referencing.jsonschema import DRAFT202012, specification_with

    dialect = schema.get("$schema") or meta.get("$id") or ""
    resource = specification_with(dialect, default=DRAFT202012).create_resource(schema)
    base = resource.id() or "urn:durable:input-schema"
    resolver = Registry().with_resource(base, resource).resolver(base_uri=base)
    for ref in refs:
        try:
            resolver.lookup(ref)
        except Unresolvable:
            raise ConfigError(f"{what} refers to {ref!r}, which is not in the schema") from None


def check_schema(
    schema: Any, what: str = "wait_for_input() schema", *, model_key: bool = False
) -> None:
    """Refuse (ConfigError naming ``what``) a schema that is not a valid, self-contained
    JSON Schema. ``MODEL_KEY`` is durable's own (refused unless ``model_key``)."""
    from jsonschema import exceptions, validators

    if not isinstance(schema, dict):
        raise ConfigError(
            f"{what} must be a JSON Schema (a dict) or a pydantic model class, got "
            f"{type(schema).__name__}"
        )
    normalise(schema, what)
    if MODEL_KEY in schema and not model_key:
        raise ConfigError(
            f"{what} sets {MODEL_KEY!r}, durable's own keyword (it names the pydantic model "
            "a schema was made from): pass the model class itself instead of its schema"
        )
    refs, nested_id = _refs(schema)
    external = [r for r in refs if not r.startswith("#")]
    if external:
        raise ConfigError(
            f"{what} refers outside itself ({', '.join(map(repr, external))}); "
            'a schema must be self-contained: put what it refers to under "$defs" and refer '
            'to it as "#/$defs/name" (durable never reads files or URLs for a schema)'
        )
    cls = validators.validator_for(schema)
    try:
        cls.check_schema(schema)
    except exceptions.SchemaError as exc:
        raise ConfigError(f"{what} is not a valid JSON Schema: {exc.message}") from None
    if refs and not nested_id:
        _check_local_refs(schema, refs, cls.META_SCHEMA, what)


def model_schema(model: type[BaseModel], what: str) -> dict[str, Any]:
    """The schema stored for a pydantic ``model``: its ``model_json_schema()`` with
    ``MODEL_KEY`` naming it; ConfigError (naming ``what``) when it has none. Made and
    checked once per model class; a copy, the caller's to keep."""
    made = _made.get(model)
    if made is None:
        schema = json_schema(model, what)
        if MODEL_KEY in schema:
            raise ConfigError(
                f"{what}: the JSON Schema of {model.__name__} sets {MODEL_KEY!r}, "
                "durable's own keyword (it names the model a stored schema was made from)"
            )
        made = {**schema, MODEL_KEY: model_name(model)}
        check_schema(made, f"{what} (the JSON Schema of {model.__name__})", model_key=True)
        _made[model] = made
    copied: dict[str, Any] = json.loads(json.dumps(made))
    return copied


def split_schema(schema: dict[str, Any] | None) -> tuple[dict[str, Any] | None, str | None]:
    """A stored schema as the JSON Schema to show, and the model it was made from (its
    ``"module:Name"``; None for a plain JSON Schema)."""
    if schema is None or MODEL_KEY not in schema:
        return schema, None
    shown = dict(schema)
    name = shown.pop(MODEL_KEY)
    return shown, name if isinstance(name, str) else None


def check_data(what: str, data: Any, schema: dict[str, Any] | None) -> Any:
    """What to store of ``data`` for a stored schema; InvalidInput (nothing stored) when
    it does not match. With the model the schema was made from, when that is imported in
    this process, it is the JSON form of the model's instance (its validators ran, its
    defaults are filled in); else ``data`` itself, checked with the JSON Schema alone."""
    shown, name = split_schema(schema)
    model = find_model(name)
    if model is not None:
        return json_form(validate_model(model, data, what, "nothing was stored"), what)
    validate_input(what, data, shown)
    return data


def validate_input(
    what: str, data: Any, schema: dict[str, Any] | None, outcome: str = "nothing was stored"
) -> None:
    """Raise InvalidInput (naming ``what``, where and why, and ending with ``outcome``)
    when ``data`` does not match the JSON Schema ``schema``.

    Only the schema itself is used: a reference outside it (a file, a URL) is never
    fetched; it fails the check instead (schemas stored by older versions may have one)."""
    if schema is None:
        return
    from jsonschema import validators
    from referencing import Registry
    from referencing.exceptions import Unresolvable

    # An empty registry retrieves nothing (without one, jsonschema would fetch remote
    # references, file:// URLs included).
    validator = validators.validator_for(schema)(schema, registry=Registry())
    try:
        errors = sorted(validator.iter_errors(data), key=lambda e: list(e.absolute_path))
    except Unresolvable as exc:
        raise InvalidInput(
            f"{what} cannot be checked: its schema has a reference that does not "
            f"resolve within it ({exc}); durable never fetches a schema from a file or a "
            f"URL. {outcome[:1].upper()}{outcome[1:]}"
        ) from None
    if errors:
        problems = [("/".join(map(str, e.absolute_path)) or "(root)", e.message) for e in errors]
        raise describe_problems(what, "its schema", problems, outcome)
