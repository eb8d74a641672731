"""Statistics over seeds for the leaderboard: a bootstrap confidence interval of a mean,
the anytime metric ALC, the mean best-so-far curve of several searches, and the paired
tests that compare engines across seeds (scipy.stats).

Contract:

- :func:`bootstrap_ci` is the 95% **percentile** bootstrap interval of the mean
  (``scipy.stats.bootstrap``, :data:`RESAMPLES` resamples, generator seeded with
  :data:`BOOTSTRAP_SEED`, so a board is the same every time it is built); fewer than two
  values have no interval (``None``), never an invented one. Percentile rather than BCa:
  BCa's jackknife acceleration is undefined or erratic with the 2..5 seeds a board
  usually has (and with tied values), the percentile interval never is.
- :func:`alc` is AutoSpeech 2020's any-time metric, the area under the learning curve on
  a log time axis, normalised to [0, 1]::

      ALC = ∫₀ᵀ s(t) d(log(1 + t/t0)) / log(1 + T/t0),   t0 = 60 s

  ``s(t)`` is the search's best-so-far validation BCA of *completed* trials at search
  time ``t`` (a step function that rises when a trial is journalled, 0 before the first
  completed trial); ``T`` is the time budget :func:`alc_budget_s` (the spec's
  ``budget.wall_minutes`` × 60 when set, else the search's own total time, its
  ``search_seconds``). Trials journalled after ``T`` count for nothing. As a step
  function the integral is a sum: ``Σ s_k · (log(1 + t_{k+1}/t0) − log(1 + t_k/t0))``
  over the steps ``[t_k, t_{k+1})`` cut at ``T``.
- :func:`mean_curve` puts several best-so-far step curves on one time grid (the union of
  their steps) and returns the mean and the min–max band; the mean starts once every
  curve has a value (each curve holds its last value after its search ended).
- :func:`paired_test` compares engines on values paired by seed: two engines with the
  Wilcoxon signed-rank test (``scipy.stats.wilcoxon``, two-sided, zero differences
  dropped; exact when the absolute differences have no ties, whose smallest possible
  p-value is ``2 / 2**n`` for ``n`` pairs: 0.0625 for 5), more with the Friedman test
  (``scipy.stats.friedmanchisquare``, its chi-square approximation) and each engine's
  average rank (1 = highest value on a seed, ties share the mean rank). Fewer than two
  shared seeds: no test, the note "not enough paired seeds".
"""

from __future__ import annotations

import inspect
import math
import statistics
from dataclasses import dataclass, field
from typing import Any

from serbench.results.schema import FoldResult, Result, TrialRecord

CONFIDENCE = 0.95
RESAMPLES = 10_000
BOOTSTRAP_SEED = 0
CI_METHOD = "percentile"
ALC_T0 = 60.0  # seconds
NOT_ENOUGH = "not enough paired seeds"


@dataclass
class Interval:
    """A confidence interval of a mean over ``n`` values."""

    low: float
    high: float
    n: int
    confidence: float = CONFIDENCE
    method: str = CI_METHOD
    resamples: int = RESAMPLES

    def as_json(self) -> dict[str, Any]:
        return {"low": self.low, "high": self.high, "n": self.n, "confidence": self.confidence,
                "method": self.method, "resamples": self.resamples, "random_state": BOOTSTRAP_SEED}


def bootstrap_ci(values: list[float]) -> Interval | None:
    """The 95% percentile bootstrap interval of the mean of ``values`` (None for fewer than 2)."""
    if len(values) < 2:
        return None
    import numpy as np
    from scipy import stats

    generator = np.random.default_rng(BOOTSTRAP_SEED)
    # scipy >= 1.15 names the generator ``rng``; older releases ``random_state``.
    seeded = {"rng": generator} if "rng" in inspect.signature(stats.bootstrap).parameters \
        else {"random_state": generator}
    result = stats.bootstrap((np.asarray(values, dtype=float),), np.mean, n_resamples=RESAMPLES,
                             confidence_level=CONFIDENCE, method=CI_METHOD, vectorized=True, **seeded)
    interval = result.confidence_interval
    return Interval(float(interval.low), float(interval.high), len(values))


def median(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


# --- the anytime metric ---------------------------------------------------------------


def best_so_far_steps(trials: list[TrialRecord]) -> list[tuple[float, float]]:
    """One search's best-so-far curve as steps ``(seconds, best)``: a step each time a
    completed trial raised the best validation BCA, in journal order. Failed trials and
    pruned ones (a partial score) never raise it."""
    steps: list[tuple[float, float]] = []
    best = -math.inf
    for trial in sorted(trials, key=lambda t: (t.cumulative_s, t.number)):
        if trial.status == "ok" and trial.value is not None and trial.value > best:
            best = trial.value
            steps.append((trial.cumulative_s, best))
    return steps


def alc(trials: list[TrialRecord], budget_s: float, t0: float = ALC_T0) -> float | None:
    """ALC of one search (module docstring); None without a positive budget."""
    if not budget_s or budget_s <= 0:
        return None

    def warp(t: float) -> float:
        return math.log1p(t / t0)

    steps = [(t, value) for t, value in best_so_far_steps(trials) if t < budget_s]
    area = 0.0
    for index, (start, value) in enumerate(steps):
        end = steps[index + 1][0] if index + 1 < len(steps) else budget_s
        area += value * (warp(end) - warp(start))
    return area / warp(budget_s)


def alc_budget_s(result: Result, fold: FoldResult) -> float:
    """T of a search: ``budget.wall_minutes`` × 60 when the spec sets it (the deadline of
    each fold's search), else the fold's own search time."""
    wall = (result.spec.get("budget") or {}).get("wall_minutes")
    return float(wall) * 60 if wall else fold.search_seconds


# --- several curves on one grid -------------------------------------------------------


@dataclass
class MeanCurve:
    grid: list[float]
    mean: list[float]
    low: list[float]
    high: list[float]
    curves: int


def mean_curve(curves: list[tuple[list[float], list[float]]]) -> MeanCurve | None:
    """The mean and min–max band of step curves ``(xs, ys)`` (``ys`` nan before their
    first value), each sampled as a step function (its last value at or before ``x``) on
    the union of their ``xs``. Curves with no value at all are left out; None when none
    is left."""
    kept = [(xs, ys) for xs, ys in curves if any(not math.isnan(y) for y in ys)]
    if not kept:
        return None
    grid = sorted({x for xs, _ in kept for x in xs})
    sampled = [[_step_at(xs, ys, x) for x in grid] for xs, ys in kept]
    mean, low, high = [], [], []
    for column in zip(*sampled):
        if any(math.isnan(v) for v in column):
            mean.append(math.nan), low.append(math.nan), high.append(math.nan)
        else:
            mean.append(statistics.fmean(column)), low.append(min(column)), high.append(max(column))
    return MeanCurve(grid, mean, low, high, len(kept))


def _step_at(xs: list[float], ys: list[float], x: float) -> float:
    value = math.nan
    for xi, yi in zip(xs, ys):
        if xi > x:
            break
        value = yi
    return value


# --- comparing engines ----------------------------------------------------------------


@dataclass
class PairedTest:
    """A test of engines on values paired by seed."""

    test: str | None  # "wilcoxon", "friedman" or None (not enough seeds)
    seeds: list[int]
    statistic: float | None = None
    p_value: float | None = None
    exact: bool = False
    p_floor: float | None = None  # the smallest p-value the exact test can give with these pairs
    n_pairs: int = 0  # pairs the test used (Wilcoxon: nonzero differences)
    average_ranks: dict[str, float] = field(default_factory=dict)
    note: str = ""


def paired_test(values: dict[str, dict[int, float]]) -> PairedTest:
    """``values``: engine -> seed -> value, for two or more engines; only the seeds every
    engine has are paired. A seed may be any sortable key (e.g. ``(seed, test speaker)``)."""
    engines = list(values)
    if len(engines) < 2:
        raise ValueError("a paired comparison needs two or more engines")
    seeds = sorted(set.intersection(*(set(by_seed) for by_seed in values.values())))
    if len(seeds) < 2:
        return PairedTest(None, seeds, n_pairs=len(seeds), note=NOT_ENOUGH)
    table = [[values[engine][seed] for engine in engines] for seed in seeds]
    ranks = _average_ranks(engines, table)
    if len(engines) == 2:
        return _wilcoxon(seeds, [row[0] for row in table], [row[1] for row in table], ranks)
    return _friedman(seeds, engines, table, ranks)


def _average_ranks(engines: list[str], table: list[list[float]]) -> dict[str, float]:
    from scipy.stats import rankdata

    per_seed = [rankdata([-value for value in row], method="average") for row in table]
    return {engine: float(statistics.fmean(ranks[i] for ranks in per_seed)) for i, engine in enumerate(engines)}


def _wilcoxon(seeds: list[int], x: list[float], y: list[float], ranks: dict[str, float]) -> PairedTest:
    from scipy.stats import wilcoxon

    differences = [a - b for a, b in zip(x, y) if a != b]
    n = len(differences)
    dropped = len(x) - n
    zeros = f"; {dropped} equal pair(s) dropped" if dropped else ""
    if n == 0:
        return PairedTest("wilcoxon", seeds, n_pairs=0, average_ranks=ranks,
                          note=f"every pair equal: no difference to test ({len(x)} pairs)")
    magnitudes = [abs(d) for d in differences]
    exact = len(set(magnitudes)) == n and n <= 50
    done = wilcoxon(differences, alternative="two-sided", method="exact" if exact else "asymptotic")
    floor = min(1.0, 2.0 / 2**n) if exact else None
    if exact:
        note = f"exact p-value over {n} pairs; it cannot go below {floor:.4g}{zeros}"
    else:
        note = f"normal approximation (tied differences) over {n} pairs{zeros}"
    return PairedTest("wilcoxon", seeds, float(done.statistic), float(done.pvalue), exact, floor, n, ranks, note)


def _friedman(seeds: list[int], engines: list[str], table: list[list[float]], ranks: dict[str, float]) -> PairedTest:
    from scipy.stats import friedmanchisquare

    if all(len(set(row)) == 1 for row in table):
        return PairedTest("friedman", seeds, n_pairs=len(seeds), average_ranks=ranks,
                          note=f"every seed tied across engines: no difference to test ({len(seeds)} seeds)")
    columns = [[row[i] for row in table] for i in range(len(engines))]
    done = friedmanchisquare(*columns)
    note = (f"chi-square approximation over {len(seeds)} seeds and {len(engines)} engines"
            + ("; only indicative with so few seeds" if len(seeds) < 10 else ""))
    return PairedTest("friedman", seeds, float(done.statistic), float(done.pvalue), False, None, len(seeds),
                      ranks, note)
