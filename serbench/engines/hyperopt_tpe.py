"""Hyperopt: the Tree-structured Parzen Estimator, driven through ask/tell.

No ``fmin`` loop: each ``ask`` calls ``tpe.suggest([number], domain, trials, seed)`` on a
``hyperopt.Trials`` that this engine fills itself, the way ``fmin`` does between calls.
The first ``n_startup_jobs`` suggestions are random draws from the prior (hyperopt's
default is 20: with a 15-trial budget TPE then never leaves its random start).

Seeding: ``fmin`` draws one seed per ``suggest`` call from its ``rstate``; here the seed
of trial ``n`` is derived from ``(job seed, n)``. A suggestion is therefore a function of
the job seed, the trial number and the trials before it.

Search space: ``hp.uniform`` / ``hp.loguniform`` for floats; ``hp.quniform`` /
``hp.qloguniform`` with step 1 over ``[low - 0.5, high + 0.5]`` for ints (each integer
gets an equal share, or an equal log share); ``hp.choice`` over the value indices for a
choice.

Trials: the loss is ``-BCA``. A failure (or a score that is not a finite number) is a
``STATUS_FAIL`` result with no loss, which TPE counts among the worst trials.

Pruned trials: hyperopt has no pruned state, and ``tpe.suggest`` reads no status at
all: it ranks every document by its ``loss`` alone (a document without one counts as
an infinite loss, the worst). A pruned trial is therefore told as what it reached: a
``STATUS_OK`` result with ``loss = -(its last reported BCA)``, plus ``"pruned": True``
and its ``"curve"`` (``[[step, BCA], ...]``) for the record (every told curve is kept
there; TPE reads neither). This is a pessimistic estimate of the configuration -- the
score it had when it was stopped, below what training on would have given -- so TPE
counts a trial pruned at a high score among its good trials and one pruned low among
the bad, without knowing it was cut short. (Telling it as a failure would put every
pruned configuration among the worst whatever it reached; hyperopt's ``suspended``
status means "may resume" and would change nothing for TPE.) A pruned trial whose last
value is not a finite number is a failure. No delegated pruning: hyperopt prunes
nothing itself.

Pending trials: an asked trial is a ``JOB_STATE_RUNNING`` document without a loss until
it is told, as ``fmin`` leaves the trials it has handed to workers. ``tpe.suggest``
counts it as a trial (towards ``n_startup_jobs`` too) with an infinite loss, the worst,
so TPE steers away from pending configurations; a random-start draw is seeded by its
own trial number. Tells may come in any order: each finishes its own document. With one
trial at a time there is never such a document when ``suggest`` runs.

Resuming: ``replay`` inserts the journalled trial as a finished document, exactly as
``ask`` + ``tell`` would have: replay is exact. ``state_dict`` is the list of trials
(configuration and outcome, none for a pending trial), restored by inserting them in
trial order: a suggestion depends on the set of documents, not on the order of the tells,
so a state saved with trials pending is restored exactly.
"""

from __future__ import annotations

import functools
import math
from typing import Any

from pydantic import Field

from serbench import hookimpl
from serbench.engines.base import Engine, Outcome
from serbench.spec import ChoiceParam, FloatParam, StrictModel
from serbench.engines.helpers import (
    choice_index,
    clamp_float,
    clamp_int,
    curve_to_json,
    history_entries,
    history_state,
    reached_value,
    trial_seed,
)


class HyperoptOptions(StrictModel):
    n_startup_jobs: int = Field(
        20, ge=0, le=10_000, description="Random trials before TPE (hyperopt's default: 20)."
    )


class HyperoptTPE(Engine):
    name = "hyperopt"
    library = "hyperopt"
    Options = HyperoptOptions
    supports_pending = True

    def __init__(self, space, seed, options=None):
        super().__init__(space, seed, options)
        self._domain = None
        self._trials = None
        self._docs: dict[int, dict[str, Any]] = {}
        self._history: dict[int, tuple[dict[str, Any], Outcome | None]] = {}

    # -- the engine contract -----------------------------------------------------------

    def ask(self, number: int) -> dict[str, Any]:
        if number in self._history and self._history[number][1] is None:
            return dict(self._history[number][0])
        from hyperopt import tpe

        domain, trials = self._state()
        suggest = functools.partial(tpe.suggest, n_startup_jobs=self.options.n_startup_jobs, verbose=False)
        (doc,) = suggest([number], domain, trials, trial_seed(self.seed, number))
        params = self._decode({key: vals[0] for key, vals in doc["misc"]["vals"].items()})
        self._insert(number, params, None)
        return dict(params)

    def tell(self, number: int, outcome: Outcome) -> None:
        if number not in self._docs or self._history[number][1] is not None:
            raise ValueError(f"engine hyperopt: trial {number} was not asked for, or was already told")
        self._finish(self._docs[number], outcome)
        self._history[number] = (self._history[number][0], outcome)
        self._trials.refresh()

    def replay(self, number: int, params: dict[str, Any], outcome: Outcome) -> None:
        self._insert(number, dict(params), outcome)

    def state_dict(self) -> dict[str, Any]:
        return history_state(self._history)

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._domain = self._trials = None
        self._docs, self._history = {}, {}
        for number, params, outcome in history_entries(state):
            self._insert(number, params, outcome)

    @property
    def trials(self):
        """The ``hyperopt.Trials`` (for inspection: document ``tid`` is serbench's trial
        number; choices are stored as value indices, losses as ``-BCA``)."""
        return self._state()[1]

    # -- hyperopt plumbing ---------------------------------------------------------------

    def _state(self):
        if self._trials is None:
            import logging

            from hyperopt import Domain, Trials

            logging.getLogger("hyperopt").setLevel(logging.WARNING)
            self._domain = Domain(_never_called, self._hyperopt_space())
            self._trials = Trials()
        return self._domain, self._trials

    def _hyperopt_space(self) -> dict[str, Any]:
        from hyperopt import hp

        space = {}
        for key, param in sorted(self.space.items()):
            if isinstance(param, ChoiceParam):
                space[key] = hp.choice(key, list(range(len(param.values))))
            elif isinstance(param, FloatParam):
                if param.log:
                    space[key] = hp.loguniform(key, math.log(param.low), math.log(param.high))
                else:
                    space[key] = hp.uniform(key, param.low, param.high)
            elif param.log:
                space[key] = hp.qloguniform(key, math.log(param.low - 0.5), math.log(param.high + 0.5), 1)
            else:
                space[key] = hp.quniform(key, param.low - 0.5, param.high + 0.5, 1)
        return space

    def _insert(self, number: int, params: dict[str, Any], outcome: Outcome | None) -> None:
        """Add trial ``number`` as a document built from ``params`` alone (never from
        the raw suggestion), so an asked and a replayed trial are the same document."""
        from hyperopt import JOB_STATE_RUNNING

        domain, trials = self._state()
        misc = {
            "tid": number,
            "cmd": domain.cmd,
            "workdir": domain.workdir,
            "idxs": {key: [number] for key in self.space},
            "vals": {key: [self._encode(key, value)] for key, value in params.items()},
        }
        (doc,) = trials.new_trial_docs([number], [None], [domain.new_result()], [misc])
        doc["state"] = JOB_STATE_RUNNING
        if outcome is not None:
            self._finish(doc, outcome)
        trials.insert_trial_docs([doc])
        trials.refresh()
        # insert_trial_docs stores a copy: keep the stored one, which tell() updates
        self._docs[number] = next(d for d in trials.trials if d["tid"] == number)
        self._history[number] = (params, outcome)

    @staticmethod
    def _finish(doc: dict[str, Any], outcome: Outcome) -> None:
        from hyperopt import JOB_STATE_DONE, STATUS_FAIL, STATUS_OK

        value = reached_value(outcome)
        if value is None:
            result = {"status": STATUS_FAIL, "failure": outcome.reason or f"score {outcome.value!r}"}
        else:
            result = {"status": STATUS_OK, "loss": -value}
        if outcome.status == "pruned":
            result["pruned"] = True
        if outcome.curve:
            result["curve"] = curve_to_json(outcome.curve)
        doc["result"] = result
        doc["state"] = JOB_STATE_DONE

    def _encode(self, key: str, value: Any) -> float | int:
        param = self.space[key]
        if isinstance(param, ChoiceParam):
            return choice_index(param, value)
        return float(value)

    def _decode(self, vals: dict[str, Any]) -> dict[str, Any]:
        params: dict[str, Any] = {}
        for key, param in self.space.items():
            if isinstance(param, ChoiceParam):
                params[key] = param.values[int(vals[key])]
            elif isinstance(param, FloatParam):
                params[key] = clamp_float(param, vals[key])
            else:
                params[key] = clamp_int(param, vals[key])
        return params


def _never_called(params: Any) -> float:
    raise RuntimeError("serbench drives hyperopt through ask/tell; Domain.fn is not used")


@hookimpl
def serbench_engines():
    return [HyperoptTPE]
