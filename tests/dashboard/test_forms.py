"""Forms built from JSON Schemas give back the JSON they were filled with (hypothesis),
and place each problem at its field."""

from __future__ import annotations

import json

from hypothesis import given, settings
from hypothesis import strategies as st

from durable.dashboard._forms import PREFIX, WHOLE, form_for
from durable.dashboard._security import CSRF_FIELD

KINDS = {
    "string": st.text(st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=20),
    "integer": st.integers(-(2**53), 2**53),
    "number": st.floats(allow_nan=False, allow_infinity=False, width=32),
    "boolean": st.booleans(),
    "object": st.dictionaries(st.text(max_size=5), st.integers(), max_size=3),
}
#: an enum's choices: JSON values of any kind, as pydantic and hand-written schemas have
CHOICES = st.lists(
    st.one_of(st.text(max_size=8), st.integers(-5, 5), st.booleans()), min_size=1, max_size=4
).map(lambda xs: list({json.dumps(x): x for x in xs}.values()))
#: property names: plain ones, and those the dashboard's own fields have
NAMES = st.one_of(
    st.from_regex(r"[a-z]{1,8}", fullmatch=True),
    st.sampled_from([CSRF_FIELD, "back", "notice", "token", WHOLE, "input.x", "a/b"]),
)


@st.composite
def schema_and_value(draw):
    """An object schema (some properties plain, some enums written inline or under
    $defs behind a $ref, some nullable, some required) and a value a user could type."""
    names = draw(st.lists(NAMES, unique=True, max_size=6))
    props, value, defs, required = {}, {}, {}, []
    for name in names:
        kind = draw(st.sampled_from([*sorted(KINDS), "enum", "ref_enum"]))
        nullable = draw(st.booleans()) and kind != "boolean"
        if kind in ("enum", "ref_enum"):
            choices = draw(CHOICES)
            sub = {"enum": choices}
            if kind == "ref_enum":
                defs[f"E{len(defs)}"] = sub
                sub = {"$ref": f"#/$defs/E{len(defs) - 1}"}
            pick = st.sampled_from(choices)
        else:
            sub = {"type": kind}
            pick = KINDS[kind]
        props[name] = {"anyOf": [sub, {"type": "null"}]} if nullable else sub
        if draw(st.booleans()):
            required.append(name)
        if nullable and draw(st.booleans()):
            value[name] = None  # (a nullable field left empty: null, never left out)
        elif nullable or name in required or kind == "boolean" or draw(st.booleans()):
            value[name] = draw(pick)
        # (else left out: an optional field left empty)
    schema = {"type": "object", "properties": props, "required": required}
    if defs:
        schema["$defs"] = defs
    return schema, value


def submitted(form, value):
    """What a browser sends for ``value`` typed into ``form``."""
    sent = {}
    for f in form.fields:
        v = value.get(f.name)
        if f.kind == "checkbox":
            if v:
                sent[f.key] = "on"
        elif v is None:
            sent[f.key] = ""
        elif f.kind == "text":
            sent[f.key] = v
        elif f.kind in ("integer", "number"):
            sent[f.key] = repr(v)
        elif f.kind == "select":
            (sent[f.key],) = [text for text, _ in f.option_texts if text == json.dumps(v)]
        else:
            sent[f.key] = json.dumps(v)
    return sent


@settings(max_examples=200, deadline=None)
@given(schema_and_value())
def test_a_filled_form_gives_back_the_value(case):
    schema, value = case
    form = form_for(schema)
    assert [f.name for f in form.fields] == list(schema["properties"])
    # every field is named apart from what the dashboard sends itself
    assert all(f.key.startswith(PREFIX) and f.key != CSRF_FIELD for f in form.fields)
    for f in form.fields:
        declared = schema["properties"][f.name]
        inner = declared.get("anyOf", [declared])[0]
        if "enum" in inner or "$ref" in inner:
            assert f.kind == "select"  # an enum, even behind a $ref, is a list to choose
        # a field the browser must not send empty: required, and empty would not be null
        # (nor false: a checkbox left empty is)
        must = f.name in schema["required"] and "anyOf" not in declared
        assert f.must_fill == (must and declared.get("type") != "boolean")
    assert form.data(submitted(form, value)) == value


def test_a_schema_without_properties_is_one_json_field():
    form = form_for({"type": "array"})
    assert [f.name for f in form.fields] == [WHOLE]
    assert form.data({PREFIX + WHOLE: "[1, 2]"}) == [1, 2]
    form.place([("(root)", "not an array"), ("1", "too big")])
    assert form.fields[0].problems == ["not an array", "1: too big"]
    # a property that happens to have that name is a property like any other
    named = form_for({"type": "object", "properties": {WHOLE: {"type": "boolean"}}})
    assert named.data({}) == {WHOLE: False}


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
    assert form.data({"input.size": "3", "input.qty": "2"}) == {"size": 3, "qty": 2}
    form.place([("qty", "must be positive"), ("size/0", "odd"), ("other", "unknown")])
    assert qty.problems == ["must be positive"] and size.problems == ["0: odd"]
    assert form.problems == ["other: unknown"]


def test_a_missing_required_property_is_placed_at_its_field():
    # (a JSON Schema reports it at the object that lacks it: the root)
    form = form_for(
        {
            "type": "object",
            "properties": {"by": {"type": "string"}, "it's": {"type": "string"}},
            "required": ["by", "it's"],
        }
    )
    by, quoted = form.fields
    form.place([("(root)", "'by' is a required property")])
    form.place([("", '"it\'s" is a required property')])
    assert by.problems == ["required: fill it in"] == quoted.problems
    assert form.problems == []
    form.place([("(root)", "'elsewhere' is a required property")])  # (no such field)
    assert form.problems == ["(root): 'elsewhere' is a required property"]


def test_a_ref_to_an_enum_is_a_select_and_a_nullable_one_offers_null():
    # what pydantic writes for `colour: Colour` and `finish: Colour | None` (no default)
    form = form_for(
        {
            "$defs": {"Colour": {"enum": ["red", "green"], "title": "Colour", "type": "string"}},
            "properties": {
                "colour": {"$ref": "#/$defs/Colour"},
                "finish": {"anyOf": [{"$ref": "#/$defs/Colour"}, {"type": "null"}]},
                "note": {"type": ["string", "null"]},
            },
            "required": ["colour", "finish", "note"],
            "type": "object",
        }
    )
    colour, finish, note = form.fields
    assert (colour.kind, colour.options, colour.label, colour.must_fill) == (
        "select",
        ["red", "green"],
        "Colour",
        True,
    )
    assert (finish.kind, finish.nullable, finish.must_fill) == ("select", True, False)
    assert (note.kind, note.nullable, note.must_fill) == ("text", True, False)
    sent = {"input.colour": '"green"', "input.finish": "", "input.note": ""}
    assert form.data(sent) == {"colour": "green", "finish": None, "note": None}


def test_a_choice_that_is_not_offered_is_refused_at_its_field():
    form = form_for({"type": "object", "properties": {"size": {"enum": ["S", "M"]}}})
    try:
        form.data({"input.size": '"XL"'})
    except ValueError:
        pass
    else:
        raise AssertionError("a choice not offered was taken")
    assert form.fields[0].problems == ["'\"XL\"' is not one of the choices"]
