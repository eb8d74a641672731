"""The job's plugins (engine, dataset adapter, backbone, execution backend, pruner) from the
registry, their options validated; where the corpus is; a fresh engine for a fold's
search; the execution backend."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from serbench.backbones.base import Backbone
from serbench.data.base import DatasetAdapter, resolve_root
from serbench.engines.base import Engine
from serbench.execution.backend import ExecutionBackend
from serbench.errors import PluginError, UserError
from serbench.plugin.registry import PluginEntry, Registry, registry
from serbench.spec import JobSpec, plugin_options


@dataclass
class Plugins:
    engine: PluginEntry
    dataset: PluginEntry
    backbone: PluginEntry
    backend: PluginEntry
    pruner: PluginEntry


def resolve_plugins(spec: JobSpec, reg: Registry | None = None) -> Plugins:
    """The job's plugins, with their options validated.

    Raises ``UserError`` naming the spec field (``engine.name``, ``backbone.options.x``).
    """
    reg = reg or registry()
    found = {}
    for kind, section in (("engine", spec.engine), ("dataset", spec.dataset), ("backbone", spec.backbone)):
        found[kind] = _get(reg, kind, section.name, f"{kind}.name")
    found["backend"] = _get(reg, "backend", spec.execution.backend, "execution.backend")
    found["pruner"] = _get(reg, "pruner", spec.pruner.name, "pruner.name")
    for index, target in enumerate(spec.transfer):
        adapter = _get(reg, "dataset", target.name, f"transfer.{index}.name").cls
        plugin_options(adapter.Options, target.options, f"transfer.{index}.options")
    plugins = Plugins(**found)
    plugin_options(plugins.dataset.cls.Options, spec.dataset.options, "dataset.options")
    plugin_options(plugins.engine.cls.Options, spec.engine.options, "engine.options")
    plugin_options(plugins.backbone.cls.Options, spec.backbone.options, "backbone.options")
    plugin_options(plugins.backend.cls.Options, spec.execution.options, "execution.options")
    plugin_options(plugins.pruner.cls.Options, spec.pruner.options, "pruner.options")
    own = plugins.engine.cls.prunes_with
    if spec.pruner.by == "engine" and spec.pruner.name != "none" and spec.pruner.name not in own:
        offered = ", ".join(own) or "none"
        raise UserError(
            f"pruner.by: engine, but engine {plugins.engine.name!r} has no pruner of its own for "
            f"{spec.pruner.name!r} (it offers: {offered}); use pruner.by: serbench"
        )
    limit = plugins.backend.cls.max_parallel
    if limit is not None and spec.execution.parallel > limit:
        raise UserError(
            f"execution.parallel: {spec.execution.parallel}, but the {plugins.backend.name} backend runs at most "
            f"{limit} trial{'s' if limit != 1 else ''} at a time; for trials in parallel use the ray backend "
            "(--backend ray --ray-address local)"
        )
    if not spec.search_space:
        raise UserError("search_space: empty; name at least one hyperparameter to tune")
    return plugins


def _get(reg: Registry, kind, name: str, field: str) -> PluginEntry:
    try:
        return reg.get(kind, name)
    except PluginError as exc:
        raise PluginError(f"{field}: {exc}") from None


def corpus_root(spec: JobSpec, adapter: type[DatasetAdapter], data_home: Path | None) -> Path:
    return resolve_root(adapter, spec.dataset.root, data_home)


def make_engine(spec: JobSpec, plugins: Plugins) -> Engine:
    """A fresh engine over the job's search space (one per fold; the engine may reject
    the space or its options)."""
    cls = plugins.engine.cls
    options = plugin_options(cls.Options, spec.engine.options, "engine.options")
    return cls(spec.search_space, spec.seed, options)


def make_backbone(spec: JobSpec, plugins: Plugins) -> Backbone:
    """The job's backbone with its options; nothing loaded yet (``check_source()`` says
    whether its source can be)."""
    cls = plugins.backbone.cls
    return cls(spec.backbone.source, plugin_options(cls.Options, spec.backbone.options, "backbone.options"))


def make_backend(spec: JobSpec, plugins: Plugins) -> ExecutionBackend:
    """The job's execution backend with its options; nothing started yet."""
    cls = plugins.backend.cls
    return cls(plugin_options(cls.Options, spec.execution.options, "execution.options"))
