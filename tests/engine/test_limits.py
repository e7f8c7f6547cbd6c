"""Values no store can keep are refused at the call, the same on every store: JSON nested
too deep or with ints past 64 bits, durations and dates past what the stores hold, names
with NUL, control characters or lone surrogates, and free text with NUL or surrogates."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

import durable
from durable import Retry, days, seconds, step, workflow
from durable.context import put_context, wait_for_input

from workflows import ORDER, OrderWorkflow


def nested(depth: int) -> list[object]:
    value: list[object] = []
    for _ in range(depth - 1):
        value = [value]
    return value


@workflow("limits_echo")
class Echo:
    @step
    def put(self) -> None:
        put_context("ok", True)


# -- JSON ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (nested(101), "more than 100 levels deep"),
        (nested(1000), "more than 100 levels deep"),
        ({"a": nested(150)}, r"more than 100 levels deep \(at \['a'\]\[0\]\[0\]"),
        (2**63, r"an int outside the 64-bit range -2\*\*63 .. 2\*\*63-1 \(64 bits"),
        ({"n": -(2**63) - 1}, r"\['n'\] is an int outside the 64-bit range"),
        ([10**5000], r"\[0\] is an int outside the 64-bit range .*16610 bits"),
        (float("inf"), "only finite floats"),
    ],
)
def test_input_no_store_can_read_back_is_refused_at_start(engine, value, message):
    with pytest.raises(durable.SerializationError, match=message):
        engine.start(Echo, value)
    assert engine.list_executions() == []


def test_the_limits_themselves_are_accepted_and_read_back_alike(engine):
    value = {"deep": nested(99), "big": 2**63 - 1, "small": -(2**63)}  # 100 levels in all
    wid = engine.start(Echo, value)
    assert engine.drain() == 1
    ex = engine.get_execution(wid)
    assert (ex.status, ex.input) == ("completed", value)


@workflow("limits_deep_context")
class DeepContext:
    @step
    def fine(self) -> None:
        put_context("deep", nested(100))  # a value may nest 100 levels: the context one more

    @step
    def too_deep(self) -> None:
        put_context("deeper", nested(101))


def test_context_values_too_deep_fail_the_attempt_at_the_call(engine):
    wid = engine.start(DeepContext)
    engine.drain()
    ex = engine.get_execution(wid, include_steps=True)
    assert ex.status == "failed"
    assert ex.context == {"deep": nested(100)}
    assert ex.error["type"] == "durable.errors.SerializationError"
    assert "context key 'deeper'" in ex.error["message"]


def test_events_and_inputs_are_checked_too(engine):
    wid = engine.start(Echo)
    with pytest.raises(durable.SerializationError, match="levels deep"):
        engine.send_event(wid, "e", nested(200))
    with pytest.raises(durable.SerializationError, match=r"outside the 64-bit range .*71 bits"):
        engine.provide_input(wid, "i", 2**70)


# -- durations and dates ---------------------------------------------------------------


def test_durations_past_what_the_stores_hold_are_config_errors(durable_clock):
    too_long = 10**15  # 31,700 years
    message = r"at most 3153600000000 ms \(100 years"
    with pytest.raises(durable.ConfigError, match=message):
        workflow("limits_forever", timeout=too_long)
    with pytest.raises(durable.ConfigError, match=message):
        step(timeout=too_long)
    with pytest.raises(durable.ConfigError, match=message):
        durable.Engine("memory://", clock=durable_clock, lease=too_long)
    with pytest.raises(durable.ConfigError, match=message):
        Retry(max_backoff=timedelta(days=365 * 200))
    with pytest.raises(durable.ConfigError, match="finite duration"):
        seconds(float("inf"))
    with pytest.raises(durable.ConfigError, match="finite duration"):
        seconds(float("nan"))
    assert days(36_500) == 3_153_600_000_000  # the limit itself is fine


@pytest.mark.parametrize("base", [float("nan"), float("inf"), 10**400])
def test_retry_base_must_be_finite(base):
    with pytest.raises(durable.ConfigError, match="Retry base must be a finite number"):
        Retry(base=base)


@workflow("limits_sleeps")
class LongSleep:
    @step
    def nap(self) -> None:
        durable.sleep_for(10**15)


def test_a_sleep_past_what_the_stores_hold_fails_the_attempt_with_a_config_error(engine):
    wid = engine.start(LongSleep)
    engine.drain()
    ex = engine.get_execution(wid)
    assert ex.status == "failed"  # at once, not after a lease
    assert ex.error["type"] == "durable.errors.ConfigError"
    assert "sleep_for() duration must be at most" in ex.error["message"]


@pytest.mark.parametrize(
    "when",
    [
        datetime(1, 1, 1, tzinfo=timezone(timedelta(hours=14))),  # before year 1 in UTC
        datetime(9999, 12, 31, 23, tzinfo=UTC),
        datetime(1, 1, 1),
    ],
)
def test_scheduled_at_past_what_the_stores_hold_is_a_config_error(engine, when):
    with pytest.raises(durable.ConfigError, match=r"scheduled_at must be between 0001-01-02"):
        engine.start(OrderWorkflow, ORDER, scheduled_at=when)
    assert engine.list_executions() == []


def test_far_but_storable_dates_work(engine, durable_clock):
    far = datetime(9999, 12, 30, tzinfo=UTC)
    wid = engine.start(Echo, scheduled_at=far)
    assert engine.get_execution(wid).run_at == far
    past = datetime(1, 1, 2, tzinfo=UTC)
    wid = engine.start(Echo, scheduled_at=past)
    assert engine.drain() == 1
    assert engine.get_execution(wid).status == "completed"


# -- names and text ----------------------------------------------------------------------

BAD_NAMES = [
    ("x" * 201, "is 201 characters long; at most 200 fit"),
    ("a\x00b", "must not contain NUL"),
    ("a\ud800b", "must not contain lone surrogates"),
    ("a\x1b[2Jb", "must not contain control characters"),
    ("a\nb", "must not contain control characters"),
]


@pytest.mark.parametrize(("name", "message"), BAD_NAMES)
def test_bad_names_get_the_same_config_error_on_every_store(engine, name, message):
    wid = engine.start(Echo)
    with pytest.raises(durable.ConfigError, match=f"queue {message}"):
        engine.start(Echo, queue=name)
    if len(name) < 201:
        with pytest.raises(durable.ConfigError, match=f"idempotency_key {message}"):
            engine.start(Echo, idempotency_key=name)
    with pytest.raises(durable.ConfigError, match=f"event name {message}"):
        engine.send_event(wid, name, 1)
    with pytest.raises(durable.ConfigError, match=f"input name {message}"):
        engine.provide_input(wid, name, 1)
    assert [e.id for e in engine.list_executions()] == [wid]


@pytest.mark.parametrize(("name", "message"), BAD_NAMES)
def test_a_bad_worker_id_is_refused(durable_clock, name, message):
    with pytest.raises(durable.ConfigError, match=f"worker_id {message}"):
        durable.Engine("memory://", clock=durable_clock, worker_id=name)


@workflow("limits_prompt")
class BadPrompt:
    @step
    def ask(self) -> None:
        wait_for_input("ok", prompt="approve?\x00")


def test_a_prompt_no_store_can_keep_fails_the_attempt_at_once(engine):
    wid = engine.start(BadPrompt)
    engine.drain()
    ex = engine.get_execution(wid)
    assert ex.status == "failed"  # a clear error now, not a driver error after a lease
    assert ex.error["type"] == "durable.errors.ConfigError"
    assert "wait_for_input() prompt must not contain NUL" in ex.error["message"]


def test_text_may_hold_newlines_and_unicode(engine):
    wid = engine.start(Echo)
    reason = "customer asked:\n\tlíne two ✓"
    assert engine.cancel(wid, reason=reason).cancel_reason == reason
    assert engine.get_execution(wid).cancel_reason == reason


# -- ids, filters and queues -------------------------------------------------------------


@pytest.mark.parametrize("bad_id", ["\udcff", "a\x00b"])
def test_an_id_no_store_could_hold_is_no_executions_id_on_every_store(engine, bad_id):
    with pytest.raises(durable.ExecutionNotFound, match="no execution with id"):
        engine.get_execution(bad_id)
    with pytest.raises(durable.ExecutionNotFound):
        engine.cancel(bad_id)
    with pytest.raises(durable.ExecutionNotFound):
        engine.send_event(bad_id, "e", 1)
    with pytest.raises(durable.ExecutionNotFound):
        engine.provide_input(bad_id, "i", 1)
    assert engine.list_waits(bad_id) == []
    assert engine.list_waits("no-such-id") == []  # the memory store raised KeyError here


def test_an_id_that_is_not_a_str_is_a_config_error(engine):
    with pytest.raises(durable.ConfigError, match="an execution id is a str"):
        engine.get_execution(5)


@pytest.mark.parametrize("name", ["\udcff", "a\x00b", ""])
def test_filters_and_worker_queues_are_checked_like_names(engine, name):
    with pytest.raises(durable.ConfigError, match="must"):
        engine.list_executions(queue=name)
    with pytest.raises(durable.ConfigError, match="must"):
        engine.list_executions(workflow=name)
    with pytest.raises(durable.ConfigError, match="must"):
        engine.list_pending_inputs(workflow=name)
    with pytest.raises(durable.ConfigError, match="queue must"):
        engine.drain(queues=[name])
    with pytest.raises(durable.ConfigError, match="queue must"):
        engine.worker(queues=[name]).__enter__()
