"""Loading plugins: the ``durable`` entry point group, registries and hook calling."""

from __future__ import annotations

import importlib.metadata
import logging
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from types import ModuleType
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import pluggy

from durable import hookspecs
from durable._text import redact_url
from durable.errors import ConfigError

if TYPE_CHECKING:
    from durable.clock import Clock
    from durable.stores.base import Store

__all__ = [
    "ClockRegistry",
    "PluginHost",
    "StoreRegistry",
    "entry_point_plugins",
    "hookimpl",
]

log = logging.getLogger("durable.plugins")

hookimpl = pluggy.HookimplMarker("durable")
"""Marker for hook implementations: ``@hookimpl def durable_register_stores(registry): ...``."""

ENTRY_POINT_GROUP = "durable"


@dataclass(frozen=True, slots=True)
class _Entry:
    factory: Callable[..., Any]
    plugin: str


class _Registry:
    kind = "entry"

    def __init__(self) -> None:
        self._entries: dict[str, _Entry] = {}
        self._current_plugin = "?"

    def add(self, name: str, factory: Callable[..., Any]) -> None:
        """Register ``factory`` under ``name``; a name taken by another plugin is an error."""
        key = name.lower()
        prior = self._entries.get(key)
        if prior is not None and prior.factory is not factory:
            raise ConfigError(
                f"{self.kind} {name!r} is registered twice: by {prior.plugin} and by "
                f"{self._current_plugin}; uninstall one of them"
            )
        self._entries[key] = _Entry(factory, self._current_plugin)

    def names(self) -> list[str]:
        """Registered names, sorted."""
        return sorted(self._entries)

    def get(self, name: str) -> Callable[..., Any] | None:
        entry = self._entries.get(name.lower())
        return None if entry is None else entry.factory


class StoreRegistry(_Registry):
    """Store factories by URL scheme, filled by ``durable_register_stores``."""

    kind = "store scheme"


class ClockRegistry(_Registry):
    """Clock factories by name, filled by ``durable_register_clocks``."""

    kind = "clock"


_ep_lock = threading.Lock()
_ep_cache: list[tuple[str, ModuleType | object]] | None = None


def entry_point_plugins(*, refresh: bool = False) -> list[tuple[str, ModuleType | object]]:
    """The plugins installed under the ``durable`` entry point group, loaded once."""
    global _ep_cache
    with _ep_lock:
        if _ep_cache is None or refresh:
            found: list[tuple[str, ModuleType | object]] = []
            for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
                try:
                    found.append((ep.name, ep.load()))
                except Exception as exc:
                    raise ConfigError(
                        f"durable plugin {ep.name!r} ({ep.value}) failed to load: {exc!r}; "
                        "fix or uninstall that package"
                    ) from exc
            _ep_cache = found
        return list(_ep_cache)


class PluginHost:
    """One engine's plugin manager: entry point plugins plus the engine's own."""

    def __init__(self, extra: Iterable[object] = ()) -> None:
        self.pm = pluggy.PluginManager("durable")
        self.pm.add_hookspecs(hookspecs)
        for name, plugin in entry_point_plugins():
            if self.pm.is_registered(plugin):
                continue
            self.pm.register(plugin, name=f"entrypoint:{name}")
        for plugin in extra:
            self.pm.register(plugin)
        self.hook = self.pm.hook
        # The plugins are fixed once the engine is built; observers are asked about on
        # every step, so answer from a table rather than from pluggy each time.
        self._observed = {
            name: bool(getattr(self.hook, name).get_hookimpls())
            for name in dir(hookspecs)
            if name.startswith("durable_") and hasattr(self.hook, name)
        }

    def _fill(self, registry: _Registry, hook: Any) -> None:
        for impl in reversed(hook.get_hookimpls()):
            registry._current_plugin = impl.plugin_name
            impl.function(registry=registry)

    def stores(self) -> StoreRegistry:
        """Every store scheme the installed plugins provide."""
        reg = StoreRegistry()
        self._fill(reg, self.hook.durable_register_stores)
        return reg

    def clocks(self) -> ClockRegistry:
        """Every clock the installed plugins provide."""
        reg = ClockRegistry()
        self._fill(reg, self.hook.durable_register_clocks)
        return reg

    def make_store(self, url: str) -> Store:
        """Build the store for ``url`` with the factory registered for its scheme."""
        if not isinstance(url, str) or "://" not in url:
            got = repr(redact_url(url)) if isinstance(url, str) else type(url).__name__
            if isinstance(url, str) and "password" in url.lower():
                got = "a str that holds a password (not shown)"
            raise ConfigError(
                f"store must be a URL like 'memory://', 'sqlite:///path/to.db' or "
                f"'postgresql://user@host:5432/db', got {got}"
            )
        try:
            scheme = urlsplit(url).scheme.split("+", 1)[0]
        except ValueError as exc:
            raise ConfigError(f"store URL {redact_url(url)!r} cannot be parsed: {exc}") from None
        registry = self.stores()
        factory = registry.get(scheme)
        if factory is None:
            raise ConfigError(
                f"no store is registered for scheme {scheme!r} (from {redact_url(url)!r}); "
                f"installed schemes: {', '.join(registry.names()) or 'none'}. Install the "
                "plugin that provides it, or check that durable-engine itself is installed "
                "(pip install -e .)"
            )
        try:
            store: Store = factory(url)
        except ConfigError:
            raise
        except ValueError as exc:  # a URL its factory could not parse
            raise ConfigError(
                f"store URL {redact_url(url)!r} cannot be used: {type(exc).__name__}"
            ) from None
        return store

    def make_clock(self, name: str) -> Clock:
        """Build the clock registered under ``name``."""
        registry = self.clocks()
        factory = registry.get(name)
        if factory is None:
            raise ConfigError(
                f"no clock named {name!r}; installed clocks: {', '.join(registry.names())}"
            )
        clock: Clock = factory()
        return clock

    def has_observers(self, hook_name: str) -> bool:
        """Whether any plugin implements the observer hook (to skip building its arguments)."""
        return self._observed[hook_name]

    def notify(self, hook_name: str, **kwargs: Any) -> None:
        """Call an observer hook; an observer's exception is logged, never raised."""
        caller = getattr(self.hook, hook_name)
        for impl in caller.get_hookimpls():
            try:
                args = {k: kwargs[k] for k in impl.argnames}
                impl.function(**args)
            except Exception:
                log.exception("durable observer %s.%s failed", impl.plugin_name, hook_name)
