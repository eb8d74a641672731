"""Optuna: TPE (its default sampler) or random sampling through ``study.ask()/tell()``.

An in-memory study maximises the score; each ``ask`` is ``study.ask(distributions)``
with one distribution per search-space entry (``FloatDistribution`` /
``IntDistribution``, ``log`` as the spec says; a choice is a ``CategoricalDistribution``
over its value indices). Options: ``sampler`` (``tpe``: ``TPESampler`` with optuna's
defaults, which since optuna 4 include multivariate TPE; ``random``: ``RandomSampler``)
and ``n_startup_trials`` (TPE's random start, optuna's default 10).

There is no pruner option: pruning stops a trial from its intermediate scores, and
serbench's trials report only a final score, so a pruner would never act.

Seeding: the sampler of trial ``n`` is built with a seed derived from ``(job seed, n)``
(``TPESampler(seed=...)``) just before that trial is asked. A suggestion is therefore a
function of the job seed, the trial number and the trials before it, and not of the
random state a long-lived sampler would carry.

Trials: a failure (or a score that is not a finite number) is told as
``TrialState.FAIL``; TPE leaves failed trials out of its model.

Pending trials: each ``ask`` is its own ``study.ask()``, so the trials asked and not yet
told are ``RUNNING`` trials of the study, told (``study.tell``) in any order. TPE is
built with ``constant_liar=True`` (optuna's default since optuna 5, off before): it
puts the running trials among the bad ones, steering away from pending configurations;
the trial being sampled is left out (optuna 5) or has no parameters yet (optuna 4), so
with one trial at a time TPE samples exactly as without the option. ``RandomSampler`` draws with the seed of
each trial number.

Resuming: ``replay`` adds the journalled trial with ``study.add_trial`` (its
configuration and value, or ``FAIL``); since samplers carry no state between trials,
replay is exact. ``state_dict`` is the list of trials, restored by replaying them (a
pending one is asked again with its configuration enqueued, and stays pending).
"""

from __future__ import annotations

import warnings
from typing import Any, Literal

from pydantic import Field

from serbench import hookimpl
from serbench.engines.base import Engine, Outcome
from serbench.spec import ChoiceParam, FloatParam, StrictModel
from serbench.engines.helpers import (
    history_entries,
    history_state,
    choice_index,
    clamp_float,
    clamp_int,
    finite_value,
    trial_seed,
)


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

    def __init__(self, space, seed, options=None):
        super().__init__(space, seed, options)
        self._study = None
        self._pending: dict[int, Any] = {}  # number -> optuna Trial
        self._history: dict[int, tuple[dict[str, Any], Outcome | None]] = {}

    # -- the engine contract -----------------------------------------------------------

    def ask(self, number: int) -> dict[str, Any]:
        if number in self._pending:
            return dict(self._history[number][0])
        study = self._get_study()
        study.sampler = self._sampler(number)
        trial = study.ask(self._distributions())
        params = self._decode(trial.params)
        self._pending[number] = trial
        self._history[number] = (params, None)
        return dict(params)

    def tell(self, number: int, outcome: Outcome) -> None:
        from optuna.trial import TrialState

        if number not in self._pending:
            raise ValueError(f"engine optuna: trial {number} was not asked for, or was already told")
        trial = self._pending.pop(number)
        value = finite_value(outcome)
        if value is None:
            self._study.tell(trial, state=TrialState.FAIL)
        else:
            self._study.tell(trial, value)
        self._history[number] = (self._history[number][0], outcome)

    def replay(self, number: int, params: dict[str, Any], outcome: Outcome) -> None:
        from optuna.trial import TrialState, create_trial

        value = finite_value(outcome)
        self._get_study().add_trial(
            create_trial(
                state=TrialState.COMPLETE if value is not None else TrialState.FAIL,
                value=value,
                params=self._encode(params),
                distributions=self._distributions(),
            )
        )
        self._history[number] = (dict(params), outcome)

    def state_dict(self) -> dict[str, Any]:
        return history_state(self._history)

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._study, self._pending, self._history = None, {}, {}
        for number, params, outcome in history_entries(state):
            if outcome is not None:
                self.replay(number, params, outcome)
            else:  # asked, not told: ask it again with the same configuration
                study = self._get_study()
                study.enqueue_trial(self._encode(params))
                self._pending[number] = study.ask(self._distributions())
                self._history[number] = (params, None)

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
            self._study = optuna.create_study(direction="maximize", sampler=self._sampler(0))
        return self._study

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


@hookimpl
def serbench_engines():
    return [OptunaEngine]
