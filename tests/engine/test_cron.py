"""Cron: schedules that fire once per tick, on the test clock to the millisecond, with the
catch-up, overlap and time-zone rules (on memory, SQLite and PostgreSQL)."""

from __future__ import annotations

import dataclasses
import threading
from datetime import UTC, datetime, timedelta

import pytest

import durable
from durable import dsl, step, workflow
from durable.context import put_context, scheduled_at
from durable.waits import wait_for_event

T0 = datetime(2027, 1, 1, 8, 59, 30, tzinfo=UTC)
MS = timedelta(milliseconds=1)


@workflow("cron_report")
class Report:
    @step
    def run(self):
        put_context("tick", scheduled_at().isoformat())


@workflow("cron_slow")
class Slow:
    @step
    def hold(self):
        wait_for_event("done")


@workflow("cron_fan")
class Fan:
    @durable.parallel
    class both:
        @step
        def left(self):
            put_context("left", scheduled_at().isoformat())

        @step
        def right(self):
            put_context("right", scheduled_at().isoformat())


def ticks(engine, name: str) -> list[datetime]:
    return sorted(e.scheduled_at for e in engine.list_executions() if e.schedule == name)


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).astimezone(UTC)


@pytest.fixture
def engine(durable_engine, durable_clock):
    durable_clock.set(T0)
    return durable_engine


def test_a_tick_fires_at_its_millisecond_and_not_one_earlier(engine, durable_clock):
    s = engine.schedule(Report, "0 9 * * *", name="daily")
    assert s.next_tick == at("2027-01-01T09:00:00+00:00")
    assert engine.next_due() == s.next_tick  # the test clock stops at ticks like any timer
    durable_clock.set(s.next_tick - MS)
    engine.drain()
    assert ticks(engine, "daily") == []
    assert engine.advance_to_next() == s.next_tick
    engine.drain()
    (ex,) = engine.list_executions()
    assert (ex.schedule, ex.scheduled_at) == ("daily", s.next_tick)
    assert engine.run_until(ex.id).context == {"tick": "2027-01-01T09:00:00+00:00"}
    after = engine.get_schedule("daily")
    assert (after.last_tick, after.last_execution_id) == (s.next_tick, ex.id)
    assert after.next_tick == at("2027-01-02T09:00:00+00:00")


def test_ticks_before_the_schedule_existed_are_not_missed(engine, durable_clock):
    durable_clock.set(at("2027-01-01T09:00:00.001+00:00"))
    s = engine.schedule(Report, "0 9 * * *", name="daily", catch_up="all")
    assert s.next_tick == at("2027-01-02T09:00:00+00:00")
    engine.drain()
    assert ticks(engine, "daily") == []


@pytest.mark.parametrize(
    ("catch_up", "fired", "missed"),
    [
        ("latest", ["2027-01-05T09:00"], 4),
        (
            "all",
            [
                "2027-01-01T09:00",
                "2027-01-02T09:00",
                "2027-01-03T09:00",
                "2027-01-04T09:00",
                "2027-01-05T09:00",
            ],
            0,
        ),
        ("skip", [], 5),
    ],
)
def test_catch_up_after_no_worker_ran(engine, durable_clock, catch_up, fired, missed):
    engine.schedule(Report, "0 9 * * *", name="daily", catch_up=catch_up)
    durable_clock.set(at("2027-01-05T10:00:00+00:00"))  # four days and an hour later
    engine.drain()
    assert ticks(engine, "daily") == [at(f"{t}:00+00:00") for t in fired]
    s = engine.get_schedule("daily")
    assert s.missed == missed
    assert s.next_tick == at("2027-01-06T09:00:00+00:00")


def test_catch_up_all_fires_the_most_recent_hundred_at_most(engine, durable_clock):
    engine.schedule(Report, "* * * * *", name="minutely", catch_up="all")
    durable_clock.set(T0 + timedelta(minutes=150, seconds=30))
    engine.drain()
    fired = ticks(engine, "minutely")
    assert len(fired) == 100 and len(set(fired)) == 100
    assert (fired[0], fired[-1]) == (
        at("2027-01-01T09:51:00+00:00"),
        at("2027-01-01T11:30:00+00:00"),
    )
    assert engine.get_schedule("minutely").missed == 51  # 09:00 to 09:50


def test_skip_still_fires_a_tick_a_little_late(engine, durable_clock):
    engine.schedule(Report, "0 9 * * *", name="daily", catch_up="skip")
    durable_clock.set(at("2027-01-01T09:00:59+00:00"))  # a busy worker, a restart
    engine.drain()
    assert ticks(engine, "daily") == [at("2027-01-01T09:00:00+00:00")]


def _tick(engine, durable_clock) -> None:
    engine.advance_to_next()
    engine.drain()


@pytest.mark.parametrize(
    ("overlap", "started"),
    [("allow", 3), ("skip", 1), ("buffer_one", 2), ("cancel_previous", 3)],
)
def test_overlap_while_the_previous_tick_is_unfinished(engine, durable_clock, overlap, started):
    engine.schedule(Slow, "0 * * * *", name="hourly", overlap=overlap)
    for _ in range(3):  # three ticks while the first execution still waits
        durable_clock.set(engine.get_schedule("hourly").next_tick)
        engine.drain()
    runs = sorted(
        (e for e in engine.list_executions() if e.schedule == "hourly"),
        key=lambda e: e.scheduled_at,
    )
    assert len(runs) == started
    s = engine.get_schedule("hourly")
    if overlap == "allow":
        assert [r.status for r in runs] == ["waiting"] * 3
    elif overlap == "skip":
        assert s.missed == 2 and runs[0].status == "waiting"
    elif overlap == "cancel_previous":
        assert [r.status for r in runs] == ["cancelled", "cancelled", "waiting"]
        assert s.last_execution_id == runs[2].id
    else:  # buffer_one: the second waits (never started), the third is dropped
        first, second = runs
        assert (first.status, second.status, second.run_at) == ("waiting", "pending", None)
        assert s.buffered_id == second.id and s.missed == 1
        engine.send_event(first.id, "done")
        engine.drain()  # the first ends: the buffered one runs at once
        assert engine.get_execution(first.id).status == "completed"
        assert engine.get_execution(second.id).status == "waiting"
        s = engine.get_schedule("hourly")
        assert (s.last_execution_id, s.buffered_id) == (second.id, None)


@pytest.fixture
def declared():
    """A workflow that declares a schedule, forgotten after the test (a declared schedule
    is stored by any engine that runs a worker: it must not reach other tests)."""

    @workflow("cron_declared", cron="*/10 * * * *", timezone="Europe/Paris")
    class Declared:
        @step
        def run(self):
            put_context("tick", scheduled_at().isoformat())

    yield Declared
    with dsl._registry_lock:
        dsl._registry.pop("cron_declared", None)


def test_a_declared_schedule_is_stored_by_a_worker_and_kept_in_step(
    engine, durable_clock, declared
):
    engine.drain()
    assert engine.list_schedules() == []  # (an engine that only drains does not store it)
    with engine.worker():  # stores it as it starts claiming
        for _ in range(3000):
            if engine.list_schedules():
                break
            threading.Event().wait(0.01)
    (s,) = engine.list_schedules()
    assert (s.declared, s.cron, s.timezone) == (True, "*/10 * * * *", "Europe/Paris")
    assert s.next_tick == at("2027-01-01T09:00:00+00:00")
    _tick(engine, durable_clock)
    (ex,) = [e for e in engine.list_executions() if e.schedule == "cron_declared"]
    assert engine.run_until(ex.id).context == {"tick": "2027-01-01T09:00:00+00:00"}
    with pytest.raises(durable.ConfigError, match="@workflow\\('cron_declared', cron=...\\)"):
        engine.schedule(Report, "0 9 * * *", name="cron_declared")
    # a deploy that changes the cron moves the next tick; one that drops it removes it
    with dsl._registry_lock:
        dsl._registry["cron_declared"] = dataclasses.replace(
            dsl._registry["cron_declared"], cron="0 12 * * *"
        )
        dsl._registry_version += 1
    (s,) = engine.store_declared_schedules()
    assert (s.cron, s.next_tick) == ("0 12 * * *", at("2027-01-01T11:00:00+00:00"))
    with dsl._registry_lock:
        dsl._registry["cron_declared"] = dataclasses.replace(
            dsl._registry["cron_declared"], cron=None
        )
        dsl._registry_version += 1
    assert engine.store_declared_schedules() == [] and engine.list_schedules() == []


def test_bad_expressions_zones_and_policies_store_nothing(engine):
    for cron, zone, message in [
        ("61 * * * *", "UTC", "bad cron expression '61 \\* \\* \\* \\*'"),
        ("0 9 * *", "UTC", "bad cron expression '0 9 \\* \\*'"),
        ("0 9 * * *", "Mars/Olympus", "unknown time zone 'Mars/Olympus'"),
    ]:
        with pytest.raises(durable.ConfigError, match=message):
            engine.schedule(Report, cron, name="bad", timezone=zone)
    with pytest.raises(durable.ConfigError, match="catch_up='some'"):
        engine.schedule(Report, "0 9 * * *", name="bad", catch_up="some")
    with pytest.raises(durable.ConfigError, match="overlap='queue'"):
        engine.schedule(Report, "0 9 * * *", name="bad", overlap="queue")
    assert engine.list_schedules() == []
    with pytest.raises(durable.ConfigError, match="unknown time zone 'Nowhere/Town'"):

        @workflow("cron_bad_zone", cron="0 9 * * *", timezone="Nowhere/Town")
        class BadZone:
            @step
            def run(self):
                pass


def test_pause_resume_unschedule(engine, durable_clock):
    engine.schedule(Report, "0 * * * *", name="hourly")
    assert engine.pause_schedule("hourly").paused
    durable_clock.set(at("2027-01-01T12:30:00+00:00"))
    engine.drain()
    assert ticks(engine, "hourly") == []  # nothing fires while paused
    resumed = engine.resume_schedule("hourly")
    # the ticks while it was paused are not made up for
    assert (resumed.paused, resumed.next_tick) == (False, at("2027-01-01T13:00:00+00:00"))
    _tick(engine, durable_clock)
    assert ticks(engine, "hourly") == [at("2027-01-01T13:00:00+00:00")]
    engine.unschedule("hourly")
    with pytest.raises(durable.ScheduleNotFound, match="no schedule named 'hourly'"):
        engine.unschedule("hourly")
    with pytest.raises(durable.ScheduleNotFound):
        engine.pause_schedule("hourly")


def test_scheduling_again_updates_and_keeps_the_next_tick_unless_the_cron_changed(engine):
    first = engine.schedule(Report, "0 9 * * *", name="daily", input={"region": "eu"})
    again = engine.schedule(Report, "0 9 * * *", name="daily", input={"region": "us"})
    assert (again.next_tick, again.input, again.created_at) == (
        first.next_tick,
        {"region": "us"},
        first.created_at,
    )
    moved = engine.schedule(Report, "30 8 * * *", name="daily")
    assert moved.next_tick == at("2027-01-02T08:30:00+00:00")


def test_scheduled_at_in_branches_is_the_tick(engine, durable_clock):
    engine.schedule(Fan, "0 9 * * *", name="fan")
    _tick(engine, durable_clock)
    (ex,) = engine.list_executions()
    durable_clock.advance(timedelta(minutes=5))  # runs later than its tick
    done = engine.run_until(ex.id)
    assert done.context == {
        "left": "2027-01-01T09:00:00+00:00",
        "right": "2027-01-01T09:00:00+00:00",
    }


def test_two_engines_on_one_store_fire_each_tick_once(engine, durable_clock, durable_store_url):
    other = durable.Engine(durable_store_url, clock=durable_clock)
    try:
        engine.schedule(Report, "*/5 * * * *", name="often", catch_up="all")
        for _ in range(6):
            durable_clock.advance(timedelta(minutes=5))
            other.drain()
            engine.drain()
            other.drain()
        fired = ticks(engine, "often")
        assert len(fired) == len(set(fired)) == 6
    finally:
        other.close()


def test_each_tick_of_a_new_york_day_across_both_daylight_saving_changes(engine, durable_clock):
    durable_clock.set(at("2027-03-13T12:00:00+00:00"))
    engine.schedule(Report, "30 2 * * *", name="ny", timezone="America/New_York")
    for _ in range(2):
        _tick(engine, durable_clock)
    # 02:30 does not exist on 14 March: it fires at 03:00 EDT, the first instant after
    assert ticks(engine, "ny") == [at("2027-03-14T07:00:00+00:00"), at("2027-03-15T06:30:00+00:00")]
    engine.unschedule("ny")
    durable_clock.set(at("2027-11-06T12:00:00+00:00"))
    engine.schedule(Report, "30 1 * * *", name="ny_fall", timezone="America/New_York")
    for _ in range(2):
        _tick(engine, durable_clock)
    # 01:30 happens twice on 7 November: it fires once, the first time (EDT)
    assert ticks(engine, "ny_fall") == [
        at("2027-11-07T05:30:00+00:00"),
        at("2027-11-08T06:30:00+00:00"),
    ]


# -- a property: the ticks fired are exactly those the catch-up policy promises ----------------

from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

ZONES = ["UTC", "America/New_York", "Europe/Paris", "Australia/Lord_Howe", "Asia/Kolkata"]


def _wall_matches(kind: str, a: int, b: int, wall: datetime) -> bool:
    if kind == "every":
        return wall.minute % a == 0
    if kind == "hourly":
        return wall.minute == a
    return (wall.hour, wall.minute) == (a, b)


def _oracle_ticks(kind: str, a: int, b: int, zone: str, start: datetime, end: datetime):
    """The ticks in (start, end], found minute by minute in wall time, with the rules as
    DESIGN.md words them (independently of durable._cron): a wall time in a gap fires at
    the first instant after it, one that happens twice fires the first time."""
    from zoneinfo import ZoneInfo

    tz = ZoneInfo(zone)
    wall = start.astimezone(tz).replace(tzinfo=None, second=0, microsecond=0) - timedelta(hours=3)
    last_wall = end.astimezone(tz).replace(tzinfo=None) + timedelta(hours=3)
    found = set()
    while wall <= last_wall:
        if _wall_matches(kind, a, b, wall):
            instant = wall.replace(tzinfo=tz, fold=0).astimezone(UTC)
            if instant.astimezone(tz).replace(tzinfo=None) != wall:  # in a gap
                later = wall
                while True:  # the first wall minute after the gap that exists
                    later += timedelta(minutes=1)
                    moved = later.replace(tzinfo=tz, fold=0).astimezone(UTC)
                    if moved.astimezone(tz).replace(tzinfo=None) == later:
                        break
                # the first instant after the gap: that minute's instant, less what of
                # the gap's length it is past the transition (whole minutes here)
                instant = moved
                while (instant - timedelta(minutes=1)).astimezone(tz).utcoffset() == (
                    instant.astimezone(tz).utcoffset()
                ):
                    instant -= timedelta(minutes=1)
            if start < instant <= end:
                found.add(instant)
        wall += timedelta(minutes=1)
    return sorted(found)


schedules = st.one_of(
    st.tuples(st.just("every"), st.sampled_from([1, 5, 7, 15, 30]), st.just(0)),
    st.tuples(st.just("hourly"), st.integers(0, 59), st.just(0)),
    st.tuples(st.just("daily"), st.integers(0, 23), st.integers(0, 59)),
    # the wall times daylight saving changes skip or repeat (most zones: 1:00 to 3:59),
    # twice as likely
    st.tuples(st.just("daily"), st.sampled_from([1, 2, 2, 2, 3]), st.sampled_from([0, 15, 30, 59])),
    st.tuples(st.just("daily"), st.sampled_from([1, 2, 2, 2, 3]), st.sampled_from([0, 15, 30, 59])),
)


def _cron_of(kind: str, a: int, b: int) -> str:
    return {"every": f"*/{a} * * * *", "hourly": f"{a} * * * *", "daily": f"{b} {a} * * *"}[kind]


# (zone, a moment before one of its daylight saving changes in 2027)
TRANSITIONS = [
    ("America/New_York", datetime(2027, 3, 13, 12, tzinfo=UTC)),
    ("America/New_York", datetime(2027, 3, 14, 5, tzinfo=UTC)),
    ("America/New_York", datetime(2027, 11, 6, 12, tzinfo=UTC)),
    ("America/New_York", datetime(2027, 11, 7, 4, tzinfo=UTC)),
    ("Europe/Paris", datetime(2027, 3, 27, 20, tzinfo=UTC)),
    ("Europe/Paris", datetime(2027, 10, 30, 20, tzinfo=UTC)),
    ("Australia/Lord_Howe", datetime(2027, 10, 2, 14, tzinfo=UTC)),
    ("Australia/Lord_Howe", datetime(2027, 4, 3, 14, tzinfo=UTC)),
]
anywhere = st.tuples(
    st.sampled_from(ZONES),
    st.datetimes(datetime(2027, 1, 1), datetime(2027, 12, 1)).map(lambda d: d.replace(tzinfo=UTC)),
)


@given(
    schedule=schedules,
    where=st.sampled_from(TRANSITIONS) | anywhere,
    catch_up=st.sampled_from(["latest", "all", "skip"]),
    # clock jumps of a few ms to a minute (a worker on time), or of hours (downtime)
    jumps=st.lists(
        st.integers(1, 60_000) | st.integers(60 * 60_000, 36 * 60 * 60_000),
        min_size=1,
        max_size=6,
    ),
)
@settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
def test_fired_ticks_are_exactly_those_the_policy_promises(schedule, where, catch_up, jumps):
    """On a memory store and a clock of its own per example (a clock only goes forward)."""
    zone, start = where
    from durable_testing import TimeTravelClock
    from durable_testing.engine import TimeTravelEngine

    clock = TimeTravelClock(start=start)
    engine = TimeTravelEngine(store="memory://", clock=clock)
    try:
        _check_policy(engine, clock, schedule, zone, catch_up, jumps)
    finally:
        engine.close()
        clock.close()


def _check_policy(durable_engine, durable_clock, schedule, zone, catch_up, jumps) -> None:
    kind, a, b = schedule
    name = "property"
    created = durable_clock.now()
    durable_engine.schedule(
        Report, _cron_of(kind, a, b), name=name, timezone=zone, catch_up=catch_up
    )
    expected: list[datetime] = []
    before = created
    for ms in jumps:
        durable_clock.advance(timedelta(milliseconds=ms))
        now = durable_clock.now()
        durable_engine.drain()
        due = _oracle_ticks(kind, a, b, zone, before, now)
        if catch_up == "all":
            expected += due[-100:]
        elif due and (catch_up == "latest" or now - due[-1] <= timedelta(seconds=60)):
            expected.append(due[-1])
        before = now
    fired = [
        e.scheduled_at for e in durable_engine.list_executions(limit=10_000) if e.schedule == name
    ]
    assert sorted(fired) == expected
    assert len(set(fired)) == len(fired)


def test_run_all_does_not_chase_ticks_forever_but_fires_them_within_a_bound(engine):
    engine.schedule(Report, "0 * * * *", name="hourly")
    assert engine.run_all() == 0  # nothing but ticks: they never run out
    engine.run_all(within=timedelta(hours=3))
    assert len(ticks(engine, "hourly")) == 3


# -- found by review ------------------------------------------------------------------------


def test_resuming_a_running_schedule_while_a_worker_fires_gives_no_tick_twice(
    engine, durable_clock, durable_store_url
):
    worker = durable.Engine(durable_store_url, clock=durable_clock)
    try:
        worker.schedule(Report, "0 * * * *", name="hourly")
        durable_clock.set(at("2027-01-01T09:00:00+00:00"))
        real = engine.store.get_schedule

        def read_then_fire(name):  # the worker fires between the operator's read and write
            found = real(name)
            worker.drain()
            return found

        engine.store.get_schedule = read_then_fire  # type: ignore[method-assign]
        try:
            engine.resume_schedule("hourly")  # (not paused: an operator making sure)
        finally:
            engine.store.get_schedule = real  # type: ignore[method-assign]
        durable_clock.advance(timedelta(seconds=2))
        worker.drain()
        assert ticks(engine, "hourly") == [at("2027-01-01T09:00:00+00:00")]
    finally:
        worker.close()


def test_a_cron_changed_while_a_worker_fires_gives_no_tick_twice(
    engine, durable_clock, durable_store_url
):
    worker = durable.Engine(durable_store_url, clock=durable_clock)
    try:
        worker.schedule(Report, "0 * * * *", name="hourly")
        durable_clock.set(at("2027-01-01T09:00:00+00:00"))
        real = engine.store.get_schedule
        fired = []

        def read_then_fire(name):
            found = real(name)
            if not fired:  # (once: the retry reads what the fire left)
                fired.append(worker.drain())
            return found

        engine.store.get_schedule = read_then_fire  # type: ignore[method-assign]
        try:
            # 09:00 is a tick of the new cron too: it must not be given again
            moved = engine.schedule(Report, "0,30 * * * *", name="hourly")
        finally:
            engine.store.get_schedule = real  # type: ignore[method-assign]
        assert moved.next_tick == at("2027-01-01T09:30:00+00:00")
        worker.drain()
        assert ticks(engine, "hourly") == [at("2027-01-01T09:00:00+00:00")]
    finally:
        worker.close()


def test_a_new_schedule_is_seen_at_once_by_another_engine_on_the_store(
    engine, durable_clock, durable_store_url
):
    from durable_testing.engine import TimeTravelEngine

    other = TimeTravelEngine(durable_store_url, clock=durable_clock, migrate=False)
    try:
        other.drain()  # (it read that no schedule is due)
        s = engine.schedule(Report, "0 9 * * *", name="daily")
        durable_clock.set(s.next_tick)
        assert other.drain() == 1  # at the tick's millisecond, not a second later
    finally:
        other.close()


def test_expressions_that_never_fire_or_are_too_long_are_refused(engine):
    with pytest.raises(durable.ConfigError, match="'0 0 31 2 \\*' never fires"):
        engine.schedule(Report, "0 0 31 2 *", name="never")
    minutes = ",".join(str(m) for m in range(60))
    hours = ",".join(str(h) for h in range(24))
    long = f"{minutes} {hours} * * *"  # valid, but past what a store keeps (200)
    assert len(long) > 200
    with pytest.raises(durable.ConfigError, match="too long"):
        engine.schedule(Report, long, name="long")
    assert engine.list_schedules() == []


def test_a_stored_schedule_this_version_cannot_read_is_paused_not_retried(engine, durable_clock):
    from durable.models import CatchUp, Overlap, Schedule

    now = durable_clock.now()
    engine.store.put_schedule(
        Schedule(
            name="alien",
            workflow="cron_report",
            cron="0 * * * *",
            timezone="Mars/Olympus_Mons",  # (stored by another machine or version)
            input=None,
            catch_up=CatchUp.LATEST,
            overlap=Overlap.ALLOW,
            paused=False,
            next_tick=now,
            created_at=now,
            updated_at=now,
        ),
        now=now,
    )
    engine.drain()
    assert engine.get_schedule("alien").paused  # an operator sees it; no worker spins on it
    assert engine.next_due() is None


def test_the_name_of_a_workflow_that_declares_a_cron_is_taken_before_any_worker_ran(
    engine, declared
):
    with pytest.raises(durable.ConfigError, match="declares"):
        engine.schedule(Report, "0 9 * * *", name="cron_declared")


def test_buffer_one_stays_one_when_the_latest_ends_while_a_tick_fires(postgres_url):
    """PostgreSQL: the fire waits for the ending execution's lock; by then that end has let
    the buffered one in, which is the latest the new tick must wait for."""
    from durable_testing import TimeTravelClock

    clock = TimeTravelClock(start=at("2027-01-01T09:30:00+00:00"))
    a = durable.Engine(postgres_url, clock=clock)
    b = durable.Engine(postgres_url, clock=clock)
    try:
        a.schedule(Slow, "0 * * * *", name="race", overlap="buffer_one")
        for hour in ("10", "11"):  # the first waits; the second is buffered
            clock.set(at(f"2027-01-01T{hour}:00:00+00:00"))
            a.drain()
        s = a.get_schedule("race")
        first, buffered = s.last_execution_id, s.buffered_id
        entered, hold = threading.Event(), threading.Event()
        real = a.store._release_buffered

        def slow_release(*args, **kwargs):  # the end holds its locks a while
            result = real(*args, **kwargs)
            entered.set()
            hold.wait(1.0)
            return result

        a.store._release_buffered = slow_release
        clock.set(at("2027-01-01T11:30:00+00:00"))
        a.send_event(first, "done")
        ender = threading.Thread(target=a.drain)
        ender.start()
        assert entered.wait(30)  # the first's end, its transaction still open
        clock.set(at("2027-01-01T12:00:00+00:00"))
        b.scheduler.ticker.fire_due()  # waits for the end's lock, then fires 12:00
        hold.set()
        ender.join(30)
        s = a.get_schedule("race")
        runs = {e.scheduled_at.hour: e for e in a.list_executions() if e.schedule == "race"}
        assert runs[10].status == "completed"
        assert s.last_execution_id == buffered  # let in by the end
        assert s.buffered_id == runs[12].id and runs[12].run_at is None  # waits its turn
    finally:
        a.close()
        b.close()
        clock.close()  # (it moves freezegun's time: stopped, or later tests see 2027)


def test_a_store_that_keeps_no_schedules_still_runs_work(declared, durable_clock, caplog):
    """A store plugin written before cron: its workers go on, and say the crons are not
    stored."""
    from durable.stores.base import Store
    from durable.stores.memory import MemoryStore

    class OldStore(MemoryStore):
        list_schedules = Store.list_schedules
        put_schedule = Store.put_schedule
        next_tick = Store.next_tick
        due_schedules = Store.due_schedules

    engine = durable.Engine(OldStore(), clock=durable_clock)
    try:
        assert engine.store_declared_schedules() == []
        wid = engine.start(Report)
        assert engine.drain() >= 1 and engine.get_execution(wid).status == "completed"
        assert "the crons of ['cron_declared'] are not stored" in caplog.text
        with pytest.raises(NotImplementedError, match="keeps no schedules"):
            engine.schedule(Report, "0 9 * * *", name="daily")
    finally:
        engine.close()
