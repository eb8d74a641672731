"""The plugin contract: one hook per extension axis.

A plugin is a module (or object) registered under the entry-point group ``serbench``.
It implements any of these hooks with ``@serbench.hookimpl``. Implementations may take
fewer arguments than the spec lists, so hooks can grow without breaking plugins.

Plugin modules are imported at start-up by every command, so they should import heavy
libraries (torch, transformers, engines) inside methods, not at module level.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pluggy

if TYPE_CHECKING:
    from serbench.backbones.base import Backbone
    from serbench.data.base import DatasetAdapter
    from serbench.engines.base import Engine

PROJECT = "serbench"

hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@hookspec
def serbench_engines() -> list[type["Engine"]]:
    """Return the optimiser engine classes this plugin provides.

    Each class subclasses :class:`serbench.engines.base.Engine` and has a unique ``name``
    (the ``engine.name`` a job spec uses).
    """


@hookspec
def serbench_datasets() -> list[type["DatasetAdapter"]]:
    """Return the dataset adapter classes this plugin provides.

    Each class subclasses :class:`serbench.data.base.DatasetAdapter` and has a unique
    ``name`` (the ``dataset.name`` a job spec uses).
    """


@hookspec
def serbench_backbones() -> list[type["Backbone"]]:
    """Return the backbone classes this plugin provides.

    Each class subclasses :class:`serbench.backbones.base.Backbone` and has a unique ``name``
    (the ``backbone.name`` a job spec uses).
    """
