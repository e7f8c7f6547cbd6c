"""SQL stores on SQLAlchemy Core: SQLite (embedded default) and PostgreSQL (many workers)."""

from durable.stores.sql.store import SQLStore

__all__ = ["SQLStore"]
