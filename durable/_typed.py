"""Pydantic models as the types of inputs and waits, without depending on pydantic.

pydantic is an optional extra. durable never imports it to find out whether something is a
model: a class or a value can only be a pydantic model if pydantic was imported already
(by the code that defined the model), so every check looks in ``sys.modules`` first.

A model's **JSON form** is ``model_dump(mode="json", by_alias=True)``: what its JSON
Schema (``model_json_schema()``, by alias too) describes, and what validating it gives
back the same model. Data is validated the way pydantic validates JSON
(``model_validate_json``), since what durable stores and hands back is JSON.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from durable.errors import ConfigError, InvalidInput, SerializationError

if TYPE_CHECKING:
    from pydantic import BaseModel, ValidationError

    M = TypeVar("M", bound=BaseModel)

__all__ = [
    "describe_problems",
    "find_model",
    "is_model",
    "is_model_class",
    "json_form",
    "json_schema",
    "model_name",
    "problems_of",
    "validate_model",
]

_SHOWN = 5  # problems spelled out in a message (all are in InvalidInput.problems)


def _base() -> type[BaseModel] | None:
    """pydantic's BaseModel if pydantic is imported in this process (never imports it)."""
    module = sys.modules.get("pydantic")
    if module is None:
        return None
    base: type[BaseModel] | None = getattr(module, "BaseModel", None)
    return base


def is_model_class(obj: object) -> bool:
    """Whether ``obj`` is a pydantic model class (a ``BaseModel`` subclass)."""
    base = _base()
    return base is not None and isinstance(obj, type) and issubclass(obj, base)


def is_model(obj: object) -> bool:
    """Whether ``obj`` is an instance of a pydantic model."""
    base = _base()
    return base is not None and isinstance(obj, base)


def model_name(cls: type) -> str:
    """How a stored schema names its model: ``"module:QualName"``."""
    return f"{cls.__module__}:{cls.__qualname__}"


def find_model(name: object) -> type[BaseModel] | None:
    """The model ``name`` (``"module:QualName"``) if its module is imported in this
    process, else None. Nothing is imported to find it, and a class defined inside a
    function is not found (its data is checked against the stored JSON Schema instead)."""
    if not isinstance(name, str) or _base() is None:
        return None
    module, _, qualname = name.partition(":")
    found: Any = sys.modules.get(module)
    for part in qualname.split("."):
        if found is None or not part.isidentifier():  # ("<locals>")
            return None
        found = getattr(found, part, None)
    if is_model_class(found) and model_name(found) == name:
        model: type[BaseModel] = found
        return model
    return None


def json_schema(cls: type[BaseModel], what: str) -> dict[str, Any]:
    """``cls.model_json_schema()``; ConfigError when pydantic cannot describe the model
    in JSON Schema."""
    from pydantic.errors import PydanticUserError

    try:
        return cls.model_json_schema()
    except PydanticUserError as exc:
        raise ConfigError(
            f"{what}: the model {cls.__name__} has no JSON Schema ({_first_line(exc)}); durable "
            "stores the schema so that data can be checked without the code: use field "
            "types pydantic can describe in JSON Schema"
        ) from None


def _first_line(exc: Exception) -> str:
    """pydantic's message without the link to its docs on the lines after it."""
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__


def json_form(value: BaseModel, what: str) -> Any:
    """The JSON form of a model instance, checked to validate back into an equal
    instance (what is stored is what steps read back); SerializationError naming
    ``what``, the model and the fields when pydantic cannot serialise it or it does not
    come back the same."""
    from pydantic import ValidationError
    from pydantic_core import PydanticSerializationError

    cls = type(value)
    named = f"a {cls.__module__}.{cls.__qualname__}"
    try:
        form = value.model_dump(mode="json", by_alias=True)
    except PydanticSerializationError as exc:
        raise SerializationError(
            f"{what} cannot be stored as JSON: it is {named} that pydantic cannot "
            f"serialise to JSON ({exc}); give the field a type pydantic serialises (or a "
            "field_serializer), or store plain JSON values"
        ) from None
    try:
        back = cls.model_validate_json(json.dumps(form))
    except ValidationError as exc:
        found = "; ".join(f"at {path}: {message}" for path, message in problems_of(exc)[:_SHOWN])
        raise SerializationError(
            f"{what} cannot be stored: it is {named} whose JSON form does not validate "
            f"back into {cls.__name__} ({found}); durable stores the JSON form "
            f"(model_dump(mode='json', by_alias=True)) and steps read it back, so "
            f"{_round_trip_hint}"
        ) from None
    differ = ", ".join(_differences(value, back))
    if differ:
        raise SerializationError(
            f"{what} cannot be stored: it is {named} that does not come back the same "
            f"from its JSON form (different: {differ}); durable stores the JSON form "
            f"(model_dump(mode='json', by_alias=True)) and steps read it back, so "
            f"{_round_trip_hint}"
        ) from None
    return form


def _differences(value: BaseModel, back: BaseModel) -> list[str]:
    """The fields (and extras) of ``value`` that ``back`` does not have alike. Private
    attributes are not data (never stored), computed fields come back as what they
    compute, and a tuple that came back a list is alike (as plain JSON data does)."""
    cls = type(value)
    computed = set(cls.model_computed_fields)
    names = list(cls.model_fields)
    extra = {k: v for k, v in (value.__pydantic_extra__ or {}).items() if k not in computed}
    extra_back = {k: v for k, v in (back.__pydantic_extra__ or {}).items() if k not in computed}
    found = [n for n in names if not _alike(getattr(value, n, None), getattr(back, n, None))]
    found += [
        k
        for k in sorted(set(extra) | set(extra_back))
        if not _alike(extra.get(k), extra_back.get(k))
    ]
    return found


def _alike(a: Any, b: Any) -> bool:
    base = _base()
    if base is not None and isinstance(a, base) and type(a) is type(b):
        return not _differences(a, b)
    if isinstance(a, list | tuple) and isinstance(b, list | tuple):
        return len(a) == len(b) and all(_alike(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_alike(a[k], b[k]) for k in a)
    return bool(a == b)


_round_trip_hint = (
    "every field must survive that round trip: no Field(exclude=True), no secret types "
    "(SecretStr is dumped masked), a validation_alias only with the same "
    "serialization_alias (or populate_by_name), and serialisers whose output the "
    "validators accept"
)


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def problems_of(exc: ValidationError) -> list[tuple[str, str]]:
    """Each problem pydantic found: the field path (``"items/0/price"``; ``"(root)"``
    for the whole value) and what was wrong, with what it got (unless it was missing)."""
    found = []
    for e in exc.errors(include_url=False):
        path = "/".join(str(p) for p in e["loc"]) or "(root)"
        message = e["msg"]
        if e["type"] != "missing" and "input" in e:
            message += f" (got {_shown(e['input'])})"
        found.append((path, message))
    return found


def describe_problems(
    what: str, against: str, problems: Sequence[tuple[str, str]], outcome: str
) -> InvalidInput:
    """InvalidInput: ``what`` does not match ``against``, each problem at its path."""
    shown = "; ".join(f"at {path}: {message}" for path, message in problems[:_SHOWN])
    more = f"; and {len(problems) - _SHOWN} more" if len(problems) > _SHOWN else ""
    return InvalidInput(
        f"{what} does not match {against} ({len(problems)} problem(s)): {shown}{more}; {outcome}",
        problems=problems,
    )


def validate_model(model: type[M], data: Any, what: str, outcome: str) -> M:
    """``data`` (a JSON value) as an instance of ``model``, validated as pydantic
    validates JSON; InvalidInput naming each field path and what was wrong there, ending
    with ``outcome`` (what became of the call: "nothing was stored")."""
    from pydantic import ValidationError

    try:
        return model.model_validate_json(json.dumps(data))
    except ValidationError as exc:
        raise describe_problems(what, model.__name__, problems_of(exc), outcome) from None
