"""Plugin discovery: every engine, dataset adapter and backbone -- each kind in the table
of :mod:`serbench.plugin.kinds` -- comes from a plugin.

Plugins, built-in ones included, are found through the ``serbench`` entry-point group.
``SERBENCH_PLUGINS`` (comma-separated entry-point names) restricts which are loaded, and
``SERBENCH_DISABLE_PLUGINS`` drops some; both are for debugging a broken installation.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import cache
from importlib.metadata import entry_points
from typing import Any

import pluggy

from serbench.plugin import hookspecs
from serbench.plugin.kinds import KINDS, PLUGIN_KINDS, Kind, PluginKind
from serbench.errors import PluginError
from serbench import env

__all__ = ["KINDS", "Kind", "PluginEntry", "Registry", "load_plugins", "registry"]


@dataclass(frozen=True)
class PluginEntry:
    """One named plugin class of a kind (an engine, a dataset adapter, ...), and who provides it."""

    kind: Kind
    name: str
    cls: type
    plugin: str
    package: str
    version: str

    def as_dict(self) -> dict[str, str]:
        return {"name": self.name, "plugin": self.plugin, "package": self.package, "version": self.version}


class Registry:
    """What the loaded plugins provide, by kind and name.

    ``provenance`` maps a registered plugin object's id to its (package, version).
    """

    def __init__(self, pm: pluggy.PluginManager, provenance: dict[int, tuple[str, str]] | None = None):
        self.pm = pm
        provenance = provenance or {}
        self._entries: dict[Kind, dict[str, PluginEntry]] = {kind: {} for kind in KINDS}
        for kind in PLUGIN_KINDS:
            hook = getattr(pm.hook, kind.hook)
            for impl in reversed(hook.get_hookimpls()):  # in registration order
                package, version = provenance.get(id(impl.plugin)) or _module_provenance(impl.plugin)
                for cls in _provided(impl, kind):
                    self._add(kind, cls, impl.plugin_name, package, version)

    def _add(self, kind: PluginKind, cls: type, plugin: str, package: str, version: str) -> None:
        base = kind.base_class()
        if not (isinstance(cls, type) and issubclass(cls, base)):
            raise PluginError(
                f"plugin {plugin!r} provides {cls!r} as a {kind.name}, which is not a {base.__name__} subclass"
            )
        name = getattr(cls, "name", None)
        if not isinstance(name, str) or not name:
            raise PluginError(f"plugin {plugin!r} provides a {kind.name} without a name")
        entries = self._entries[kind.name]
        if name in entries:
            raise PluginError(f"two plugins provide the {kind.name} {name!r}: {entries[name].plugin} and {plugin}")
        entries[name] = PluginEntry(kind.name, name, cls, plugin, package, version)

    def names(self, kind: Kind) -> list[str]:
        """The names of the ``kind`` classes installed, sorted."""
        return sorted(self._entries[kind])

    def entries(self, kind: Kind) -> list[PluginEntry]:
        """The ``kind`` entries, by name."""
        return [self._entries[kind][name] for name in self.names(kind)]

    def get(self, kind: Kind, name: str) -> PluginEntry:
        """The entry for ``name``; a ``PluginError`` listing the available ones otherwise."""
        try:
            return self._entries[kind][name]
        except KeyError:
            available = ", ".join(self.names(kind)) or "none installed"
            raise PluginError(f"unknown {kind} {name!r}; available: {available}") from None

    def as_json(self) -> dict[str, list[dict[str, str]]]:
        """``serbench plugins --json``: each kind's ``key`` mapped to its entries, in table order."""
        return {kind.key: [entry.as_dict() for entry in self.entries(kind.name)] for kind in PLUGIN_KINDS}


def _provided(impl: pluggy.HookImpl, kind: PluginKind) -> list[type]:
    """What one hook implementation returns, or a ``PluginError`` naming the plugin."""
    try:
        provided = impl.function()
    except Exception as exc:
        raise PluginError(
            f"plugin {impl.plugin_name!r} failed to list its {kind.key}: {exc.__class__.__name__}: {exc}"
        ) from None
    if provided is None:
        return []
    if not isinstance(provided, (list, tuple)):
        raise PluginError(f"plugin {impl.plugin_name!r}: {kind.hook}() must return a list of classes")
    return list(provided)


def _module_provenance(plugin: Any) -> tuple[str, str]:
    module = getattr(plugin, "__name__", type(plugin).__module__)
    return module.split(".")[0], str(getattr(plugin, "__version__", "unknown"))


def load_plugins() -> tuple[pluggy.PluginManager, dict[int, tuple[str, str]]]:
    """A plugin manager with serbench's hookspecs and every installed plugin registered,
    and each plugin's providing (package, version).

    A plugin that fails to import raises ``PluginError`` naming it, not a traceback.
    """
    pm = pluggy.PluginManager(hookspecs.PROJECT)
    pm.add_hookspecs(hookspecs)
    allowed = _env_names(env.PLUGINS)
    disabled = _env_names(env.DISABLE_PLUGINS) or set()
    provenance: dict[int, tuple[str, str]] = {}
    for ep in sorted(entry_points(group=hookspecs.PROJECT), key=lambda ep: ep.name):
        if ep.name in disabled or (allowed is not None and ep.name not in allowed):
            continue
        if pm.get_plugin(ep.name) is not None:
            continue  # the same distribution seen twice on sys.path
        try:
            plugin = ep.load()
        except Exception as exc:  # a broken third-party plugin must not look like our bug
            raise PluginError(f"plugin {ep.name!r} ({ep.value}) failed to load: {exc.__class__.__name__}: {exc}") from None
        try:
            pm.register(plugin, name=ep.name)
        except (pluggy.PluginValidationError, ValueError) as exc:
            raise PluginError(f"plugin {ep.name!r} ({ep.value}) cannot be registered: {exc}") from None
        dist = getattr(ep, "dist", None)
        if dist is not None:
            provenance[id(plugin)] = (dist.metadata["Name"], dist.version)
    try:
        pm.check_pending()  # a hook implementation that matches no hookspec is a typo
    except pluggy.PluginValidationError as exc:
        raise PluginError(f"invalid plugin: {exc}") from None
    return pm, provenance


def _env_names(variable: env.Variable) -> set[str] | None:
    value = os.environ.get(variable.name)
    if value is None:
        return None
    return {name.strip() for name in value.split(",") if name.strip()}


@cache
def registry() -> Registry:
    """The process-wide registry of installed plugins (loaded once)."""
    return Registry(*load_plugins())
