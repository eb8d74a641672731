"""The search over one fold, as a state machine the scheduler (:mod:`.scheduler`)
drives: ``ask()`` for the next trial to run, ``finished_trial()`` / ``lost_trial()``
when one comes back -- until the budget is spent.

- **Asking.** ``ask()`` returns the next :class:`Ask` (number and configuration), or
  None when the search cannot start a trial now: the engine said ``NotReady`` while
  trials are pending (it is asked again after the next tell), every trial of
  ``budget.trials`` has been asked, the fold's ``budget.wall_minutes`` have passed (no
  trial starts after them), or the engine is exhausted. Trial numbers go up one at a
  time; each ask records ``asked_after``, the tells the engine had received.
- **Telling.** A finished trial is journalled (the driver is the journal's only
  writer, in the order trials come back) and told to the engine, in any order. A
  failure (an exception in the trial, out of memory) is told as a failure, never as a
  score of 0. ``NotReady`` with nothing pending breaks the engine contract: the study
  stops with a ``PluginError`` (every finished trial is already in the journal).
- **Lost trials.** A trial whose slot's process or node died is run again once with
  the same number and configuration; lost a second time, it is journalled as failed
  with reason ``lost`` (``oom`` when the backend knew memory was the cause, and then it
  is not run again).
- **Pruning.** A pending trial's validation reports come to :meth:`FoldSearch.report`
  (through the pool's messages to the driver), which asks the fold's pruning
  (:mod:`.pruning`) whether to stop it; a report of a trial that is no longer pending is
  answered "stop". Every journalled trial is then ``finished`` to the pruning, and the
  engine is told its outcome with its curve (pruned: ``Outcome.pruned``).
- **Epoch budget** (``budget.epochs``): no trial is asked while the epochs trained by
  journalled trials plus the epochs planned by pending ones reach it; with trials
  pending the search waits for them (a pruned one gives epochs back), with none it
  stops (``stopped_by: epochs``).
- **In flight.** Each trial is in the ``inflight`` marker
  (:mod:`serbench.results.inflight`) from its ask to its journal record.
- **Resuming** (:meth:`FoldSearch.resume`): the fold's journal is replayed to the fresh
  engine in its ask/tell interleaving (:mod:`.replay`) and to the fresh pruning in
  journal order; trials asked and never
  journalled before a later-numbered one was are pending again and run first. The
  fold's clock continues from its last journalled trial, so times to thresholds stay
  comparable (time lost in trials cut short is not counted).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable

from serbench.engines.base import Engine, NotReady, SearchExhausted
from serbench.errors import PluginError
from serbench.results.inflight import InflightMarker
from serbench.results.journal import TrialJournal
from serbench.results.schema import TrialRecord
from serbench.spec import Budget
from serbench.study.pruning import FoldPruning
from serbench.study.replay import outcome_of, replay_fold

RERUNS = 1  # a lost trial runs again this many times before it is journalled as lost


@dataclass
class Ask:
    """A trial the search wants run: ``number`` and the engine's ``params``."""

    fold: int
    number: int
    params: dict[str, Any]
    asked_after: int
    reruns: int = 0
    submitted: float = field(default=0.0)  # time.time() when handed to the pool


@dataclass(frozen=True)
class Ran:
    """Where and when a trial ran on its slot (``time.time()`` seconds)."""

    started: float | None = None
    ended: float | None = None
    node: str | None = None
    slot: int | None = None


def failure_fields(exc: BaseException) -> dict[str, Any]:
    """A trial's record fields for an exception it raised (``MemoryError``: ``oom``)."""
    if isinstance(exc, MemoryError):
        return {"status": "failed", "reason": "oom", "error": f"{exc.__class__.__name__}: {exc}".rstrip(": ")}
    return {"status": "failed", "reason": "error", "error": f"{exc.__class__.__name__}: {exc}"}


class FoldSearch:
    def __init__(
        self,
        fold: int,
        engine: Engine,
        budget: Budget,
        journal: TrialJournal,
        on_done: Callable[[TrialRecord], None] = lambda record: None,
        inflight: InflightMarker | None = None,
        pruning: FoldPruning | None = None,
        planned_epochs: Callable[[dict[str, Any]], int] = lambda params: 0,
    ):
        """``pruning``: None, no trial is stopped; ``planned_epochs(params)``: the epochs a
        configuration trains in full (for ``budget.epochs``)."""
        self.fold = fold
        self.engine = engine
        self.budget = budget
        self.journal = journal
        self.on_done = on_done
        self.inflight = inflight
        self.pruning = pruning
        self.planned_epochs = planned_epochs
        self.trials: list[TrialRecord] = []  # journal order: the order they came back
        self.pending: dict[int, Ask] = {}  # asked, not yet journalled
        self.reruns: list[Ask] = []  # pending trials to (re)submit before asking anything new
        self.next_number = 0
        self.tells = 0
        self.stopped_by: str | None = None
        self._offset = 0.0  # search seconds before this process (resumed)
        self._start: float | None = None  # time.perf_counter() of this process's first ask

    # -- resuming -------------------------------------------------------------------------

    def resume(self, done: list[TrialRecord], inflight: list[dict[str, Any]] = ()) -> None:
        """Replay the fold's journalled trials ``done`` (journal order) and the trials
        that were in flight (``inflight.json`` entries of this fold) to the fresh engine."""
        replayed = replay_fold(self.fold, self.engine, done, inflight, self.budget.trials)
        self.trials = replayed.trials
        if self.pruning is not None:
            self.pruning.replay(self.trials)
        self.tells = len(self.trials)
        self.next_number = replayed.next_number
        for number, (params, asked_after) in sorted(replayed.pending.items()):
            ask = Ask(self.fold, number, params, asked_after)
            self.pending[number] = ask
            self.reruns.append(ask)
        self._offset = max((r.cumulative_s for r in self.trials), default=0.0)

    # -- the clock ------------------------------------------------------------------------

    def elapsed(self) -> float:
        """Seconds of this fold's search so far (resumed time included)."""
        if self._start is None:
            return self._offset
        return self._offset + time.perf_counter() - self._start

    # -- asking ---------------------------------------------------------------------------

    def ask(self) -> Ask | None:
        """The next trial to submit, or None when none can start now (see the module
        docstring); the trial is pending (and in the in-flight marker) from here."""
        if self._start is None:
            self._start = time.perf_counter()
        if self.reruns:
            ask = self.reruns.pop(0)
            self._mark(ask)
            return ask
        if self.stopped_by is not None or self.next_number >= self.budget.trials:
            return None
        deadline = None if self.budget.wall_minutes is None else self.budget.wall_minutes * 60
        if deadline is not None and self.elapsed() >= deadline:
            self.stopped_by = "wall_minutes"
            return None
        if self.budget.epochs is not None and self.epochs_committed() >= self.budget.epochs:
            if not self.pending:
                self.stopped_by = "epochs"
            return None
        number = self.next_number
        try:
            params = self.engine.ask(number)
        except SearchExhausted:
            self.stopped_by = "exhausted"
            return None
        except NotReady as exc:
            if self.pending:
                return None  # asked again once a pending trial is told
            detail = " ".join(str(exc).split())
            raise PluginError(
                f"engine {self.engine.name!r} raised NotReady for trial {number} with no trial pending "
                f"(an engine may ask to be told a result first only while trials are in flight): {detail}"
            ) from None
        ask = Ask(self.fold, number, params, self.tells)
        self.next_number += 1
        self.pending[number] = ask
        self._mark(ask)
        return ask

    def _mark(self, ask: Ask) -> None:
        if self.inflight is not None:
            self.inflight.start(self.fold, ask.number, ask.params, self.elapsed(), ask.asked_after)

    def epochs_spent(self) -> int:
        """Epochs trained by the journalled trials."""
        return sum(r.epochs_trained or 0 for r in self.trials)

    def epochs_committed(self) -> int:
        """Epochs spent, plus the epochs the pending trials plan to train."""
        return self.epochs_spent() + sum(self.planned_epochs(ask.params) for ask in self.pending.values())

    @property
    def finished(self) -> bool:
        """Nothing pending and nothing more to ask."""
        if self.pending or self.reruns:
            return False
        return self.stopped_by is not None or self.next_number >= self.budget.trials

    @property
    def stop_reason(self) -> str:
        """What ended the search: ``trials``, ``wall_minutes``, ``exhausted`` or ``epochs``."""
        return self.stopped_by or "trials"

    # -- pruning --------------------------------------------------------------------------

    def report(self, number: int, step: int, value: float) -> bool:
        """Pending trial ``number`` scored ``value`` after ``step`` epochs: stop it now?"""
        if number not in self.pending:
            return True
        return self.pruning is not None and self.pruning.report(number, step, value)

    # -- telling --------------------------------------------------------------------------

    def finished_trial(self, number: int, fields: dict[str, Any], ran: Ran) -> TrialRecord:
        """Journal trial ``number`` with the record ``fields`` it produced (status, value,
        ...) and where and when it ran; tell the engine; return its record."""
        ask = self.pending.pop(number)
        now = time.time()
        duration = (ran.ended - ran.started) if ran.started is not None and ran.ended is not None else 0.0
        record = TrialRecord(
            fold=self.fold,
            number=number,
            params=ask.params,
            duration_s=max(0.0, duration),
            cumulative_s=self.elapsed(),
            asked_after=ask.asked_after,
            node=ran.node,
            slot=ran.slot,
            queued_s=None if ran.started is None or not ask.submitted else max(0.0, ran.started - ask.submitted),
            returned_s=None if ran.ended is None else max(0.0, now - ran.ended),
            reruns=ask.reruns,
            **fields,
        )
        self.journal.append(record)
        if self.inflight is not None:
            self.inflight.finish(self.fold, number)
        if self.pruning is not None:
            self.pruning.finished(record)
        self.engine.tell(number, outcome_of(record))
        self.tells += 1
        self.trials.append(record)
        self.on_done(record)
        return record

    def lost_trial(self, number: int, why: str, oom: bool, ran: Ran) -> bool:
        """Trial ``number``'s slot died. True: it is queued to run again (once, same
        number and configuration, before anything new is asked); False: it is journalled
        as failed (``lost``, or ``oom``, which is never run again)."""
        ask = self.pending[number]
        if not oom and ask.reruns < RERUNS:
            ask.reruns += 1
            self.reruns.append(ask)
            return True
        fields = {"status": "failed", "reason": "oom" if oom else "lost", "error": why}
        self.finished_trial(number, fields, ran)
        return False
