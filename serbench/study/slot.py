"""What runs on an execution slot (:mod:`serbench.execution.backend`): a
:class:`TrialWorker` holding one study's loaded inputs -- corpus, folds, backbone,
feature cache -- between calls, and the factories that build it.

- :class:`InProcessWorkers` (``in_process`` backends, e.g. ``local``): the worker uses
  the inputs the driver already loaded, and reports progress to the driver's events;
- :class:`LoadingWorkers` (every other backend): a picklable recipe -- the job spec,
  the data root and the output folder -- from which each slot loads its own inputs
  once (data, models and ``$SERBENCH_CACHE`` at the same paths on every node). Folds
  are a function of the spec and its seed, so every slot cuts the same ones.

The worker's methods are the calls the study submits: :meth:`TrialWorker.trial` (a
search trial's record fields; an exception inside it becomes a failed trial, never a
lost slot) and :meth:`TrialWorker.final` (the fold's final model and its scores).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from serbench import env
from serbench.errors import UserError
from serbench.execution.backend import Slot, ask_driver
from serbench.results.schema import Best
from serbench.spec import JobSpec
from serbench.study.events import StudyEvents
from serbench.study.inputs import Inputs, load_inputs
from serbench.study.resolve import resolve_plugins
from serbench.study.search import failure_fields
from serbench.study.trial import Final, Training


class TrialWorker:
    """One slot's worker: trains and scores configurations on its loaded inputs."""

    def __init__(self, training: Training):
        self.training = training
        self.folds = {fold.index: fold for fold in training.inputs.data.folds}

    def trial(self, fold: int, number: int, params: dict[str, Any]) -> dict[str, Any]:
        """Search trial ``number`` of fold ``fold``: the fields of its ``TrialRecord``
        other than identity and timing. ``UserError`` (and Ctrl-C) end the study; any
        other exception is a failed trial (``MemoryError``: reason ``oom``). Each
        validation report goes to the driver, whose reply says whether to stop."""

        def report(epoch: int, bca: float) -> bool:
            return bool(ask_driver(("report", epoch, bca)))

        try:
            return self.training.trial(self.folds[fold], number, params, report)
        except UserError:
            raise
        except Exception as exc:  # a crashing trial must not end the study (MemoryError is an Exception)
            return failure_fields(exc)

    def final(self, fold: int, best: Best, keep_weights: bool = True) -> Final:
        """The best configuration of fold ``fold`` trained on train + val, scored once
        (with its trained weights unless ``keep_weights`` is False)."""
        return self.training.final(self.folds[fold], best, keep_weights)


@dataclass
class InProcessWorkers:
    """The worker of an in-process slot, on the inputs the driver loaded."""

    spec: JobSpec
    inputs: Inputs
    events: StudyEvents

    def __call__(self, slot: Slot) -> TrialWorker:
        return TrialWorker(Training(self.spec, self.inputs, self.events))


@dataclass(frozen=True)
class LoadingWorkers:
    """The worker of a remote slot: loads the job's inputs there, once per worker, with
    the driver's ``SERBENCH_*`` paths and plugin choices (``env.TO_SLOTS``) in force."""

    spec: JobSpec
    data_home: Path | None
    out_dir: Path
    environment: dict[str, str] = field(default_factory=env.for_slots)

    def __call__(self, slot: Slot) -> TrialWorker:
        from serbench.plugin.registry import registry

        os.environ.update(self.environment)
        reg = registry()
        granted = self.spec.resources.model_copy(update={"cpus": slot.cpus, "memory_gb": slot.memory_gb})
        spec = self.spec.model_copy(update={"resources": granted})  # threads and cache bound follow the slot
        plugins = resolve_plugins(spec, reg)
        inputs = load_inputs(spec, plugins, reg, self.data_home, self.out_dir, lambda message: None)
        return TrialWorker(Training(spec, inputs, StudyEvents()))
