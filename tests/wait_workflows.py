"""Workflows that wait: shared by the wait tests and the multi-process test."""

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
    sleep_for,
    sleep_until,
    wait_for_all_events,
    wait_for_any_event,
    wait_for_event,
    wait_for_input,
    workflow_id,
)

# What step bodies did, in order, to show what re-runs on resume.
ran: list[tuple[str, str]] = []

APPROVAL_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"approved": {"type": "boolean"}, "by": {"type": "string"}},
    "required": ["approved", "by"],
    "additionalProperties": False,
}


@workflow("wait_sleepy")
class Sleepy:
    @step
    def before(self) -> None:
        put_context("before", True)

    @step
    def nap(self) -> None:
        ran.append((workflow_id(), "nap body"))
        put_context("napping", True)  # kept only when the step completes
        sleep_for((input() or {}).get("nap_ms", minutes(10)))
        put_context("woke", True)

    @step
    def after(self) -> None:
        put_context("after", True)


@workflow("wait_until")
class Until:
    @step
    def nap(self) -> None:
        from datetime import datetime

        sleep_until(datetime.fromisoformat(input()["until"]))
        put_context("woke", True)


@workflow("wait_event", timeout=hours(24))
class EventWaiter:
    @step
    def prepare(self) -> None:
        put_context("prepared", True)

    @step
    def wait_payment(self) -> None:
        ran.append((workflow_id(), "wait_payment body"))
        payment = wait_for_event("payment")
        put_context("payment", payment)

    @step
    def ship(self) -> None:
        put_context("shipped", True)


@workflow("wait_two_in_a_row")
class TwoInARow:
    @step
    def first(self) -> None:
        put_context("first", wait_for_event("tick"))

    @step
    def second(self) -> None:
        put_context("second", wait_for_event("tick"))


@workflow("wait_several")
class Several:
    @step
    def any_of(self) -> None:
        name, payload = wait_for_any_event(["approved", "rejected"])
        put_context("decision", [name, payload])

    @step
    def all_of(self) -> None:
        put_context("all", wait_for_all_events(["docs", "payment"]))


@workflow("wait_timeouts")
class Timeouts:
    @step
    def with_value(self) -> None:
        put_context("got", wait_for_event("maybe", timeout=minutes(5), timeout_value="none"))

    @step(retry=Retry(max_attempts=2, backoff="constant", base=60))
    def without_value(self) -> None:
        put_context("strict", wait_for_event("must", timeout=minutes(5)))
        put_context("attempt", attempt())


@workflow("wait_input")
class Approval:
    @step
    def ask(self) -> None:
        decision = wait_for_input(
            "approval",
            prompt="Approve the refund?",
            schema=APPROVAL_SCHEMA,
            timeout=hours(48),
            timeout_value={"approved": False, "by": "timeout"},
        )
        put_context("decision", decision)


@workflow("wait_two_waits_one_step")
class TwoWaitsOneStep:
    @step
    def both(self) -> None:
        ran.append((workflow_id(), "both body"))
        sleep_for(minutes(1))
        append_context("trail", "slept")
        put_context("event", wait_for_event("go"))
        append_context("trail", "got event")


@workflow("wait_async")
class AsyncWaiter:
    @step(timeout=minutes(30))
    async def wait_async(self) -> None:
        await asyncio.sleep(0)
        put_context("got", wait_for_event("ping"))


@workflow("wait_deadline", timeout=hours(1))
class Deadline:
    @step
    def forever(self) -> None:
        wait_for_event("never")


@workflow("wait_swallow")
class Swallow:
    @step
    def careless(self) -> None:
        try:
            sleep_for(minutes(1))
        except Exception:  # a wait's suspension is not an Exception: this does not catch it
            put_context("swallowed", True)
        put_context("woke", get_context("woke", 0) + 1)


@workflow("wait_race_input")
class RaceInput:
    """An input with a short real timeout, for races between provide_input and the timer."""

    @step
    def ask(self) -> None:
        put_context(
            "decision",
            wait_for_input("ok", timeout=input()["timeout_ms"], timeout_value="timed out"),
        )


@workflow("wait_real_nap")
class RealNap:
    @step
    def nap(self) -> None:
        sleep_for(input()["nap_ms"])
        put_context("woke", True)


@workflow("wait_any_of_one")
class AnyOfOne:
    @step
    def only(self) -> None:
        name, payload = wait_for_any_event(["approved"])
        put_context("got", [name, payload])


@workflow("wait_fallback")
class Fallback:
    """Guards its wait with `except Exception`: a store failure must not take that path."""

    @step(retry=Retry(max_attempts=2, backoff="constant", base=1))
    def guarded(self) -> None:
        try:
            put_context("got", wait_for_event("go"))
        except Exception as exc:
            put_context("fallback", type(exc).__name__)


@workflow("wait_strict_value")
class StrictValue:
    @step(retry=Retry(max_attempts=2, backoff="constant", base=10))
    def strict(self) -> None:
        got = wait_for_event("go", timeout=minutes(1), timeout_value=None)
        if got is None:
            raise RuntimeError("nothing came")
        put_context("got", got)


@workflow("wait_aio")
class AioWaiter:
    @step(timeout=minutes(30))
    async def both(self) -> None:
        from durable import aio

        await aio.sleep_for(minutes(1))
        got = await aio.wait_for_event("ping", timeout=minutes(10), timeout_value="none")
        decision = await aio.wait_for_input("ok", schema={"type": "boolean"})
        put_context("got", [got, decision])


@workflow("wait_aio_gather")
class AioGather:
    @step(timeout=minutes(30))
    async def both(self) -> None:
        from durable import aio

        await asyncio.gather(aio.wait_for_event("a"), aio.wait_for_event("b"))


@workflow("wait_helper_thread")
class HelperThread:
    """An inline step (no timeout) that waits from a helper thread of its own."""

    @step
    def nap(self) -> None:
        from durable import aio

        asyncio.run(aio.sleep_for(minutes(1)))
        put_context("woke", True)


@workflow("wait_timeout_sync")
class TimeoutSync:
    @step(timeout=minutes(30))
    def guarded(self) -> None:
        put_context("got", wait_for_event("go"))
