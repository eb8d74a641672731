"""Ax: Sobol initialisation, then Gaussian-process Bayesian optimisation.

Drives Ax's ``Client`` API (``ax.Client``): ``configure_experiment`` with one parameter
per search-space entry, ``configure_optimization`` maximising ``bca``, and a generation
strategy of ``initial_trials`` scrambled-Sobol trials followed by Ax's default
model-based node (``MBM``: a GP with Ax's default acquisition function). Ax's newer
default of evaluating the centre of the space first is switched off, so the first
``initial_trials`` trials are all Sobol, as in the paper's Ax setup. Failed Sobol trials
do not count: Ax draws Sobol trials until ``initial_trials`` of them have not failed.

Seeding: ``Client(random_seed=seed)`` (Ax re-seeds torch/numpy around every
generation call) and the Sobol sequence's own seed are the job seed, so a run is a
deterministic function of the seed and the scores it is told.

Search space: floats and ints become range parameters (``scaling="log"`` where
``log: true``); a choice becomes an Ax choice parameter over its value indices, ordered
(by value) when every value is a number, unordered otherwise. A choice with a single
value is not shown to Ax. Values come back as ``float``/``int``/the exact choice value.

Trials: serbench's trial numbers map to Ax trial indices. A failure (or a score that is
not a finite number) is ``mark_trial_failed``; a score is ``complete_trial`` with
``{"bca": value}``.

Pending trials: each ``ask`` is ``get_next_trials(max_trials=1)``, and the trials asked
and not yet told are ``RUNNING`` Ax trials, which Ax passes to its generator as pending
observations: the GP models them (fantasies) and the Sobol sequence moves past them.
Tells may come in any order. Once all ``initial_trials`` Sobol trials have been asked,
Ax needs data before its GP can take over: it raises ``DataRequiredError`` until
``max(1, initial_trials // 2)`` of them have scores (Ax's default; a failed one is
replaced by another Sobol trial), and ``ask`` then raises ``NotReady`` (nothing is
generated), so the loop tells it a result and asks again. With one trial at a time that
never happens: each Sobol trial is told before the next ask.

Resuming: ``replay`` regenerates the trial (Sobol, or a GP fit: a few seconds each)
and, when Ax proposes the journalled configuration -- as it does on the same seed,
scores and Ax version -- completes it: replay is then exact. Otherwise the regenerated
trial is abandoned and the journalled one attached (``attach_trial``), and later
suggestions may differ from the uninterrupted run. ``state_dict`` is the list of trials
(configuration and outcome, none while pending) and the order of the asks and tells
(``events``); ``load_state_dict`` regenerates and tells them in that order, so a state
saved with trials pending, told in any order, is restored as exactly as replay is (a
state without ``events`` is replayed in trial order). (Ax's own JSON snapshot is not
used: a restored client fits its first GP from scratch where the running one warm-starts
from its previous fit, so the GP's suggestions would drift.)
"""

from __future__ import annotations

import warnings
from contextlib import contextmanager
from typing import Any

from pydantic import Field

from serbench import hookimpl
from serbench.engines.base import Engine, NotReady, Outcome
from serbench.errors import SpecError
from serbench.spec import ChoiceParam, FloatParam, StrictModel
from serbench.engines.helpers import (
    history_entries,
    history_state,
    choice_index,
    clamp_float,
    clamp_int,
    finite_value,
    same_config,
)

OBJECTIVE = "bca"


class AxOptions(StrictModel):
    initial_trials: int = Field(
        5, ge=1, le=10_000, description="Sobol trials before Gaussian-process BO takes over."
    )


class AxEngine(Engine):
    name = "ax"
    library = "ax-platform"
    Options = AxOptions
    supports_pending = True

    def __init__(self, space, seed, options=None):
        super().__init__(space, seed, options)
        self._fixed = {
            key: param.values[0]
            for key, param in self.space.items()
            if isinstance(param, ChoiceParam) and len(param.values) == 1
        }
        if len(self._fixed) == len(self.space):
            raise SpecError("engine ax: every search_space entry has a single value; nothing to search")
        self._client = None
        self._index: dict[int, int] = {}  # serbench trial number -> Ax trial index
        self._pending: dict[int, dict[str, Any]] = {}
        self._history: dict[int, tuple[dict[str, Any], Outcome | None]] = {}
        self._events: list[tuple[str, int]] = []  # ("ask" | "tell", number), in order

    # -- the engine contract -----------------------------------------------------------

    def ask(self, number: int) -> dict[str, Any]:
        if number in self._pending:
            return dict(self._pending[number])
        from ax.exceptions.core import DataRequiredError

        client = self._get_client()
        try:
            with _quiet():
                trials = client.get_next_trials(max_trials=1)
        except DataRequiredError as exc:
            raise NotReady(f"engine ax: trial {number} needs a told trial first ({exc})") from None
        if not trials:
            raise NotReady(f"engine ax: Ax generated no trial for trial {number}; tell it a result first")
        ((index, raw),) = trials.items()
        params = self._decode(raw)
        self._index[number] = index
        self._pending[number] = params
        self._history[number] = (params, None)
        self._events.append(("ask", number))
        return dict(params)

    def tell(self, number: int, outcome: Outcome) -> None:
        if number not in self._pending:
            raise ValueError(f"engine ax: trial {number} was not asked for, or was already told")
        index = self._index[number]
        value = finite_value(outcome)
        with _quiet():
            if value is None:
                reason = outcome.reason or f"non-finite score {outcome.value!r}"
                self._get_client().mark_trial_failed(index, failed_reason=reason)
            else:
                self._get_client().complete_trial(index, raw_data={OBJECTIVE: value})
        self._history[number] = (self._pending.pop(number), outcome)
        self._events.append(("tell", number))

    def replay(self, number: int, params: dict[str, Any], outcome: Outcome) -> None:
        self._regenerate(number, params)
        self.tell(number, outcome)

    def state_dict(self) -> dict[str, Any]:
        return {**history_state(self._history), "events": [[kind, number] for kind, number in self._events]}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._client, self._index, self._pending, self._history, self._events = None, {}, {}, {}, []
        trials = {number: (params, outcome) for number, params, outcome in history_entries(state)}
        if "events" in state:
            events = [(str(kind), int(number)) for kind, number in state["events"]]
        else:  # a state without them: each trial asked, then told if it was
            events = []
            for number, (_, outcome) in sorted(trials.items()):
                events += [("ask", number)] if outcome is None else [("ask", number), ("tell", number)]
        for kind, number in events:
            params, outcome = trials[number]
            if kind == "ask":
                self._regenerate(number, params)
            else:
                self.tell(number, outcome)

    def summary(self):
        """Ax's ``Client.summarize()`` (a pandas DataFrame: one row per Ax trial, with
        ``trial_status``, ``generation_node`` -- ``Sobol`` or ``MBM``, the GP -- ``bca``
        and the parameters as Ax sees them), plus a ``number`` column: the serbench trial
        number of each row (missing for an abandoned trial)."""
        with _quiet():
            summary = self._get_client().summarize()
        numbers = {index: number for number, index in self._index.items()}
        summary["number"] = summary["trial_index"].map(numbers)
        return summary

    # -- Ax plumbing ---------------------------------------------------------------------

    def _regenerate(self, number: int, params: dict[str, Any]) -> None:
        """Ask for trial ``number`` again and make ``params`` its configuration: Ax's own
        suggestion when it is ``params`` (the exact path), else an attached trial."""
        proposed = self.ask(number)
        if not same_config(proposed, params):
            client = self._get_client()
            with _quiet():
                client.mark_trial_abandoned(self._index[number])
                self._index[number] = client.attach_trial(self._encode(params))
            self._pending[number] = dict(params)
            self._history[number] = (dict(params), None)

    def _get_client(self):
        if self._client is None:
            self._client = self._new_client()
        return self._client

    def _new_client(self):
        with _quiet():  # Ax logs INFO lines while it is imported
            from ax import ChoiceParameterConfig, Client, RangeParameterConfig

        parameters = []
        for key, param in sorted(self.space.items()):
            if key in self._fixed:
                continue
            if isinstance(param, ChoiceParam):
                parameters.append(
                    ChoiceParameterConfig(
                        name=key,
                        values=list(range(len(param.values))),
                        parameter_type="int",
                        is_ordered=_numeric(param),
                    )
                )
            else:
                parameters.append(
                    RangeParameterConfig(
                        name=key,
                        bounds=(param.low, param.high),
                        parameter_type="float" if isinstance(param, FloatParam) else "int",
                        scaling="log" if param.log else "linear",
                    )
                )
        with _quiet():
            client = Client(random_seed=self.seed)
            client.configure_experiment(parameters=parameters, name="serbench")
            client.configure_optimization(objective=OBJECTIVE)
            client.configure_generation_strategy(
                initialization_budget=self.options.initial_trials,
                initialization_random_seed=self.seed,
                initialize_with_center=False,
            )
        return client

    def _decode(self, raw: dict[str, Any]) -> dict[str, Any]:
        params: dict[str, Any] = {}
        for key, param in self.space.items():
            if key in self._fixed:
                params[key] = self._fixed[key]
            elif isinstance(param, ChoiceParam):
                params[key] = param.values[_choice_order(param)[int(raw[key])]]
            elif isinstance(param, FloatParam):
                params[key] = clamp_float(param, raw[key])
            else:
                params[key] = clamp_int(param, raw[key])
        return params

    def _encode(self, params: dict[str, Any]) -> dict[str, Any]:
        raw: dict[str, Any] = {}
        for key, param in self.space.items():
            if key in self._fixed:
                continue
            if isinstance(param, ChoiceParam):
                raw[key] = _choice_order(param).index(choice_index(param, params[key]))
            elif isinstance(param, FloatParam):
                raw[key] = float(params[key])
            else:
                raw[key] = int(params[key])
        return raw


def _numeric(param: ChoiceParam) -> bool:
    return all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in param.values)


def _choice_order(param: ChoiceParam) -> list[int]:
    """Ax's value ``j`` of a choice stands for ``param.values[order[j]]``: for numbers,
    ``order`` sorts them, so Ax's ordered choice follows the values' order."""
    indices = list(range(len(param.values)))
    return sorted(indices, key=lambda i: param.values[i]) if _numeric(param) else indices


@contextmanager
def _quiet():
    """Keep Ax's logs (INFO lines, and warnings such as "outcome is constant" early in a
    study) and the Python warnings raised in Ax and BoTorch code (optimiser restarts,
    pandas deprecations) off the console: a study prints its own progress. Errors still
    show."""
    import logging

    previous = logging.root.manager.disable
    logging.disable(logging.WARNING)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", module=r"(ax|botorch|gpytorch|linear_operator)(\.|$)")
            yield
    finally:
        logging.disable(previous)


@hookimpl
def serbench_engines():
    return [AxEngine]
