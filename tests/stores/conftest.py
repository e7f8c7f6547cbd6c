"""Fixtures of the store tests."""

from __future__ import annotations

import os

import pytest


@pytest.fixture(params=["sqlite", "postgres"])
def blank_url(request, tmp_path):
    """An empty database of each SQL kind."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'blank.db'}"
        return
    import psycopg

    base: str = request.getfixturevalue("postgres_url")
    name = f"durable_blank_{os.getpid()}"
    admin = base.rsplit("/", 1)[0] + "/postgres"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        conn.execute(f"CREATE DATABASE {name}")
    yield base.rsplit("/", 1)[0] + "/" + name
    with psycopg.connect(admin, autocommit=True) as conn:
        for db in (name, f"durable_reference_{os.getpid()}"):
            conn.execute(f"DROP DATABASE IF EXISTS {db} WITH (FORCE)")
