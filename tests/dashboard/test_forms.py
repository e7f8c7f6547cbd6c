"""Forms built from JSON Schemas give back the JSON they were filled with (hypothesis),
and place each problem at its field."""

from __future__ import annotations

import json

from hypothesis import given, settings
from hypothesis import strategies as st

from durable.dashboard._forms import WHOLE, form_for

KINDS = {
    "string": st.text(st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=20),
    "integer": st.integers(-(2**53), 2**53),
    "number": st.floats(allow_nan=False, allow_infinity=False, width=32),
    "boolean": st.booleans(),
    "object": st.dictionaries(st.text(max_size=5), st.integers(), max_size=3),
}


@st.composite
def schema_and_value(draw):
    names = draw(st.lists(st.from_regex(r"[a-z]{1,8}", fullmatch=True), unique=True, max_size=6))
    props, value = {}, {}
    for name in names:
        kind = draw(st.sampled_from(sorted(KINDS)))
        nullable = draw(st.booleans()) and kind != "boolean"
        sub = {"type": kind}
        props[name] = {"anyOf": [sub, {"type": "null"}]} if nullable else sub
        if nullable and draw(st.booleans()):
            value[name] = None
        else:
            value[name] = draw(KINDS[kind])
    return {"type": "object", "properties": props}, value


def submitted(form, value):
    """What a browser sends for ``value`` typed into ``form``."""
    sent = {}
    for f in form.fields:
        v = value.get(f.name)
        if f.kind == "checkbox":
            if v:
                sent[f.name] = "on"
        elif v is None:
            sent[f.name] = ""
        elif f.kind == "text":
            sent[f.name] = v
        elif f.kind in ("integer", "number"):
            sent[f.name] = repr(v)
        else:
            sent[f.name] = json.dumps(v)
    return sent


@settings(max_examples=200, deadline=None)
@given(schema_and_value())
def test_a_filled_form_gives_back_the_value(case):
    schema, value = case
    form = form_for(schema)
    assert [f.name for f in form.fields] == list(schema["properties"])
    assert form.data(submitted(form, value)) == value


def test_a_schema_without_properties_is_one_json_field():
    form = form_for({"type": "array"})
    assert [f.name for f in form.fields] == [WHOLE]
    assert form.data({WHOLE: "[1, 2]"}) == [1, 2]


def test_enum_and_defaults_and_problems_at_their_fields():
    form = form_for(
        {
            "type": "object",
            "properties": {
                "size": {"enum": ["S", "M", 3], "default": "M"},
                "qty": {"type": "integer", "default": 1},
            },
        }
    )
    size, qty = form.fields
    assert size.kind == "select" and size.value == '"M"' and qty.value == "1"
    assert form.data({"size": "3", "qty": "2"}) == {"size": 3, "qty": 2}
    form.place([("qty", "must be positive"), ("size/0", "odd"), ("other", "unknown")])
    assert qty.problems == ["must be positive"] and size.problems == ["0: odd"]
    assert form.problems == ["other: unknown"]
