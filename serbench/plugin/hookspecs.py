"""The plugin contract: one hook per kind of plugin, made from the table of kinds
(:data:`serbench.plugin.kinds.PLUGIN_KINDS`, one row per kind: read it there).

A plugin is a module (or object) registered under the entry-point group ``serbench``.
It implements any of these hooks with ``@serbench.hookimpl``, each hook returning a list
of classes of its kind (the list of hooks below is made from the table). Implementations
may take fewer arguments than the spec lists, so hooks can grow without breaking plugins.

Plugin modules are imported at start-up by every command, so they should import heavy
libraries (torch, transformers, engines) inside methods, not at module level.

The hooks:

"""

from __future__ import annotations

from typing import Callable

import pluggy

from serbench.plugin.kinds import PLUGIN_KINDS, PluginKind

PROJECT = "serbench"

hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


def _hookspec(kind: PluginKind) -> Callable[[], list[type]]:
    """The hook specification of ``kind``: no arguments, a list of classes back."""

    def spec() -> list[type]:
        raise NotImplementedError  # a specification: pluggy never calls it

    spec.__name__ = spec.__qualname__ = kind.hook
    spec.__doc__ = kind.hook_doc()
    spec.__annotations__ = {"return": f"list[type[{kind.base_name}]]"}
    return hookspec(spec)


HOOKS: dict[str, Callable[[], list[type]]] = {kind.hook: _hookspec(kind) for kind in PLUGIN_KINDS}
"""Every hook specification, by hook name (each is also a module attribute: pluggy reads
them from the module)."""

globals().update(HOOKS)
if __doc__:  # None under python -OO
    __doc__ += "\n".join(f"- ``{kind.hook}()``: {kind.described} classes (:class:`{kind.base_name}`)" for kind in PLUGIN_KINDS)
