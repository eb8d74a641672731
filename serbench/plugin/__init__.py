"""The plugin system: the table of plugin kinds (:mod:`.kinds`), the hook specifications
made from it (:mod:`.hookspecs`) and the registry that loads every plugin through the
``serbench`` entry points (:mod:`.registry`)."""

from serbench.plugin.hookspecs import hookimpl

__all__ = ["hookimpl"]
