"""The built-in stores and clock, registered through the ``durable`` entry point group
exactly as a third-party plugin registers its own.

Each factory imports its store when a URL of its scheme is opened, so listing the schemes
(every engine does) imports no database driver.
"""

from __future__ import annotations

from durable.clock import SystemClock
from durable.plugins import ClockRegistry, StoreRegistry, hookimpl
from durable.stores.base import Store


def open_memory(url: str) -> Store:
    """``memory://`` (``memory://name`` shares one store per name within the process)."""
    from durable.stores.memory import open_memory_url

    return open_memory_url(url)


def open_sqlite(url: str) -> Store:
    """``sqlite:///path/to.db``."""
    from durable.stores.sql.sqlite import open_sqlite as open_store

    return open_store(url)


def open_postgres(url: str) -> Store:
    """``postgresql://user@host:port/db`` (also ``postgres://``)."""
    from durable.stores.sql.postgres import open_postgres as open_store

    return open_store(url)


@hookimpl
def durable_register_stores(registry: StoreRegistry) -> None:
    """Register ``memory://``, ``sqlite://`` and ``postgresql://`` (and ``postgres://``)."""
    registry.add("memory", open_memory)
    registry.add("sqlite", open_sqlite)
    registry.add("postgresql", open_postgres)
    registry.add("postgres", open_postgres)


@hookimpl
def durable_register_clocks(registry: ClockRegistry) -> None:
    """Register the system clock as ``"system"``."""
    registry.add("system", SystemClock)
