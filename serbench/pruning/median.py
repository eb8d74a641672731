"""The ``median`` pruner: Optuna's median stopping rule (``optuna.pruners.MedianPruner``,
a ``PercentilePruner`` at 50), giving the decisions Optuna gives for the same reports.

Options, with Optuna's defaults: ``n_startup_trials`` 5, ``n_warmup_steps`` 0,
``interval_steps`` 1, ``n_min_trials`` 1.

After trial *t* reports ``value`` at ``step``, the first of these that applies decides:

1. no trial has finished ``ok``, or fewer than ``n_startup_trials`` have: go on;
2. ``step < n_warmup_steps``: go on;
3. the pruning checks fall at steps ``n_warmup_steps + k * interval_steps``; with *c*
   the latest check at or below ``step``, go on unless this is *t*'s first report at or
   after *c* (its previous report, if any, was at a step below *c*);
4. *best*, the largest value *t* has reported so far (this one included, NaNs ignored):
   every value NaN: stop;
5. the values that the ``ok`` trials reported at this same step (trials that never
   reported it are left out): fewer than ``n_min_trials``: go on;
6. stop when *best* is below their median (NaNs ignored; numpy's linear interpolation
   between the two middle values), else go on.

Only trials that finished ``ok`` are compared against, with the curve they last
reported; pruned, failed and running trials never are. Step 0, the frozen probe, is a
step like the others: with ``n_warmup_steps`` 0 it is checked against the ``ok`` trials'
probe scores, and it counts towards *t*'s best value afterwards (as a step-0 report does
in Optuna). A report at a step *t* has already reported (*t* runs again) first drops
*t*'s values at that step and every later one.
"""

from __future__ import annotations

import math

from pydantic import Field

from serbench import hookimpl
from serbench.pruning.base import Pruner, PruningContext, Status
from serbench.spec import StrictModel


class MedianOptions(StrictModel):
    n_startup_trials: int = Field(5, ge=0)
    n_warmup_steps: int = Field(0, ge=0)
    interval_steps: int = Field(1, ge=1)
    n_min_trials: int = Field(1, ge=1)


class MedianPruner(Pruner):
    name = "median"
    Options = MedianOptions

    def __init__(self, context: PruningContext, options: MedianOptions | None = None):
        super().__init__(context, options)
        self._running: dict[int, dict[int, float]] = {}
        self._completed: dict[int, dict[int, float]] = {}

    def report(self, trial: int, step: int, value: float) -> bool:
        curve = self._running.setdefault(trial, {})
        for later in [s for s in curve if s >= step]:
            del curve[later]
        curve[step] = float(value)
        return self._prune(curve, step)

    def finished(self, trial: int, status: Status) -> None:
        curve = self._running.pop(trial, {})
        if status == "ok":
            self._completed[trial] = curve

    def _prune(self, curve: dict[int, float], step: int) -> bool:
        options = self.options
        if not self._completed or len(self._completed) < options.n_startup_trials:
            return False
        if step < options.n_warmup_steps:
            return False
        warmup, interval = options.n_warmup_steps, options.interval_steps
        check = (step - warmup) // interval * interval + warmup
        if max((s for s in curve if s != step), default=-1) >= check:
            return False
        reported = [v for v in curve.values() if not math.isnan(v)]
        if not reported:
            return True
        at_step = [other[step] for other in self._completed.values() if step in other]
        if len(at_step) < options.n_min_trials:
            return False
        finite = [v for v in at_step if not math.isnan(v)]
        if not finite:
            return False
        return max(reported) < _median(finite)


def _median(values: list[float]) -> float:
    """numpy's 50th percentile (linear interpolation), as Optuna computes it."""
    import numpy as np

    return float(np.percentile(np.asarray(values, dtype=float), 50))


@hookimpl
def serbench_pruners():
    return [MedianPruner]
