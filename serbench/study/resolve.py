"""The job's plugins (engine, dataset adapter, backbone, execution backend, pruner) from the
registry, their options validated; where the corpus is; a fresh engine for a fold's
search; the execution backend."""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from pathlib import Path

from pydantic import ValidationError

from serbench.backbones.base import Backbone
from serbench.data.base import DatasetAdapter, resolve_root
from serbench.engines.base import Engine
from serbench.execution.backend import ExecutionBackend
from serbench.errors import PluginError, SpecError, UserError
from serbench.plugin.registry import PluginEntry, Registry, registry
from serbench.spec import BACKBONE_PREFIX, JobSpec, plugin_options
from serbench.spec.space import extremes


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
    check_backbone_space(spec, plugins.backbone.cls)
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


MAX_CHECKED_COMBINATIONS = 256


def check_backbone_space(spec: JobSpec, cls: type[Backbone]) -> None:
    """Check the search space's ``backbone.<option>`` keys against the backbone's options:
    each names an option it has, and every value it can take (a choice's values, a range's
    ends) is valid over ``backbone.options`` -- together with the other searched options'
    values, combination by combination when there are at most
    ``MAX_CHECKED_COMBINATIONS`` (so a search never draws an encoder that cannot be built).
    Raises ``SpecError`` naming ``search_space.backbone.<option>``."""
    searched = spec.backbone_overrides(spec.search_space)
    known = cls.Options.model_fields
    for option in searched:
        if option not in known:
            offered = ", ".join(known) or "none"
            raise SpecError(
                f"search_space.{BACKBONE_PREFIX}{option}: backbone {cls.name!r} has no option {option!r} (it has: {offered})"
            )
    ends = {option: extremes(param) for option, param in searched.items()}
    combinations = math.prod(len(values) for values in ends.values())
    pools = [[(option, value)] for option, values in ends.items() for value in values]
    if 1 < len(ends) and combinations <= MAX_CHECKED_COMBINATIONS:
        pools += [list(zip(ends, values)) for values in itertools.product(*ends.values())]
    for pairs in pools:
        options = {**spec.backbone.options, **dict(pairs)}
        try:
            cls.Options.model_validate(options)
        except ValidationError as exc:
            msg = exc.errors()[0]["msg"].removeprefix("Value error, ")
            (first, value), *others = pairs
            along = "".join(f", with {BACKBONE_PREFIX}{o} {v!r}" for o, v in others)
            raise SpecError(f"search_space.{BACKBONE_PREFIX}{first}: value {value!r}{along} is not allowed ({msg})") from None


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
