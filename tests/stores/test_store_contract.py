"""The store contract (durable_testing.contract) on the three built-in stores, and each
SQL store compared with the memory store on random operation sequences."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from datetime import timedelta

import pytest

import durable
from durable.stores.base import ExecutionRow, Store
from durable.stores.memory import MemoryStore
from durable_testing.contract import StoreContract, compare_with_memory
from durable_testing.sandbox import StoreSandbox

from helpers import examples


class TestMemoryStore(StoreContract):
    @pytest.fixture
    def store(self):
        return MemoryStore()

    def test_a_claim_with_an_earlier_now_never_takes_a_row_not_yet_due(self, store):
        # The memory store keeps rows a claim found due in a heap of their own: a claim
        # with an earlier `now` (another engine's clock) must not take them from there.
        t = durable.Engine(store).clock.now()
        for rid, queue, due in (("a", "qa", t), ("b", "qb", t + timedelta(minutes=30))):
            store.create(
                ExecutionRow(
                    id=rid,
                    workflow="w",
                    status=durable.Status.PENDING,
                    queue=queue,
                    priority=0,
                    input=None,
                    context={},
                    created_at=t,
                    scheduled_at=due,
                    run_at=due,
                )
            )
        common = {"workflows": ["w"], "worker_id": "x", "lease_ms": 1000, "limit": 5}
        claimed = store.claim(queues=["qa"], now=t + timedelta(hours=1), **common)
        assert [r.id for r in claimed] == ["a"]
        assert store.claim(queues=["qb"], now=t, **common) == []
        later = t + timedelta(minutes=30)
        assert [r.id for r in store.claim(queues=["qb"], now=later, **common)] == ["b"]


@contextmanager
def _empty_store(sandbox: StoreSandbox) -> Iterator[Store]:
    """A store on an empty, migrated database of the session's sandbox (no migration of
    its own: ~0.15 s a test on SQLite, ~0.25 s on PostgreSQL, saved)."""
    url = sandbox.for_test()
    store = durable.Engine(url, migrate=False).store
    try:
        yield store
    finally:
        store.close()
        sandbox.after_test(url)


class TestSQLiteStore(StoreContract):
    @pytest.fixture
    def store(self, sandbox_of):
        with _empty_store(sandbox_of("sqlite")) as store:
            yield store


class TestPostgresStore(StoreContract):
    @pytest.fixture
    def store(self, sandbox_of, postgres_url):  # (postgres_url: the server, for the marker)
        with _empty_store(sandbox_of("postgres")) as store:
            yield store


def _compare(sandbox: StoreSandbox) -> None:
    """compare_with_memory on stores of the sandbox's kind, each empty."""
    with ExitStack() as made:
        compare_with_memory(
            lambda: made.enter_context(_empty_store(sandbox)), max_examples=examples(50)
        )


def test_sqlite_agrees_with_memory(sandbox_of):
    _compare(sandbox_of("sqlite"))


def test_postgres_agrees_with_memory(sandbox_of, postgres_url):
    _compare(sandbox_of("postgres"))
