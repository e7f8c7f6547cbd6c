"""The order workflow's behaviour over time, driven by the test clock: nothing sleeps."""

from __future__ import annotations

from datetime import timedelta

from durable_testing import InjectedFault
from shop.services import PaymentDeclined, emails, payments
from shop.workflows import OrderWorkflow


def test_an_order_is_charged_once_and_confirmed(durable_engine, order):
    wid = durable_engine.start(OrderWorkflow, order)
    ex = durable_engine.run_until(wid)
    assert ex.status == "completed"
    assert ex.context["total"] == 99.99
    assert payments.charges[f"{wid}:charge"] == {"id": ex.context["charge_id"], "amount": 99.99}
    assert emails.sent[f"{wid}:email"] == 123


def test_a_flaky_provider_is_retried_with_exponential_backoff(durable_engine, order):
    durable_engine.override("charge_payment", fail=2, error=ConnectionError)
    wid = durable_engine.start(OrderWorkflow, order)
    durable_engine.run_until(wid)
    charge = durable_engine.history(wid).attempts("charge_payment")
    assert [(a.status, a.at) for a in charge] == [
        ("failed", timedelta(0)),
        ("failed", timedelta(seconds=2)),
        ("completed", timedelta(seconds=2 + 4)),
    ]


def test_the_retry_does_not_come_a_millisecond_early(durable_engine, durable_clock, order):
    durable_engine.override("charge_payment", fail=1)
    wid = durable_engine.start(OrderWorkflow, order)
    durable_engine.drain()
    durable_clock.advance(timedelta(seconds=2) - timedelta(milliseconds=1))
    assert durable_engine.drain() == 0
    durable_clock.advance(1)
    durable_engine.drain()
    assert durable_engine.get_execution(wid).status == "completed"


def test_three_failures_fail_the_order_and_send_no_email(durable_engine, order):
    durable_engine.override("charge_payment", error=InjectedFault("provider down"))
    wid = durable_engine.start(OrderWorkflow, order)
    ex = durable_engine.run_until(wid, "failed")
    assert ex.error["message"] == "provider down"
    assert durable_engine.history(wid).tried[-3:] == ["charge_payment"] * 3
    assert f"{wid}:email" not in emails.sent


def test_a_declined_payment_is_reported(durable_engine, order):
    order["order"]["items"] = []
    wid = durable_engine.start(OrderWorkflow, order)
    ex = durable_engine.run_until(wid)
    assert ex.status == "failed"
    assert ex.error["type"] == "shop.services.PaymentDeclined"
    assert issubclass(PaymentDeclined, Exception)


def test_a_hung_provider_fails_the_order_at_its_two_hour_timeout(durable_engine, order):
    durable_engine.override("charge_payment", takes=timedelta(hours=3))
    wid = durable_engine.start(OrderWorkflow, order)
    ex = durable_engine.run_until(wid)
    assert ex.error["type"] == "durable.errors.WorkflowTimeout"
    assert ex.completed_at - ex.created_at == timedelta(hours=2)


def test_stop_before_the_charge_to_look_at_the_total(durable_engine, order):
    wid = durable_engine.start(OrderWorkflow, order)
    ex = durable_engine.run_until(wid, step="charge_payment")
    assert ex.context["total"] == 99.99
    assert f"{wid}:charge" not in payments.charges
    assert durable_engine.run_until(wid).status == "completed"


def test_an_order_scheduled_for_tomorrow_waits_for_it(durable_engine, durable_clock, order):
    tomorrow = durable_clock.now() + timedelta(days=1)
    wid = durable_engine.start(OrderWorkflow, order, scheduled_at=tomorrow)
    assert durable_engine.drain() == 0
    assert durable_engine.advance_to_next() == tomorrow
    assert durable_engine.run_until(wid).completed_at == tomorrow
