"""The search over one fold: ask, run, tell, journal -- until the budget is spent.

A trial's outcome comes from ``run_trial(number, params)``, which returns the fields of
a ``TrialRecord`` other than its identity and timing. Exceptions inside it become failed
trials (told to the engine as failures, never as zeros); ``UserError`` and
``KeyboardInterrupt`` end the study, with every finished trial already in the journal.

Resuming: the fold's journalled trials are replayed to a fresh engine in order, and the
search goes on from the next trial number. The clock continues from the last journalled
trial, so times to thresholds stay comparable (time lost in a trial cut short is not
counted).

Pending trials: this loop runs one trial at a time (ask, run, tell), so nothing is
pending when it asks. An engine may raise ``NotReady`` ("tell me a result first") only
while trials are pending: a loop running several would tell it the next one to finish
and ask again. Here it can only be a broken engine, and the study stops with a
``PluginError`` saying so (every finished trial is already in the journal).

In flight: with an ``inflight`` marker (:mod:`serbench.results.inflight`), each trial is marked
before it runs and unmarked once it is journalled (or the study stops), so a marker left
behind names the trial a dead process was running.
"""

from __future__ import annotations

import time
from typing import Any, Callable

from serbench.engines.base import Engine, NotReady, Outcome, SearchExhausted
from serbench.errors import PluginError, UserError
from serbench.results.inflight import InflightMarker
from serbench.results.schema import TrialRecord
from serbench.results.journal import TrialJournal
from serbench.spec import Budget

RunTrial = Callable[[int, dict[str, Any]], dict[str, Any]]


def outcome_of(record: TrialRecord) -> Outcome:
    return Outcome.ok(record.value) if record.status == "ok" else Outcome.failed(record.reason or "error")


class FoldSearch:
    def __init__(
        self,
        fold: int,
        engine: Engine,
        budget: Budget,
        run_trial: RunTrial,
        journal: TrialJournal,
        on_done: Callable[[TrialRecord], None] = lambda record: None,
        inflight: InflightMarker | None = None,
    ):
        self.fold = fold
        self.engine = engine
        self.budget = budget
        self.run_trial = run_trial
        self.journal = journal
        self.on_done = on_done
        self.inflight = inflight

    def run(self, done: list[TrialRecord] = ()) -> tuple[list[TrialRecord], str]:
        """All trials of the fold (``done`` first) and what stopped the search."""
        trials = self._replay(list(done))
        offset = trials[-1].cumulative_s if trials else 0.0
        start = time.perf_counter()
        deadline = None if self.budget.wall_minutes is None else self.budget.wall_minutes * 60
        for number in range(len(trials), self.budget.trials):
            if deadline is not None and offset + time.perf_counter() - start >= deadline:
                return trials, "wall_minutes"
            try:
                params = self.engine.ask(number)
            except SearchExhausted:
                return trials, "exhausted"
            except NotReady as exc:  # nothing is pending here: the engine breaks its contract
                detail = " ".join(str(exc).split())
                raise PluginError(
                    f"engine {self.engine.name!r} raised NotReady for trial {number} with no trial pending "
                    f"(an engine may ask to be told a result first only while trials are in flight): {detail}"
                ) from None
            began = time.perf_counter()
            if self.inflight is not None:
                self.inflight.start(self.fold, number, params, offset + began - start)
            try:
                record = self._run_trial(number, params, began, offset, start)
            finally:  # journalled, or the study stops: only a killed process leaves the marker
                if self.inflight is not None:
                    self.inflight.clear()
            self.engine.tell(number, outcome_of(record))
            trials.append(record)
            self.on_done(record)
        return trials, "trials"

    def _run_trial(self, number: int, params: dict[str, Any], began: float, offset: float, start: float) -> TrialRecord:
        """Run one trial and journal it (the fold's search time is ``offset`` plus the time
        since ``start``)."""
        try:
            fields = self.run_trial(number, params)
        except (UserError, KeyboardInterrupt):
            raise
        except MemoryError:
            fields = {"status": "failed", "reason": "oom", "error": "MemoryError"}
        except Exception as exc:  # a crashing trial must not end the study
            fields = {"status": "failed", "reason": "error", "error": f"{exc.__class__.__name__}: {exc}"}
        ended = time.perf_counter()
        record = TrialRecord(
            fold=self.fold,
            number=number,
            params=params,
            duration_s=ended - began,
            cumulative_s=offset + ended - start,
            **fields,
        )
        self.journal.append(record)
        return record

    def _replay(self, done: list[TrialRecord]) -> list[TrialRecord]:
        numbers = [r.number for r in done]
        if numbers != list(range(len(done))):
            raise UserError(f"trials.jsonl: fold {self.fold} has trials {numbers}, expected 0..{len(done) - 1}")
        for record in done[: self.budget.trials]:
            self.engine.replay(record.number, record.params, outcome_of(record))
        return done[: self.budget.trials]
