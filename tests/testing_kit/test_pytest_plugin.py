"""durable_testing as a user's pytest sees it: loaded through the pytest11 entry point."""

from __future__ import annotations

import importlib.metadata
from datetime import UTC, datetime, timedelta

import pytest

from durable_testing import TimeTravelClock


def test_plugin_is_registered_under_pytest11():
    eps = {ep.name: ep.value for ep in importlib.metadata.entry_points(group="pytest11")}
    assert eps["durable"] == "durable_testing.plugin"


def test_plugin_loaded_by_entry_point_in_this_session(request):
    plugin = request.config.pluginmanager.get_plugin("durable")
    assert plugin is not None
    assert plugin.__name__ == "durable_testing.plugin"


USER_TESTS = """
import datetime, time
from durable import Retry, minutes, seconds, step, workflow
from durable.context import attempt, put_context

@workflow("user_clock_wf")
class Stamp:
    @step(retry=Retry(max_attempts=2, backoff="constant", base=30))
    def stamp(self):
        if attempt() == 1:
            raise RuntimeError("first try fails")
        put_context("aware", datetime.datetime.now(datetime.timezone.utc).isoformat())
        put_context("naive", datetime.datetime.now().isoformat())
        put_context("epoch", time.time())

def test_step_code_sees_travelled_time(durable_engine, durable_clock):
    start = durable_clock.now()
    wid = durable_engine.start(Stamp)
    durable_engine.drain()
    durable_clock.advance(seconds(30))
    durable_engine.drain()
    ctx = durable_engine.get_execution(wid).context
    assert durable_clock.now() - start == datetime.timedelta(seconds=30)
    assert ctx["aware"] == durable_clock.now().isoformat()
    assert ctx["naive"] == durable_clock.now().replace(tzinfo=None).isoformat()
    assert ctx["epoch"] == durable_clock.now().timestamp()

def test_store_option(durable_engine, request):
    kind = (request.config.getoption("durable_store") or "memory://").split(":")[0]
    assert durable_engine.store_url.startswith(kind + "://")
"""


@pytest.mark.slow  # a pytest run in a process of its own
def test_user_suite_with_the_fixtures(pytester):
    pytester.makepyfile(test_user=USER_TESTS)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=2)


@pytest.mark.slow  # two pytest runs in processes of their own
def test_durable_store_option(pytester):
    pytester.makepyfile(test_user=USER_TESTS)
    result = pytester.runpytest_subprocess(
        "-p", "no:cacheprovider", "--durable-store", "memory://named", "-k", "store_option"
    )
    result.assert_outcomes(passed=1)
    help_text = pytester.runpytest_subprocess("--help")
    help_text.stdout.fnmatch_lines(["*--durable-store=URL*"])


def test_time_travel_clock_basics():
    start = datetime(2025, 1, 1, 12, 0, tzinfo=UTC)
    with TimeTravelClock(start) as clock:
        assert clock.now() == start
        assert datetime.now(UTC) == start  # freezegun moved with it
        assert clock.advance(1500) == start + timedelta(milliseconds=1500)
        assert clock.advance(timedelta(minutes=1)) == start + timedelta(seconds=61.5)
        assert datetime.now(UTC) == clock.now()
        clock.set(datetime(2025, 1, 2))  # naive: UTC
        assert clock.now() == datetime(2025, 1, 2, tzinfo=UTC)
        with pytest.raises(ValueError, match="only goes forward"):
            clock.set(start)
        with pytest.raises(ValueError):
            clock.advance(-1)
    assert datetime.now(UTC) != datetime(2025, 1, 2, tzinfo=UTC)  # freezegun stopped


def test_time_travel_clock_without_freezegun():
    clock = TimeTravelClock(datetime(2030, 1, 1, tzinfo=UTC), freeze=False)
    assert datetime.now(UTC).year != 2030
    clock.advance(1)
    assert clock.now() == datetime(2030, 1, 1, 0, 0, 0, 1000, tzinfo=UTC)
