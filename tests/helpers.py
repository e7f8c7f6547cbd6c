from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from hypothesis import settings


def eventually(predicate: Callable[[], bool], timeout: float = 10.0) -> bool:
    """Wait for another thread to make predicate true (a wait for an event, not a sleep
    to let time pass: the test clock is what moves time)."""
    gate = threading.Event()
    waited = 0.0
    while not predicate():
        if waited >= timeout:
            return False
        gate.wait(0.002)
        waited += 0.002
    return True


def examples(full: int) -> int:
    """How many examples a property test asks for: ``full`` under the full hypothesis
    profile (100 examples a test, what CI runs), scaled with the active profile's
    ``max_examples``, so a tenth in the everyday one (never fewer than 2)."""
    return max(2, round(full * settings().max_examples / 100))


def run_due(engine: Any, clock: Any, rounds: int = 50) -> None:
    """Run everything due, moving the test clock to each next due time (a retry's
    backoff, a sleep), until nothing is scheduled."""
    for _ in range(rounds):
        engine.drain()
        due = engine.next_due()
        if due is None:
            return
        if due > clock.now():
            clock.set(due)
