"""Waits for ``async def`` steps: the same six waits as :mod:`durable.waits`, awaitable.

    from durable import aio

    @step
    async def wait_payment(self):
        payment = await aio.wait_for_event("payment", timeout=hours(1))

Deciding a wait takes a store transaction; the plain functions would make it on the
event loop's thread, holding up every other async step meanwhile. These make it from a
worker thread and await it. Semantics, arguments and results are those of
:mod:`durable.waits`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from durable import waits

__all__ = [
    "sleep_for",
    "sleep_until",
    "wait_for_all_events",
    "wait_for_any_event",
    "wait_for_event",
    "wait_for_input",
]

_NO_VALUE: Any = waits._NO_VALUE


async def sleep_for(duration: int | timedelta) -> None:
    """Awaitable :func:`durable.waits.sleep_for`."""
    await asyncio.to_thread(waits.sleep_for, duration)


async def sleep_until(when: datetime) -> None:
    """Awaitable :func:`durable.waits.sleep_until`."""
    await asyncio.to_thread(waits.sleep_until, when)


async def wait_for_event(
    name: str, *, timeout: int | timedelta | None = None, timeout_value: Any = _NO_VALUE
) -> Any:
    """Awaitable :func:`durable.waits.wait_for_event`."""
    return await asyncio.to_thread(
        waits.wait_for_event, name, timeout=timeout, timeout_value=timeout_value
    )


async def wait_for_any_event(
    names: Sequence[str], *, timeout: int | timedelta | None = None, timeout_value: Any = _NO_VALUE
) -> Any:
    """Awaitable :func:`durable.waits.wait_for_any_event`."""
    return await asyncio.to_thread(
        waits.wait_for_any_event, names, timeout=timeout, timeout_value=timeout_value
    )


async def wait_for_all_events(
    names: Sequence[str], *, timeout: int | timedelta | None = None, timeout_value: Any = _NO_VALUE
) -> Any:
    """Awaitable :func:`durable.waits.wait_for_all_events`."""
    return await asyncio.to_thread(
        waits.wait_for_all_events, names, timeout=timeout, timeout_value=timeout_value
    )


async def wait_for_input(
    name: str,
    *,
    prompt: str | None = None,
    schema: dict[str, Any] | None = None,
    timeout: int | timedelta | None = None,
    timeout_value: Any = _NO_VALUE,
) -> Any:
    """Awaitable :func:`durable.waits.wait_for_input`."""
    return await asyncio.to_thread(
        waits.wait_for_input,
        name,
        prompt=prompt,
        schema=schema,
        timeout=timeout,
        timeout_value=timeout_value,
    )
