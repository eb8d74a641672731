"""The engine contract as a test kit, for plugin authors and for serbench's own engines.

One test checks an engine against every clause of the contract::

    from serbench.testing.engines import check_engine
    from my_package.serbench_plugin import MyEngine

    def test_my_engine_keeps_the_engine_contract():
        check_engine(MyEngine)                     # or check_engine(MyEngine, {"option": 1})

or one test per clause, so a report lists each clause that broke::

    from serbench.testing.engines import engine_contract_test

    test_my_engine_contract = engine_contract_test(MyEngine)   # or (MyEngine, {"option": 1})

(``CONTRACT_CHECKS`` holds the checks, for a parametrisation of your own.)

Every check drives fresh engines through ask/tell on a cheap synthetic objective (no
training) over ``KIT_SPACE`` -- a log float, a linear float, a linear and a log int, a
numeric and a boolean choice -- or the ``space`` you pass. A broken clause raises
``ContractError`` (an ``AssertionError``) saying which clause and what was seen.

The clauses:

- ``check_declaration``: a non-empty ``name``; ``Options`` rejects unknown keys.
- ``check_bounds_and_types``: a value for every parameter and no other key; ``float``
  for a float range, ``int`` for an int range, inside ``[low, high]``; exactly one of the
  values of a choice (same type: ``1`` is not ``True``).
- ``check_coverage``: over the first trials of many seeds, every choice value is
  reached, and a log range is sampled on a log scale (a log float over 1e-6..1e-3 lands
  below 3e-5 far more often than the 3 % a linear scale gives).
- ``check_handles_failure``: failed trials told as failures do not stop the engine.
- ``check_deterministic``: same seed, same configurations in the same order; another
  seed, other configurations.
- ``check_state_roundtrip``: ``state_dict()`` survives ``json.dumps``/``json.loads``, and a
  fresh engine that loads it asks what the original asks next.
- ``check_replay``: a fresh engine that is ``replay``-ed a journal asks what the
  uninterrupted run asked next (if the class sets ``deterministic_replay``; otherwise it
  must accept the replay and keep asking valid configurations).
- ``check_budget``: ``run_synthetic(engine, budget)`` asks exactly ``budget`` times, and an
  engine needs no more than that (a budget of 1 works).
- ``check_pending_asks``: with 1, 2 and 8 trials pending (asked, not yet told; only 1
  unless the class sets ``supports_pending``), every configuration is valid and differs
  from the pending ones, ``NotReady`` comes only while a trial is pending, tells in a
  shuffled order are accepted and the engine goes on; the same seed asks the same, a
  state saved with trials pending restores them, and with one trial at a time the run
  is exactly ``run_synthetic``'s.
- ``check_pruning``: trials told ``pruned`` (with curves from step 0, some cut right
  after it) and ``failed`` among finished ones: the engine keeps asking valid
  configurations, also with pending trials told out of order (``supports_pending``),
  and the pruned tells survive a state round trip and a replay (exactly, with
  ``deterministic_replay``). For each pruner in ``prunes_with``: ``delegate_pruning``
  describes it and rejects an unknown option with ``ValueError``; ``report`` returns
  bools; the same seed decides the same; an engine resumed by replay or from a state
  saved mid-trial decides the next reports as the live one does; and the library does
  stop some trial of a run where half the curves are clearly worse.

Every check takes ``(engine_cls, options=None, space=None, *, samples=48, trials=12)``.
Engines whose model-based phase starts after a random start (TPE, BO) are worth
checking with a short start, e.g. ``check_engine(MyTPE, {"n_startup_trials": 3})``;
``samples`` and ``trials`` can be lowered for an engine that is slow to ask.

``run_synthetic(engine, budget)`` and ``synthetic_objective`` are there for an author's
own tests: they drive an engine as the study loop does, without training anything;
``synthetic_curve``, ``pruning_outcome`` and ``run_delegated`` do the same for curves,
pruned trials and delegated pruning.
"""

from __future__ import annotations

import json
import math
import random
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Mapping


from serbench.engines.base import Curve, Engine, NotReady, Outcome, SearchExhausted, SearchSpace
from serbench.spec import ChoiceParam, FloatParam, IntParam
from serbench.testing.contract import ContractError, clause, options_problem

KIT_SPACE: dict[str, FloatParam | IntParam | ChoiceParam] = {
    "lr": FloatParam(type="float", low=1e-6, high=1e-3, log=True),
    "weight_decay": FloatParam(type="float", low=0.0, high=0.1),
    "epochs": IntParam(type="int", low=1, high=10),
    "batch_size": IntParam(type="int", low=1, high=64, log=True),
    "maxlen": ChoiceParam(type="choice", values=[32000, 48000, 64000, 80000, 112000, 160000]),
    "standardize": ChoiceParam(type="choice", values=[True, False]),
}

SAMPLES = 48  # configurations drawn by the statistical checks
TRIALS = 12  # trials of the sequence checks
PENDING = (1, 2, 8)  # trials in flight at once in check_pending_asks
MAX_STEP = 4  # epochs of the synthetic curves (after step 0, the frozen probe)
PRUNERS = ("median", "successive-halving", "hyperband")  # serbench's pruner names


@dataclass(frozen=True)
class SyntheticTrial:
    number: int
    params: dict[str, Any]
    outcome: Outcome


def unit(param: FloatParam | IntParam | ChoiceParam, value: Any) -> float:
    """Where ``value`` lies in its parameter's range, from 0 to 1 (log-aware; a
    choice's position in its list)."""
    if isinstance(param, ChoiceParam):
        index = next(i for i, v in enumerate(param.values) if type(v) is type(value) and v == value)
        return index / max(len(param.values) - 1, 1)
    if param.log:
        return (math.log(value) - math.log(param.low)) / (math.log(param.high) - math.log(param.low))
    return (value - param.low) / (param.high - param.low)


def synthetic_objective(space: SearchSpace, params: Mapping[str, Any], optimum: float = 0.3) -> float:
    """A cheap, smooth stand-in for a validation BCA, in (0, 1]: highest (1.0) where
    every parameter sits at ``optimum`` of its (log-aware) range."""
    distance = sum((unit(param, params[key]) - optimum) ** 2 for key, param in space.items())
    return math.exp(-distance / (0.1 * len(space)))


Objective = Callable[[dict[str, Any]], float]


def run_synthetic(
    engine: Engine,
    budget: int,
    objective: Objective | None = None,
    fail: Iterable[int] = (),
    start: int = 0,
) -> list[SyntheticTrial]:
    """Drive ``engine`` as the study loop does: trials ``start .. budget - 1``, each asked
    once and told once. Trials whose number is in ``fail`` are told as failures; the rest
    get ``objective(params)`` (default: ``synthetic_objective`` on the engine's space)."""
    score = objective or (lambda params: synthetic_objective(engine.space, params))
    failing = set(fail)
    trials = []
    for number in range(start, budget):
        params = engine.ask(number)
        if number in failing:
            outcome = Outcome.failed("synthetic failure")
        else:
            outcome = Outcome.ok(score(params))
        engine.tell(number, outcome)
        trials.append(SyntheticTrial(number, params, outcome))
    return trials


def synthetic_curve(number: int, steps: int = MAX_STEP, seed: int = 0) -> Curve:
    """Trial ``number``'s validation curve, steps 0 .. ``steps``: rising to near 0.78 for
    an even trial, and to near 0.29 -- clearly worse at every step -- for an odd one,
    with a little noise seeded by ``(seed, number)``."""
    import numpy as np

    rng = np.random.default_rng([seed, number])
    level = 0.8 if number % 2 == 0 else 0.3
    return tuple((step, float(level * (1 - 0.5 ** (step + 1)) + rng.normal(0, 0.005))) for step in range(steps + 1))


def pruning_outcome(number: int) -> Outcome:
    """What trial ``number`` gives in a run with a pruner in the loop: trials 1, 5, 9, ...
    are pruned after 1, 2, 3 ... points of ``synthetic_curve`` (trial 1 right after its
    step-0 probe), trials 3, 7, ... fail after two points, the others finish with the
    whole curve."""
    curve = synthetic_curve(number)
    if number % 4 == 1:
        cut = curve[: 1 + (number // 4) % MAX_STEP]
        return Outcome.pruned(cut[-1][1], cut)
    if number % 4 == 3:
        return Outcome.failed("synthetic failure", curve[:2])
    return Outcome.ok(curve[-1][1], curve)


def run_told(engine: Engine, budget: int, outcome_of: Callable[[int], Outcome], start: int = 0) -> list[SyntheticTrial]:
    """Trials ``start .. budget - 1``, each asked once and told ``outcome_of(number)``."""
    trials = []
    for number in range(start, budget):
        params = engine.ask(number)
        outcome = outcome_of(number)
        engine.tell(number, outcome)
        trials.append(SyntheticTrial(number, params, outcome))
    return trials


def report_curve(engine: Engine, number: int, points: Curve) -> list[bool]:
    """``engine.report`` for each point of pending trial ``number`` up to the first that
    says stop: the decisions, as returned."""
    decisions = []
    for step, value in points:
        decisions.append(engine.report(number, step, value))
        if decisions[-1]:
            break
    return decisions


def run_delegated(engine: Engine, budget: int, start: int = 0) -> list[tuple[SyntheticTrial, list[bool]]]:
    """Drive an engine that prunes by itself as the study loop does: each trial reports
    ``synthetic_curve`` point by point and stops when ``report`` says so (told pruned,
    with the points it reported), trial 3 fails after two points, the others finish.
    Returns each trial with the decisions ``report`` returned."""
    run = []
    for number in range(start, budget):
        params = engine.ask(number)
        curve = synthetic_curve(number)[: 2 if number == 3 else None]
        decisions = report_curve(engine, number, curve)
        reported = curve[: len(decisions)]
        if decisions[-1]:
            outcome = Outcome.pruned(reported[-1][1], reported)
        elif number == 3:
            outcome = Outcome.failed("synthetic failure", reported)
        else:
            outcome = Outcome.ok(reported[-1][1], reported)
        engine.tell(number, outcome)
        run.append((SyntheticTrial(number, params, outcome), decisions))
    return run


def make_engine(
    engine_cls: type[Engine], options: Mapping[str, Any] | None = None, space: SearchSpace | None = None, seed: int = 0
) -> Engine:
    """An engine as a study makes one: validated options, the space, the seed."""
    validated = engine_cls.Options.model_validate(dict(options or {}))
    return engine_cls(dict(space or KIT_SPACE), seed, validated)


# --- the clauses ------------------------------------------------------------------------
# Each takes the engine class, its options (a mapping, validated by its Options model)
# and a search space (default KIT_SPACE), and raises ContractError naming the clause.


def check_declaration(engine_cls, options=None, space=None, *, samples=SAMPLES, trials=TRIALS) -> None:
    """A non-empty ``name``, an ``Engine`` subclass, an ``Options`` model that rejects
    unknown keys, and a constructor that takes (space, seed, options)."""
    clause = "declaration"
    if not (isinstance(engine_cls, type) and issubclass(engine_cls, Engine)):
        raise ContractError(engine_cls, clause, "the class must subclass serbench.engines.base.Engine")
    if not isinstance(getattr(engine_cls, "name", None), str) or not engine_cls.name:
        raise ContractError(engine_cls, clause, "the class needs a non-empty string `name`")
    problem = options_problem(engine_cls.Options, dict(options or {}))
    if problem is not None:
        raise ContractError(engine_cls, clause, problem)
    with _clause(engine_cls, clause):
        make_engine(engine_cls, options, space)


def check_bounds_and_types(engine_cls, options=None, space=None, *, samples=SAMPLES, trials=TRIALS) -> None:
    """``samples`` trials on the synthetic objective: every configuration has exactly the
    space's keys, each value of its parameter's type and inside its bounds."""
    space = dict(space or KIT_SPACE)
    with _clause(engine_cls, "bounds and types"):
        run = run_synthetic(make_engine(engine_cls, options, space), samples)
    for trial in run:
        _check_config(engine_cls, "bounds and types", space, trial.number, trial.params)


def check_coverage(engine_cls, options=None, space=None, *, samples=SAMPLES, trials=TRIALS) -> None:
    """The first 3 trials of ``samples / 3`` seeds, on a flat objective: every choice
    value is asked for, and at least 30 % of the values of each log range lie in the
    lower half of its log range (a linear scale puts 3 % there for 1e-6..1e-3, and 12 %
    for 1..64). Early trials of many seeds show how an engine maps its space before an
    adaptive engine narrows down."""
    space = dict(space or KIT_SPACE)
    run: list[SyntheticTrial] = []
    with _clause(engine_cls, "coverage"):
        for seed in range(max(samples // 3, 1)):
            run += run_synthetic(make_engine(engine_cls, options, space, seed=seed), 3, objective=lambda params: 0.5)
    for trial in run:
        _check_config(engine_cls, "bounds and types", space, trial.number, trial.params)
    for key, param in space.items():
        if isinstance(param, ChoiceParam):
            seen = {repr(t.params[key]) for t in run}
            missing = [v for v in param.values if repr(v) not in seen]
            if missing:
                raise ContractError(
                    engine_cls, "choice coverage", f"{key}: values {missing!r} never asked for in {len(run)} trials"
                )
        elif param.log:
            middle = math.sqrt(param.low * param.high)
            low_half = sum(t.params[key] <= middle for t in run) / len(run)
            if low_half < 0.3:
                raise ContractError(
                    engine_cls,
                    "log scale",
                    f"{key} ({param.low:g}..{param.high:g}, log): only {low_half:.0%} of {len(run)} values "
                    f"are at or below {middle:g}; a log scale puts about half there",
                )


def check_handles_failure(engine_cls, options=None, space=None, *, samples=SAMPLES, trials=TRIALS) -> None:
    """Trials 0, 1, 2 and one later trial fail: the engine is told so and keeps asking
    valid configurations."""
    clause = "handles failure"
    space = dict(space or KIT_SPACE)
    with _clause(engine_cls, clause):
        run = run_synthetic(make_engine(engine_cls, options, space), trials, fail={0, 1, 2, trials // 2})
    for trial in run:
        _check_config(engine_cls, clause, space, trial.number, trial.params)


def check_deterministic(engine_cls, options=None, space=None, *, samples=SAMPLES, trials=TRIALS) -> None:
    """Two engines seeded 11 ask for the same ``trials`` configurations in the same
    order (told the same outcomes, one of them a failure); one seeded 12 does not."""
    clause = "deterministic per seed"
    space = dict(space or KIT_SPACE)
    with _clause(engine_cls, clause):
        first, again, other = (
            _configs(run_synthetic(make_engine(engine_cls, options, space, seed=seed), trials, fail={1}))
            for seed in (11, 11, 12)
        )
    _same_sequence(engine_cls, clause, 0, first, again, "the first engine seeded 11")
    if other == first:
        raise ContractError(engine_cls, clause, f"seeds 11 and 12 ask for the same {trials} configurations")


def check_state_roundtrip(engine_cls, options=None, space=None, *, samples=SAMPLES, trials=TRIALS) -> None:
    """After half of ``trials``, ``state_dict()`` goes through JSON into a fresh engine's
    ``load_state_dict``; both then ask for the same configurations."""
    clause = "state round trip"
    space = dict(space or KIT_SPACE)
    cut = trials // 2
    with _clause(engine_cls, clause):
        original = make_engine(engine_cls, options, space, seed=5)
        run_synthetic(original, cut, fail={1})
        state = original.state_dict()
    state = _through_json(engine_cls, clause, state, "state_dict()")
    with _clause(engine_cls, clause):
        restored = make_engine(engine_cls, options, space, seed=5)
        restored.load_state_dict(state)
        expected = _configs(run_synthetic(original, trials, start=cut))
        got = _configs(run_synthetic(restored, trials, start=cut))
    _same_sequence(engine_cls, clause, cut, expected, got, "the engine that saved the state")


def check_replay(engine_cls, options=None, space=None, *, samples=SAMPLES, trials=TRIALS) -> None:
    """The first half of a ``trials``-long run (a failure among them) is replayed into a
    fresh engine, which then asks valid configurations -- the same as the uninterrupted
    run's if the class declares ``deterministic_replay``."""
    clause = "replay"
    space = dict(space or KIT_SPACE)
    cut = trials // 2
    with _clause(engine_cls, clause):
        run = run_synthetic(make_engine(engine_cls, options, space, seed=7), trials, fail={1})
        fresh = make_engine(engine_cls, options, space, seed=7)
        for trial in run[:cut]:
            fresh.replay(trial.number, dict(trial.params), trial.outcome)
        rest = run_synthetic(fresh, trials, start=cut)
    for trial in rest:
        _check_config(engine_cls, clause, space, trial.number, trial.params)
    if engine_cls.deterministic_replay:
        reference = "the uninterrupted run (the class declares deterministic_replay)"
        _same_sequence(engine_cls, clause, cut, _configs(run[cut:]), _configs(rest), reference)


def check_budget(engine_cls, options=None, space=None, *, samples=SAMPLES, trials=TRIALS) -> None:
    """Budgets of 1 and 3 trials: ``run_synthetic`` asks and tells exactly that many
    trials, numbered from 0, and the engine needs nothing more (no warm-up asks)."""
    clause = "budget"
    space = dict(space or KIT_SPACE)
    for budget in (1, 3):
        engine = _Counting(make_engine(engine_cls, options, space))
        with _clause(engine_cls, clause):
            run_synthetic(engine, budget)
        if engine.asked != list(range(budget)) or engine.told != list(range(budget)):
            raise ContractError(engine_cls, clause, f"a budget of {budget} asked {engine.asked} and told {engine.told}")


def check_pending_asks(engine_cls, options=None, space=None, *, samples=SAMPLES, trials=TRIALS) -> None:
    """For k in ``PENDING`` (1, 2, 8; only 1 unless the class sets ``supports_pending``):
    ``trials // 2`` trials one at a time, then a batch of k trials asked before any is
    told, then those told in a shuffled order (trial ``trials // 2 + 1``, the batch's
    second, fails), then 2 more trials one at a time.

    While the batch is asked, ``NotReady`` is honoured as a loop would: one pending trial
    is told (in a shuffled order) and the same number asked again; with nothing pending
    it breaks the clause. ``SearchExhausted`` ends the batch. Every configuration is
    valid; where the space has a float range (room for any number of configurations) it
    differs from every pending one. A second engine with the same seed asks the same
    configurations. With k = 1 (ask, tell, ask, tell) they are exactly ``run_synthetic``'s:
    pending-aware code must change nothing with one trial at a time.

    If the class sets ``supports_pending``, asking a pending number again returns its
    configuration, and ``state_dict()`` is also taken with the batch pending and goes
    through JSON into a fresh engine, which returns each pending configuration, accepts
    the same tells and asks what the original asks next."""
    clause = "pending asks"
    space = dict(space or KIT_SPACE)
    start = trials // 2
    room = any(isinstance(param, FloatParam) for param in space.values())
    for k in PENDING if engine_cls.supports_pending else PENDING[:1]:
        with _clause(engine_cls, clause):
            engine = make_engine(engine_cls, options, space, seed=9)
            run = _PendingRun(engine_cls, clause, engine, start, k, room)
            run.ask_batch()
            state = engine.state_dict() if engine_cls.supports_pending else None
            tell_order = run.shuffled()
            run.tell_all(tell_order)
            run.continue_for(2)
            again = _PendingRun(engine_cls, clause, make_engine(engine_cls, options, space, seed=9), start, k, room)
            again.ask_batch()
            again.tell_all(again.shuffled())
            again.continue_for(2)
        _same_sequence(engine_cls, clause, 0, run.asked, again.asked, f"another engine seeded 9 (k = {k})")
        if k == 1:
            with _clause(engine_cls, clause):
                one_at_a_time = run_synthetic(make_engine(engine_cls, options, space, seed=9), len(run.asked), fail={start + 1})
            reference = "run_synthetic (one trial at a time must ask what it always asked)"
            _same_sequence(engine_cls, clause, 0, _configs(one_at_a_time), run.asked, reference)
        if state is None:
            continue
        state = _through_json(engine_cls, clause, state, f"state_dict() with {k} pending")
        with _clause(engine_cls, clause):
            twin = _restored_twin(run, make_engine(engine_cls, options, space, seed=9), state, tell_order, _PendingRun)
        reference = f"the engine that saved its state with {len(run.pending_at_state)} pending"
        _same_sequence(engine_cls, clause, 0, run.asked, twin.asked, reference)


def check_pruning(engine_cls, options=None, space=None, *, samples=SAMPLES, trials=TRIALS) -> None:
    """Pruned trials, told by a loop that prunes, and pruning handed to the library.

    Every engine: ``trials`` trials told ``pruning_outcome`` (pruned, failed and finished
    ones, with curves) ask valid configurations; a state saved halfway goes through JSON
    into a fresh engine, which asks what the original asks next; the first half replayed
    into a fresh engine asks valid configurations (the same as the run's if the class
    declares ``deterministic_replay``). If the class sets ``supports_pending``, 4 trials
    are asked before any is told, told in a shuffled order (a pruned one among them) and
    restored from a state saved while they were pending, as in ``check_pending_asks``.

    Each pruner in ``prunes_with`` (serbench's names), with its default options and
    ``MAX_STEP`` epochs: ``delegate_pruning`` returns a description and raises
    ``ValueError`` for an unknown option; ``run_delegated`` over ``max(trials, 8)`` trials
    gets bools from ``report``, stops at least one trial (half the curves are clearly
    worse: a library that stops none does not prune), and decides the same for another
    engine of the same seed. The next trial starts well and falls behind: an engine
    that is replayed the run (curves included), and one restored from a state saved after
    the trial's first two reports, decide its reports as the live engine does."""
    clause = "pruning"
    space = dict(space or KIT_SPACE)
    cut = trials // 2
    with _clause(engine_cls, clause):
        run = run_told(make_engine(engine_cls, options, space, seed=13), trials, pruning_outcome)
        original = make_engine(engine_cls, options, space, seed=5)
        run_told(original, cut, pruning_outcome)
        state = original.state_dict()
    for trial in run:
        _check_config(engine_cls, clause, space, trial.number, trial.params)
    state = _through_json(engine_cls, clause, state, "state_dict() after pruned trials")
    with _clause(engine_cls, clause):
        restored = make_engine(engine_cls, options, space, seed=5)
        restored.load_state_dict(state)
        expected = _configs(run_told(original, trials, pruning_outcome, start=cut))
        got = _configs(run_told(restored, trials, pruning_outcome, start=cut))
        fresh = make_engine(engine_cls, options, space, seed=13)
        for trial in run[:cut]:
            fresh.replay(trial.number, dict(trial.params), trial.outcome)
        rest = run_told(fresh, trials, pruning_outcome, start=cut)
    _same_sequence(engine_cls, clause, cut, expected, got, "the engine that saved its state after pruned trials")
    for trial in rest:
        _check_config(engine_cls, clause, space, trial.number, trial.params)
    if engine_cls.deterministic_replay:
        _same_sequence(engine_cls, clause, cut, _configs(run[cut:]), _configs(rest), "the run it replayed (pruned trials)")
    if engine_cls.supports_pending:
        _check_pruned_pending(engine_cls, clause, options, space, cut)
    unknown = sorted(set(engine_cls.prunes_with) - set(PRUNERS))
    if unknown:
        raise ContractError(engine_cls, clause, f"prunes_with names {unknown!r}; serbench's pruners are {PRUNERS!r}")
    for name in engine_cls.prunes_with:
        _check_delegation(engine_cls, f"pruning by the engine ({name})", options, space, name, max(trials, 8))


CONTRACT_CHECKS = (
    check_declaration,
    check_bounds_and_types,
    check_coverage,
    check_handles_failure,
    check_deterministic,
    check_state_roundtrip,
    check_replay,
    check_budget,
    check_pending_asks,
    check_pruning,
)


def check_engine(
    engine_cls: type[Engine],
    options: Mapping[str, Any] | None = None,
    space: SearchSpace | None = None,
    *,
    samples: int = SAMPLES,
    trials: int = TRIALS,
) -> None:
    """Run every clause of the contract on ``engine_cls`` (with these engine ``options``,
    over ``space``, default ``KIT_SPACE``); the first broken one raises ``ContractError``.

    ``samples``: configurations drawn by the statistical checks; ``trials``: length of
    the runs compared by the sequence checks. Lower them only for slow engines."""
    for check in CONTRACT_CHECKS:
        check(engine_cls, options, space, samples=samples, trials=trials)


def engine_contract_test(engine_cls: type[Engine], options: Mapping[str, Any] | None = None, **kit: Any):
    """A pytest test function, parametrised with one case per clause, for a test module:
    ``test_my_engine_contract = engine_contract_test(MyEngine)``. ``options`` and the
    keyword arguments (``space``, ``samples``, ``trials``) go to every check."""
    import pytest

    @pytest.mark.parametrize("check", CONTRACT_CHECKS, ids=lambda check: check.__name__.removeprefix("check_"))
    def test_engine_contract(check):
        check(engine_cls, options, **kit)

    return test_engine_contract


# --- helpers --------------------------------------------------------------------------


def _check_config(engine_cls, clause: str, space: SearchSpace, number: int, params: Any) -> None:
    def broken(detail: str) -> ContractError:
        return ContractError(engine_cls, clause, f"trial {number}: {detail}")

    if not isinstance(params, dict):
        raise broken(f"ask() returned {type(params).__name__}, not a dict")
    if set(params) != set(space):
        raise broken(f"keys {sorted(params)} are not the search space's {sorted(space)}")
    for key, param in space.items():
        value = params[key]
        if isinstance(param, ChoiceParam):
            if not any(type(v) is type(value) and v == value for v in param.values):
                raise broken(f"{key}={value!r} ({type(value).__name__}) is not one of {param.values!r}")
            continue
        kind = float if isinstance(param, FloatParam) else int
        if type(value) is not kind:
            raise broken(f"{key}={value!r} is a {type(value).__name__}, not a {kind.__name__}")
        if not (param.low <= value <= param.high) or (kind is float and not math.isfinite(value)):
            raise broken(f"{key}={value!r} is outside [{param.low}, {param.high}]")


def _through_json(engine_cls, clause: str, state: Any, what: str) -> Any:
    """``state`` after a JSON round trip, as a journal or a checkpoint would keep it."""
    try:
        return json.loads(json.dumps(state))
    except (TypeError, ValueError) as exc:
        raise ContractError(engine_cls, clause, f"{what} is not JSON-serialisable: {exc}") from None


def _clause(engine_cls, name: str):
    return clause(ContractError, engine_cls, name)


def _configs(trials: list[SyntheticTrial]) -> list[dict[str, Any]]:
    return [trial.params for trial in trials]


def _same_sequence(engine_cls, clause: str, start: int, expected: list, got: list, reference: str) -> None:
    if len(expected) != len(got):
        raise ContractError(engine_cls, clause, f"{len(got)} configurations where {reference} gave {len(expected)}")
    for offset, (a, b) in enumerate(zip(expected, got)):
        if a != b or any(type(a[key]) is not type(b.get(key)) for key in a):
            raise ContractError(
                engine_cls, clause, f"trial {start + offset}: asked for {b!r}, but {reference} asked for {a!r}"
            )


def _delegating(engine_cls, clause: str, options, space, name: str, seed: int) -> Engine:
    """A fresh engine that has handed pruner ``name`` (default options) to its library."""
    engine = make_engine(engine_cls, options, space, seed=seed)
    described = engine.delegate_pruning(name, {}, MAX_STEP)
    if not isinstance(described, str) or not described:
        raise ContractError(engine_cls, clause, f"delegate_pruning returned {described!r}, not a description")
    return engine


def _check_delegation(engine_cls, clause: str, options, space, name: str, budget: int) -> None:
    """``check_pruning``'s clauses for pruner ``name`` handed to the library."""
    with _clause(engine_cls, clause):
        try:
            make_engine(engine_cls, options, space).delegate_pruning(name, {"no_such_option": 1}, MAX_STEP)
        except ValueError as exc:
            if "\n" in str(exc):
                raise ContractError(engine_cls, clause, f"the ValueError for an unknown option is not one line: {exc}")
        else:
            raise ContractError(engine_cls, clause, "delegate_pruning accepted the unknown option 'no_such_option'")
        live, again = (_delegating(engine_cls, clause, options, space, name, seed=11) for _ in range(2))
        runs = [run_delegated(engine, budget) for engine in (live, again)]
    decisions = [d for _, d in runs[0]]
    bad = [(t.number, d) for t, d in runs[0] if any(type(each) is not bool for each in d)]
    if bad:
        raise ContractError(engine_cls, clause, f"report returned {bad[0][1]!r} for trial {bad[0][0]}, not bools")
    if [[t.params, d] for t, d in runs[0]] != [[t.params, d] for t, d in runs[1]]:
        other = [d for _, d in runs[1]]
        raise ContractError(engine_cls, clause, f"two engines seeded 11 ask or decide differently: {decisions}, {other}")
    if not any(any(d) for d in decisions):
        raise ContractError(engine_cls, clause, f"the library stopped none of {budget} trials, half of them clearly worse")
    falling = synthetic_curve(0, seed=1)[:2] + synthetic_curve(1, seed=1)[2:]  # starts well, falls behind
    with _clause(engine_cls, clause):
        params = live.ask(budget)
        first = report_curve(live, budget, falling[:2])
        state = live.state_dict() if not first[-1] else None
        rest = report_curve(live, budget, falling[2:]) if not first[-1] else []
        replayed = _delegating(engine_cls, clause, options, space, name, seed=11)
        for trial, _ in runs[0]:
            replayed.replay(trial.number, dict(trial.params), trial.outcome)
        replayed_params = replayed.ask(budget)
        replayed_decisions = report_curve(replayed, budget, falling)
    if engine_cls.deterministic_replay and replayed_params != params:
        raise ContractError(engine_cls, clause, f"trial {budget}: replayed, asked {replayed_params!r}, not {params!r}")
    if replayed_decisions != first + rest:
        raise ContractError(
            engine_cls,
            clause,
            f"trial {budget}: the engine resumed by replay decides {replayed_decisions}, the live one {first + rest}",
        )
    if state is None:
        return
    state = _through_json(engine_cls, clause, state, f"state_dict() with trial {budget} reporting")
    with _clause(engine_cls, clause):
        restored = _delegating(engine_cls, clause, options, space, name, seed=11)
        restored.load_state_dict(state)
        restored_params = restored.ask(budget)
        restored_rest = report_curve(restored, budget, falling[2:])
    if restored_params != params or restored_rest != rest:
        raise ContractError(
            engine_cls,
            clause,
            f"trial {budget}: restored from a state saved after two reports, it asks {restored_params!r} and decides "
            f"{restored_rest}; the live engine asked {params!r} and decided {rest}",
        )


def _check_pruned_pending(engine_cls, clause: str, options, space, start: int) -> None:
    """4 trials pending, told out of order with ``pruning_outcome`` (and restored from a
    state saved while they were pending): as ``check_pending_asks`` does."""
    room = any(isinstance(param, FloatParam) for param in space.values())
    with _clause(engine_cls, clause):
        run = _PrunedPendingRun(engine_cls, clause, make_engine(engine_cls, options, space, seed=9), start, 4, room)
        run.ask_batch()
        state = run.engine.state_dict()
        order = run.shuffled()
        run.tell_all(order)
        run.continue_for(2)
    state = _through_json(engine_cls, clause, state, "state_dict() with pruned trials pending")
    with _clause(engine_cls, clause):
        twin = _restored_twin(run, make_engine(engine_cls, options, space, seed=9), state, order, _PrunedPendingRun)
    _same_sequence(engine_cls, clause, 0, run.asked, twin.asked, "the engine that saved its state (pruned trials pending)")


def _restored_twin(run: "_PendingRun", fresh: Engine, state: Any, tell_order: list[int], kind: type) -> "_PendingRun":
    """``fresh`` loads ``state`` (saved by ``run`` with its batch pending), returns each
    pending configuration, gets the same tells in the same order and goes on."""
    fresh.load_state_dict(state)
    twin = kind(run.engine_cls, run.clause, fresh, run.start, run.k, run.room)
    twin.asked, twin.batch_end = list(run.asked[: run.batch_end]), run.batch_end
    twin.pending = dict(run.pending_at_state)
    twin.reask_pending(" after load_state_dict")
    twin.tell_all(tell_order)
    twin.continue_for(2)
    return twin


class _PendingRun:
    """Drives one engine through ``check_pending_asks``: trials ``0 .. start - 1`` one at a
    time, then a batch of ``k`` asked before any is told, then tells and later trials.
    ``asked`` is every configuration in trial order; ``pending`` the trials asked and not
    yet told; outcomes are ``synthetic_objective``'s, and trial ``start + 1`` fails."""

    def __init__(self, engine_cls, clause: str, engine: Engine, start: int, k: int, room: bool):
        self.engine_cls, self.clause, self.engine = engine_cls, clause, engine
        self.start, self.k, self.room = start, k, room
        self.asked: list[dict[str, Any]] = []
        self.pending: dict[int, dict[str, Any]] = {}
        self.rng = random.Random(k)
        self.batch_end = start
        self.pending_at_state: dict[int, dict[str, Any]] = {}

    def outcome(self, number: int, params: dict[str, Any]) -> Outcome:
        if number == self.start + 1:
            return Outcome.failed("synthetic failure")
        return Outcome.ok(synthetic_objective(self.engine.space, params))

    def tell(self, number: int) -> None:
        self.engine.tell(number, self.outcome(number, self.pending.pop(number)))

    def broken(self, detail: str) -> ContractError:
        return ContractError(self.engine_cls, self.clause, f"{self.k} at a time: {detail}")

    def ask_batch(self) -> None:
        for number in range(self.start):
            self.asked.append(self.ask(number))
            self.tell(number)
        number = self.start
        while number < self.start + self.k:
            try:
                params = self.ask(number)
            except SearchExhausted:
                break
            except NotReady:  # (with a trial pending: self.ask checks that)
                first = self.rng.choice(sorted(self.pending))
                self.tell(first)
                continue
            self.asked.append(params)
            number += 1
        self.batch_end = number
        self.pending_at_state = dict(self.pending)
        if self.engine_cls.supports_pending:
            self.reask_pending("")

    def ask(self, number: int) -> dict[str, Any]:
        try:
            params = self.engine.ask(number)
        except NotReady as exc:
            if not self.pending:
                raise self.broken(f"ask({number}) raised NotReady with no trial pending: {exc}") from None
            raise
        _check_config(self.engine_cls, self.clause, self.engine.space, number, params)
        if self.room:
            for other, pending in self.pending.items():
                if params == pending:
                    raise self.broken(f"trial {number} asked for {params!r}, the configuration of pending trial {other}")
        self.pending[number] = params
        return params

    def reask_pending(self, where: str) -> None:
        for number, params in sorted(self.pending.items()):
            again = self.engine.ask(number)
            if again != params:
                raise self.broken(f"asking pending trial {number} again{where} gave {again!r}, not {params!r}")

    def shuffled(self) -> list[int]:
        order = sorted(self.pending)
        self.rng.shuffle(order)
        return order

    def tell_all(self, order: list[int]) -> None:
        for number in order:
            self.tell(number)

    def continue_for(self, count: int) -> None:
        for number in range(self.batch_end, self.batch_end + count):
            try:
                self.asked.append(self.ask(number))
            except SearchExhausted:
                return
            self.tell(number)


class _PrunedPendingRun(_PendingRun):
    """A ``_PendingRun`` whose trials are told ``pruning_outcome``."""

    def outcome(self, number: int, params: dict[str, Any]) -> Outcome:
        return pruning_outcome(number)


class _Counting(Engine):
    """Wraps an engine and records the trial numbers it is asked for and told."""

    name = "counting"

    def __init__(self, inner: Engine):
        self.inner, self.space, self.seed, self.options = inner, inner.space, inner.seed, inner.options
        self.asked: list[int] = []
        self.told: list[int] = []

    def ask(self, number: int) -> dict[str, Any]:
        self.asked.append(number)
        return self.inner.ask(number)

    def tell(self, number: int, outcome: Outcome) -> None:
        self.told.append(number)
        self.inner.tell(number, outcome)
