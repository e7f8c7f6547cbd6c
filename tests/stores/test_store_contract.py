"""The store contract (durable_testing.contract) on the three built-in stores, and each
SQL store compared with the memory store on random operation sequences."""

from __future__ import annotations

import itertools

import psycopg
import pytest

import durable
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
