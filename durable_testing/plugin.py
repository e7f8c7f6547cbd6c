"""The pytest plugin: ``durable_clock``, ``durable_engine`` and ``--durable-store``.

Loaded through the ``pytest11`` entry point. Nothing here is autouse, and durable itself is
imported only when a fixture is used.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from durable import Engine
    from durable_testing.clock import TimeTravelClock


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("durable", "durable workflow engine")
    group.addoption(
        "--durable-store",
        dest="durable_store",
        default=None,
        metavar="URL",
        help="store URL for the durable_engine fixture (default: memory://)",
    )


@pytest.fixture
def durable_clock() -> Iterator[TimeTravelClock]:
    """A TimeTravelClock that also moves freezegun's time; stopped after the test."""
    from durable_testing.clock import TimeTravelClock

    clock = TimeTravelClock()
    try:
        yield clock
    finally:
        clock.close()


@pytest.fixture
def durable_store_url(request: pytest.FixtureRequest) -> str:
    """The store URL the durable_engine fixture uses: ``--durable-store`` or memory://."""
    url: str | None = request.config.getoption("durable_store")
    return url or "memory://"


@pytest.fixture
def durable_engine(durable_clock: TimeTravelClock, durable_store_url: str) -> Iterator[Engine]:
    """An Engine on the test's durable_clock; closed after the test."""
    from durable import Engine

    engine = Engine(store=durable_store_url, clock=durable_clock)
    try:
        yield engine
    finally:
        engine.close()
