"""Errors that another attempt cannot mend: ``Retry(non_retryable=...)`` and
``durable.NonRetryableError`` end the step at once, with attempts left, on the
time-travel clock and every store."""

from __future__ import annotations

import logging

import pytest

import durable
from durable import NonRetryableError, Retry, compensation, foreach, step, workflow
from durable.context import attempt, input, put_context


class CardDeclined(Exception):
    """A payment provider's answer that no retry changes."""


class StolenCard(CardDeclined):
    """A kind of decline (a subclass counts as its base)."""


@workflow("nr_charge")
class Charge:
    @step(retry=Retry(max_attempts=5, backoff="constant", base=1, non_retryable=(CardDeclined,)))
    def charge(self):
        kind = input()["fail_with"][attempt() - 1]
        if kind == "timeout":
            raise ConnectionError(f"attempt {attempt()}: the provider timed out")
        if kind == "declined":
            raise StolenCard(f"attempt {attempt()}: card reported stolen")
        if kind == "give_up":
            raise NonRetryableError("address does not exist") from KeyError("zip")
        put_context("charged_on", attempt())


def test_a_listed_error_ends_the_step_with_attempts_left(durable_engine, durable_clock, caplog):
    wid = durable_engine.start(Charge, {"fail_with": ["timeout", "timeout", "declined"]})
    caplog.set_level(logging.WARNING, logger="durable")
    durable_engine.run_all()  # (the 1 s retries, travelled)
    ex = durable_engine.get_execution(wid, include_steps=True)
    assert ex.status == "failed"
    # the two timeouts were retried; the decline, a subclass of a listed type, was not
    assert [(s.attempt, s.status, s.error["type"]) for s in ex.steps] == [
        (1, "failed", "ConnectionError"),
        (2, "failed", "ConnectionError"),
        (3, "failed", f"{__name__}.StolenCard"),
    ]
    assert ex.steps[-1].retry_at is None and ex.steps[-1].max_attempts == 5
    error = ex.error or {}
    assert (error["step"], error["attempt"], error["retryable"]) == ("charge", 3, False)
    assert error["message"] == "attempt 3: card reported stolen"
    assert durable_engine.next_due() is None
    assert any("with an error it does not retry" in r.getMessage() for r in caplog.records)


def test_non_retryable_error_is_never_retried_and_keeps_its_cause(durable_engine):
    wid = durable_engine.start(Charge, {"fail_with": ["give_up"]})
    ex = durable_engine.run_until(wid)
    assert ex.status == "failed"
    error = ex.error or {}
    assert error["type"] == "durable.errors.NonRetryableError"
    assert (error["attempt"], error["retryable"]) == (1, False)
    assert "KeyError: 'zip'" in error["traceback"]  # the cause, raised from


def test_durable_show_says_the_error_was_not_retried(durable_engine, durable_store_url):
    from click.testing import CliRunner

    from durable.cli import main

    wid = durable_engine.start(Charge, {"fail_with": ["give_up"]})
    durable_engine.run_until(wid)
    shown = CliRunner().invoke(main, ["--store", durable_store_url, "show", wid])
    assert shown.exit_code == 0, shown.output
    assert (
        "  error      durable.errors.NonRetryableError: address does not exist\n"
        "             (an error its retry policy does not retry)\n"
    ) in shown.output


def test_other_errors_still_retry_until_success(durable_engine):
    wid = durable_engine.start(Charge, {"fail_with": ["timeout", "timeout", "ok"]})
    ex = durable_engine.run_until(wid)
    assert ex.status == "completed"
    assert ex.context == {"charged_on": 3}
    assert "retryable" not in (ex.error or {})


@workflow("nr_items")
class Items:
    @step
    def load(self):
        put_context("xs", [1, 2, 3])

    @foreach("xs", retry=Retry(max_attempts=4, backoff="constant", base=1))
    def each(self, x):
        if x == 2:
            raise NonRetryableError(f"item {x} is malformed")
        return x


def test_a_foreach_item_that_cannot_succeed_fails_at_its_first_attempt(durable_engine):
    wid = durable_engine.start(Items)
    ex = durable_engine.run_until(wid)
    assert ex.status == "failed"
    attempts = durable_engine.history(wid).attempts("each[1]")
    assert [a.attempt for a in attempts] == [1]  # 4 allowed, 1 made


undone: list[str] = []


@workflow("nr_saga")
class Saga:
    @step(compensate="refund")
    def pay(self):
        put_context("paid", True)

    @step
    def ship(self):
        raise RuntimeError("warehouse closed")

    @compensation(retry=Retry(max_attempts=3, backoff="constant", base=1))
    def refund(self):
        undone.append("refund")
        raise NonRetryableError("the payment was already refunded by hand")


def test_a_compensation_that_cannot_succeed_is_not_retried(durable_engine):
    undone.clear()
    wid = durable_engine.start(Saga)
    ex = durable_engine.run_until(wid)
    assert ex.status == "failed"
    assert undone == ["refund"]
    assert (ex.error or {})["type"].endswith("CompensationFailed")
    assert durable_engine.history(wid).errors == [
        ("ship", 1, "RuntimeError"),
        ("refund", 1, "durable.errors.NonRetryableError"),
    ]


@pytest.mark.parametrize(
    "bad", [("ValueError",), (ValueError, 3), (int,), "ValueError", ValueError("x")]
)
def test_non_retryable_takes_exception_classes(bad):
    with pytest.raises(durable.ConfigError, match="non_retryable takes exception classes"):
        Retry(non_retryable=bad)


def test_non_retryable_from_a_dict_a_list_or_one_class():
    assert Retry.coerce({"non_retryable": [KeyError]}).non_retryable == (KeyError,)  # type: ignore[union-attr]
    assert Retry(non_retryable=KeyError).non_retryable == (KeyError,)  # type: ignore[arg-type]
    assert Retry().retries(KeyError()) and not Retry().retries(NonRetryableError("x"))
    assert not Retry(non_retryable=(LookupError,)).retries(KeyError())
    assert Retry().delay_ms(1) == Retry(non_retryable=(KeyError,)).delay_ms(1) == 2000
