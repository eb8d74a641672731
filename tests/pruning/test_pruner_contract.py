"""Every built-in pruner keeps the pruner contract (serbench.testing.pruners), loaded
through the registry as a job would load it; and the kit fails pruners that break a
clause (each toy pruner below breaks one)."""

from __future__ import annotations

import random

import numpy as np
import pytest
from pydantic import BaseModel

from serbench.plugin.registry import registry
from serbench.pruning import Pruner, PruningContext
from serbench.spec import StrictModel
from serbench.testing.pruners import CONTRACT_CHECKS, PrunerContractError, check_pruner, pruner_contract_test

# (pruner, options): defaults, and options that make each rule act sooner or otherwise.
KIT_CASES = [
    ("none", None),
    ("median", None),
    ("median", {"n_startup_trials": 1, "n_warmup_steps": 2, "interval_steps": 2, "n_min_trials": 3}),
    ("successive-halving", None),
    ("successive-halving", {"reduction_factor": 2, "min_early_stopping_rate": 1, "bootstrap_count": 2}),
    ("successive-halving", {"min_resource": 2, "reduction_factor": 4}),
    ("hyperband", None),
    ("hyperband", {"min_resource": 1, "max_resource": 4, "reduction_factor": 2}),
]


def test_the_built_in_pruners_are_registered():
    assert registry().names("pruner") == ["hyperband", "median", "none", "successive-halving"]
    for entry in registry().entries("pruner"):
        assert entry.package == "serbench" and entry.plugin == f"pruner-{entry.name}"


@pytest.mark.parametrize("check", CONTRACT_CHECKS, ids=lambda check: check.__name__.removeprefix("check_"))
@pytest.mark.parametrize("name, options", KIT_CASES, ids=[f"{n}-{i}" for i, (n, _) in enumerate(KIT_CASES)])
def test_built_in_keeps_the_contract(name, options, check):
    check(registry().get("pruner", name).cls, options)


def test_the_kit_runs_in_other_contexts():
    for name in registry().names("pruner"):
        for context in (PruningContext(max_step=1, seed=3), PruningContext(max_step=30, seed=2**32 - 1, fold=4)):
            check_pruner(registry().get("pruner", name).cls, context=context, trials=24)


# --- toy pruners: one correct, the others each breaking one clause ------------------------


class ThresholdOptions(StrictModel):
    margin: float = 0.1


class Threshold(Pruner):
    """Stops a trial whose best value so far is more than ``margin`` below the mean of
    the values the ``ok`` trials reported at the same step (once two have)."""

    name = "toy-threshold"
    Options = ThresholdOptions

    def __init__(self, context, options=None):
        super().__init__(context, options)
        self.curves: dict[int, dict[int, float]] = {}
        self.ok: list[dict[int, float]] = []

    def record(self, curve: dict[int, float], step: int, value: float) -> None:
        for later in [s for s in curve if s >= step]:
            del curve[later]
        curve[step] = value

    def report(self, trial, step, value):
        curve = self.curves.setdefault(trial, {})
        self.record(curve, step, value)
        others = [ok[step] for ok in self.ok if step in ok]
        return len(others) >= 2 and max(curve.values()) < sum(others) / len(others) - self.options.margin

    def finished(self, trial, status):
        curve = self.curves.pop(trial, {})
        if status == "ok":
            self.ok.append(curve)


class KeepsTheLostRun(Threshold):
    name = "toy-keeps-the-lost-run"

    def record(self, curve, step, value):
        curve.setdefault(step, value)


class ForgetsOnReplay(Threshold):
    name = "toy-forgets-on-replay"

    def replay(self, trial, curve, status):
        self.finished(trial, status)


class CoinFlip(Threshold):
    name = "toy-coin-flip"

    def report(self, trial, step, value):
        return super().report(trial, step, value) or random.random() < 0.05


class NumpyAnswers(Threshold):
    name = "toy-numpy-answers"

    def report(self, trial, step, value):
        return np.bool_(super().report(trial, step, value))


class LooseOptions(BaseModel):
    margin: float = 0.1


class AcceptsAnyOption(Threshold):
    name = "toy-accepts-any-option"
    Options = LooseOptions


class UnserialisableDescription(Threshold):
    name = "toy-unserialisable-description"

    def describe(self):
        return {**super().describe(), "curves": {1: {2, 3}}}


class SharedState(Threshold):
    """Keeps the ``ok`` curves on the class: a second pruner starts where the first ended."""

    name = "toy-shared-state"
    shared: list = []

    def __init__(self, context, options=None):
        super().__init__(context, options)
        self.ok = SharedState.shared


def test_a_correct_toy_pruner_passes_the_kit():
    check_pruner(Threshold)
    check_pruner(Threshold, {"margin": 0.0})


@pytest.mark.parametrize(
    "pruner_cls, clause",
    [
        (KeepsTheLostRun, "re-run"),
        (ForgetsOnReplay, "replay"),
        (CoinFlip, "deterministic"),
        (NumpyAnswers, "bool decisions"),
        (AcceptsAnyOption, "declaration"),
        (UnserialisableDescription, "declaration"),
        (SharedState, "deterministic"),
    ],
    ids=lambda value: value.name if isinstance(value, type) else value,
)
def test_the_kit_fails_a_broken_pruner_on_its_clause(pruner_cls, clause):
    with pytest.raises(PrunerContractError, match=f"pruner '{pruner_cls.name}' breaks '{clause}': ") as caught:
        check_pruner(pruner_cls)
    assert caught.value.clause == clause


def test_a_class_that_is_no_pruner_is_refused():
    with pytest.raises(PrunerContractError, match="breaks 'declaration': the class must subclass"):
        check_pruner(dict)


test_the_toy_pruner_contract = pruner_contract_test(Threshold, {"margin": 0.05}, trials=20)
