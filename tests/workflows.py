"""Workflows shared by the tests. Failures are driven by the input, read per attempt."""

from __future__ import annotations

import asyncio
from typing import Any

from durable import Retry, hours, minutes, step, workflow
from durable.context import (
    append_context,
    attempt,
    get_context,
    input,
    put_context,
    workflow_id,
)

# A stand-in payment service whose failures the input decides.
charges: list[str] = []
emails_sent: list[Any] = []


class CardNetworkError(Exception):
    pass


def charge(order_id: Any, total: float, fail_first: int) -> dict[str, str]:
    if attempt() <= fail_first:
        raise CardNetworkError(f"card network timeout on attempt {attempt()}")
    charges.append(workflow_id())
    return {"id": "ch_1"}


@workflow("process_order", timeout=hours(2))
class OrderWorkflow:
    @step
    def validate(self) -> None:
        order = input()["order"]
        put_context("order_id", order["id"])
        put_context("items", order["items"])

    @step
    def calculate_total(self) -> None:
        put_context("total", sum(i["price"] for i in get_context("items")))

    @step(retry=Retry(max_attempts=3, backoff="exponential"))
    def charge_payment(self) -> None:
        result = charge(
            get_context("order_id"), get_context("total"), input().get("fail_payment", 0)
        )
        put_context("charge_id", result["id"])

    @step(timeout=minutes(5))
    def send_confirmation(self) -> None:
        emails_sent.append(get_context("order_id"))


ORDER = {"order": {"id": 123, "items": [{"price": 90.0}, {"price": 9.99}]}}


@workflow("mixed_sync_async")
class MixedWorkflow:
    @step
    def one(self) -> None:
        put_context("trail", ["sync"])

    @step
    async def two(self) -> None:
        await asyncio.sleep(0)
        append_context("trail", "async")

    @step
    def three(self) -> None:
        append_context("trail", "sync again")


@workflow("record_order")
class RecordWorkflow:
    """One step that records which execution ran when (for ordering tests)."""

    ran: list[str] = []

    @step
    def record(self) -> None:
        RecordWorkflow.ran.append(input()["name"])
