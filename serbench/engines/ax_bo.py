"""Ax: Sobol initialisation, then Gaussian-process Bayesian optimisation.

Drives Ax's ``Client`` API (``ax.Client``): ``configure_experiment`` with one parameter
per search-space entry, ``configure_optimization`` maximising ``bca``, and a generation
strategy of ``initial_trials`` scrambled-Sobol trials followed by Ax's default
model-based node (``MBM``: a GP with Ax's default acquisition function). Ax's newer
default of evaluating the centre of the space first is switched off, so the first
``initial_trials`` trials are all Sobol, as in the paper's Ax setup. Failed Sobol trials
do not count (early-stopped ones do): Ax draws Sobol trials until ``initial_trials`` of
them have not failed.

Seeding: ``Client(random_seed=seed)`` (Ax re-seeds torch/numpy around every
generation call) and the Sobol sequence's own seed are the job seed, so a run is a
deterministic function of the seed and the scores it is told.

Search space: floats and ints become range parameters (``scaling="log"`` where
``log: true``); a choice becomes an Ax choice parameter over its value indices, ordered
(by value) when every value is a number, unordered otherwise. A choice with a single
value is not shown to Ax. Values come back as ``float``/``int``/the exact choice value.

Trials: serbench's trial numbers map to Ax trial indices. A score is ``complete_trial``
with ``{"bca": value}``; a failure (or a score that is not a finite number) is
``mark_trial_failed``; a pruned trial gets its last value attached
(``attach_data``) and is ``mark_trial_early_stopped`` (``mark_trial_failed`` if it has
no finite value: Ax early-stops only trials with data). With Ax's own early stopping
(``pruner.by: engine``) a trial's curve is attached point by point as it reports
(``attach_data(index, {"bca": value}, progression=step)``: Ax's map data; a point
attached again at a step replaces the earlier one; points that are not finite numbers
are left out) and a score is completed at the curve's last step, whose point it
replaces. Curves are attached only then: Ax's GP would otherwise take the step as an
input (below) in every study whose trials train different numbers of epochs, and a
study without Ax's early stopping models exactly what it modelled before curves existed.

What Ax does with an early-stopped trial (Ax 1.3, checked on its GP's training data):
the model-based node fits each trial's latest point (``DataLoaderConfig``'s defaults:
one row per trial, from ``RUNNING``, ``COMPLETED`` and ``EARLY_STOPPED`` trials), so an
early-stopped trial is an observation: its last value (at the step it reached, with
Ax's early stopping). Once the latest points lie at more than one step, Ax's ``MapKeyToFloat`` transform makes
the step an input of the GP (scaled over the steps seen) and generates candidates at
the highest step: a value reached when the trial was stopped is modelled as an early
one, not as a final score. Finished trials that end at different steps (``epochs`` in
the space) get the step input too; a finished trial is modelled by its score, since
that replaces its last point. Without curves (no Ax early stopping) a pruned trial is a
plain observation of the score it reached: a pessimistic one. Failed trials are left out; a running trial that has
reported points (delegated pruning) is modelled by its latest point, not as pending.
Ax moves from Sobol to its GP once ``max(1, initial_trials // 2)`` trials have data;
it counts only completed trials there, which would leave a run whose Sobol trials were
mostly pruned waiting forever with nothing running, so this engine counts
early-stopped trials too (the GP fits their data anyway).

Pruning by Ax (``pruner.by: engine``): ``median`` is Ax's
``PercentileEarlyStoppingStrategy(percentile_threshold=50, min_curves=n_startup_trials,
min_progression=n_warmup_steps, interval=interval_steps)`` (no interval for 1) set on
the client; ``report`` attaches the point and returns ``should_stop_trial_early``.
Serbench's option names and defaults apply; where it differs from optuna's median
rule: Ax stops a trial whose value at its latest step (not its best so far) is below
the median of every trial with data at that step -- running, early-stopped and failed
ones too, interpolated between their reported steps, the trial itself included -- and
it waits for ``min_curves`` completed trials and for ``min_curves`` trials with data at
that step. Ax has no ``n_min_trials`` (only 1, the default, is accepted), and no
asynchronous successive halving, so ``successive-halving`` and ``hyperband`` are not
offered.

Pending trials: each ``ask`` is ``get_next_trials(max_trials=1)``, and the trials asked
and not yet told are ``RUNNING`` Ax trials, which Ax passes to its generator as pending
observations: the GP models them (fantasies) and the Sobol sequence moves past them.
Tells may come in any order. Once all ``initial_trials`` Sobol trials have been asked,
Ax needs data before its GP can take over: it raises ``DataRequiredError`` until
``max(1, initial_trials // 2)`` of them are completed or early-stopped (a failed one is
replaced by another Sobol trial), and ``ask`` then raises ``NotReady`` (nothing is
generated), so the loop tells it a result and asks again. With one trial at a time that
never happens: each Sobol trial is told before the next ask.

Resuming: ``replay`` regenerates the trial (Sobol, or a GP fit: a few seconds each)
and, when Ax proposes the journalled configuration -- as it does on the same seed,
scores and Ax version -- tells it: replay is then exact. Otherwise the regenerated
trial is abandoned and the journalled one attached (``attach_trial``), and later
suggestions may differ from the uninterrupted run. ``state_dict`` is the list of trials
(configuration and outcome with its curve, none while pending) and the order of the
asks, reports (delegated pruning) and tells (``events``); ``load_state_dict`` regenerates,
reports and tells them in that order, so a state saved with trials pending, reporting
and told in any order, is restored as exactly as replay is (a state without ``events``
is replayed in trial order). A replayed trial's curve is attached when it is told, as
a told trial's is; with a delegated pruner, replay is exact for a run that had one trial
at a time. (Ax's own JSON snapshot is not used: a restored client fits its first GP
from scratch where the running one warm-starts from its previous fit, so the GP's
suggestions would drift.)
"""

from __future__ import annotations

import math
import warnings
from contextlib import contextmanager
from typing import Any

from pydantic import Field

from serbench import hookimpl
from serbench.engines.base import Engine, NotReady, Outcome
from serbench.errors import SpecError
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
    same_config,
    unrecorded,
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
    prunes_with = ("median",)

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
        self._reported: dict[int, dict[int, float]] = {}  # pending number -> its attached points
        self._events: list[list[Any]] = []  # ["ask" | "tell", number] or ["report", number, step, value], in order
        self._stopping: dict[str, Any] | None = None  # delegated: PercentileEarlyStoppingStrategy's arguments

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
        self._reported[number] = {}
        self._events.append(["ask", number])
        return dict(params)

    def tell(self, number: int, outcome: Outcome) -> None:
        if number not in self._pending:
            raise ValueError(f"engine ax: trial {number} was not asked for, or was already told")
        delegated = self._stopping is not None
        if delegated:  # Ax's strategy reads curves; otherwise they would make the step a GP input
            for step, point in unrecorded(outcome.curve, self._reported[number]):
                self._record(number, step, point)
        index, steps = self._index[number], self._reported.pop(number)
        value = finite_value(outcome)
        last = outcome.value if outcome.value is not None and math.isfinite(outcome.value) else None
        client = self._get_client()
        with _quiet():
            if outcome.status == "pruned" and (steps or last is not None):
                if not steps:
                    client.attach_data(index, raw_data={OBJECTIVE: float(last)})
                client.mark_trial_early_stopped(index)
            elif value is None:
                reason = outcome.reason or f"{outcome.status} with no finite score ({outcome.value!r})"
                client.mark_trial_failed(index, failed_reason=reason)
            else:  # the score replaces the curve's last point: the GP models a trial's latest point
                client.complete_trial(index, raw_data={OBJECTIVE: value}, progression=max(steps, default=None))
        self._history[number] = (self._pending.pop(number), outcome)
        self._events.append(["tell", number])

    def delegate_pruning(self, name: str, options: dict[str, Any], max_step: int) -> str:
        arguments = pruner_options(self.name, self.prunes_with, name, options)
        if arguments["n_min_trials"] != 1:
            raise ValueError(
                "engine ax: pruner median: Ax has no n_min_trials (its rule waits for min_curves trials "
                "with data at the step)"
            )
        if min(arguments.values()) < 0 or arguments["interval_steps"] < 1:
            raise ValueError(f"engine ax: pruner median: options must be at least 0 (interval_steps 1): {arguments}")
        stopping = {
            "percentile_threshold": 50.0,
            "min_curves": arguments["n_startup_trials"],
            "min_progression": arguments["n_warmup_steps"],
            "interval": arguments["interval_steps"] if arguments["interval_steps"] > 1 else None,
        }
        self._stopping = stopping
        if self._client is not None:
            self._client.set_early_stopping_strategy(_percentile_strategy(stopping))
        return call_text("ax.early_stopping.strategies.PercentileEarlyStoppingStrategy", stopping)

    def report(self, number: int, step: int, value: float) -> bool:
        if not reportable(self.name, self._stopping is not None, self._pending, number, value):
            return False
        self._events.append(["report", number, int(step), float(value)])
        self._record(number, step, value)
        return self._should_stop(number)

    def replay(self, number: int, params: dict[str, Any], outcome: Outcome) -> None:
        self._regenerate(number, params)
        self.tell(number, outcome)

    def state_dict(self) -> dict[str, Any]:
        return {**history_state(self._history), "events": [list(event) for event in self._events]}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._client, self._index, self._pending, self._history, self._reported = None, {}, {}, {}, {}
        self._events = []
        trials = {number: (params, outcome) for number, params, outcome in history_entries(state)}
        if "events" in state:
            events = [[str(event[0]), int(event[1]), *event[2:]] for event in state["events"]]
        else:  # a state without them: each trial asked, then told if it was
            events = []
            for number, (_, outcome) in sorted(trials.items()):
                events += [["ask", number]] if outcome is None else [["ask", number], ["tell", number]]
        for kind, number, *point in events:
            params, outcome = trials[number]
            if kind == "ask":
                self._regenerate(number, params)
            elif kind == "report":
                self._events.append(["report", number, *point])
                self._record(number, int(point[0]), float(point[1]))
                if self._stopping is not None:  # (the strategy notes when it last checked a trial)
                    self._should_stop(number)
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

    def _record(self, number: int, step: int, value: float) -> None:
        """Attach a point of pending trial ``number``'s curve: ``bca`` at progression
        ``step`` (a point attached again at a step replaces the earlier one)."""
        with _quiet():
            self._get_client().attach_data(self._index[number], raw_data={OBJECTIVE: value}, progression=step)
        self._reported[number][step] = value

    def _should_stop(self, number: int) -> bool:
        with _quiet():
            return bool(self._get_client().should_stop_trial_early(self._index[number]))

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
            _early_stopped_trials_are_observed(client)
            if self._stopping is not None:
                client.set_early_stopping_strategy(_percentile_strategy(self._stopping))
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


def _early_stopped_trials_are_observed(client) -> None:
    """Let the GP take over once enough Sobol trials have data, early-stopped ones
    included. Ax counts only completed trials there, so a run whose Sobol trials were
    mostly pruned would wait for data forever with nothing running; its GP fits
    early-stopped trials' data anyway."""
    from ax.core.trial_status import TrialStatus

    for node in client._generation_strategy.nodes_by_name.values():
        for criterion in node.transition_criteria:
            if getattr(criterion, "only_in_statuses", None) == [TrialStatus.COMPLETED]:
                criterion.only_in_statuses = [TrialStatus.COMPLETED, TrialStatus.EARLY_STOPPED]


def _percentile_strategy(arguments: dict[str, Any]):
    from ax.early_stopping.strategies import PercentileEarlyStoppingStrategy

    return PercentileEarlyStoppingStrategy(**arguments)


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
