"""The built-in engines: each keeps the engine contract (serbench.testing.engines), plus what is
particular to each -- the full grid, Ax's Sobol-then-GP, TPE beating random search, and
failures told as failures. Real libraries, cheap synthetic objectives."""

from __future__ import annotations

import json
import math
import statistics
import subprocess
import sys
from importlib.metadata import entry_points

import numpy as np
import pytest

from serbench.engines.base import NotReady, Outcome, SearchExhausted
from serbench.errors import SpecError
from serbench.spec import ChoiceParam, FloatParam, IntParam, plugin_options
from serbench.testing.engines import (
    CONTRACT_CHECKS,
    TRIALS,
    ContractError,
    check_deterministic,
    check_engine,
    check_pending_asks,
    check_pruning,
    check_replay,
    engine_contract_test,
    make_engine,
    run_synthetic,
)
from serbench.engines.ax_bo import AxEngine
from serbench.engines.grid_search import GridSearch
from serbench.engines.hyperopt_tpe import HyperoptTPE
from serbench.engines.optuna_tpe import OptunaEngine
from serbench.engines.random_search import RandomSearch

PAPER_SPACE = {
    "lr": FloatParam(type="float", low=1e-6, high=1e-3, log=True),
    "epochs": IntParam(type="int", low=1, high=10),
    "unfreeze": IntParam(type="int", low=0, high=5),
    "maxlen": ChoiceParam(type="choice", values=[32000, 48000, 64000, 80000, 112000, 160000]),
}

# (engine, options, kit keyword arguments). TPE engines get a short random start so the
# kit exercises TPE itself; Ax runs Sobol only (a GP step takes seconds: tested below).
KIT_CASES = [
    ("random", None, {}),
    ("grid", None, {}),
    ("grid", {"grid_points": {"lr": 4, "epochs": 2}}, {}),
    ("hyperopt", {"n_startup_jobs": 4}, {}),
    ("optuna", {"n_startup_trials": 4}, {}),
    ("optuna", {"sampler": "random"}, {}),
    ("ax", {"initial_trials": 1000}, {"samples": 24, "trials": 8}),
]


ENGINES = {cls.name: cls for cls in (AxEngine, GridSearch, HyperoptTPE, OptunaEngine, RandomSearch)}


def engine_class(name: str):
    return ENGINES[name]


@pytest.mark.parametrize("check", CONTRACT_CHECKS, ids=lambda check: check.__name__)
@pytest.mark.parametrize(
    "name, options, kit", KIT_CASES, ids=[f"{n}-{json.dumps(o, separators=(',', ':'))}" for n, o, _ in KIT_CASES]
)
def test_built_in_engine_keeps_the_contract(name, options, kit, check):
    """Every built-in engine passes every clause of the contract kit."""
    check(engine_class(name), options, **kit)


def test_every_built_in_engine_is_registered():
    """Each engine comes in through its own entry point, like a third-party plugin."""
    points = {ep.name: ep for ep in entry_points(group="serbench")}
    for name, cls in ENGINES.items():
        assert points[name].value == cls.__module__
        assert points[name].load().serbench_engines() == [cls]


def test_engine_modules_import_no_optimiser_library():
    """Plugin modules are imported at every start-up: Ax, hyperopt and optuna are
    imported only when an engine is used."""
    code = (
        "import sys; import serbench.engines.ax_bo, serbench.engines.hyperopt_tpe, "
        "serbench.engines.optuna_tpe, serbench.engines.grid_search; "
        "print(sorted(m for m in ('ax', 'hyperopt', 'optuna', 'torch', 'botorch') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


@pytest.mark.parametrize("name", ["random", "grid", "hyperopt", "optuna", "ax"])
def test_asking_again_before_the_tell_gives_the_same_configuration(name):
    engine = make_engine(engine_class(name), {"initial_trials": 1000} if name == "ax" else None, PAPER_SPACE)
    first = engine.ask(0)
    assert engine.ask(0) == first
    engine.tell(0, Outcome.ok(0.5))


# --- the contract kit itself -------------------------------------------------------------


def test_kit_names_the_clause_an_engine_breaks():
    """A linear sampler for a log range, numpy floats, and an engine that ignores its
    seed each fail the kit with the clause named."""
    random_cls = engine_class("random")

    class Linear(random_cls):
        name = "linear"

        def ask(self, number):
            import numpy as np

            lr = self.space["lr"]
            return {**super().ask(number), "lr": float(np.random.default_rng([self.seed, number]).uniform(lr.low, lr.high))}

    class NumpyFloats(random_cls):
        name = "numpy-floats"

        def ask(self, number):
            import numpy as np

            return {k: np.float64(v) if isinstance(v, float) else v for k, v in super().ask(number).items()}

    class Seedless(random_cls):
        name = "seedless"

        def __init__(self, space, seed, options=None):
            super().__init__(space, 0, options)

    with pytest.raises(ContractError, match="'linear' breaks 'log scale'"):
        check_engine(Linear)
    with pytest.raises(ContractError, match="'numpy-floats' breaks 'bounds and types'.*lr=.*float64"):
        check_engine(NumpyFloats)
    with pytest.raises(ContractError, match="'seedless' breaks 'deterministic per seed'"):
        check_deterministic(Seedless)


# what a plugin author writes: one pytest case per clause
test_contract_through_the_authors_helper = engine_contract_test(engine_class("random"))


def test_kit_checks_pruned_tells_and_pruning_by_the_library():
    """An engine that rejects pruned tells breaks 'pruning'; one whose replay forgets
    curves, one whose report never says stop, one that returns numpy bools and one whose
    state forgets the points a pending trial reported break 'pruning by the engine'."""
    optuna_cls = engine_class("optuna")

    class NoPruned(engine_class("random")):
        name = "no-pruned"

        def tell(self, number, outcome):
            if outcome.status == "pruned":
                raise ValueError("unknown status 'pruned'")

    class ForgetsCurves(optuna_cls):
        name = "forgets-curves"

        def replay(self, number, params, outcome):
            super().replay(number, params, Outcome(outcome.status, outcome.value, outcome.reason))

    class NeverStops(optuna_cls):
        name = "never-stops"

        def report(self, number, step, value):
            super().report(number, step, value)
            return False

    class NumpyBools(optuna_cls):
        name = "numpy-bools"

        def report(self, number, step, value):
            return np.bool_(super().report(number, step, value))

    class LosesPoints(optuna_cls):
        name = "loses-points"

        def state_dict(self):
            return {key: value for key, value in super().state_dict().items() if key != "reported"}

    short = {"n_startup_trials": 4}
    with pytest.raises(ContractError, match="'no-pruned' breaks 'pruning': raised ValueError: unknown status"):
        check_pruning(NoPruned)
    with pytest.raises(ContractError, match=r"'forgets-curves' breaks 'pruning by the engine \(median\)': trial 12: "
                                            r"the engine resumed by replay decides \[False, False, False, False, False\]"):
        check_pruning(ForgetsCurves, short)
    with pytest.raises(ContractError, match=r"'never-stops' breaks .*stopped none of 12 trials"):
        check_pruning(NeverStops, short)
    with pytest.raises(ContractError, match=r"'numpy-bools' breaks .*report returned \[np.False_"):
        check_pruning(NumpyBools, short)
    with pytest.raises(ContractError, match=r"'loses-points' breaks 'pruning by the engine \(successive-halving\)': "
                                            r"trial 12: restored from a state saved after two reports"):
        check_pruning(LosesPoints, short)


def test_kit_checks_replay_where_the_engine_declares_it_exact():
    """An engine whose replay forgets the past breaks 'replay' while it declares
    deterministic_replay, and passes once it says replay is approximate."""
    optuna_cls = engine_class("optuna")

    class Forgetful(optuna_cls):
        name = "forgetful"

        def replay(self, number, params, outcome):
            pass

    with pytest.raises(ContractError, match="'forgetful' breaks 'replay'"):
        check_replay(Forgetful, {"n_startup_trials": 2})

    class Honest(Forgetful):
        name = "honest"
        deterministic_replay = False

    check_replay(Honest, {"n_startup_trials": 2})


def test_kit_checks_asks_with_trials_pending():
    """With trials pending: an engine that suggests from its told trials alone repeats
    a pending configuration, one that wants tells in order rejects a shuffled tell, one
    that raises NotReady with nothing pending breaks its contract, and one that draws
    again when a pending trial is asked again changes what it asks one trial at a time;
    all break 'pending asks'.
    An engine that raises NotReady while two trials are pending is told one and goes
    on; and an engine that does not declare supports_pending is checked one at a time."""
    random_cls = engine_class("random")

    class FromToldTrials(random_cls):
        name = "from-told-trials"
        supports_pending = True

        def __init__(self, space, seed, options=None):
            super().__init__(space, seed, options)
            self.told = 0

        def ask(self, number):
            return super().ask(self.told)

        def tell(self, number, outcome):
            self.told += 1

        def state_dict(self):
            return {"told": self.told}

        def load_state_dict(self, state):
            self.told = state["told"]

    class InOrder(random_cls):
        name = "in-order"
        supports_pending = True
        next_tell = 0

        def tell(self, number, outcome):
            assert number == self.next_tell, f"told {number} before {self.next_tell}"
            self.next_tell += 1

    class NeverReady(random_cls):
        name = "never-ready"
        supports_pending = True

        def ask(self, number):
            if number == 3:
                raise NotReady("tell me something")
            return super().ask(number)

    class Wasteful(random_cls):  # asking a pending trial again returns it, but draws
        name = "wasteful"
        supports_pending = True

        def __init__(self, space, seed, options=None):
            super().__init__(space, seed, options)
            self.draws, self.pending = 0, {}

        def ask(self, number):
            self.draws += 1
            return self.pending.setdefault(number, super().ask(self.draws))

        def tell(self, number, outcome):
            del self.pending[number]

    class TwoAtATime(random_cls):
        name = "two-at-a-time"
        supports_pending = True

        def __init__(self, space, seed, options=None):
            super().__init__(space, seed, options)
            self.pending = set()

        def ask(self, number):
            if number not in self.pending and len(self.pending) >= 2:
                raise NotReady("two trials are running")
            self.pending.add(number)
            return super().ask(number)

        def tell(self, number, outcome):
            self.pending.remove(number)

        def state_dict(self):
            return {"pending": sorted(self.pending)}

        def load_state_dict(self, state):
            self.pending = set(state["pending"])

    with pytest.raises(ContractError, match=r"'from-told-trials' breaks 'pending asks': 2 at a time: trial 7 asked "
                                            r"for .*, the configuration of pending trial 6"):
        check_pending_asks(FromToldTrials)
    with pytest.raises(ContractError, match="'in-order' breaks 'pending asks': raised AssertionError: told"):
        check_pending_asks(InOrder)
    with pytest.raises(ContractError, match=r"'never-ready' breaks 'pending asks': 1 at a time: ask\(3\) raised "
                                            r"NotReady with no trial pending"):
        check_pending_asks(NeverReady)
    with pytest.raises(ContractError, match="'wasteful' breaks 'pending asks': trial 7: .*run_synthetic"):
        check_pending_asks(Wasteful)
    check_pending_asks(TwoAtATime)

    seen = []

    class Sequential(random_cls):
        name = "sequential"
        supports_pending = False  # Engine's default: one trial in flight

        def ask(self, number):
            seen.append(number)
            return super().ask(number)

    check_pending_asks(Sequential)
    assert max(seen) == TRIALS // 2 + 2  # 6 one at a time, 1 "batch", 2 more: trials 0..8


# --- grid ----------------------------------------------------------------------------------


def test_grid_covers_the_full_grid_once():
    grid = make_engine(engine_class("grid"), {"grid_points": {"lr": 3, "epochs": 3, "unfreeze": 2}}, PAPER_SPACE)
    configs = grid.configurations()
    assert grid.size == len(configs) == 3 * 3 * 2 * 6
    assert len({json.dumps(c, sort_keys=True) for c in configs}) == len(configs)
    assert sorted({c["lr"] for c in configs}) == pytest.approx([1e-6, 10**-4.5, 1e-3], rel=1e-12)
    assert sorted({c["epochs"] for c in configs}) == [1, 6, 10]  # 5.5 rounds half up
    assert sorted({c["unfreeze"] for c in configs}) == [0, 5]
    assert sorted({c["maxlen"] for c in configs}) == PAPER_SPACE["maxlen"].values
    assert all(type(c["lr"]) is float and type(c["epochs"]) is int for c in configs)


def test_grid_spacing_log_linear_and_integer():
    space = {
        "lr": FloatParam(type="float", low=1e-6, high=1e-2, log=True),
        "weight_decay": FloatParam(type="float", low=0.0, high=0.1),
        "batch_size": IntParam(type="int", low=1, high=64, log=True),
        "epochs": IntParam(type="int", low=1, high=3),
    }
    grid = make_engine(engine_class("grid"), {"grid_points": 5}, space)
    assert grid.axes["lr"] == pytest.approx([1e-6, 1e-5, 1e-4, 1e-3, 1e-2], rel=1e-12)
    assert grid.axes["weight_decay"] == pytest.approx([0.0, 0.025, 0.05, 0.075, 0.1])
    assert grid.axes["batch_size"] == [1, 3, 8, 23, 64]  # 64 ** (i / 4), rounded
    assert grid.axes["epochs"] == [1, 2, 3]  # 5 points on 3 integers: de-duplicated
    assert grid.size == 5 * 5 * 5 * 3


def test_grid_order_is_seeded_and_the_budget_cuts_it():
    space = {"epochs": IntParam(type="int", low=1, high=10), "maxlen": PAPER_SPACE["maxlen"]}
    grid_cls = engine_class("grid")
    a, b, c = (make_engine(grid_cls, None, space, seed=seed) for seed in (0, 0, 1))
    assert [a.ask(n) for n in range(18)] == [b.ask(n) for n in range(18)]
    assert [a.ask(n) for n in range(5)] != [c.ask(n) for n in range(5)]
    assert sorted(map(str, a.configurations())) == sorted(map(str, c.configurations()))
    budget = [t.params for t in run_synthetic(a, 5)]  # a budget of 5 runs 5 of the 18
    assert budget == a.configurations()[:5]


def test_grid_asking_past_its_end_says_the_search_is_exhausted():
    grid = make_engine(engine_class("grid"), {"grid_points": 2}, {"epochs": IntParam(type="int", low=1, high=10)})
    assert [grid.ask(n)["epochs"] for n in range(2)] in ([1, 10], [10, 1])
    with pytest.raises(SearchExhausted, match=r"trial 2 is past the end of the grid \(2 configurations\)"):
        grid.ask(2)


def test_a_study_stops_where_the_grid_ends(job_dict, tmp_path):
    from serbench.spec import parse_job
    from serbench.study.study import Study

    job_dict["engine"] = {"name": "grid", "options": {"grid_points": 2}}
    job_dict["search_space"] = {"lr": {"type": "float", "low": 1e-4, "high": 1e-3, "log": True}}
    job_dict["budget"]["trials"] = 5
    result = Study(parse_job(job_dict), tmp_path).run()
    assert result.stopped_by == "exhausted"
    assert sorted(t.params["lr"] for t in result.trials) == pytest.approx([1e-4, 1e-3])
    assert result.test is not None


def test_grid_points_must_name_search_space_parameters():
    grid_cls = engine_class("grid")
    with pytest.raises(SpecError, match="grid_points: 'dropout' is not in search_space"):
        make_engine(grid_cls, {"grid_points": {"dropout": 3}}, PAPER_SPACE)
    with pytest.raises(SpecError, match="grid_points: lr needs at least 1 point"):
        make_engine(grid_cls, {"grid_points": {"lr": 0}}, PAPER_SPACE)
    with pytest.raises(SpecError, match="engine.options.grid_pionts: unknown key"):
        plugin_options(grid_cls.Options, {"grid_pionts": 3}, "engine.options")


# --- Ax -----------------------------------------------------------------------------------


def test_ax_runs_sobol_then_the_gp_and_resumes_exactly():
    """``initial_trials`` Sobol trials that did not fail (a failed one is made up for),
    then Ax's GP (node ``MBM``); a fresh engine loading the state -- which replays the
    trials, the GP one included -- asks for what the uninterrupted run asks next."""
    ax_cls = engine_class("ax")
    space = {"lr": PAPER_SPACE["lr"], "maxlen": PAPER_SPACE["maxlen"]}
    engine = make_engine(ax_cls, {"initial_trials": 2}, space, seed=3)
    run = run_synthetic(engine, 4, fail={1})
    summary = engine.summary().set_index("number")
    assert list(summary["generation_node"]) == ["Sobol", "Sobol", "Sobol", "MBM"]
    assert list(summary["trial_status"]) == ["COMPLETED", "FAILED", "COMPLETED", "COMPLETED"]
    assert math.isnan(summary.loc[1, "bca"]) and summary.loc[3, "bca"] == run[3].outcome.value
    state = json.loads(json.dumps(engine.state_dict()))
    next_config = engine.ask(4)
    assert type(next_config["lr"]) is float and next_config["maxlen"] in space["maxlen"].values

    restored = make_engine(ax_cls, {"initial_trials": 2}, space, seed=3)
    restored.load_state_dict(state)
    assert list(restored.summary()["generation_node"]) == ["Sobol", "Sobol", "Sobol", "MBM"]  # regenerated
    assert restored.ask(4) == next_config


def test_ax_is_not_ready_past_its_sobol_start_and_models_pending_trials():
    """``initial_trials: 2``, both asked and none told: Ax needs data before its GP, so
    asking trial 2 raises NotReady and generates nothing; once one is told, the GP (node
    ``MBM``) suggests trial 2 with trial 0 still pending. A state saved then restores
    every pending trial, and after the same tells (not in trial order) the restored
    engine asks what the original asks."""
    ax_cls = engine_class("ax")
    space = {"lr": PAPER_SPACE["lr"], "maxlen": PAPER_SPACE["maxlen"]}
    engine = make_engine(ax_cls, {"initial_trials": 2}, space, seed=3)
    asked = [engine.ask(0), engine.ask(1)]
    with pytest.raises(NotReady, match="trial 2 needs a told trial first"):
        engine.ask(2)
    assert len(engine.summary()) == 2
    engine.tell(1, Outcome.ok(0.6))
    asked.append(engine.ask(2))
    summary = engine.summary().set_index("number")
    assert list(summary["generation_node"]) == ["Sobol", "Sobol", "MBM"]
    assert list(summary["trial_status"]) == ["RUNNING", "COMPLETED", "RUNNING"]
    assert asked[2] not in asked[:2]

    restored = make_engine(ax_cls, {"initial_trials": 2}, space, seed=3)
    restored.load_state_dict(json.loads(json.dumps(engine.state_dict())))
    assert [restored.ask(0), restored.ask(2)] == [asked[0], asked[2]]  # trial 1 was told
    for each in (engine, restored):
        each.tell(2, Outcome.ok(0.7))
        each.tell(0, Outcome.failed("oom"))
    assert restored.ask(3) == engine.ask(3)


def test_ax_options_reject_unknown_keys_and_a_zero_start():
    ax_cls = engine_class("ax")
    with pytest.raises(SpecError, match="engine.options.initial_trials"):
        plugin_options(ax_cls.Options, {"initial_trials": 0}, "engine.options")
    with pytest.raises(SpecError, match="engine.options.sobol_trials: unknown key"):
        plugin_options(ax_cls.Options, {"sobol_trials": 5}, "engine.options")


# --- TPE ----------------------------------------------------------------------------------


@pytest.mark.parametrize("name, options", [("hyperopt", {"n_startup_jobs": 10}), ("optuna", {"n_startup_trials": 10})])
def test_tpe_concentrates_where_the_score_is_high(name, options):
    """Over 5 seeds and 30 trials each, TPE's last 10 trials score well above random
    search's, and its best trial beats random search's on average."""

    def scores(cls, opts):
        runs = [run_synthetic(make_engine(cls, opts, PAPER_SPACE, seed=seed), 30) for seed in range(5)]
        values = [[t.outcome.value for t in run] for run in runs]
        return statistics.mean(max(v) for v in values), statistics.mean(statistics.mean(v[-10:]) for v in values)

    tpe_best, tpe_late = scores(engine_class(name), options)
    random_best, random_late = scores(engine_class("random"), None)
    assert tpe_late > random_late + 0.15, (tpe_late, random_late)
    assert tpe_best > random_best, (tpe_best, random_best)


def test_optuna_has_no_pruner_option():
    """Pruning is the job's ``pruner`` section (``by: engine`` hands it to optuna through
    ``delegate_pruning``), never an engine option."""
    with pytest.raises(SpecError, match="engine.options.pruner: unknown key"):
        plugin_options(engine_class("optuna").Options, {"pruner": "median"}, "engine.options")


# --- failures are failures, scores are scores ------------------------------------------------


def test_failures_are_told_as_failures_and_low_scores_as_scores():
    """A failed trial (and a NaN score) reaches the library as a failure, never as a
    zero; a collapsed trial's real score (1/7) reaches it as that score."""
    from hyperopt import STATUS_FAIL, STATUS_OK
    from optuna.trial import TrialState

    outcomes = [Outcome.failed("oom"), Outcome.ok(1 / 7), Outcome.ok(float("nan")), Outcome.ok(0.9)]

    def drive(engine):
        for number, outcome in enumerate(outcomes):
            engine.ask(number)
            engine.tell(number, outcome)
        return engine

    hyperopt = drive(make_engine(engine_class("hyperopt"), None, PAPER_SPACE))
    results = [doc["result"] for doc in sorted(hyperopt.trials.trials, key=lambda doc: doc["tid"])]
    assert [r["status"] for r in results] == [STATUS_FAIL, STATUS_OK, STATUS_FAIL, STATUS_OK]
    assert "loss" not in results[0] and "loss" not in results[2]
    assert results[1]["loss"] == pytest.approx(-1 / 7) and results[3]["loss"] == pytest.approx(-0.9)

    optuna = drive(make_engine(engine_class("optuna"), None, PAPER_SPACE))
    trials = optuna.study.trials
    assert [t.state for t in trials] == [TrialState.FAIL, TrialState.COMPLETE, TrialState.FAIL, TrialState.COMPLETE]
    assert trials[0].value is None and trials[1].value == pytest.approx(1 / 7)

    ax = drive(make_engine(engine_class("ax"), None, PAPER_SPACE)).summary().set_index("number")
    assert list(ax["trial_status"]) == ["FAILED", "COMPLETED", "FAILED", "COMPLETED"]
    assert ax.loc[1, "bca"] == pytest.approx(1 / 7) and math.isnan(ax.loc[0, "bca"])


def test_pending_trials_reach_the_tpe_libraries_as_running_trials():
    """Three trials asked and none told are running trials to hyperopt (documents
    without a loss, which TPE counts as the worst) and optuna (``RUNNING``, which TPE
    built with ``constant_liar`` counts among the bad ones); tells in any order finish
    them."""
    from hyperopt import JOB_STATE_DONE, JOB_STATE_RUNNING
    from optuna.trial import TrialState

    hyperopt = make_engine(engine_class("hyperopt"), {"n_startup_jobs": 2}, PAPER_SPACE)
    optuna = make_engine(engine_class("optuna"), {"n_startup_trials": 2}, PAPER_SPACE)
    assert optuna._sampler(0)._constant_liar is True
    for engine in (hyperopt, optuna):
        for number in range(3):
            engine.ask(number)
    docs = sorted(hyperopt.trials.trials, key=lambda doc: doc["tid"])
    assert [doc["state"] for doc in docs] == [JOB_STATE_RUNNING] * 3 and all("loss" not in d["result"] for d in docs)
    assert [t.state for t in optuna.study.trials] == [TrialState.RUNNING] * 3
    for engine in (hyperopt, optuna):
        engine.tell(2, Outcome.ok(0.3))
        engine.tell(0, Outcome.ok(0.6))
    docs = sorted(hyperopt.trials.trials, key=lambda doc: doc["tid"])
    assert [doc["state"] for doc in docs] == [JOB_STATE_DONE, JOB_STATE_RUNNING, JOB_STATE_DONE]
    assert [t.state for t in optuna.study.trials] == [TrialState.COMPLETE, TrialState.RUNNING, TrialState.COMPLETE]


@pytest.mark.parametrize("name", ["hyperopt", "optuna", "ax"])
def test_state_with_a_trial_in_flight_resumes_it(name):
    """A state saved between an ask and its tell restores that trial as asked: the
    restored engine returns the same configuration and accepts its outcome."""
    cls = engine_class(name)
    options = {"initial_trials": 1000} if name == "ax" else None
    engine = make_engine(cls, options, PAPER_SPACE, seed=4)
    run_synthetic(engine, 2)
    in_flight = engine.ask(2)
    restored = make_engine(cls, options, PAPER_SPACE, seed=4)
    restored.load_state_dict(json.loads(json.dumps(engine.state_dict())))
    assert restored.ask(2) == in_flight
    engine.tell(2, Outcome.ok(0.4))
    restored.tell(2, Outcome.ok(0.4))
    assert restored.ask(3) == engine.ask(3)


# --- pruned trials ---------------------------------------------------------------------------

CURVE = ((0, 0.3), (1, 0.5), (2, 0.6))


def test_pruned_trials_reach_each_library_as_pruned():
    """A pruned trial with a curve (and a finished and a failed one with curves): optuna
    gets ``PRUNED`` with the curve as intermediate values, hyperopt a ``STATUS_OK`` result
    with its last value as loss and ``pruned`` and the curve for the record, Ax an
    ``EARLY_STOPPED`` trial whose data is its last value (with Ax's own early stopping,
    the curve: a score replaces the last point); a state round trip keeps them all."""
    from hyperopt import STATUS_FAIL, STATUS_OK
    from optuna.trial import TrialState

    outcomes = [Outcome.ok(0.65, CURVE), Outcome.pruned(0.5, CURVE[:2]), Outcome.failed("oom", CURVE[:1])]

    def drive(name, options=None, delegated=False):
        engine = make_engine(engine_class(name), options, PAPER_SPACE, seed=2)
        if delegated:
            engine.delegate_pruning("median", {}, 9)
        for number, outcome in enumerate(outcomes):
            engine.ask(number)
            engine.tell(number, outcome)
        restored = make_engine(engine_class(name), options, PAPER_SPACE, seed=2)
        if delegated:
            restored.delegate_pruning("median", {}, 9)
        restored.load_state_dict(json.loads(json.dumps(engine.state_dict())))
        return engine, restored

    for optuna in drive("optuna"):
        trials = optuna.study.trials
        assert [t.state for t in trials] == [TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL]
        assert [t.intermediate_values for t in trials] == [dict(CURVE), dict(CURVE[:2]), dict(CURVE[:1])]
        assert [t.value for t in trials] == [0.65, 0.5, None]

    for hyperopt in drive("hyperopt"):
        results = [doc["result"] for doc in sorted(hyperopt.trials.trials, key=lambda doc: doc["tid"])]
        assert [r["status"] for r in results] == [STATUS_OK, STATUS_OK, STATUS_FAIL]
        assert results[1] == {"status": STATUS_OK, "loss": -0.5, "pruned": True, "curve": [[0, 0.3], [1, 0.5]]}
        assert results[0]["loss"] == -0.65 and "pruned" not in results[0] and "loss" not in results[2]

    for ax in drive("ax", {"initial_trials": 1000}):
        summary = ax.summary().set_index("number")
        assert list(summary["trial_status"]) == ["COMPLETED", "EARLY_STOPPED", "FAILED"]
        data = ax._client._experiment.lookup_data().full_df.sort_values("trial_index")
        assert [tuple(row) for row in data[["trial_index", "mean"]].itertuples(index=False)] == [(0, 0.65), (1, 0.5)]
        assert "step" not in data or data["step"].isna().all()  # no curves: the step is no GP input

    for ax in drive("ax", {"initial_trials": 1000}, delegated=True):
        summary = ax.summary().set_index("number")
        assert list(summary["trial_status"]) == ["COMPLETED", "EARLY_STOPPED", "FAILED"]
        data = ax._client._experiment.lookup_data().full_df.sort_values(["trial_index", "step"])
        assert [tuple(row) for row in data[["trial_index", "step", "mean"]].itertuples(index=False)] == [
            (0, 0, 0.3), (0, 1, 0.5), (0, 2, 0.65), (1, 0, 0.3), (1, 1, 0.5), (2, 0, 0.3)
        ]


@pytest.mark.parametrize("delegated", [False, True])
def test_ax_hands_over_to_its_gp_after_pruned_sobol_trials_and_models_them(delegated):
    """Two of three Sobol trials pruned: Ax (which counts only completed trials as
    observed) would wait for data with nothing running; the engine counts early-stopped
    ones, so trial 3 comes from the GP, which is fitted on every trial's latest value --
    with Ax's own early stopping, at the step it reached, the step an input of the GP."""
    engine = make_engine(engine_class("ax"), {"initial_trials": 3}, PAPER_SPACE, seed=1)
    if delegated:
        engine.delegate_pruning("median", {}, 9)
    outcomes = [Outcome.pruned(0.2, CURVE[:1]), Outcome.ok(0.65, CURVE), Outcome.pruned(0.5, CURVE[:2])]
    for number, outcome in enumerate(outcomes):
        engine.ask(number)
        engine.tell(number, outcome)
    engine.ask(3)
    assert list(engine.summary()["generation_node"]) == ["Sobol", "Sobol", "Sobol", "MBM"]
    gp = engine._client._generation_strategy.adapter.generator.surrogate.model
    inputs, targets = gp.train_inputs[0], gp.train_targets
    if delegated:
        assert inputs.shape == (3, len(PAPER_SPACE) + 1)  # the space's parameters and the step
        assert [round(float(step), 6) for step in inputs[:, -1]] == [0.0, 1.0, 0.5]  # steps 0, 2, 1, scaled
    else:
        assert inputs.shape == (3, len(PAPER_SPACE))  # no curves: the step is no input
    assert int(targets.argmax()) == 1  # trial 1's score, the best, is modelled


def test_engines_describe_the_pruners_they_delegate_and_reject_what_they_cannot_honour():
    optuna_cls, ax_cls = engine_class("optuna"), engine_class("ax")

    def delegate(cls, name, options=None, max_step=9):
        options_ = {"initial_trials": 1000} if cls is ax_cls else None
        return make_engine(cls, options_, PAPER_SPACE).delegate_pruning(name, options or {}, max_step)

    assert delegate(optuna_cls, "median", {"n_warmup_steps": 2}) == (
        "optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=2, interval_steps=1, n_min_trials=1)"
    )
    assert delegate(optuna_cls, "hyperband") == (
        "optuna.pruners.HyperbandPruner(min_resource=1, max_resource=9, reduction_factor=3)"
    )
    assert delegate(optuna_cls, "successive-halving", {"reduction_factor": 2}).startswith(
        "optuna.pruners.SuccessiveHalvingPruner(min_resource=1, reduction_factor=2,"
    )
    assert delegate(ax_cls, "median", {"n_startup_trials": 3, "interval_steps": 2}) == (
        "ax.early_stopping.strategies.PercentileEarlyStoppingStrategy(percentile_threshold=50.0, min_curves=3, "
        "min_progression=0, interval=2)"
    )
    refused = [
        (optuna_cls, "median", {"n_startup_trials": -1}, "pruner median: .*n_startup_trials"),
        (optuna_cls, "median", {"n_warmup_steps": 1.5}, "n_warmup_steps must be an integer"),
        (optuna_cls, "hyperband", {"reduction_factor": 1}, "pruner hyperband: .*reduction_factor"),
        (optuna_cls, "hyperband", {"min_resource": 12}, "max_resource 9 is below min_resource 12"),
        (optuna_cls, "patient", {}, "cannot prune with 'patient'"),
        (ax_cls, "successive-halving", {}, "cannot prune with 'successive-halving' \\(it offers median\\)"),
        (ax_cls, "median", {"n_min_trials": 2}, "Ax has no n_min_trials"),
        (ax_cls, "median", {"bootstrap_count": 1}, "pruner median has no option 'bootstrap_count'"),
    ]
    for cls, name, options, message in refused:
        with pytest.raises(ValueError, match=message):
            delegate(cls, name, options)
    with pytest.raises(ValueError, match="engine 'random' has no pruner of its own"):
        make_engine(engine_class("random")).delegate_pruning("median", {}, 9)


def test_points_that_are_not_finite_numbers_are_never_recorded():
    """A NaN point of a told curve, or reported with delegated pruning, is left out (and
    decides nothing): a non-finite score is no score."""
    engine = make_engine(engine_class("optuna"), None, PAPER_SPACE)
    engine.delegate_pruning("median", {}, 9)
    engine.ask(0)
    assert engine.report(0, 0, float("nan")) is False
    engine.tell(0, Outcome.ok(0.6, ((0, float("nan")), (1, 0.4), (2, 0.6))))
    assert engine.study.trials[0].intermediate_values == {1: 0.4, 2: 0.6}
