"""The kinds of plugin serbench has: one row each, read by the hook specifications
(:mod:`.hookspecs`), the registry (:mod:`.registry`), ``serbench plugins`` and the tests.
A new kind of plugin is a new row (and its base class).

This module imports nothing heavy: base classes are named by import path and imported
only when a plugin is checked against them (:meth:`PluginKind.base_class`).
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import import_module


@dataclass(frozen=True)
class PluginKind:
    """One kind of plugin.

    - ``name``: the kind as messages, ``Registry.get`` and the ``serbench plugins`` table
      say it (``"engine"``);
    - ``key``: its plural, the key of ``serbench plugins --json`` (``"engines"``);
    - ``hook``: the hook a plugin implements to provide classes of this kind;
    - ``base``: the base class every provided class subclasses, as ``module:Class``;
    - ``axis``: the package holding the built-in plugins of this kind (the modules their
      entry points name);
    - ``described``: what the classes are, for the hook's documentation;
    - ``chosen_by``: where a user names one, for the hook's documentation.
    """

    name: str
    key: str
    hook: str
    base: str
    axis: str
    described: str
    chosen_by: str

    def base_class(self) -> type:
        """The base class (imported now)."""
        module, _, attribute = self.base.partition(":")
        return getattr(import_module(module), attribute)

    @property
    def base_name(self) -> str:
        """The base class's dotted name, without importing it (``serbench.engines.base.Engine``)."""
        return self.base.replace(":", ".")

    def hook_doc(self) -> str:
        """The docstring of this kind's hook specification."""
        return (
            f"Return the {self.described} classes this plugin provides.\n\n"
            f"Each class subclasses :class:`{self.base_name}` and has a unique ``name``\n"
            f"({self.chosen_by})."
        )


PLUGIN_KINDS: tuple[PluginKind, ...] = (
    PluginKind(
        "engine", "engines", "serbench_engines", "serbench.engines.base:Engine", "serbench.engines",
        "optimiser engine", "the ``engine.name`` a job spec uses",
    ),
    PluginKind(
        "dataset", "datasets", "serbench_datasets", "serbench.data.base:DatasetAdapter", "serbench.data.adapters",
        "dataset adapter", "the ``dataset.name`` a job spec uses",
    ),
    PluginKind(
        "backbone", "backbones", "serbench_backbones", "serbench.backbones.base:Backbone", "serbench.backbones",
        "backbone", "the ``backbone.name`` a job spec uses",
    ),
    PluginKind(
        "backend", "backends", "serbench_backends", "serbench.execution.backend:ExecutionBackend",
        "serbench.execution", "execution backend", "the ``execution.backend`` a job spec uses, or ``--backend``",
    ),
    PluginKind(
        "pruner", "pruners", "serbench_pruners", "serbench.pruning.base:Pruner", "serbench.pruning",
        "pruner", "the ``pruner.name`` a job spec uses",
    ),
)
"""Every kind, in the order ``serbench plugins`` lists them."""

Kind = str
"""A kind's ``name`` (one of :data:`KINDS`)."""

KINDS: tuple[Kind, ...] = tuple(kind.name for kind in PLUGIN_KINDS)
"""The kinds' names, in table order."""

_BY_NAME = {kind.name: kind for kind in PLUGIN_KINDS}


def plugin_kind(name: Kind) -> PluginKind:
    """The row of kind ``name``; ``KeyError`` naming the kinds for anything else."""
    try:
        return _BY_NAME[name]
    except KeyError:
        raise KeyError(f"no plugin kind {name!r}; the kinds are {', '.join(KINDS)}") from None
