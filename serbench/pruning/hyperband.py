"""The ``hyperband`` pruner: Optuna's ``HyperbandPruner`` -- brackets of asynchronous
successive halving, each trial in one of them -- with a bracket draw of serbench's own.

Options: ``min_resource`` *r* 1, ``max_resource`` *R* ``"auto"`` (the context's
``max_step``, the most epochs a trial may train) or a number of epochs >= *r*,
``reduction_factor`` *η* 3.

There are *B* = floor(log_η(*R* / *r*)) + 1 brackets (computed in integers: one more
than the largest *b* with *r*·*η*^*b* <= *R*; 1 when *R* < *r*). Bracket *b* (0 ..
*B* - 1) is a ``successive-halving`` pruner with ``min_resource`` *r*,
``reduction_factor`` *η*, ``min_early_stopping_rate`` *b* and ``bootstrap_count`` 0
(see :mod:`serbench.pruning.halving`: its rungs at *r*·*η*^(*b*+*k*); bracket 0 alone
has the frozen probe's rung at step 0). A bracket is told the reports and ends of its
own trials only: trials compete within their bracket.

Trial *n*'s bracket: bracket *b* weighs *w_b* = ceil(*B*·*η*^(*B*-1-*b*) / (*B* - *b*)),
Optuna's trial allocation budgets (the most aggressive bracket takes the most trials).
With the weights laid end to end, trial *n* goes to the bracket where *x* falls, *x* =
*h* mod sum(*w*), *h* the first 64-bit word of numpy's ``SeedSequence([seed, n])``
(``seed``: the context's): a function of the job seed and the trial number alone, the
same in every process and on every machine (Optuna hashes its study name and the trial
number with crc32 instead, so its draws differ). ``describe()`` lists the brackets.
"""

from __future__ import annotations

import math
from typing import Any, Literal

from pydantic import Field, model_validator

from serbench import hookimpl
from serbench.pruning.base import Pruner, PruningContext, Status
from serbench.pruning.halving import SuccessiveHalvingPruner
from serbench.spec import StrictModel


class HyperbandOptions(StrictModel):
    min_resource: int = Field(1, ge=1)
    max_resource: int | Literal["auto"] = "auto"
    reduction_factor: int = Field(3, ge=2)

    @model_validator(mode="after")
    def _resources_ordered(self) -> "HyperbandOptions":
        if self.max_resource != "auto" and self.max_resource < self.min_resource:
            raise ValueError(f"max_resource ({self.max_resource}) must be at least min_resource ({self.min_resource})")
        return self


class HyperbandPruner(Pruner):
    name = "hyperband"
    Options = HyperbandOptions

    def __init__(self, context: PruningContext, options: HyperbandOptions | None = None):
        super().__init__(context, options)
        options = self.options
        self.max_resource = context.max_step if options.max_resource == "auto" else options.max_resource
        count = 1
        while options.min_resource * options.reduction_factor**count <= self.max_resource:
            count += 1
        self.weights = [
            math.ceil(count * options.reduction_factor ** (count - 1 - b) / (count - b)) for b in range(count)
        ]
        self.brackets = [
            SuccessiveHalvingPruner(
                context,
                SuccessiveHalvingPruner.Options(
                    min_resource=options.min_resource,
                    reduction_factor=options.reduction_factor,
                    min_early_stopping_rate=b,
                ),
            )
            for b in range(count)
        ]
        self._bracket_of: dict[int, int] = {}

    def bracket(self, trial: int) -> int:
        """The index of trial ``trial``'s bracket."""
        if trial not in self._bracket_of:
            import numpy as np

            x = int(np.random.SeedSequence([self.context.seed, trial]).generate_state(1, np.uint64)[0]) % sum(self.weights)
            for b, weight in enumerate(self.weights):
                x -= weight
                if x < 0:
                    self._bracket_of[trial] = b
                    break
        return self._bracket_of[trial]

    def report(self, trial: int, step: int, value: float) -> bool:
        return self.brackets[self.bracket(trial)].report(trial, step, value)

    def finished(self, trial: int, status: Status) -> None:
        self.brackets[self.bracket(trial)].finished(trial, status)

    def describe(self) -> dict[str, Any]:
        """Name, options, the resolved ``max_resource`` and each bracket's early-stopping
        rate, weight and rung steps up to ``max_resource`` (step 0: the probe's rung)."""
        brackets = []
        for b, (pruner, weight) in enumerate(zip(self.brackets, self.weights)):
            rungs = [0] if b == 0 else []
            k = 0
            while pruner.rung_step(k) <= self.max_resource:
                rungs.append(pruner.rung_step(k))
                k += 1
            brackets.append({"min_early_stopping_rate": b, "weight": weight, "rungs": rungs})
        return {**super().describe(), "max_resource": self.max_resource, "brackets": brackets}


@hookimpl
def serbench_pruners():
    return [HyperbandPruner]
