"""A form for a pending input, built from its JSON Schema, and the JSON a submitted form
gives.

An object schema with ``properties`` becomes one field per property: a text field for a
string (a select for an ``enum``), a number field for an integer or number, a checkbox
for a boolean, and a JSON text area for anything else (objects, arrays, ``$ref``s, unions).
An optional field (``anyOf [X, null]``, as pydantic writes ``X | None``) left empty is
``null``. Any other schema, or none, is one JSON text area for the whole value. What the
form gives is checked by ``Engine.provide_input`` as any other data: its problems are
shown next to the fields they name.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Field", "Form", "form_for"]

WHOLE = "__value__"  # the one field of a schema that is not an object of properties


@dataclass
class Field:
    name: str
    kind: str  # text, number, integer, checkbox, select, json
    label: str
    required: bool
    nullable: bool = False
    options: list[Any] = field(default_factory=list)
    value: str = ""  # as shown in the field
    help: str = ""
    problems: list[str] = field(default_factory=list)

    @property
    def option_texts(self) -> list[tuple[str, str]]:
        """Each enum option: (its JSON, as the field sends it; its text)."""
        return [(json.dumps(o), o if isinstance(o, str) else json.dumps(o)) for o in self.options]


@dataclass
class Form:
    fields: list[Field]
    problems: list[str] = field(default_factory=list)  # those that name no field

    def data(self, submitted: dict[str, str]) -> Any:
        """The JSON value the submitted fields make; ValueError naming a field whose text
        is not what its kind needs (its problem is recorded on it too)."""
        if len(self.fields) == 1 and self.fields[0].name == WHOLE:
            f = self.fields[0]
            f.value = submitted.get(WHOLE, "")
            return _json(f, f.value)
        out: dict[str, Any] = {}
        bad = []
        for f in self.fields:
            text = submitted.get(f.name)
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
        """Put each ``(path, message)`` problem on the field its path begins with."""
        by_name = {f.name: f for f in self.fields}
        for path, message in problems:
            head, _, rest = path.partition("/")
            target = by_name.get(head) or (by_name.get(WHOLE) if len(by_name) == 1 else None)
            text = f"{rest}: {message}" if rest and target is not None else message
            if target is not None:
                target.problems.append(text)
            else:
                self.problems.append(f"{path}: {message}")


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
        return json.loads(text)
    if f.kind in ("integer", "number"):
        try:
            number = float(text) if f.kind == "number" else int(text)
        except ValueError:
            what = "a number" if f.kind == "number" else "an integer"
            raise ValueError(f"{text!r} is not {what}") from None
        return number
    return _json(f, text)


def form_for(schema: dict[str, Any] | None, example: Any = None) -> Form:
    """The form of a schema (None: any JSON value)."""
    props = (schema or {}).get("properties")
    if (
        not isinstance(schema, dict)
        or schema.get("type", "object") != "object"
        or not isinstance(props, dict)
    ):
        shown = "" if example is None else json.dumps(example, indent=2)
        return Form([Field(WHOLE, "json", "value (JSON)", True, value=shown)])
    required = set(schema.get("required") or ())
    fields = []
    for name, sub in props.items():
        fields.append(_field(str(name), sub if isinstance(sub, dict) else {}, name in required))
    return Form(fields)


def _field(name: str, declared: dict[str, Any], required: bool) -> Field:
    label = str(declared.get("title") or name)
    help_text = str(declared.get("description") or "")
    sub, nullable = declared, False
    options = declared.get("anyOf")
    if isinstance(options, list) and len(options) == 2 and {"type": "null"} in options:
        inner = next(o for o in options if o != {"type": "null"})
        sub, nullable = (inner if isinstance(inner, dict) else {}), True
    kinds = {"string": "text", "integer": "integer", "number": "number", "boolean": "checkbox"}
    declared_type = sub.get("type")
    kind = kinds.get(declared_type, "json") if isinstance(declared_type, str) else "json"
    f = Field(name, kind, label, required, nullable=nullable, help=help_text)
    if isinstance(sub.get("enum"), list):
        f.kind, f.options = "select", list(sub["enum"])
    default = declared.get("default", sub.get("default"))
    if default is not None:
        if f.kind == "checkbox":
            f.value = "on" if default is True else ""
        elif f.kind in ("select", "json"):
            f.value = json.dumps(default)
        else:
            f.value = str(default)
    return f
