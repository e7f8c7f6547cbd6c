"""Stand-ins for the services the order workflow calls: a payment provider and a mailer.

They keep what they did in memory so tests can look; a real project would call an HTTP API
here. Both are idempotent by key, as anything a retried step calls should be.
"""

from __future__ import annotations

import itertools
import threading
from typing import Any


class PaymentDeclined(Exception):
    """The provider refused the charge (retrying does not help)."""


class Payments:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._ids = itertools.count(1)
        self.charges: dict[str, dict[str, Any]] = {}

    def charge(self, order_id: int, total: float, *, key: str) -> dict[str, Any]:
        """Charge ``total`` for ``order_id``; the same ``key`` returns the same charge."""
        with self._lock:
            if key not in self.charges:
                if total <= 0:
                    raise PaymentDeclined(f"order {order_id}: nothing to charge ({total})")
                self.charges[key] = {"id": f"ch_{next(self._ids)}", "amount": total}
            return self.charges[key]


class Emails:
    def __init__(self) -> None:
        self.sent: dict[str, int] = {}

    def send_confirmation(self, order_id: int, *, key: str) -> None:
        self.sent.setdefault(key, order_id)


payments = Payments()
emails = Emails()
