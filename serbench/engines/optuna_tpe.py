"""Optuna: TPE (its default sampler) or random sampling through ``study.ask()/tell()``.

An in-memory study maximises the score; each ``ask`` is ``study.ask(distributions)``
with one distribution per search-space entry (``FloatDistribution`` /
``IntDistribution``, ``log`` as the spec says; a choice is a ``CategoricalDistribution``
over its value indices). Options: ``sampler`` (``tpe``: ``TPESampler`` with optuna's
defaults, which since optuna 4 include multivariate TPE; ``random``: ``RandomSampler``)
and ``n_startup_trials`` (TPE's random start, optuna's default 10).

Seeding: the sampler of trial ``n`` is built with a seed derived from ``(job seed, n)``
(``TPESampler(seed=...)``) just before that trial is asked. A suggestion is therefore a
function of the job seed, the trial number and the trials before it, and not of the
random state a long-lived sampler would carry.

Trials: a failure (or a score that is not a finite number) is told as
``TrialState.FAIL``; TPE leaves failed trials out of its model. Every trial's curve is
reported first, point by point, as intermediate values (``trial.report(value, step)``;
points that are not finite numbers are left out; optuna keeps the first value reported
at a step), then the trial is told: a finished one ``COMPLETE`` with its score, a pruned
one ``TrialState.PRUNED`` (optuna then gives it its last intermediate value as value).

What TPE does with a pruned trial (optuna 5, ``samplers/_tpe/sampler.py``): it counts
as an observation, towards ``n_startup_trials`` too. TPE splits its observations into a
good group (the best ``gamma(n)``) and a bad one: completed trials fill the good group
first, best value first; pruned trials enter it only when there are fewer completed
trials than the group's size, ranked by the step they reached, then by their value
there (a pruned trial without intermediate values ranks last). In practice a pruned
trial is a bad observation, one pruned later less bad than one pruned earlier;
``RandomSampler`` ignores outcomes.

Pruning by optuna (``pruner.by: engine``): ``median``, ``successive-halving`` and
``hyperband`` are ``optuna.pruners.MedianPruner``, ``SuccessiveHalvingPruner`` and
``HyperbandPruner`` with serbench's option names and defaults (``n_startup_trials``
5, ``n_warmup_steps`` 0, ``interval_steps`` 1, ``n_min_trials`` 1; ``min_resource`` 1,
``reduction_factor`` 3, ``min_early_stopping_rate`` 0, ``bootstrap_count`` 0;
Hyperband's ``max_resource`` ``auto`` is the job's most epochs). The pruner is the
study's (the sampler is rebuilt per trial, the pruner never); ``report`` is
``trial.report(value, step)`` then ``trial.should_prune()``. ``MedianPruner`` compares a
trial's best value so far with the median of the completed trials at that step and
waits for ``n_startup_trials`` completed trials; successive halving records a trial's
rungs in the trial when it decides, so told and replayed curves are reported point by
point with a decision after each (ignored); Hyperband assigns a trial to a bracket from
a hash of the study name (fixed: ``serbench``) and the trial number.

Pending trials: each ``ask`` is its own ``study.ask()``, so the trials asked and not yet
told are ``RUNNING`` trials of the study, told (``study.tell``) in any order. TPE is
built with ``constant_liar=True`` (optuna's default since optuna 5, off before): it
puts the running trials among the bad ones, steering away from pending configurations;
the trial being sampled is left out (optuna 5) or has no parameters yet (optuna 4), so
with one trial at a time TPE samples exactly as without the option. ``RandomSampler`` draws with the seed of
each trial number.

Resuming: ``replay`` asks the journalled trial again with its configuration enqueued
(``study.enqueue_trial``), reports its curve and tells its outcome, exactly as the run
did; since samplers carry no state between trials, replay is exact (with a delegated
pruner, exact for a run that had one trial at a time: a decision depends on the trials
told before it). ``study.add_trial`` is not used: it cannot give successive halving the
rungs it records while it decides. ``state_dict`` is the list of trials (outcomes with
their curves) and the points reported by pending trials, restored by replaying them (a
pending one is asked again, reports its points again, and stays pending).
"""

from __future__ import annotations

import warnings
from typing import Any, Literal

from pydantic import Field

from serbench import hookimpl
from serbench.engines.base import Engine, Outcome
from serbench.spec import ChoiceParam, FloatParam, StrictModel
from serbench.engines.helpers import (
    call_text,
    choice_index,
    clamp_float,
    clamp_int,
    finite_value,
    history_entries,
    history_state,
    pruner_options,
    reportable,
    reported_points,
    trial_seed,
    unrecorded,
)


STUDY_NAME = "serbench"  # Hyperband assigns a trial to a bracket from a hash of the study name and trial number

PRUNERS = {"median": "MedianPruner", "successive-halving": "SuccessiveHalvingPruner", "hyperband": "HyperbandPruner"}


class OptunaOptions(StrictModel):
    sampler: Literal["tpe", "random"] = Field("tpe", description="tpe: TPESampler; random: RandomSampler.")
    n_startup_trials: int = Field(
        10, ge=0, le=10_000, description="TPE only: random trials before TPE (optuna's default: 10)."
    )


class OptunaEngine(Engine):
    name = "optuna"
    library = "optuna"
    Options = OptunaOptions
    supports_pending = True
    prunes_with = tuple(PRUNERS)

    def __init__(self, space, seed, options=None):
        super().__init__(space, seed, options)
        self._study = None
        self._pending: dict[int, Any] = {}  # number -> optuna Trial
        self._history: dict[int, tuple[dict[str, Any], Outcome | None]] = {}
        self._reported: dict[int, dict[int, float]] = {}  # pending number -> its recorded points
        self._pruner: tuple[str, dict[str, Any]] | None = None  # delegated: (optuna class, arguments)

    # -- the engine contract -----------------------------------------------------------

    def ask(self, number: int) -> dict[str, Any]:
        if number in self._pending:
            return dict(self._history[number][0])
        study = self._get_study()
        study.sampler = self._sampler(number)
        trial = study.ask(self._distributions())
        params = self._decode(trial.params)
        self._start(number, trial, params)
        return dict(params)

    def tell(self, number: int, outcome: Outcome) -> None:
        from optuna.trial import TrialState

        if number not in self._pending:
            raise ValueError(f"engine optuna: trial {number} was not asked for, or was already told")
        for step, value in unrecorded(outcome.curve, self._reported[number]):
            self._record(number, step, value)
        trial = self._pending.pop(number)
        del self._reported[number]
        value = finite_value(outcome)
        if outcome.status == "pruned":
            self._study.tell(trial, state=TrialState.PRUNED)
        elif value is None:
            self._study.tell(trial, state=TrialState.FAIL)
        else:
            self._study.tell(trial, value)
        self._history[number] = (self._history[number][0], outcome)

    def replay(self, number: int, params: dict[str, Any], outcome: Outcome) -> None:
        self._ask_as(number, params)
        self.tell(number, outcome)

    def delegate_pruning(self, name: str, options: dict[str, Any], max_step: int) -> str:
        arguments = pruner_options(self.name, self.prunes_with, name, options)
        if arguments.get("max_resource") == "auto":
            arguments["max_resource"] = max_step
        try:
            _check_pruner(PRUNERS[name], arguments)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"engine optuna: pruner {name}: {exc}") from None
        self._pruner = (PRUNERS[name], arguments)
        if self._study is not None:
            self._study.pruner = self._new_pruner()
        return call_text(f"optuna.pruners.{PRUNERS[name]}", arguments)

    def report(self, number: int, step: int, value: float) -> bool:
        if not reportable(self.name, self._pruner is not None, self._pending, number, value):
            return False
        return self._record(number, step, value)

    def state_dict(self) -> dict[str, Any]:
        return history_state(self._history, self._reported)

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._study, self._pending, self._history, self._reported = None, {}, {}, {}
        reported = reported_points(state)
        for number, params, outcome in history_entries(state):
            self._ask_as(number, params)
            if outcome is not None:
                self.tell(number, outcome)
            else:  # asked, not told: it stays pending, with the points it reported
                for step, value in reported.get(number, ()):
                    self._record(number, step, value)

    @property
    def study(self):
        """The in-memory ``optuna.Study`` (for inspection: its trial ``n`` is serbench's
        trial ``n``; choices are stored as value indices)."""
        return self._get_study()

    # -- optuna plumbing -----------------------------------------------------------------

    def _get_study(self):
        if self._study is None:
            import optuna

            optuna.logging.set_verbosity(optuna.logging.WARNING)
            self._study = optuna.create_study(
                direction="maximize", sampler=self._sampler(0), pruner=self._new_pruner(), study_name=STUDY_NAME
            )
        return self._study

    def _new_pruner(self):
        import optuna

        if self._pruner is None:
            return optuna.pruners.NopPruner()
        callee, arguments = self._pruner
        return getattr(optuna.pruners, callee)(**arguments)

    def _start(self, number: int, trial: Any, params: dict[str, Any]) -> None:
        self._pending[number] = trial
        self._history[number] = (params, None)
        self._reported[number] = {}

    def _ask_as(self, number: int, params: dict[str, Any]) -> None:
        """Ask trial ``number`` with ``params`` enqueued: a pending trial as ``ask`` makes
        one, whatever the sampler would suggest."""
        study = self._get_study()
        study.sampler = self._sampler(number)
        study.enqueue_trial(self._encode(params))
        self._start(number, study.ask(self._distributions()), dict(params))

    def _record(self, number: int, step: int, value: float) -> bool:
        """Report a point of pending trial ``number`` as an intermediate value (once per
        step: optuna keeps the first value reported at a step) and, with delegated
        pruning, return the pruner's decision (which ASHA records in the trial)."""
        trial = self._pending[number]
        if step not in self._reported[number]:
            self._reported[number][step] = value
            trial.report(value, step)
        return self._pruner is not None and bool(trial.should_prune())

    def _sampler(self, number: int):
        from optuna.samplers import RandomSampler, TPESampler

        seed = trial_seed(self.seed, number)
        if self.options.sampler == "random":
            return RandomSampler(seed=seed)
        with warnings.catch_warnings():  # optuna 4 calls constant_liar experimental
            warnings.filterwarnings("ignore", message=".*constant_liar.*")
            return TPESampler(seed=seed, n_startup_trials=self.options.n_startup_trials, constant_liar=True)

    def _distributions(self) -> dict[str, Any]:
        from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

        distributions = {}
        for key, param in sorted(self.space.items()):
            if isinstance(param, ChoiceParam):
                distributions[key] = CategoricalDistribution(list(range(len(param.values))))
            elif isinstance(param, FloatParam):
                distributions[key] = FloatDistribution(param.low, param.high, log=param.log)
            else:
                distributions[key] = IntDistribution(param.low, param.high, log=param.log)
        return distributions

    def _encode(self, params: dict[str, Any]) -> dict[str, Any]:
        return {
            key: choice_index(param, params[key]) if isinstance(param, ChoiceParam) else params[key]
            for key, param in self.space.items()
        }

    def _decode(self, raw: dict[str, Any]) -> dict[str, Any]:
        params: dict[str, Any] = {}
        for key, param in self.space.items():
            if isinstance(param, ChoiceParam):
                params[key] = param.values[int(raw[key])]
            elif isinstance(param, FloatParam):
                params[key] = clamp_float(param, raw[key])
            else:
                params[key] = clamp_int(param, raw[key])
        return params


def _check_pruner(callee: str, arguments: dict[str, Any]) -> None:
    """Build the pruner, and for Hyperband a bracket (built lazily, at the first
    decision), so that bad arguments fail now."""
    from optuna import pruners

    getattr(pruners, callee)(**arguments)
    if callee == "HyperbandPruner":
        pruners.SuccessiveHalvingPruner(min_resource=arguments["min_resource"], reduction_factor=arguments["reduction_factor"])
        if arguments["max_resource"] < arguments["min_resource"]:
            raise ValueError(f"max_resource {arguments['max_resource']} is below min_resource {arguments['min_resource']}")


@hookimpl
def serbench_engines():
    return [OptunaEngine]
