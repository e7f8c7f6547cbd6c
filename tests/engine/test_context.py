"""The context API inside steps, its errors outside them, and JSON checks."""

from __future__ import annotations

import logging
from decimal import Decimal

import pytest

import durable
from durable import Retry, step, workflow
from durable.context import (
    append_context,
    attempt,
    context,
    delete_context,
    get_context,
    increment_context,
    input,
    put_context,
    update_context,
    workflow_id,
)


@workflow("context_api")
class ContextApi:
    @step
    def writes(self) -> None:
        put_context("a", 1)
        put_context({"b": [1, 2], "c": {"d": "e"}})
        update_context("a", lambda v: v + 10)
        update_context("new", lambda v: "was none" if v is None else v)
        append_context("log", "x")
        append_context("log", "y")
        increment_context("n")
        increment_context("n", by=4)
        put_context("gone", True)
        delete_context("gone")
        delete_context("never-set")
        put_context("tuple", (1, 2))
        put_context("me", workflow_id())
        put_context("input", input())
        put_context("attempt", attempt())

    @step
    def reads(self) -> None:
        snapshot = context()
        snapshot["a"] = "mutated copy"  # a copy: does not write
        put_context("read_a", get_context("a"))
        put_context("default", get_context("missing", "dflt"))
        put_context("none", get_context("missing"))
        put_context("keys", sorted(context()))


def test_context_api(engine):
    wid = engine.start(ContextApi, {"x": 1})
    engine.drain()
    ctx = engine.get_execution(wid).context
    assert ctx["a"] == 11
    assert ctx["b"] == [1, 2]
    assert ctx["c"] == {"d": "e"}
    assert ctx["new"] == "was none"
    assert ctx["log"] == ["x", "y"]
    assert ctx["n"] == 5
    assert "gone" not in ctx
    assert ctx["tuple"] == [1, 2]  # as it reads back from JSON
    assert ctx["me"] == wid
    assert ctx["input"] == {"x": 1}
    assert ctx["attempt"] == 1
    assert ctx["read_a"] == 11
    assert ctx["default"] == "dflt"
    assert ctx["none"] is None


@pytest.mark.parametrize(
    "call",
    [
        lambda: context(),
        lambda: get_context("k"),
        lambda: put_context("k", 1),
        lambda: update_context("k", lambda v: v),
        lambda: delete_context("k"),
        lambda: append_context("k", 1),
        lambda: increment_context("k"),
        lambda: input(),
        lambda: workflow_id(),
    ],
)
def test_context_api_outside_a_step_raises_context_error(call):
    with pytest.raises(durable.ContextError, match=r"called outside a running step"):
        call()


@workflow("bad_context_value")
class BadValue:
    @step
    def first(self) -> None:
        put_context("ok", 1)

    @step
    def second(self) -> None:
        put_context("kept", "before")
        try:
            put_context("when", Decimal("1.5"))
        except durable.SerializationError as exc:
            put_context("error", str(exc))
            put_context("when_stored", "when" in durable.context.context())


def test_non_json_value_raises_at_the_call_naming_key_and_type(engine):
    wid = engine.start(BadValue)
    engine.drain()
    ctx = engine.get_execution(wid).context
    assert "context key 'when'" in ctx["error"]
    assert "decimal.Decimal" in ctx["error"]
    assert ctx["when_stored"] is False
    assert ctx["kept"] == "before"


@workflow("uncaught_bad_value")
class UncaughtBadValue:
    @step
    def first(self) -> None:
        put_context("ok", 1)

    @step
    def second(self) -> None:
        put_context("kept", "no")
        put_context("obj", object())


def test_uncaught_serialization_error_fails_the_attempt_and_stores_nothing(engine):
    wid = engine.start(UncaughtBadValue)
    engine.drain()
    ex = engine.get_execution(wid, include_steps=True)
    assert ex.status == "failed"
    assert ex.error["type"] == "durable.errors.SerializationError"
    assert "context key 'obj'" in ex.error["message"]
    assert ex.context == {"ok": 1}


@workflow("mutated_in_place")
class MutatedInPlace:
    @step
    def first(self) -> None:
        put_context("items", [])

    @step
    def second(self) -> None:
        get_context("items").append({1, 2})  # sneaks a set past put_context


def test_non_json_mutation_is_caught_at_commit(engine):
    wid = engine.start(MutatedInPlace)
    engine.drain()
    ex = engine.get_execution(wid)
    assert ex.status == "failed"
    assert "after step 'second'" in ex.error["message"]
    assert ex.context == {"items": []}


@workflow("bad_accumulators")
class BadAccumulators:
    @step
    def s(self) -> None:
        put_context("text", "abc")
        for fn in (lambda: append_context("text", 1), lambda: increment_context("text")):
            try:
                fn()
            except durable.ContextError as exc:
                append_context("errors", str(exc))


def test_accumulators_on_wrong_types(engine):
    wid = engine.start(BadAccumulators)
    engine.drain()
    errors = engine.get_execution(wid).context["errors"]
    assert "append_context('text') needs a list there, but it holds str" in errors[0]
    assert "increment_context('text') needs a number there, but it holds str" in errors[1]


@workflow("logs_captured")
class LogsCaptured:
    @step
    def talks(self) -> None:
        logging.getLogger("shop").warning("charging %s", "order 7")


def test_logging_records_are_stored_with_the_attempt(engine, durable_clock):
    wid = engine.start(LogsCaptured)
    engine.drain()
    logs = engine.get_execution(wid, include_steps=True).steps[0].logs
    assert logs == [
        {
            "time": durable_clock.now().isoformat(),
            "level": "WARNING",
            "logger": "shop",
            "message": "charging order 7",
        }
    ]


@workflow("context_input_mutation")
class MutatesInput:
    @step(retry=Retry(max_attempts=2, backoff="constant", base=0))
    def a(self) -> None:
        input()["items"].append(f"attempt {attempt()}")
        if attempt() == 1:
            raise RuntimeError("fail after mutating the input")

    @step
    def b(self) -> None:
        put_context("seen", input()["items"])


def test_input_is_read_only_per_attempt(engine):
    wid = engine.start(MutatesInput, {"items": []})
    engine.drain()
    ex = engine.get_execution(wid)
    assert ex.status == "completed"
    assert ex.input == {"items": []}
    assert ex.context == {"seen": []}


@workflow("context_bad_keys")
class BadKeys:
    @step
    def s(self) -> None:
        for bad in ({1: "a", "1": "b"}, {"ok": {None: 1}}):
            try:
                put_context("m", bad)
            except durable.SerializationError as exc:
                append_context("errors", str(exc))
        try:
            increment_context("n", float("inf"))
        except durable.SerializationError as exc:
            append_context("errors", str(exc))


def test_non_str_keys_and_infinities_are_refused_at_the_call(engine):
    wid = engine.start(BadKeys)
    engine.drain()
    ctx = engine.get_execution(wid).context
    assert "m" not in ctx and "n" not in ctx
    assert "key 1 at top level is int, not str" in ctx["errors"][0]
    assert "key None" in ctx["errors"][1]
    assert "context key 'n'" in ctx["errors"][2]
