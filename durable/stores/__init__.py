"""Stores: where executions live. Plugins add schemes through ``durable_register_stores``."""

from durable.stores.base import ExecutionRow, Store

__all__ = ["ExecutionRow", "Store"]
