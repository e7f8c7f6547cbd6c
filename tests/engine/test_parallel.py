"""Parallel groups: branches as units any worker claims, merged in branch order."""

from __future__ import annotations

from durable import Retry, parallel, step, workflow
from durable.context import (
    append_context,
    attempt,
    get_context,
    increment_context,
    put_context,
    workflow_id,
)


@workflow("par_enrich")
class Enrich:
    @step
    def start(self):
        put_context("order", 7)
        put_context("tags", ["new"])
        put_context("score", 1)

    @parallel
    class enrich:
        @step(retry=Retry(max_attempts=3, backoff="constant", base=1))
        def credit(self):
            if attempt() < 2:
                raise ConnectionError("bureau down")
            put_context("credit", 700)
            append_context("tags", "credit")
            increment_context("score", 10)

        @step
        def fraud(self):
            put_context("fraud", "low")
            append_context("tags", "fraud")
            increment_context("score", 100)
            put_context("who", workflow_id())

    @step
    def finish(self):
        put_context("done", get_context("credit") is not None)


def test_branches_run_as_units_and_merge_in_branch_order(durable_engine):
    wid = durable_engine.start(Enrich)
    ex = durable_engine.run_until(wid)
    assert ex.status == "completed", ex.error
    assert ex.context == {
        "order": 7,
        "tags": ["new", "credit", "fraud"],
        "score": 111,
        "credit": 700,
        "fraud": "low",
        "who": wid,
        "done": True,
    }
    names = [
        (s.name, s.status) for s in durable_engine.get_execution(wid, include_steps=True).steps
    ]
    assert ("enrich.credit", "failed") in names and ("enrich.credit", "completed") in names
    assert ("enrich.fraud", "completed") in names and ("enrich", "completed") in names
    assert durable_engine.list_executions() and all(
        e.id == wid for e in durable_engine.list_executions()
    )
