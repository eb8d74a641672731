"""A fold's pruning, behind one interface its search (:mod:`.search`) uses: the job's
pruner plugin (``pruner.by: serbench``, with any engine) or the engine's own library
(``pruner.by: engine``, for engines that list the pruner in ``prunes_with``).

Either way the search calls ``report`` for each validation report of a pending trial,
``finished`` once the trial is journalled, and on ``--resume`` ``replay`` with the
fold's journal, in journal order. An engine that prunes by itself rebuilds its state
from the curves its outcomes carry when they are replayed to it, so its ``replay``
here does nothing.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any

from serbench.engines.base import Engine
from serbench.errors import UserError
from serbench.plugin.registry import PluginEntry
from serbench.pruning.base import Pruner, PruningContext
from serbench.results.schema import TrialRecord
from serbench.spec import JobSpec, plugin_options
from serbench.spec.space import extremes


class FoldPruning(ABC):
    decided_by: str  # what makes the decisions, for result.json

    @abstractmethod
    def report(self, number: int, step: int, value: float) -> bool:
        """Pending trial ``number`` scored ``value`` after ``step`` epochs: stop it now?"""

    def finished(self, record: TrialRecord) -> None:
        """Trial ``record`` was journalled."""

    def replay(self, records: list[TrialRecord]) -> None:
        """Rebuild from the fold's journalled trials (journal order)."""


def curve_of(record: TrialRecord) -> list[tuple[int, float]]:
    return [(point.epoch, point.bca) for point in record.curve]


class PluginPruning(FoldPruning):
    def __init__(self, pruner: Pruner):
        self.pruner = pruner
        described = pruner.describe()
        options = ", ".join(f"{k}={v}" for k, v in described.get("options", {}).items())
        self.decided_by = f"serbench {described['name']}({options})"

    def report(self, number: int, step: int, value: float) -> bool:
        return bool(self.pruner.report(number, step, value))

    def finished(self, record: TrialRecord) -> None:
        self.pruner.finished(record.number, record.status)

    def replay(self, records: list[TrialRecord]) -> None:
        for record in records:
            self.pruner.replay(record.number, curve_of(record), record.status)


class EnginePruning(FoldPruning):
    def __init__(self, engine: Engine, decided_by: str):
        self.engine = engine
        self.decided_by = decided_by

    def report(self, number: int, step: int, value: float) -> bool:
        return bool(self.engine.report(number, step, value))


def max_epochs(spec: JobSpec) -> int:
    """The most epochs a trial of this job may train."""
    param = spec.search_space.get("epochs")
    if param is None:
        return spec.training.epochs
    return max(int(value) for value in extremes(param))


def make_pruning(spec: JobSpec, pruner: PluginEntry, engine: Engine, fold: int) -> FoldPruning:
    """Fold ``fold``'s pruning for the job (``engine``: the fold's fresh engine). Raises
    ``UserError`` naming the spec field when the options or the engine cannot do it."""
    options = plugin_options(pruner.cls.Options, spec.pruner.options, "pruner.options")
    if spec.pruner.by == "engine" and spec.pruner.name != "none":
        return EnginePruning(engine, delegate(spec, engine, options.model_dump(mode="json")))
    return PluginPruning(pruner.cls(PruningContext(max_epochs(spec), spec.seed, fold), options))


def delegate(spec: JobSpec, engine: Engine, options: dict[str, Any]) -> str:
    """Hand the job's pruner to the engine's library (one it lists in ``prunes_with``,
    which ``resolve_plugins`` checked); what the library uses."""
    name = spec.pruner.name
    try:
        return engine.delegate_pruning(name, options, max_epochs(spec))
    except ValueError as exc:
        raise UserError(f"pruner: engine {engine.name!r} cannot prune with {name!r}: {exc}") from None
