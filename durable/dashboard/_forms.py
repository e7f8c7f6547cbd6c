"""A form for a pending input, built from its JSON Schema, and the JSON a submitted form
gives.

An object schema with ``properties`` becomes one field per property: a text field for a
string (a select for an ``enum``), a number field for an integer or number, a checkbox
for a boolean, and a JSON text area for anything else (objects, arrays, unions). A
``$ref`` to a part of the schema (``#/$defs/Colour``, as pydantic writes an enum or a
nested model) is followed first. An optional field (``anyOf [X, null]``, as pydantic
writes ``X | None``) left empty is ``null``; a select of one has an empty choice for it.
Any other schema, or none, is one JSON text area for the whole value. What the form
gives is checked by ``Engine.provide_input`` as any other data: its problems are shown
next to the fields they name (a missing required property's too).

Every field's name in the HTML form is ``PREFIX`` and the property's name, so that no
property (``csrf``, say) takes the name of a field the dashboard sends itself.
"""

from __future__ import annotations

import ast
import json
import re
from dataclasses import dataclass, field
from typing import Any

__all__ = ["PREFIX", "WHOLE", "Field", "Form", "form_for"]

WHOLE = "__value__"  # the one field of a schema that is not an object of properties
PREFIX = "input."  # what begins the HTML name of every field of an input's form

_REQUIRED = re.compile(r"^(.+) is a required property$")  # (jsonschema's message)


@dataclass
class Field:
    name: str  # the property's (WHOLE: the whole value)
    kind: str  # text, number, integer, checkbox, select, json
    label: str
    required: bool
    nullable: bool = False
    options: list[Any] = field(default_factory=list)
    value: str = ""  # as shown in the field
    help: str = ""
    problems: list[str] = field(default_factory=list)

    @property
    def key(self) -> str:
        """The field's name in the HTML form."""
        return PREFIX + self.name

    @property
    def must_fill(self) -> bool:
        """Whether the browser must refuse to send the field empty (HTML ``required``):
        a required field that empty would not give (null for a nullable one, false for
        a checkbox)."""
        return self.required and not self.nullable and self.kind != "checkbox"

    @property
    def option_texts(self) -> list[tuple[str, str]]:
        """Each enum option: (its JSON, as the field sends it; its text)."""
        return [(json.dumps(o), o if isinstance(o, str) else json.dumps(o)) for o in self.options]


@dataclass
class Form:
    fields: list[Field]
    problems: list[str] = field(default_factory=list)  # those that name no field
    whole: bool = False  # one JSON field for the whole value (its name is WHOLE)

    def data(self, submitted: dict[str, str]) -> Any:
        """The JSON value the submitted fields make; ValueError naming a field whose text
        is not what its kind needs (its problem is recorded on it too)."""
        if self.whole:
            f = self.fields[0]
            f.value = submitted.get(f.key, "")
            return _json(f, f.value)
        out: dict[str, Any] = {}
        bad = []
        for f in self.fields:
            text = submitted.get(f.key)
            f.value = "on" if f.kind == "checkbox" and text is not None else (text or "")
            try:
                value = _read(f, text)
            except ValueError as exc:
                f.problems.append(str(exc))
                bad.append(f.name)
                continue
            if value is not _LEFT_OUT:
                out[f.name] = value
        if bad:
            raise ValueError(f"fields {', '.join(bad)} are not valid")
        return out

    def place(self, problems: list[tuple[str, str]]) -> None:
        """Put each ``(path, message)`` problem on the field its path begins with; a
        missing required property's (which a JSON Schema reports at the object holding
        it) on that property's field."""
        by_name = {f.name: f for f in self.fields}
        for path, message in problems:
            if self.whole:
                at = "" if path in ("", "(root)") else f"{path}: "
                self.fields[0].problems.append(at + message)
                continue
            if path in ("", "(root)"):
                missing = _required_name(message)
                if missing in by_name:
                    by_name[missing].problems.append("required: fill it in")
                    continue
            head, _, rest = path.partition("/")
            target = by_name.get(head)
            text = f"{rest}: {message}" if rest and target is not None else message
            if target is not None:
                target.problems.append(text)
            else:
                self.problems.append(f"{path}: {message}")


def _required_name(message: str) -> str | None:
    """The property a "'name' is a required property" message names."""
    found = _REQUIRED.match(message)
    if found is None:
        return None
    try:
        name = ast.literal_eval(found[1])  # (jsonschema writes the name's repr)
    except (ValueError, SyntaxError):
        return None
    return name if isinstance(name, str) else None


_LEFT_OUT = object()


def _json(f: Field, text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        f.problems.append(f"not JSON: {exc.msg} at line {exc.lineno} column {exc.colno}")
        raise ValueError(f"field {f.name} is not JSON") from None


def _read(f: Field, text: str | None) -> Any:
    if f.kind == "checkbox":
        return text is not None
    if text is None or text == "":
        if f.nullable:
            return None
        return _LEFT_OUT  # (the schema says whether it may be left out)
    if f.kind == "text":
        return text
    if f.kind == "select":
        try:
            chosen = json.loads(text)
        except json.JSONDecodeError:
            raise ValueError(f"{text!r} is not one of the choices") from None
        if chosen not in f.options:
            raise ValueError(f"{text!r} is not one of the choices")
        return chosen
    if f.kind in ("integer", "number"):
        try:
            number = float(text) if f.kind == "number" else int(text)
        except ValueError:
            what = "a number" if f.kind == "number" else "an integer"
            raise ValueError(f"{text!r} is not {what}") from None
        return number
    return _json(f, text)


def _resolve(schema: Any, root: dict[str, Any]) -> Any:
    """``schema`` with a local ``$ref`` (``#/$defs/...``, ``#/definitions/...``) followed,
    its own keywords kept over those of what it refers to; a reference that leads nowhere
    in ``root`` (or round in a loop) is left as it is."""
    seen: set[str] = set()
    while isinstance(schema, dict) and isinstance(schema.get("$ref"), str):
        ref = schema["$ref"]
        if not ref.startswith("#/") or ref in seen:
            break
        seen.add(ref)
        target: Any = root
        for escaped in ref[2:].split("/"):
            part = escaped.replace("~1", "/").replace("~0", "~")
            target = target.get(part) if isinstance(target, dict) else None
        if not isinstance(target, dict):
            break
        schema = {**target, **{k: v for k, v in schema.items() if k != "$ref"}}
    return schema


def form_for(schema: dict[str, Any] | None, example: Any = None) -> Form:
    """The form of a schema (None: any JSON value)."""
    root = schema if isinstance(schema, dict) else {}
    top = _resolve(root, root)
    props = top.get("properties") if isinstance(top, dict) else None
    if (
        not isinstance(top, dict)
        or top.get("type", "object") != "object"
        or not isinstance(props, dict)
    ):
        shown = "" if example is None else json.dumps(example, indent=2)
        return Form([Field(WHOLE, "json", "value (JSON)", True, value=shown)], whole=True)
    required = set(top.get("required") or ())
    fields = []
    for name, sub in props.items():
        declared = _resolve(sub, root) if isinstance(sub, dict) else {}
        fields.append(_field(str(name), declared, name in required, root))
    return Form(fields)


def _field(name: str, declared: dict[str, Any], required: bool, root: dict[str, Any]) -> Field:
    label = str(declared.get("title") or name)
    help_text = str(declared.get("description") or "")
    sub, nullable = declared, False
    options = declared.get("anyOf", declared.get("oneOf"))
    if isinstance(options, list) and len(options) == 2 and {"type": "null"} in options:
        inner = next(o for o in options if o != {"type": "null"})
        sub, nullable = _resolve(inner, root), True
        sub = sub if isinstance(sub, dict) else {}
    kinds = {"string": "text", "integer": "integer", "number": "number", "boolean": "checkbox"}
    declared_type = sub.get("type")
    if isinstance(declared_type, list) and "null" in declared_type and len(declared_type) == 2:
        declared_type = next(t for t in declared_type if t != "null")  # (["string", "null"])
        nullable = True
    kind = kinds.get(declared_type, "json") if isinstance(declared_type, str) else "json"
    f = Field(name, kind, label, required, nullable=nullable, help=help_text)
    if isinstance(sub.get("enum"), list):
        f.kind, f.options = "select", [o for o in sub["enum"] if o is not None]
        f.nullable = f.nullable or None in sub["enum"]
    elif "const" in sub and sub["const"] is not None:
        f.kind, f.options = "select", [sub["const"]]
    default = declared.get("default", sub.get("default"))
    if default is not None:
        if f.kind == "checkbox":
            f.value = "on" if default is True else ""
        elif f.kind in ("select", "json"):
            f.value = json.dumps(default)
        else:
            f.value = str(default)
    return f
