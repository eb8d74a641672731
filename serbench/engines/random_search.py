"""Seeded random search: the baseline every engine must beat.

Trial ``n`` draws from a generator seeded with ``(seed, n)``, so a trial's configuration
depends only on the job seed and its number: reruns and resumed studies ask for exactly
the same configurations, and the engine has no state to save. Pending trials change
nothing: each is its own draw, so any number may be pending and told in any order (on a
space with a float range two draws are practically never equal; on a small discrete
space they may be, pending or not). Pruned trials are told like any other and, like any
outcome, change nothing: there is nothing to learn and nothing to save or replay.
"""

from __future__ import annotations

import math
from typing import Any

from serbench import hookimpl
from serbench.engines.base import Engine, Outcome
from serbench.spec import ChoiceParam, FloatParam, IntParam


class RandomSearch(Engine):
    name = "random"
    library = "numpy"
    supports_pending = True

    def ask(self, number: int) -> dict[str, Any]:
        import numpy as np

        rng = np.random.default_rng([self.seed, number])
        return {key: _draw(param, rng) for key, param in sorted(self.space.items())}

    def tell(self, number: int, outcome: Outcome) -> None:
        """Random search ignores outcomes (scores, failures, pruned trials alike)."""


def _draw(param: FloatParam | IntParam | ChoiceParam, rng) -> Any:
    if isinstance(param, ChoiceParam):
        return param.values[int(rng.integers(len(param.values)))]
    if isinstance(param, FloatParam):
        if param.log:
            return float(math.exp(rng.uniform(math.log(param.low), math.log(param.high))))
        return float(rng.uniform(param.low, param.high))
    if param.log:
        # Uniform in log space over [low - 0.5, high + 0.5), rounded: every integer
        # gets the log-width of its rounding interval.
        value = math.exp(rng.uniform(math.log(param.low - 0.5 if param.low > 0.5 else param.low), math.log(param.high + 0.5)))
        return int(min(max(round(value), param.low), param.high))
    return int(rng.integers(param.low, param.high + 1))


@hookimpl
def serbench_engines():
    return [RandomSearch]
