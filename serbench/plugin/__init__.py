"""The plugin system: the hook specifications (:mod:`.hookspecs`) and the registry that
loads every plugin through the ``serbench`` entry points (:mod:`.registry`)."""

from serbench.plugin.hookspecs import hookimpl

__all__ = ["hookimpl"]
