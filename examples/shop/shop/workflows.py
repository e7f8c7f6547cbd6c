"""The quick start's order workflow."""

from __future__ import annotations

from durable import Retry, hours, minutes, step, workflow
from durable.context import get_context, input, put_context, workflow_id
from shop.services import emails, payments


@workflow("process_order", timeout=hours(2))
class OrderWorkflow:
    @step
    def validate(self) -> None:
        order = input()["order"]
        put_context("order_id", order["id"])
        put_context("items", order["items"])

    @step
    def calculate_total(self) -> None:
        put_context("total", round(sum(i["price"] for i in get_context("items")), 2))

    @step(retry=Retry(max_attempts=3, backoff="exponential"))
    def charge_payment(self) -> None:
        charge = payments.charge(
            get_context("order_id"), get_context("total"), key=f"{workflow_id()}:charge"
        )
        put_context("charge_id", charge["id"])

    @step(timeout=minutes(5))
    def send_confirmation(self) -> None:
        emails.send_confirmation(get_context("order_id"), key=f"{workflow_id()}:email")
