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

MAX_HEADERS = 4096
"""The most characters (keys and values together) of headers stored with one execution."""


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
        installed: dict[type, str] = {}
        for name, plugin in entry_point_plugins():
            if self.pm.is_registered(plugin):
                continue
            self.pm.register(plugin, name=f"entrypoint:{name}")
            kind = type(plugin)
            # (an instance of a plugin's own class: not a module, nor a class given as the
            # plugin, nor a generic object such as a SimpleNamespace)
            if kind.__module__ not in ("builtins", "types") and not isinstance(plugin, type):
                installed[kind] = name
        for plugin in extra:
            if self.pm.is_registered(plugin):
                continue  # (installed, or given twice: one plugin object is loaded once)
            if type(plugin) in installed:
                # Another instance of an installed plugin's class: both would run every
                # hook (two spans per attempt, twice the counts).
                raise ConfigError(
                    f"plugins=[...] has a {type(plugin).__qualname__}, and the installed "
                    f"plugin {installed[type(plugin)]!r} (entry point group "
                    f"{ENTRY_POINT_GROUP!r}) is one too: it is loaded already; leave it "
                    "out of plugins=[...], or uninstall the package that installs it"
                )
            self.pm.register(plugin)
        self.hook = self.pm.hook
        names = [n for n in dir(hookspecs) if n.startswith("durable_") and hasattr(self.hook, n)]
        for name in names:
            _check_impls(name, getattr(self.hook, name).get_hookimpls())
        # The plugins are fixed once the engine is built, and observers and wrappers are
        # called on every step: so they are called from tables made here, each
        # implementation on its own with the arguments it names, rather than through
        # pluggy's hook caller each time (a third of the hooks' cost with one plugin).
        self._observers: dict[str, list[tuple[str, Any]]] = {}
        for name in names:
            if name in hookspecs.WRAPPER_HOOKS:
                continue
            impls = getattr(self.hook, name).get_hookimpls()
            self._observers[name] = [(_label(impl), impl) for impl in impls]
        self._header_impls = list(reversed(self.hook.durable_execution_headers.get_hookimpls()))
        self.gives_headers = bool(self._header_impls)
        """True when a plugin stores headers with new executions
        (``durable_execution_headers``)."""
        self._step_wrappers = [
            impl for impl in reversed(self.hook.durable_step_call.get_hookimpls()) if impl.wrapper
        ]
        self.wraps_steps = bool(self._step_wrappers)
        """True when a plugin wraps step attempts (``durable_step_call``)."""

    def _fill(self, registry: _Registry, hook: Any) -> None:
        """Call each registration hook implementation, telling the registry whose it is."""
        for impl in reversed(hook.get_hookimpls()):
            registry._current_plugin = _label(impl)
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
        return bool(self._observers[hook_name])

    def notify(self, hook_name: str, **kwargs: Any) -> None:
        """Call an observer hook, each implementation on its own with the arguments it
        names: an observer's exception is logged, never raised, and the others are still
        called."""
        for plugin_name, impl in self._observers[hook_name]:
            try:
                impl.function(*[kwargs[arg] for arg in impl.argnames])
            except Exception:
                log.exception("durable observer %s.%s failed", plugin_name, hook_name)

    def execution_headers(
        self, workflow: str, execution_id: str, created_by: str
    ) -> dict[str, str]:
        """The headers to store with a new execution: every ``durable_execution_headers``
        answer merged, in calling order (the first to give a key keeps it). An answer that
        raises or is not a dict of str to str within ``MAX_HEADERS`` characters is
        logged and left out."""
        if not self._header_impls:
            return {}
        asked = {"workflow": workflow, "execution_id": execution_id, "created_by": created_by}
        merged: dict[str, str] = {}
        for impl in self._header_impls:
            try:
                answer = impl.function(*[asked[name] for name in impl.argnames])
            except Exception:
                log.exception(
                    "durable plugin %s: durable_execution_headers failed; execution %s is "
                    "stored without its headers",
                    _label(impl),
                    execution_id,
                )
                continue
            if answer is None:
                continue
            usable = _usable_headers(answer)
            if isinstance(usable, str):
                log.error(
                    "durable plugin %s: durable_execution_headers returned %s; execution %s "
                    "is stored without them",
                    _label(impl),
                    usable,
                    execution_id,
                )
                continue
            for key, value in usable.items():
                merged.setdefault(key, value)
        if sum(len(k) + len(v) for k, v in merged.items()) > MAX_HEADERS:
            log.error(
                "durable: the plugins' headers for execution %s hold more than %d characters "
                "in all; it is stored without them",
                execution_id,
                MAX_HEADERS,
            )
            return {}
        return merged

    def serve_metrics(self, port: int, host: str) -> str | None:
        """Ask the plugins to serve metrics on ``host``:``port``; where they are served (a
        URL), or None when no plugin does (``durable_serve_metrics``)."""
        where: str | None = self.hook.durable_serve_metrics(port=port, host=host)
        return where

    def call_step(self, call: hookspecs.StepCall) -> Any:
        """Run a sync step's attempt through the ``durable_step_call`` wrappers.

        The wrappers are driven here as pluggy drives new-style wrappers (outermost first;
        each sees the result sent in, or the error thrown in, at its ``yield``), in the
        step's thread."""
        entered: list[tuple[Any, Any]] = []
        try:
            self._enter(call, entered)
            result = call.body()
        except BaseException as exc:
            return _unwind(entered, None, exc)
        return _unwind(entered, result, None)

    async def call_step_async(self, call: hookspecs.StepCall) -> Any:
        """Run an async step's attempt through the ``durable_step_call`` wrappers, as
        ``call_step`` does, with the awaiting of the body between the wrappers' two
        halves, all in the step's task."""
        entered: list[tuple[Any, Any]] = []
        try:
            self._enter(call, entered)
            result = await call.body()
        except BaseException as exc:
            return _unwind(entered, None, exc)
        return _unwind(entered, result, None)

    def _enter(self, call: hookspecs.StepCall, entered: list[tuple[Any, Any]]) -> None:
        """Run each wrapper up to its ``yield``, outermost first, noting those entered."""
        for impl in self._step_wrappers:
            # (the hook's one argument, unless the implementation leaves it out)
            gen: Any = impl.function(call) if impl.argnames else impl.function()
            try:
                next(gen)
            except StopIteration:
                raise _no_yield(impl) from None
            entered.append((impl, gen))


def _unwind(entered: list[tuple[Any, Any]], result: Any, error: BaseException | None) -> Any:
    """Finish the entered wrappers, innermost first: each is sent the result, or thrown
    the error, so far; what the outermost returns (or raises) is the step's outcome."""
    for impl, gen in reversed(entered):
        try:
            if error is None:
                gen.send(result)
            else:
                gen.throw(error)
            error = _no_yield(impl, twice=True)
            gen.close()
        except StopIteration as stop:
            result, error = stop.value, None
        except BaseException as exc:
            error = exc
    if error is not None:
        raise error
    return result


def _check_impls(hook_name: str, impls: Iterable[Any]) -> None:
    """Refuse an implementation whose kind does not fit the hook, rather than let pluggy
    call it in a way its author did not mean (or never call it)."""
    for impl in impls:
        where = f"{_label(impl)}: {hook_name}"
        if hook_name in hookspecs.WRAPPER_HOOKS:
            if not impl.wrapper:
                raise ConfigError(
                    f"{where} must be a new-style wrapper: decorate it with "
                    "@hookimpl(wrapper=True) and make it a generator that yields once "
                    "(result = yield; return result)"
                )
        elif impl.wrapper or impl.hookwrapper:
            raise ConfigError(
                f"{where} is a wrapper, but {hook_name} is an observer or registration "
                "hook: implement it as a plain function (to wrap each step attempt, "
                "implement durable_step_call with @hookimpl(wrapper=True))"
            )


def _usable_headers(answer: object) -> dict[str, str] | str:
    """An answer of ``durable_execution_headers`` as headers to store, or (a str) why it
    cannot be stored."""
    if not isinstance(answer, dict):
        return f"a {type(answer).__name__}, not a dict of str to str"
    for key, value in answer.items():
        if not isinstance(key, str) or not isinstance(value, str):
            return f"a dict with the item {key!r}: {type(value).__name__} (keys and values are str)"
    size = sum(len(k) + len(v) for k, v in answer.items())
    if size > MAX_HEADERS:
        return f"{size} characters of headers, more than the {MAX_HEADERS} kept"
    return answer


def _no_yield(impl: Any, *, twice: bool = False) -> RuntimeError:
    how = "yielded more than once" if twice else "did not yield"
    return RuntimeError(
        f"the durable_step_call wrapper of {impl.plugin_name} {how}; a wrapper yields exactly once"
    )


def _label(impl: Any) -> str:
    """A plugin as people know it: its registered name, else its module or class (pluggy
    names a plugin registered without a name by its id)."""
    name: str = impl.plugin_name
    if not name.isdigit():
        return name
    plugin = impl.plugin
    if isinstance(plugin, ModuleType):
        return plugin.__name__
    cls = type(plugin)
    return f"{cls.__module__}.{cls.__qualname__}"
