"""The store contract (durable_testing.contract) on the three built-in stores, and each
SQL store compared with the memory store on random operation sequences."""

from __future__ import annotations

import itertools
from datetime import timedelta

import psycopg
import pytest

import durable
from durable.stores.base import ExecutionRow
from durable.stores.memory import MemoryStore
from durable_testing.contract import StoreContract, compare_with_memory

from helpers import examples


def _truncate(url: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            "TRUNCATE durable_executions, durable_step_attempts, durable_waits, durable_events "
            "RESTART IDENTITY"
        )


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


class TestSQLiteStore(StoreContract):
    @pytest.fixture
    def store(self, tmp_path):
        store = durable.Engine(f"sqlite:///{tmp_path / 'contract.db'}").store
        yield store
        store.close()


class TestPostgresStore(StoreContract):
    @pytest.fixture
    def store(self, postgres_url):
        _truncate(postgres_url)
        store = durable.Engine(postgres_url).store
        yield store
        store.close()


def test_sqlite_agrees_with_memory(tmp_path):
    counter = itertools.count()

    def make():
        return durable.Engine(f"sqlite:///{tmp_path / f'cmp{next(counter)}.db'}").store

    compare_with_memory(make, max_examples=examples(50))


def test_postgres_agrees_with_memory(postgres_url):
    def make():
        _truncate(postgres_url)
        return durable.Engine(postgres_url).store

    compare_with_memory(make, max_examples=examples(50))
