"""The ``successive-halving`` pruner: asynchronous successive halving (ASHA), Optuna's
``SuccessiveHalvingPruner`` rule, giving Optuna's decisions for the same reports (Optuna
has no rung at step 0; serbench adds one for the frozen probe, below).

Options: ``min_resource`` *r* 1, ``reduction_factor`` *η* 3, ``min_early_stopping_rate``
*s* 0, ``bootstrap_count`` 0 (Optuna's defaults are ``"auto"`` and 4 for the first two).

Rung *k* (0, 1, ...) sits at step *r*·*η*^(*s*+*k*) and holds at most one value per
trial. A trial's next rung is the number of rungs it has recorded a value at. After
trial *t* reports ``value`` at ``step`` >= 1: while ``step`` reaches *t*'s next rung, the
rung decides (stop, or go on to the next rung); once ``step`` is below the next rung,
go on. So a report can pass several rungs, each recording the same ``value`` (the value
at this step, not *t*'s best).

At a rung, *t*'s ``value``: NaN stops *t* (nothing recorded). Otherwise it is recorded,
and with *n* the number of values the rung holds (every trial that reached it, whatever
its status, *t* included): *n* <= ``bootstrap_count`` stops *t*; else *t* goes on when
``value`` is at least the *m*-th largest of them, *m* = max(1, *n* // *η*) (ties go on;
before *η* trials have reached a rung, only the best so far goes on), and stops
otherwise.

Step 0, the frozen probe: when *s* is 0 it is a rung below rung 0 with the same rule
(the probe scores of every trial that reported one compete); with *s* > 0 no trial
stops before step *r*·*η*^*s*, the probe included, so step 0 never stops a trial.

Values recorded at rungs stay there: pruned and failed trials keep competing, as in
Optuna, where they are attributes of the trial whatever its state. A report at a step
*t* has already reported (*t* runs again) first removes what *t* recorded at that step
or later, so the re-run competes as its first run did.
"""

from __future__ import annotations

import math
from typing import Union

from pydantic import Field

from serbench import hookimpl
from serbench.pruning.base import Pruner, PruningContext, Status
from serbench.spec import StrictModel

PROBE = "probe"
Rung = Union[int, str]  # a rung's index, or PROBE


class SuccessiveHalvingOptions(StrictModel):
    min_resource: int = Field(1, ge=1)
    reduction_factor: int = Field(3, ge=2)
    min_early_stopping_rate: int = Field(0, ge=0)
    bootstrap_count: int = Field(0, ge=0)


class SuccessiveHalvingPruner(Pruner):
    name = "successive-halving"
    Options = SuccessiveHalvingOptions

    def __init__(self, context: PruningContext, options: SuccessiveHalvingOptions | None = None):
        super().__init__(context, options)
        self._rungs: dict[Rung, dict[int, float]] = {}
        self._records: dict[int, list[tuple[Rung, int]]] = {}  # trial -> (rung, step it was recorded at)

    def rung_step(self, rung: int) -> int:
        """The step of ladder rung ``rung`` (0, 1, ...)."""
        options = self.options
        return options.min_resource * options.reduction_factor ** (options.min_early_stopping_rate + rung)

    def report(self, trial: int, step: int, value: float) -> bool:
        value = float(value)
        records = self._records.setdefault(trial, [])
        if records and step <= max(at for _, at in records):
            self._forget(trial, step)
        if step == 0:
            if self.options.min_early_stopping_rate > 0:
                return False
            return not self._promoted(trial, PROBE, step, value)
        rung = sum(1 for key, _ in records if key != PROBE)
        while step >= self.rung_step(rung):
            if not self._promoted(trial, rung, step, value):
                return True
            rung += 1
        return False

    def finished(self, trial: int, status: Status) -> None:
        """Nothing changes: a trial's rung values keep competing whatever its status."""

    def _promoted(self, trial: int, rung: Rung, step: int, value: float) -> bool:
        if math.isnan(value):
            return False
        values = self._rungs.setdefault(rung, {})
        values[trial] = value
        self._records[trial].append((rung, step))
        if len(values) <= self.options.bootstrap_count:
            return False
        ranked = sorted(values.values(), reverse=True)
        return value >= ranked[max(1, len(ranked) // self.options.reduction_factor) - 1]

    def _forget(self, trial: int, step: int) -> None:
        records = self._records[trial]
        for rung, at in records:
            if at >= step:
                del self._rungs[rung][trial]
        records[:] = [(rung, at) for rung, at in records if at < step]


@hookimpl
def serbench_pruners():
    return [SuccessiveHalvingPruner]
