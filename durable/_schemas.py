"""Input schemas: checking a wait_for_input() schema, and data against it (JSON Schema)."""

from __future__ import annotations

from typing import Any

from durable._json import normalise
from durable.errors import ConfigError, InvalidInput

__all__ = ["check_schema", "validate_input"]

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


def _check_local_refs(schema: dict[str, Any], refs: list[str], meta: dict[str, Any]) -> None:
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
            raise ConfigError(
                f"wait_for_input() schema refers to {ref!r}, which is not in the schema"
            ) from None


def check_schema(schema: Any) -> None:
    """Refuse (ConfigError) a wait_for_input() schema that is not a valid, self-contained
    JSON Schema."""
    from jsonschema import exceptions, validators

    if not isinstance(schema, dict):
        raise ConfigError(f"wait_for_input() schema must be a dict, got {type(schema).__name__}")
    normalise(schema, "wait_for_input() schema")
    refs, nested_id = _refs(schema)
    external = [r for r in refs if not r.startswith("#")]
    if external:
        raise ConfigError(
            f"wait_for_input() schema refers outside itself ({', '.join(map(repr, external))}); "
            'a schema must be self-contained: put what it refers to under "$defs" and refer '
            'to it as "#/$defs/name" (durable never reads files or URLs for a schema)'
        )
    cls = validators.validator_for(schema)
    try:
        cls.check_schema(schema)
    except exceptions.SchemaError as exc:
        raise ConfigError(
            f"wait_for_input() schema is not a valid JSON Schema: {exc.message}"
        ) from None
    if refs and not nested_id:
        _check_local_refs(schema, refs, cls.META_SCHEMA)


def validate_input(name: str, data: Any, schema: dict[str, Any] | None) -> None:
    """Raise InvalidInput (naming where and why) when ``data`` does not match ``schema``.

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
            f"input {name!r} cannot be checked: its schema has a reference that does not "
            f"resolve within it ({exc}); durable never fetches a schema from a file or a "
            "URL. Nothing was stored"
        ) from None
    if errors:
        shown = "; ".join(
            f"at {'/'.join(map(str, e.absolute_path)) or '(root)'}: {e.message}" for e in errors[:5]
        )
        raise InvalidInput(
            f"input {name!r} does not match its schema ({len(errors)} problem(s)): {shown}; "
            "nothing was stored"
        )
