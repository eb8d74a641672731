"""Grid search: every combination of a few values per parameter, in a seeded order.

Each choice contributes all its values. Each numeric range contributes ``grid_points``
evenly spaced values from ``low`` to ``high`` (geometrically spaced where ``log: true``;
one point is the range's centre); int ranges are rounded and de-duplicated, so an int
range never has more points than integers. ``grid_points`` is one number for every
range, or a mapping from parameter name to number (unlisted ranges get 3).

The full grid is shuffled with the job seed, and trial ``n`` is its ``n``-th
configuration: the budget cuts the grid, and a seed picks which part of it is run.
Asking past the end of the grid raises ``GridExhausted`` (a ``SearchExhausted``): the
study stops its search there, with ``stopped_by: exhausted``, and goes on to the final
model; the grid never wraps around to repeat configurations.

``space_size()`` is the grid's size, which ``result.json`` records per fold
(``search_space_size``) so the leaderboard can show how much of the grid a search ran.

The engine keeps no state: a trial's configuration depends only on its number, so
replay and ``state_dict`` are trivial and exact. With trials pending, the next trial is
the next unvisited point of the grid (no two trials share a point), and tells may come
in any order. A pruned trial is told like any other and changes nothing: the grid
learns from no outcome, and a pruned point is not visited again.
"""

from __future__ import annotations

import math
from typing import Any

from pydantic import Field

from serbench import hookimpl
from serbench.engines.base import Engine, Outcome, SearchExhausted
from serbench.errors import SpecError
from serbench.spec import ChoiceParam, FloatParam, IntParam, StrictModel

MAX_GRID = 1_000_000


class GridExhausted(SearchExhausted):
    """Trial number past the end of the grid."""


class GridOptions(StrictModel):
    grid_points: int | dict[str, int] = Field(
        3,
        description="Points per numeric range: one number for all, or per parameter name "
        "(unlisted ranges: 3). Log-spaced where log: true.",
    )


class GridSearch(Engine):
    name = "grid"
    library = "numpy"
    Options = GridOptions
    supports_pending = True

    def __init__(self, space, seed, options=None):
        super().__init__(space, seed, options)
        points = self.options.grid_points
        if isinstance(points, dict):
            unknown = sorted(set(points) - set(self.space))
            if unknown:
                raise SpecError(f"engine.options.grid_points: {unknown[0]!r} is not in search_space")
            per_key = {key: points.get(key, 3) for key in self.space}
        else:
            per_key = {key: points for key in self.space}
        for key, count in per_key.items():
            if count < 1:
                raise SpecError(f"engine.options.grid_points: {key} needs at least 1 point (got {count})")
        self.keys = sorted(self.space)
        self.axes = {key: grid_values(self.space[key], per_key[key]) for key in self.keys}
        self.size = math.prod(len(values) for values in self.axes.values())
        if self.size > MAX_GRID:
            raise SpecError(f"engine grid: the grid has {self.size:,} configurations (at most {MAX_GRID:,}); lower grid_points")
        self._order = None

    def ask(self, number: int) -> dict[str, Any]:
        if not 0 <= number < self.size:
            raise GridExhausted(
                f"engine grid: trial {number} is past the end of the grid ({self.size} configurations)"
            )
        position = int(self.order()[number])
        params = {}
        for key in reversed(self.keys):  # mixed-radix digits of position, last key fastest
            values = self.axes[key]
            position, digit = divmod(position, len(values))
            params[key] = values[digit]
        return {key: params[key] for key in self.keys}

    def space_size(self) -> int:
        """The grid's size: the configurations a search can visit, each once."""
        return self.size

    def tell(self, number: int, outcome: Outcome) -> None:
        """Grid search ignores outcomes (scores, failures, pruned trials alike)."""

    def replay(self, number: int, params: dict[str, Any], outcome: Outcome) -> None:
        """Nothing to do: trial ``n`` is the ``n``-th configuration whatever came before."""

    def order(self):
        """The seeded permutation of grid positions (computed on first use)."""
        if self._order is None:
            import numpy as np

            self._order = np.random.default_rng(self.seed).permutation(self.size)
        return self._order

    def configurations(self) -> list[dict[str, Any]]:
        """The whole grid, in the order trials ask for it."""
        return [self.ask(number) for number in range(self.size)]


def grid_values(param: FloatParam | IntParam | ChoiceParam, count: int) -> list[Any]:
    """The values one parameter contributes to the grid, in increasing order."""
    if isinstance(param, ChoiceParam):
        return list(param.values)
    if count == 1:
        centre = math.sqrt(param.low * param.high) if param.log else (param.low + param.high) / 2
        points = [centre]
    elif param.log:
        ratio = math.log(param.high / param.low)
        points = [param.low * math.exp(ratio * i / (count - 1)) for i in range(count)]
    else:
        points = [param.low + (param.high - param.low) * i / (count - 1) for i in range(count)]
    if isinstance(param, FloatParam):
        if count > 1:
            points[0], points[-1] = param.low, param.high  # exact ends, whatever the rounding
        return [float(min(max(p, param.low), param.high)) for p in points]
    # round half up (Python's round() sends 2.5 to 2 but 5.5 to 6)
    return sorted({int(min(max(math.floor(p + 0.5), param.low), param.high)) for p in points})


@hookimpl
def serbench_engines():
    return [GridSearch]
