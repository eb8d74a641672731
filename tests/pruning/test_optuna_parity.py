"""``median`` and ``successive-halving`` decide as Optuna's ``MedianPruner`` and
``SuccessiveHalvingPruner`` do: the same seeded curves, trials run one after another,
each reporting until the rule stops it, go to our pruner and to a real Optuna study
(``report`` + ``should_prune``, then ``tell`` COMPLETE, PRUNED or FAIL), and every
decision must be the same."""

from __future__ import annotations

import math
import random

import optuna
import pytest
from optuna.trial import TrialState

from serbench.plugin.registry import registry
from serbench.pruning import PruningContext

optuna.logging.set_verbosity(optuna.logging.ERROR)

MAX_STEP = 12


def curves(
    seed: int, count: int, probe: bool, nans: float = 0.0, gaps: bool = False
) -> list[tuple[list[tuple[int, float]], int | None]]:
    """``count`` trials: (curve, reports before the trial fails or None), values rounded to
    two decimals so that ties and values equal to a median occur; a fraction ``nans`` of
    the values before the last are NaN; with ``gaps``, each trial reports at a random
    few of its steps only."""
    rng = random.Random(seed)
    trials = []
    for _ in range(count):
        quality, epochs = rng.random(), rng.randint(1, MAX_STEP)
        steps = list(range(1, epochs + 1))
        if gaps:
            steps = sorted(rng.sample(steps, rng.randint(1, len(steps))))
        curve = [
            (step, round(min(1.0, max(0.0, quality * (0.5 + step / (2 * MAX_STEP)) + rng.gauss(0, 0.06))), 2))
            for step in [0] * probe + steps
        ]
        last = curve[-1][0]  # a NaN final value would make Optuna's tell a failure
        curve = [(step, math.nan if step != last and rng.random() < nans else value) for step, value in curve]
        trials.append((curve, rng.randint(0, len(curve)) if rng.random() < 0.15 else None))
    return trials


def ours(name: str, options: dict, trials, seed: int = 0) -> list[tuple[int, int, bool]]:
    cls = registry().get("pruner", name).cls
    pruner = cls(PruningContext(max_step=MAX_STEP, seed=seed), cls.Options.model_validate(options))
    decisions = []
    for number, (curve, fails_after) in enumerate(trials):
        status = "ok"
        for index, (step, value) in enumerate(curve):
            if index == fails_after:
                status = "failed"
                break
            stop = pruner.report(number, step, value)
            decisions.append((number, step, stop))
            if stop:
                status = "pruned"
                break
        else:
            if fails_after == len(curve):
                status = "failed"
        pruner.finished(number, status)
    return decisions


def optuna_decisions(pruner: optuna.pruners.BasePruner, trials) -> list[tuple[int, int, bool]]:
    study = optuna.create_study(direction="maximize", pruner=pruner, sampler=optuna.samplers.RandomSampler(seed=0))
    decisions = []
    for number, (curve, fails_after) in enumerate(trials):
        trial = study.ask()
        assert trial.number == number
        state = TrialState.COMPLETE
        for index, (step, value) in enumerate(curve):
            if index == fails_after:
                state = TrialState.FAIL
                break
            trial.report(value, step)
            stop = trial.should_prune()
            decisions.append((number, step, stop))
            if stop:
                state = TrialState.PRUNED
                break
        else:
            if fails_after == len(curve):
                state = TrialState.FAIL
        if state == TrialState.COMPLETE:
            study.tell(trial, curve[-1][1])
        else:
            study.tell(trial, state=state)
    return decisions


def assert_same(ours_: list, theirs: list) -> None:
    for a, b in zip(ours_, theirs):
        assert a == b, f"trial {a[0]}, step {a[1]}: serbench says stop={a[2]}, optuna says stop={b[2]}"
    assert len(ours_) == len(theirs)


MEDIAN_OPTIONS = [
    {},
    {"n_startup_trials": 0},
    {"n_startup_trials": 2, "n_warmup_steps": 3},
    {"n_startup_trials": 3, "n_warmup_steps": 1, "interval_steps": 3},
    {"n_startup_trials": 1, "interval_steps": 2, "n_min_trials": 4},
]


@pytest.mark.parametrize("probe", [False, True], ids=["no-probe", "probe"])
@pytest.mark.parametrize("options", MEDIAN_OPTIONS, ids=lambda o: ",".join(f"{k}={v}" for k, v in o.items()) or "defaults")
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_median_decides_as_optunas_median_pruner(options, probe, seed):
    trials = curves(seed, 40, probe)
    expected = optuna_decisions(optuna.pruners.MedianPruner(**options), trials)
    got = ours("median", options, trials)
    assert_same(got, expected)
    assert any(stop for _, _, stop in got) and not all(stop for _, _, stop in got)
    if probe and options.get("n_warmup_steps", 0) == 0:
        assert any(stop for _, step, stop in got if step == 0), "no trial was stopped by its probe"


HALVING_OPTIONS = [
    {},
    {"reduction_factor": 2},
    {"min_resource": 2, "reduction_factor": 2, "min_early_stopping_rate": 1},
    {"reduction_factor": 4, "bootstrap_count": 2},
    {"min_resource": 3, "reduction_factor": 3, "bootstrap_count": 1},
]
DEFAULTS = {"min_resource": 1, "reduction_factor": 3, "min_early_stopping_rate": 0, "bootstrap_count": 0}


@pytest.mark.parametrize("options", HALVING_OPTIONS, ids=lambda o: ",".join(f"{k}={v}" for k, v in o.items()) or "defaults")
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_successive_halving_decides_as_optunas(options, seed):
    trials = curves(seed, 40, probe=False)
    expected = optuna_decisions(optuna.pruners.SuccessiveHalvingPruner(**{**DEFAULTS, **options}), trials)
    got = ours("successive-halving", options, trials)
    assert_same(got, expected)
    assert any(stop for _, _, stop in got) and not all(stop for _, _, stop in got)


@pytest.mark.parametrize("seed", [0, 1])
def test_each_hyperband_bracket_decides_as_optunas_successive_halving(seed):
    """Trials of one bracket, run one after another, get the decisions of Optuna's
    ``SuccessiveHalvingPruner`` with that bracket's early-stopping rate on those trials alone."""
    cls = registry().get("pruner", "hyperband").cls
    hyperband = cls(PruningContext(max_step=MAX_STEP, seed=seed))
    trials = curves(seed, 120, probe=False)
    decisions = ours("hyperband", {}, trials, seed)  # a fresh pruner in the same context: the same brackets
    for bracket in range(len(hyperband.brackets)):
        numbers = [n for n in range(len(trials)) if hyperband.bracket(n) == bracket]
        pruner = optuna.pruners.SuccessiveHalvingPruner(1, 3, min_early_stopping_rate=bracket)
        expected = optuna_decisions(pruner, [trials[n] for n in numbers])
        got = [(numbers.index(n), step, stop) for n, step, stop in decisions if n in numbers]
        assert_same(got, expected)
        assert any(stop for _, _, stop in got), f"bracket {bracket} stopped no trial"


@pytest.mark.filterwarnings("ignore:All-NaN slice:RuntimeWarning")  # optuna's median of NaNs alone
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_nan_values_are_treated_as_optuna_treats_them(seed):
    """A NaN report: median stops a trial whose values are all NaN (once a trial has
    completed) and leaves NaNs out of the medians; successive halving stops a trial
    reporting NaN at a rung."""
    first = [([(1, math.nan), (2, 0.4), (3, 0.5)], None), ([(1, math.nan), (2, math.nan), (3, 0.2)], None)]
    trials = first + curves(seed, 40, probe=True, nans=0.08)
    for options in ({}, {"n_startup_trials": 0}, {"n_startup_trials": 1, "n_min_trials": 2}):
        assert_same(ours("median", options, trials), optuna_decisions(optuna.pruners.MedianPruner(**options), trials))
    trials = curves(seed, 40, probe=False, nans=0.08)
    for options in ({}, {"reduction_factor": 2, "bootstrap_count": 1}):
        expected = optuna_decisions(optuna.pruners.SuccessiveHalvingPruner(**{**DEFAULTS, **options}), trials)
        assert_same(ours("successive-halving", options, trials), expected)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_reports_at_some_steps_only_are_decided_as_optuna_decides_them(seed):
    """Steps reported with gaps: median's interval checks fall on the first report at or
    after each check step, and one successive-halving report can pass several rungs."""
    trials = curves(seed, 40, probe=True, gaps=True)
    for options in MEDIAN_OPTIONS:
        assert_same(ours("median", options, trials), optuna_decisions(optuna.pruners.MedianPruner(**options), trials))
    trials = curves(seed, 40, probe=False, gaps=True)
    for options in HALVING_OPTIONS:
        expected = optuna_decisions(optuna.pruners.SuccessiveHalvingPruner(**{**DEFAULTS, **options}), trials)
        assert_same(ours("successive-halving", options, trials), expected)
