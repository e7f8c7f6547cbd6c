from __future__ import annotations

import threading
from collections.abc import Callable


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
