"""Workflows typed with pydantic models, for tests/engine/test_pydantic.py and for the
processes it starts (which import this module, or on purpose do not)."""

from __future__ import annotations

import itertools
from decimal import Decimal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator

from durable import aio, foreach, hours, parallel, step, workflow
from durable.context import (
    append_context,
    get_context,
    input,
    item_index,
    put_context,
    update_context,
    wait_for_event,
    wait_for_input,
)
from durable.waits import call_workflow, start_workflow


class Item(BaseModel):
    sku: str = Field(min_length=1)
    qty: int = Field(ge=1)


class Order(BaseModel):
    id: int
    customer_email: str = Field(alias="customerEmail")
    items: list[Item] = Field(min_length=1)
    note: str = ""


class Approval(BaseModel):
    approved: bool
    by: str = Field(min_length=1)

    @field_validator("by")
    @classmethod
    def not_the_requester(cls, value: str) -> str:
        # (a rule the JSON Schema cannot say: only the model checks it)
        if value == "requester":
            raise ValueError("the requester may not approve their own order")
        return value


class Money(BaseModel):
    amount: Decimal
    currency: str = "EUR"


class Opaque:
    """Something pydantic cannot serialise to JSON."""


class Holder(BaseModel):
    model_config = ConfigDict(arbitrary_types_allowed=True)
    thing: Opaque


ORDER = {"id": 7, "customerEmail": "ann@example.com", "items": [{"sku": "A-1", "qty": 2}]}


@workflow("pyd_review", input=Order)
class Review:
    @step
    def check(self):
        order = input()
        put_context("input_type", type(order).__name__)
        put_context("first_sku", order.items[0].sku)

    @step
    def approve(self):
        approval = wait_for_input("approval", prompt="Approve the order?", schema=Approval)
        put_context("approval_type", type(approval).__name__)
        put_context("approval", approval)  # (stored as its JSON form)
        return approval


@workflow("pyd_timeouts")
class Timeouts:
    @step
    def ask(self):
        given = {
            "none": None,
            "model": Approval(approved=False, by="nobody"),
            "data": {"approved": False, "by": "policy"},
            "bad": {"approved": "perhaps"},
        }
        mode = input()["mode"]
        if mode == "raise":
            got = wait_for_input("approval", schema=Approval, timeout=hours(1))
        else:
            got = wait_for_input(
                "approval", schema=Approval, timeout=hours(1), timeout_value=given[mode]
            )
        put_context("got", None if got is None else [type(got).__name__, got.model_dump()])


@workflow("pyd_async")
class AsyncAsk:
    @step
    async def ask(self):
        got = await aio.wait_for_input("approval", schema=Approval)
        put_context("got", [type(got).__name__, got.by])


@workflow("pyd_units", input=Order)
class Units:
    @step
    def list_skus(self):
        put_context("skus", [i.sku for i in input().items])

    @foreach("skus", into="each")
    def each(self, sku):
        # a dict holding a model: stored as JSON
        return {"sku": sku, "input": type(input()).__name__, "item": input().items[item_index()]}

    @parallel
    class both:
        @step
        def left(self):
            put_context("left", type(input()).__name__)

        @step
        async def right(self):
            put_context("right", input().customer_email)


@workflow("pyd_item", input=Item)
class TakeItem:
    @step
    def take(self):
        put_context("sku", input().sku)


@workflow("pyd_parent")
class Parent:
    @step
    def call(self):
        put_context("child", call_workflow(TakeItem, input()["child"]))

    @step
    def fire(self):
        put_context("fired", start_workflow(TakeItem, Item(sku="B-2", qty=1)))


@workflow("pyd_values")
class Values:
    @step
    def write(self):
        put_context("price", Money(amount=Decimal("9.99")))
        put_context({"nested": {"list": [Money(amount=1), {"m": Money(amount=2)}]}})
        append_context("log", Money(amount=3))
        update_context("total", lambda old: Money(amount=4))
        get_context("log").append(Money(amount=5))  # changed in place: stored at commit
        return Money(amount=6)

    @step
    def read(self):
        price = get_context("price")
        put_context(
            "read", [type(price).__name__, Money.model_validate(price).amount == Decimal("9.99")]
        )


@workflow("pyd_opaque")
class OpaqueWrite:
    @step
    def write(self):
        put_context("ok", 1)
        put_context("thing", Holder(thing=Opaque()))


@workflow("pyd_event")
class TakeEvent:
    @step
    def take(self):
        put_context("payment", wait_for_event("paid"))


ORDER_SCHEMA = {
    "type": "object",
    "properties": {"id": {"type": "integer"}, "rush": {"type": "boolean"}},
    "required": ["id"],
}


@workflow("pyd_schema_input", input=ORDER_SCHEMA)
class SchemaInput:
    @step
    def take(self):
        put_context("input", input())


@workflow("pyd_reserved")
class Reserved:
    @step
    def ask(self):
        wait_for_input("x", schema={"type": "object", "x-durable-model": "os:system"})


@workflow("pyd_not_a_model")
class NotAModel:
    @step
    def ask(self):
        wait_for_input("x", schema=Opaque)


# -- models whose JSON form does not come back the same -----------------------------------


class Login(BaseModel):
    user: str
    password: SecretStr  # dumped as "**********"


class Internal(BaseModel):
    id: int
    token: str = Field(default="", exclude=True)  # never dumped


class Renamed(BaseModel):
    name: str = Field(validation_alias="fullName")  # dumped as "name", read as "fullName"


@workflow("pyd_login", input=Login)
class LoginFlow:
    @step
    def go(self):
        return input().user


@workflow("pyd_context_secret")
class SecretInContext:
    @step
    def keep(self):
        put_context("login", Login(user="ann", password=SecretStr("hunter2")))


#: a default the model makes anew at each validation
_serial = itertools.count(1)


class Ticket(BaseModel):
    subject: str
    serial: int = Field(default_factory=lambda: next(_serial))


@workflow("pyd_ticket")
class TicketFlow:
    @step
    def triage(self):
        ticket = wait_for_input("ticket", schema=Ticket)
        wait_for_event("assigned")  # the step runs again from the top after this
        put_context("serial", ticket.serial)
