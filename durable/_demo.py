"""The quick start of the README, with stand-in payment and email services: what
``durable demo`` runs.

The payment service fails its first call, so the demo shows a retried step. The workflow
is defined here only; the README and docs/index.md show it (tests/cli/test_demo.py checks they
show this one), and the demo command takes its name from it.
"""

from __future__ import annotations

import itertools
import logging
from typing import Any

from durable import Retry, hours, minutes, step, workflow
from durable.context import get_context, input, put_context

log = logging.getLogger("demo.shop")
log.setLevel(logging.INFO)  # captured with each step attempt, shown by `durable show`


class PaymentError(Exception):
    """The card network did not answer."""


class _Payments:
    def __init__(self) -> None:
        self._calls = itertools.count(1)

    def charge(self, order_id: int, total: float) -> dict[str, Any]:
        call = next(self._calls)
        if call == 1:
            raise PaymentError("card network timeout")
        log.info("charged order %s: %.2f", order_id, total)
        return {"id": "ch_1"}


class _Emails:
    def send_confirmation(self, order_id: int) -> None:
        log.info("confirmation sent for order %s", order_id)


payments = _Payments()
emails = _Emails()


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
        charge = payments.charge(get_context("order_id"), get_context("total"))
        put_context("charge_id", charge["id"])

    @step(timeout=minutes(5))
    def send_confirmation(self) -> None:
        emails.send_confirmation(get_context("order_id"))


ORDER = {
    "order": {
        "id": 123,
        "items": [{"name": "kettle", "price": 90.0}, {"name": "tea", "price": 9.99}],
    }
}
