"""What the quick start's snippet takes as given: the reader's payment provider and
mailer (stand-ins that succeed), and an order."""

from __future__ import annotations

from typing import Any


class _Payments:
    def charge(self, order_id: int, total: float) -> dict[str, Any]:
        return {"id": "ch_1"}


class _Emails:
    def send_confirmation(self, order_id: int) -> None:
        pass


payments = _Payments()
emails = _Emails()
order = {"id": 123, "items": [{"name": "kettle", "price": 90.0}, {"name": "tea", "price": 9.99}]}
