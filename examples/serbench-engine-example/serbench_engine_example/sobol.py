"""Scrambled Sobol quasi-random search: a serbench engine plugin.

Trial ``n`` is point ``start + n`` of a scrambled Sobol sequence (``scipy.stats.qmc``)
seeded with the job seed, one dimension per search-space parameter (in name order),
mapped onto the parameter's range: linearly, or on a log scale where ``log: true``.
Quasi-random points fill the space more evenly than random ones, which helps with small
budgets.

The engine ignores outcomes and keeps no state: a trial's configuration depends only on
the seed and its number, so resuming (``replay``) is exact and ``state_dict`` is empty,
and any number of trials may be pending (asked, not yet told), told in any order.
"""

from __future__ import annotations

import math
from typing import Any

from pydantic import Field

from serbench import hookimpl
from serbench.engines import Engine, Outcome
from serbench.spec import ChoiceParam, FloatParam, IntParam, StrictModel


class SobolOptions(StrictModel):
    """What a job may put under ``engine.options``; StrictModel rejects unknown keys."""

    start: int = Field(0, ge=0, description="Sobol points skipped before trial 0.")


class SobolEngine(Engine):
    name = "sobol"  # what a job's engine.name says
    Options = SobolOptions
    supports_pending = True  # trial n is point start + n, whatever else is in flight

    def ask(self, number: int) -> dict[str, Any]:
        from scipy.stats import qmc  # heavy imports inside methods: plugins load at every start-up

        keys = sorted(self.space)
        sampler = qmc.Sobol(d=len(keys), scramble=True, seed=self.seed)
        if self.options.start + number:  # scipy's fast_forward(0) raises
            sampler.fast_forward(self.options.start + number)
        point = sampler.random(1)[0]
        return {key: _scale(self.space[key], float(u)) for key, u in zip(keys, point)}

    def tell(self, number: int, outcome: Outcome) -> None:
        """Quasi-random search ignores outcomes (failures included)."""

    def replay(self, number: int, params: dict[str, Any], outcome: Outcome) -> None:
        """Nothing to catch up on: trial ``n`` does not depend on earlier trials."""


def _scale(param: FloatParam | IntParam | ChoiceParam, u: float) -> Any:
    """The value at ``u`` (in [0, 1)) of the parameter's range: a plain Python value of
    the parameter's type, or one of the choice's values."""
    if isinstance(param, ChoiceParam):
        return param.values[min(int(u * len(param.values)), len(param.values) - 1)]
    if isinstance(param, FloatParam):
        if param.log:
            value = math.exp(math.log(param.low) + u * (math.log(param.high) - math.log(param.low)))
        else:
            value = param.low + u * (param.high - param.low)
        return float(min(max(value, param.low), param.high))
    if param.log:  # each integer gets the log-width of its rounding interval
        low, high = math.log(param.low - 0.5 if param.low > 0.5 else param.low), math.log(param.high + 0.5)
        return int(min(max(round(math.exp(low + u * (high - low))), param.low), param.high))
    return int(min(param.low + int(u * (param.high - param.low + 1)), param.high))


@hookimpl
def serbench_engines():
    return [SobolEngine]
