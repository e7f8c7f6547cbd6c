"""Waits for ``async def`` steps: the same six waits as ``durable.waits``, awaitable.

    from durable import aio

    @step
    async def wait_payment(self):
        payment = await aio.wait_for_event("payment", timeout=hours(1))

Deciding a wait takes a store transaction; the plain functions would make it on the
event loop's thread, holding up every other async step meanwhile. These make it from a
worker thread and await it. Semantics, arguments and results are those of
``durable.waits``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any, overload

from durable import waits
from durable._runtime import current
from durable.durations import Duration
from durable.errors import ContextError

if TYPE_CHECKING:
    from typing import TypeVar

    from pydantic import BaseModel

    M = TypeVar("M", bound=BaseModel)

__all__ = [
    "call_workflow",
    "sleep_for",
    "sleep_until",
    "start_workflow",
    "wait_for_all_events",
    "wait_for_any_event",
    "wait_for_event",
    "wait_for_input",
]

_NO_VALUE: Any = waits._NO_VALUE


async def _in_thread(fn: Any, *args: Any, **kwargs: Any) -> Any:
    # A wait takes its position in the step when its thread gets there: two waits in
    # flight at once (asyncio.gather) could take them in another order on the next run
    # and be matched with each other's results. So one at a time.
    run = current.get()
    if run is None:  # outside a step: the wait itself says so
        return await asyncio.to_thread(fn, *args, **kwargs)
    if run.aio_wait:
        raise ContextError(
            "a step awaits its waits one at a time; do not run durable.aio waits "
            "concurrently (asyncio.gather, tasks): their order must be the same on every run"
        )
    run.aio_wait = True  # (only the event loop's thread reads and writes it)
    try:
        return await asyncio.to_thread(fn, *args, **kwargs)
    finally:
        run.aio_wait = False


async def sleep_for(duration: Duration) -> None:
    """Awaitable ``durable.waits.sleep_for``."""
    await _in_thread(waits.sleep_for, duration)


async def sleep_until(when: datetime) -> None:
    """Awaitable ``durable.waits.sleep_until``."""
    await _in_thread(waits.sleep_until, when)


async def wait_for_event(
    name: str, *, timeout: Duration | None = None, timeout_value: Any = _NO_VALUE
) -> Any:
    """Awaitable ``durable.waits.wait_for_event``."""
    return await _in_thread(
        waits.wait_for_event, name, timeout=timeout, timeout_value=timeout_value
    )


async def wait_for_any_event(
    names: Sequence[str], *, timeout: Duration | None = None, timeout_value: Any = _NO_VALUE
) -> Any:
    """Awaitable ``durable.waits.wait_for_any_event``."""
    return await _in_thread(
        waits.wait_for_any_event, names, timeout=timeout, timeout_value=timeout_value
    )


async def wait_for_all_events(
    names: Sequence[str], *, timeout: Duration | None = None, timeout_value: Any = _NO_VALUE
) -> Any:
    """Awaitable ``durable.waits.wait_for_all_events``."""
    return await _in_thread(
        waits.wait_for_all_events, names, timeout=timeout, timeout_value=timeout_value
    )


@overload
async def wait_for_input(
    name: str,
    *,
    prompt: str | None = None,
    schema: type[M],
    timeout: Duration | None = None,
) -> M: ...
@overload
async def wait_for_input(
    name: str,
    *,
    prompt: str | None = None,
    schema: type[M],
    timeout: Duration | None = None,
    timeout_value: M | dict[str, Any] | None,
) -> M | None: ...
@overload
async def wait_for_input(
    name: str,
    *,
    prompt: str | None = None,
    schema: dict[str, Any] | None = None,
    timeout: Duration | None = None,
    timeout_value: Any = _NO_VALUE,
) -> Any: ...


async def wait_for_input(
    name: str,
    *,
    prompt: str | None = None,
    schema: dict[str, Any] | type[BaseModel] | None = None,
    timeout: Duration | None = None,
    timeout_value: Any = _NO_VALUE,
) -> Any:
    """Awaitable ``durable.waits.wait_for_input`` (a pydantic model as ``schema``
    returns an instance of it)."""
    return await _in_thread(
        waits.wait_for_input,
        name,
        prompt=prompt,
        schema=schema,
        timeout=timeout,
        timeout_value=timeout_value,
    )


async def call_workflow(
    workflow: Any, input: Any = None, *, timeout: Duration | None = None, queue: str | None = None
) -> Any:
    """Awaitable ``durable.waits.call_workflow``."""
    return await _in_thread(waits.call_workflow, workflow, input, timeout=timeout, queue=queue)


async def start_workflow(
    workflow: Any, input: Any = None, *, timeout: Duration | None = None, queue: str | None = None
) -> str:
    """Awaitable ``durable.waits.start_workflow``."""
    return str(
        await _in_thread(waits.start_workflow, workflow, input, timeout=timeout, queue=queue)
    )
