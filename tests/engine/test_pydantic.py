"""Typed data with pydantic (on memory, SQLite and PostgreSQL): wait_for_input with a model,
@workflow(input=...), models in the context and in return values, and durable without
pydantic installed."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel, ConfigDict, PrivateAttr, computed_field

import durable
from durable import step, workflow
from durable.context import input, put_context
from durable.waits import wait_for_input
from pydantic_workflows import (
    ORDER,
    Approval,
    AsyncAsk,
    Internal,
    Item,
    Login,
    LoginFlow,
    Money,
    NotAModel,
    OpaqueWrite,
    Order,
    Parent,
    Renamed,
    Reserved,
    Review,
    SchemaInput,
    SecretInContext,
    TakeEvent,
    TicketFlow,
    Timeouts,
    Units,
    Values,
)

from helpers import examples

TESTS = Path(__file__).resolve().parents[1]
APPROVAL = "pydantic_workflows:Approval"


def waiting_review(engine, order=ORDER):
    wid = engine.start(Review, order)
    assert engine.run_until(wid, "waiting").current_step == "approve"
    return wid


def problems(excinfo):
    return dict(excinfo.value.problems)


# -- wait_for_input(schema=Model) ----------------------------------------------------------


def test_a_wait_with_a_model_keeps_its_json_schema_and_the_step_gets_an_instance(
    durable_engine,
):
    wid = waiting_review(durable_engine)
    (asked,) = durable_engine.list_pending_inputs()
    # What a form (the CLI, a dashboard) needs, without importing the code:
    assert asked.schema == Approval.model_json_schema()
    assert asked.model == APPROVAL
    assert asked.prompt == "Approve the order?"
    assert durable_engine.list_waits(wid) == [asked]

    durable_engine.provide_input(wid, "approval", {"approved": True, "by": "ann"})
    ex = durable_engine.run_until(wid)
    assert ex.status == "completed"
    assert ex.context["approval_type"] == "Approval"  # an instance, not a dict
    assert ex.context["approval"] == {"approved": True, "by": "ann"}  # stored as JSON
    assert durable_engine.history(wid).attempts("approve")[-1].result == {
        "approved": True,
        "by": "ann",
    }


def test_provide_input_validates_with_the_model_naming_each_field(durable_engine):
    wid = waiting_review(durable_engine)
    with pytest.raises(durable.InvalidInput) as bad:
        durable_engine.provide_input(wid, "approval", {"approved": "perhaps", "by": ""})
    message = str(bad.value)
    assert message.startswith("input 'approval' does not match Approval (2 problem(s)): ")
    assert "at approved: Input should be a valid boolean" in message
    assert "(got 'perhaps')" in message  # what was wrong, and what would be right
    assert "at by: String should have at least 1 character" in message
    assert message.endswith("; nothing was stored")
    assert set(problems(bad)) == {"approved", "by"}

    with pytest.raises(durable.InvalidInput, match=r"at by: Field required; nothing was stored"):
        durable_engine.provide_input(wid, "approval", {"approved": True})
    # the model's own validators run too (the JSON Schema cannot say this rule)
    with pytest.raises(durable.InvalidInput, match="may not approve their own order"):
        durable_engine.provide_input(wid, "approval", {"approved": True, "by": "requester"})
    with pytest.raises(durable.InvalidInput, match=r"at \(root\): Input should be an object"):
        durable_engine.provide_input(wid, "approval", [1, 2])

    # nothing was stored: the same input can be given again
    assert durable_engine.get_execution(wid).status == "waiting"
    assert len(durable_engine.list_pending_inputs()) == 1
    durable_engine.provide_input(wid, "approval", Approval(approved=False, by="bob"))
    assert durable_engine.run_until(wid).context["approval"] == {"approved": False, "by": "bob"}


def test_without_the_model_imported_the_stored_json_schema_checks(durable_engine, monkeypatch):
    """A process that has not imported the workflow's module (the CLI, a dashboard) checks
    the data against the JSON Schema stored with the wait."""
    first = waiting_review(durable_engine)
    second = waiting_review(durable_engine)
    with monkeypatch.context() as m:
        m.delitem(sys.modules, "pydantic_workflows")  # as if it were never imported here
        with pytest.raises(
            durable.InvalidInput, match="does not match its schema .*'perhaps' is not of type"
        ) as bad:
            durable_engine.provide_input(first, "approval", {"approved": "perhaps", "by": "x"})
        assert problems(bad) == {"approved": "'perhaps' is not of type 'boolean'"}
        durable_engine.provide_input(first, "approval", {"approved": True, "by": "ann"})
        # the JSON Schema cannot tell the validator's rule: this passes it ...
        durable_engine.provide_input(second, "approval", {"approved": True, "by": "requester"})
    assert durable_engine.run_until(first).context["approval_type"] == "Approval"
    # ... and the step, validating with the model, cannot go on with it: it says why
    ex = durable_engine.run_until(second)
    assert ex.status == "failed"
    assert ex.error["type"] == "durable.errors.InvalidInput"
    assert "the data provided for input 'approval' does not match Approval" in ex.error["message"]
    assert "may not approve their own order" in ex.error["message"]
    assert "checked against its JSON Schema only" in ex.error["message"]


@pytest.fixture(params=["sqlite", "postgres"])
def shared_url(request, sandbox_of):
    """A store another process can open too."""
    sandbox = sandbox_of(request.param)
    url = sandbox.for_test()
    yield url
    sandbox.after_test(url)


OTHER_PROCESS = """
import json, sys
from click.testing import CliRunner
import durable
from durable.cli import main

url, good, bob, third = sys.argv[1:5]

def cli(*args):
    result = CliRunner().invoke(main, ["--store", url, *args])
    return [result.exit_code, result.output]

class NotDeployedHere:
    def find_spec(self, name, path=None, target=None):
        if name == "pydantic_workflows":
            raise ImportError("not deployed here")

blocker = NotDeployedHere()
sys.meta_path.insert(0, blocker)
out = {"pydantic imported": "pydantic" in sys.modules}
out["waits"] = cli("waits", "--kind", "input")
# the durable command where the workflows' module cannot be imported: the stored JSON
# Schema checks
out["bad"] = cli("provide-input", good, "approval", "--data", '{"approved": "perhaps", "by": "x"}')
out["good"] = cli("provide-input", good, "approval", "--data", '{"approved": true, "by": "ann"}')
out["bob"] = cli("provide-input", bob, "approval", "--data", '{"approved": true, "by": "requester"}')
out["imported"] = "pydantic_workflows" in sys.modules
sys.meta_path.remove(blocker)
# where it can be, the command imports the wait's model: the model checks, its validators
# too
out["bob auto"] = cli(
    "provide-input", third, "approval", "--data", '{"approved": true, "by": "requester"}'
)
out["start -i"] = cli("-i", "pydantic_workflows", "start", "pyd_review", "--input", '{"id": "x"}')
with durable.Engine(url, migrate=False) as engine:
    engine.drain()  # the steps resume here, in another process
print(json.dumps(out))
"""


def test_inputs_from_another_process_with_and_without_the_code(shared_url, durable_clock):
    with durable.Engine(shared_url, clock=durable_clock, migrate=False) as engine:
        good, bob, third = (engine.start(Review, ORDER) for _ in range(3))
        engine.drain()
        assert [engine.get_execution(w).status for w in (good, bob, third)] == ["waiting"] * 3
    env = {k: v for k, v in os.environ.items() if k != "DURABLE_STORE"}
    env["PYTHONPATH"] = str(TESTS)
    run = subprocess.run(
        [sys.executable, "-c", OTHER_PROCESS, shared_url, good, bob, third],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr
    out = json.loads(run.stdout.strip().splitlines()[-1])
    assert out["pydantic imported"] is False and out["imported"] is False
    # what to import (-i) to check with the model
    assert "input approval (Approve the order?) [pydantic_workflows:Approval]" in out["waits"][1]
    assert out["bad"][0] == 1 and "'perhaps' is not of type 'boolean'" in out["bad"][1]
    assert out["good"][0] == 0 and out["good"][1].endswith(f"{good}: input 'approval' provided\n")
    assert "note: cannot import pydantic_workflows for the model" in out["good"][1]
    assert "give -i pydantic_workflows" in out["good"][1]
    assert out["bob"][0] == 0  # the JSON Schema cannot say the validator's rule
    assert out["bob auto"][0] == 1 and "may not approve their own order" in out["bob auto"][1]
    assert out["start -i"][0] == 1
    assert "the input of workflow 'pyd_review' does not match Order" in out["start -i"][1]
    assert "at id: Input should be a valid integer" in out["start -i"][1]

    with durable.Engine(shared_url, clock=durable_clock, migrate=False) as engine:
        done = engine.get_execution(good)
        assert done.status == "completed"  # resumed in the other process ...
        assert done.context["approval_type"] == "Approval"  # ... with an Approval
        failed = engine.get_execution(bob)
        assert failed.status == "failed" and "may not approve" in failed.error["message"]
        assert engine.get_execution(third).status == "waiting"  # nothing was stored
        assert len(engine.list_executions(workflow=Review)) == 3  # nothing was started


def test_a_timeout_value_is_none_or_an_instance_of_the_model(durable_engine):
    def timed_out(mode):
        wid = durable_engine.start(Timeouts, {"mode": mode})
        if mode != "bad":
            durable_engine.run_until(wid, "waiting")
        return durable_engine.run_until(wid)  # (the clock moves to the timeout)

    assert timed_out("none").context == {"got": None}
    assert timed_out("model").context == {"got": ["Approval", {"approved": False, "by": "nobody"}]}
    assert timed_out("data").context == {"got": ["Approval", {"approved": False, "by": "policy"}]}
    raised = timed_out("raise")
    assert raised.error["type"] == "durable.errors.WaitTimeout"
    bad = timed_out("bad")  # refused when the wait is made, not when it times out
    assert bad.error["type"] == "durable.errors.ConfigError"
    assert "wait_for_input() timeout_value does not match Approval" in bad.error["message"]
    assert "timeout_value is None, an Approval, or data Approval accepts" in bad.error["message"]


def test_an_async_step_awaits_a_typed_input(durable_engine):
    wid = durable_engine.start(AsyncAsk)
    durable_engine.run_until(wid, "waiting")
    durable_engine.provide_input(wid, "approval", {"approved": True, "by": "ann"})
    assert durable_engine.run_until(wid).context == {"got": ["Approval", "ann"]}


def test_a_schema_that_is_neither_a_json_schema_nor_a_model_is_refused(durable_engine):
    for flow, words in (
        (NotAModel, "takes a JSON Schema (a dict) or a pydantic model class"),
        (Reserved, "sets 'x-durable-model', durable's own keyword"),
    ):
        ex = durable_engine.run_until(durable_engine.start(flow))
        assert ex.error["type"] == "durable.errors.ConfigError"
        assert words in ex.error["message"]


# -- @workflow(input=...) ------------------------------------------------------------------


def test_start_validates_the_input_with_the_model_and_stores_its_json_form(durable_engine):
    with pytest.raises(durable.InvalidInput) as bad:
        durable_engine.start(Review, {"id": "seven", "items": [{"sku": "", "qty": 0}]})
    message = str(bad.value)
    assert message.startswith("the input of workflow 'pyd_review' does not match Order")
    assert "at id: Input should be a valid integer" in message and "(got 'seven')" in message
    assert "at customerEmail: Field required" in message
    assert "at items/0/sku: String should have at least 1 character" in message
    assert "at items/0/qty: Input should be greater than or equal to 1" in message
    assert message.endswith("; nothing was started")
    assert durable_engine.list_executions() == []

    # a dict the model accepts: stored as the JSON form of what the model made of it
    wid = durable_engine.start(Review, {**ORDER, "id": "7"})
    stored = durable_engine.get_execution(wid).input
    assert stored == {**ORDER, "note": ""}  # defaults filled in, "7" read as 7, by alias
    assert durable_engine.run_until(wid, "waiting").context == {
        "input_type": "Order",  # durable.context.input() is an Order
        "first_sku": "A-1",
    }
    # an instance is taken as its JSON form: the same input, so the same execution
    order = Order.model_validate(ORDER)
    first = durable_engine.start(Review, order, idempotency_key="o-7")
    assert durable_engine.start(Review, {**ORDER, "note": ""}, idempotency_key="o-7") == first
    with pytest.raises(durable.InvalidState, match="with another input"):
        durable_engine.start(Review, order.model_copy(update={"note": "x"}), idempotency_key="o-7")


def test_input_is_a_model_in_every_kind_of_step(durable_engine):
    two = {**ORDER, "items": [{"sku": "A-1", "qty": 2}, {"sku": "C-3", "qty": 1}]}
    ex = durable_engine.run_until(durable_engine.start(Units, two))
    assert ex.status == "completed", ex.error
    assert ex.context["each"] == [  # (a model in an item's result: stored as JSON)
        {"sku": "A-1", "input": "Order", "item": {"sku": "A-1", "qty": 2}},
        {"sku": "C-3", "input": "Order", "item": {"sku": "C-3", "qty": 1}},
    ]
    assert (ex.context["left"], ex.context["right"]) == ("Order", "ann@example.com")


def test_a_child_workflow_input_is_validated_in_the_step_that_starts_it(durable_engine):
    bad = durable_engine.run_until(durable_engine.start(Parent, {"child": {"sku": "A-1"}}))
    assert bad.status == "failed"
    assert bad.error["type"] == "durable.errors.InvalidInput"
    assert "the input of call_workflow('pyd_item') does not match Item" in bad.error["message"]
    assert "at qty: Field required" in bad.error["message"]
    assert len(durable_engine.list_executions()) == 1  # no child was started

    wid = durable_engine.start(Parent, {"child": {"sku": "A-1", "qty": "2"}})
    ex = durable_engine.run_until(wid)
    assert ex.context["child"] == {"sku": "A-1"}
    children = durable_engine.list_executions(parent=wid)
    assert sorted(json.dumps(c.input) for c in children) == [
        json.dumps({"sku": "A-1", "qty": 2}),
        json.dumps({"sku": "B-2", "qty": 1}),  # start_workflow(..., Item(...))
    ]


def test_a_schedule_input_is_validated_when_it_is_scheduled(durable_engine, durable_clock):
    durable_clock.set(datetime(2027, 1, 1, 8, 59, tzinfo=UTC))
    with pytest.raises(durable.InvalidInput, match="the schedule's input does not match Order"):
        durable_engine.schedule(Review, "0 9 * * *", input={"id": 1})
    assert durable_engine.list_schedules() == []  # nothing was stored
    s = durable_engine.schedule(Review, "0 9 * * *", input=Order.model_validate(ORDER))
    assert s.input == {**ORDER, "note": ""}
    durable_engine.advance_to_next()
    durable_engine.drain()
    (ex,) = durable_engine.list_executions()
    assert ex.context["input_type"] == "Order"


def test_a_cron_workflow_whose_input_model_needs_data_is_refused_at_definition():
    with pytest.raises(durable.ConfigError, match="each tick starts it with no input"):

        @workflow("pyd_cron_typed", cron="0 9 * * *", input=Item)
        class CronTyped:
            @step
            def go(self):
                pass


def test_a_json_schema_input_is_validated_the_same_way(durable_engine):
    with pytest.raises(durable.InvalidInput) as bad:
        durable_engine.start(SchemaInput, {"id": "x", "rush": 1})
    assert str(bad.value).startswith(
        "the input of workflow 'pyd_schema_input' does not match its schema (2 problem(s))"
    )
    assert problems(bad) == {
        "id": "'x' is not of type 'integer'",
        "rush": "1 is not of type 'boolean'",
    }
    assert durable_engine.list_executions() == []
    ex = durable_engine.run_until(durable_engine.start(SchemaInput, {"id": 3}))
    assert ex.context == {"input": {"id": 3}}  # the JSON as given


@pytest.mark.parametrize(
    ("given", "words"),
    [
        (int, "takes a pydantic model class (a subclass of pydantic.BaseModel"),
        ({"type": "nope"}, "input=...) schema is not a valid JSON Schema"),
        ({"$ref": "file:///etc/passwd"}, "refers outside itself"),
        ("{}", "must be a JSON Schema (a dict) or a pydantic model class, got str"),
    ],
)
def test_a_bad_input_declaration_is_refused_at_definition(given, words):
    with pytest.raises(durable.ConfigError, match=words.replace("(", r"\(").replace(")", r"\)")):

        @workflow("pyd_bad_input", input=given)
        class BadInput:
            @step
            def go(self):
                pass


def test_a_model_without_a_json_schema_is_refused_at_definition():
    class Hooked(BaseModel):
        hook: Callable[[], None]

    with pytest.raises(durable.ConfigError, match="the model Hooked has no JSON Schema"):

        @workflow("pyd_hooked", input=Hooked)
        class UsesHooked:
            @step
            def go(self):
                pass


def _versioned(model):
    @workflow("pyd_versioned", input=model)
    class Versioned:
        @step
        def read(self):
            put_context("id", input().id)

    return Versioned


class V1(BaseModel):
    id: int


class V2(BaseModel):
    id: int
    region: str  # a required field the executions in flight were not started with


def test_a_stored_input_the_model_no_longer_accepts_fails_the_step_saying_why(durable_engine):
    wid = durable_engine.start(_versioned(V1), {"id": 1})
    _versioned(V2)  # a deploy changed the model before the step ran
    ex = durable_engine.run_until(wid)
    assert ex.status == "failed"
    assert ex.error["type"] == "durable.errors.InvalidInput"
    assert f"the input of execution {wid} (as stored when it started)" in ex.error["message"]
    assert "at region: Field required" in ex.error["message"]
    assert "make V2 accept what was stored" in ex.error["message"]


# -- models as values ----------------------------------------------------------------------


def test_models_written_to_the_context_or_returned_are_stored_as_their_json_form(
    durable_engine,
):
    wid = durable_engine.start(Values)
    ex = durable_engine.run_until(wid)
    assert ex.status == "completed", ex.error
    eur = "EUR"
    assert ex.context == {
        "price": {"amount": "9.99", "currency": eur},  # (a Decimal's JSON form is a str)
        "nested": {
            "list": [{"amount": "1", "currency": eur}, {"m": {"amount": "2", "currency": eur}}]
        },
        "log": [{"amount": "3", "currency": eur}, {"amount": "5", "currency": eur}],
        "total": {"amount": "4", "currency": eur},
        "read": ["dict", True],  # read back as that JSON, which the model validates
    }
    assert durable_engine.history(wid).attempts("write")[-1].result == {
        "amount": "6",
        "currency": eur,
    }


def test_a_model_pydantic_cannot_serialise_is_refused_at_the_call(durable_engine):
    ex = durable_engine.run_until(durable_engine.start(OpaqueWrite))
    assert ex.status == "failed"
    assert ex.error["type"] == "durable.errors.SerializationError"
    message = ex.error["message"]
    assert "context key 'thing' cannot be stored as JSON" in message
    assert "it is a pydantic_workflows.Holder that pydantic cannot serialise" in message
    assert ex.context == {}  # nothing of the attempt was kept


def test_event_payloads_and_inputs_may_be_models(durable_engine):
    wid = durable_engine.start(TakeEvent)
    durable_engine.send_event(wid, "paid", Money(amount=Decimal("1.50")))
    assert durable_engine.run_until(wid).context == {
        "payment": {"amount": "1.50", "currency": "EUR"}
    }


# -- what is stored must read back the same ------------------------------------------------


def test_an_input_whose_json_form_reads_back_different_is_refused_at_start(durable_engine):
    with pytest.raises(durable.SerializationError) as secret:
        durable_engine.start(LoginFlow, {"user": "ann", "password": "hunter2"})
    message = str(secret.value)
    assert "the input of workflow 'pyd_login' cannot be stored" in message
    assert "it is a pydantic_workflows.Login that does not come back the same" in message
    assert "(different: password)" in message
    assert "SecretStr is dumped masked" in message  # what would be right
    assert durable_engine.list_executions() == []  # nothing was stored


@pytest.mark.parametrize(
    ("value", "words"),
    [
        (Internal(id=1, token="t-1"), "(different: token)"),
        (Renamed(fullName="Ann Lee"), "does not validate back into Renamed (at fullName: Field"),
        (Login(user="ann", password="hunter2"), "(different: password)"),
    ],
)
def test_a_model_value_that_does_not_read_back_the_same_is_refused(durable_engine, value, words):
    wid = durable_engine.start(TakeEvent)
    assert durable_engine.run_until(wid, "waiting").status == "waiting"
    with pytest.raises(durable.SerializationError) as refused:
        durable_engine.send_event(wid, "paid", value)
    assert words in str(refused.value)
    assert durable_engine.list_waits(wid)[0].status == "pending"  # nothing was stored


def test_a_secret_written_to_the_context_fails_the_attempt_and_keeps_nothing(durable_engine):
    ex = durable_engine.run_until(durable_engine.start(SecretInContext))
    assert ex.status == "failed"
    assert ex.error["type"] == "durable.errors.SerializationError"
    assert "context key 'login' cannot be stored" in ex.error["message"]
    assert ex.context == {}


def test_provide_input_stores_what_the_model_made_of_it(durable_engine):
    wid = durable_engine.start(TicketFlow)
    assert durable_engine.run_until(wid, "waiting").status == "waiting"
    durable_engine.provide_input(wid, "ticket", {"subject": "printer"})
    assert durable_engine.run_until(wid, "waiting").status == "waiting"
    every = durable_engine.store.waits(execution_id=wid, pending_only=False)
    (resolved,) = [w for w in every if w.names == ("ticket",)]
    stored = resolved.result
    assert set(stored) == {"subject", "serial"}  # the default, made once and stored
    durable_engine.send_event(wid, "assigned")
    ex = durable_engine.run_until(wid)
    assert ex.status == "completed", ex.error
    # the step ran again, after the event: the ticket it read is the one stored
    assert ex.context["serial"] == stored["serial"]


# -- a property: what durable stores is what the model and its JSON Schema agree on ---------


@workflow("pyd_echo", input=Order)
class Echo:
    @step
    def echo(self):
        order = input()
        assert isinstance(order, Order)
        put_context("dumped", order.model_dump(mode="json", by_alias=True))
        return wait_for_input("again", schema=Order, timeout=durable.hours(1), timeout_value=None)


items = st.builds(
    Item,
    sku=st.text(min_size=1, max_size=8),
    qty=st.integers(min_value=1, max_value=2**63 - 1),
)
orders = st.builds(
    Order,
    id=st.integers(min_value=-(2**63), max_value=2**63 - 1),
    customerEmail=st.text(max_size=12),
    items=st.lists(items, min_size=1, max_size=3),
    note=st.text(max_size=8),
)


@settings(
    max_examples=examples(50),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(order=orders)
def test_any_instance_round_trips_through_the_store_and_matches_its_stored_schema(
    durable_engine, order
):
    from durable._schemas import validate_input

    wid = durable_engine.start(Echo, order)
    stored = durable_engine.get_execution(wid).input
    validate_input("the stored input", stored, Order.model_json_schema())  # the form agrees
    durable_engine.run_until(wid, "waiting")
    (asked,) = durable_engine.list_pending_inputs()
    validate_input("the stored input", stored, asked.schema)
    durable_engine.provide_input(wid, "again", order)
    ex = durable_engine.run_until(wid)
    assert ex.context == {"dumped": stored}
    back = durable_engine.history(wid).attempts("echo")[-1].result
    assert Order.model_validate(back) == order == Order.model_validate(stored)


# -- without pydantic ----------------------------------------------------------------------

WITHOUT_PYDANTIC = """
import sys

class NoPydantic:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("pydantic", "pydantic_core"):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None

sys.meta_path.insert(0, NoPydantic())

import durable
from durable import step, workflow
from durable.context import input, put_context, wait_for_input

try:
    import pydantic
except ModuleNotFoundError:
    pass
else:
    raise AssertionError("the blocker let pydantic through")

SCHEMA = {"type": "object", "properties": {"ok": {"type": "boolean"}}, "required": ["ok"]}

@workflow("no_pydantic", input={"type": "object", "required": ["n"]})
class NoPydanticFlow:
    @step
    def ask(self):
        put_context("answer", wait_for_input("ok", schema=SCHEMA))
        put_context("n", input()["n"])

@workflow("no_pydantic_class")
class ClassSchema:
    @step
    def ask(self):
        wait_for_input("x", schema=int)

engine = durable.Engine("memory://")
try:
    engine.start(NoPydanticFlow, {})
except durable.InvalidInput as exc:
    assert "'n' is a required property" in str(exc), exc
else:
    raise AssertionError("the input schema was not checked")
wid = engine.start(NoPydanticFlow, {"n": 1})
engine.drain()
try:
    engine.provide_input(wid, "ok", {"ok": "yes"})
except durable.InvalidInput as exc:
    assert "'yes' is not of type 'boolean'" in str(exc), exc
engine.provide_input(wid, "ok", {"ok": True})
engine.drain()
assert engine.get_execution(wid).context == {"answer": {"ok": True}, "n": 1}
bad = engine.start(ClassSchema)
engine.drain()
assert "or a pydantic model class" in engine.get_execution(bad).error["message"]
assert not any(m.split(".")[0] in ("pydantic", "pydantic_core") for m in sys.modules)
print("durable works without pydantic")
"""


def test_durable_imports_and_works_without_pydantic():
    env = {k: v for k, v in os.environ.items() if k not in ("DURABLE_STORE", "PYTHONPATH")}
    run = subprocess.run(
        [sys.executable, "-c", WITHOUT_PYDANTIC],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "durable works without pydantic"


class _Meta(BaseModel):
    kind: str
    meta: dict[str, Any] = {}


class _Cached(BaseModel):
    n: int
    _token: str = PrivateAttr(default_factory=lambda: str(uuid.uuid4()))


class _Open(BaseModel):
    model_config = ConfigDict(extra="allow")
    a: int

    @computed_field
    @property
    def double(self) -> int:
        return self.a * 2


@pytest.mark.parametrize(
    ("value", "form"),
    [
        (_Meta(kind="x", meta={"span": (1, 2)}), {"kind": "x", "meta": {"span": [1, 2]}}),
        (_Cached(n=1), {"n": 1}),  # a private attribute is not data
        (_Open(a=2, note="hi"), {"a": 2, "note": "hi", "double": 4}),
    ],
)
def test_models_whose_json_form_reads_back_alike_are_accepted(value, form):
    from durable._typed import json_form

    assert json_form(value, "the value") == form
