"""Workflows the dashboard tests (HTTP and browser) run."""

from __future__ import annotations

import logging
from enum import StrEnum

from pydantic import BaseModel

import durable
from durable import Retry, foreach, step, workflow
from durable.context import get_context, input, put_context, wait_for_event, wait_for_input

log = logging.getLogger("dash.shop")

APPROVAL = {
    "type": "object",
    "properties": {
        "approved": {"type": "boolean", "title": "Approved"},
        "by": {"type": "string", "minLength": 2, "title": "Approved by"},
        "limit": {"type": "integer", "minimum": 1, "title": "Limit"},
    },
    "required": ["approved", "by", "limit"],
}


@workflow("dash_order")
class Order:
    @step
    def reserve(self):
        put_context("order", input())
        print("reserving", input().get("sku"))
        log.warning("stock low for %s", input().get("sku"))

    @step(retry=Retry(max_attempts=1))
    def charge(self):
        if get_context("order", {}).get("fail"):
            raise RuntimeError(get_context("order", {}).get("why") or "card declined")
        put_context("charged", True)

    @step
    def ship(self):
        put_context("shipped", True)


@workflow("dash_approval")
class Approval:
    @step
    def ask(self):
        answer = wait_for_input("approval", prompt="Approve the refund?", schema=APPROVAL)
        put_context("answer", answer)

    @step
    def done(self):
        put_context("done", True)


@workflow("dash_waiter")
class Waiter:
    @step
    def wait(self):
        put_context("paid", wait_for_event("paid"))


@workflow("dash_many")
class Many:
    @step
    def load(self):
        put_context("xs", list(range(input() or 120)))

    @foreach("xs", concurrency=50)
    def each(self, x):
        print(f"item {x}")
        return x * 2


@workflow("dash_child")
class Child:
    @step
    def work(self):
        return input()


@workflow("dash_parent")
class Parent:
    @step
    def call(self):
        put_context("child", durable.call_workflow(Child, "hello"))


@workflow("dash_spawner")
class Spawner:
    """Starts a child that waits for an event, and completes without waiting for it."""

    @step
    def spawn(self):
        put_context("child", durable.start_workflow(Waiter))


#: what the deployed code does: a test "deploys the fix" by setting it
DEPLOYED = {"fixed": False}


@workflow("dash_flaky")
class Flaky:
    @step
    def prepare(self):
        put_context("prepared", True)

    @step(retry=Retry(max_attempts=1))
    def call_partner(self):
        if not DEPLOYED["fixed"]:
            raise ConnectionError("partner API answered 502 <b>Bad Gateway</b>")
        put_context("called", True)


@workflow("dash_xss")
class Xss:
    @step
    def poison(self):
        text = input()
        put_context(text, text)
        log.error("%s", text)
        print(text)
        raise ValueError(text)


@workflow("dash_chatty")
class Chatty:
    @step
    def talk(self):
        for _ in range(8):
            durable.sleep_for(1)  # (eight waits, resolved one after another)
        put_context("go", wait_for_event("go"))


class Colour(StrEnum):
    RED = "red"
    GREEN = "green"


class Paint(BaseModel):
    """What pydantic writes for it: each enum under $defs, a field of it a $ref."""

    colour: Colour
    finish: Colour | None  # required, but may be null
    csrf: str = "plain"  # named like the dashboard's own form field


@workflow("dash_paint")
class PaintJob:
    @step
    def ask(self):
        put_context("paint", wait_for_input("paint", schema=Paint).model_dump(mode="json"))
