"""Keeping ``parallel`` calls in flight over every fold of a study: the fold searches
(:mod:`.search`) ask, the pool (:mod:`serbench.execution.backend`) runs, the scheduler
routes what comes back -- until every fold has its final model.

Each time a slot is free, the scheduler goes through the folds in order and submits
the first call one of them can start: the fold's next trial, or, once its search has
ended, its final training (the best trial's configuration trained on ``train + val``
and scored once on ``test``). A fold whose engine is not ready, or whose budget is all
asked, leaves the slot to the next fold.

So with one slot a study runs exactly as it always did -- fold 0's trials one by one,
its final model, then fold 1 -- and with several slots the folds of a LOSO study, being
independent searches, run side by side. A trial that comes back is journalled and told
to its fold's engine; while trials run, their validation reports come back as messages
(:func:`serbench.execution.backend.ask_driver`) and the scheduler answers each with its
fold's pruning decision (:meth:`FoldSearch.report`); a lost one is run again once (:meth:`FoldSearch.lost_trial`); a
final model whose slot died is trained again once, then the study stops. An exception a
call raised that is a :class:`~serbench.errors.UserError` ends the study; any other
exception in a trial is a failed trial.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from serbench.errors import UserError
from serbench.execution.backend import Done, Pool
from serbench.results.schema import Best
from serbench.results.summary import best_trial
from serbench.study.events import StudyEvents
from serbench.study.search import FoldSearch, Ran, failure_fields
from serbench.study.trial import Final

FINAL_RERUNS = 1


@dataclass
class FoldProgress:
    """One fold: its search, then its final model."""

    search: FoldSearch
    final_submitted: bool = False
    best: Best | None = None
    final: Final | None = None
    final_seconds: float = 0.0
    final_reruns: int = 0
    complete: bool = False


class Scheduler:
    def __init__(
        self, pool: Pool, searches: list[FoldSearch], events: StudyEvents, finals: bool = True, keep_weights: bool = True
    ):
        """``finals=False``: a fold is complete once its search has ended (no final model);
        ``keep_weights=False``: final models come back without their weights."""
        self.pool = pool
        self.events = events
        self.finals = finals
        self.keep_weights = keep_weights
        self.several = len(searches) > 1
        self.progress = [FoldProgress(search) for search in searches]
        self.by_fold = {p.search.fold: p for p in self.progress}

    def run(self) -> list[FoldProgress]:
        """Run every fold to its end; each fold's progress, in fold order."""
        self.pool.serve(self._message)
        try:
            while True:
                self._fill()
                done = self.pool.wait()
                if done is None:
                    break
                self._route(done)
        finally:
            self.pool.serve(None)
        unfinished = [p.search.fold for p in self.progress if not p.complete]
        if unfinished:  # the pool ran dry with work left: a backend broke its contract
            raise UserError(f"the execution pool stopped with folds {unfinished} unfinished")
        return self.progress

    # -- submitting -------------------------------------------------------------------------

    def _fill(self) -> None:
        while self.pool.busy < self.pool.parallel and self._submit_next():
            pass

    def _submit_next(self) -> bool:
        """Submit one call (a final model, else a trial; folds in order); False: none can start."""
        for progress in self.progress:
            if not progress.search.finished:
                ask = progress.search.ask()
                if ask is not None:
                    ask.submitted = time.time()
                    self.pool.submit(("trial", ask.fold, ask.number), "trial", ask.fold, ask.number, ask.params)
                    return True
            if progress.search.finished and not progress.final_submitted and self._submit_final(progress):
                return True
        return False

    def _submit_final(self, progress: FoldProgress) -> bool:
        progress.final_submitted = True
        progress.best = best_trial(progress.search.trials)
        if progress.best is None or not self.finals:  # no finished trial: no final model for this fold
            progress.complete = True
            return False
        where = f"fold {progress.search.fold}: " if self.several else ""
        self.events.step(f"{where}training trial {progress.best.trial}'s configuration on train+val, scoring test once")
        self.pool.submit(("final", progress.search.fold), "final", progress.search.fold, progress.best, self.keep_weights)
        return True

    # -- routing what came back -------------------------------------------------------------

    def _message(self, key, message) -> bool:
        """A running trial's report ``("report", epoch, bca)``: stop it now?"""
        kind, fold, number = key
        tag, step, value = message
        if kind != "trial" or tag != "report":
            raise ValueError(f"unexpected message {message!r} from call {key!r}")
        return self.by_fold[fold].search.report(number, int(step), float(value))

    def _route(self, done: Done) -> None:
        kind, fold = done.key[0], done.key[1]
        progress = self.by_fold[fold]
        if kind == "trial":
            self._trial_back(progress.search, done.key[2], done)
        else:
            self._final_back(progress, done)

    def _trial_back(self, search: FoldSearch, number: int, done: Done) -> None:
        slot = done.slot
        ran = Ran(done.started, done.ended, slot.node if slot else None, slot.index if slot else None)
        if done.lost is not None:
            search.lost_trial(number, done.lost, done.oom, ran)
            return
        if done.error is not None:
            if isinstance(done.error, UserError):
                raise done.error
            fields = failure_fields(done.error)
        else:
            fields = done.value
        search.finished_trial(number, fields, ran)

    def _final_back(self, progress: FoldProgress, done: Done) -> None:
        if done.lost is not None:
            if done.oom or progress.final_reruns >= FINAL_RERUNS:
                raise UserError(
                    f"fold {progress.search.fold}: the final model's training was lost ({done.lost}); finished "
                    "trials are kept in trials.jsonl: continue with --resume"
                )
            progress.final_reruns += 1
            self.pool.submit(("final", progress.search.fold), "final", progress.search.fold, progress.best, self.keep_weights)
            return
        if done.error is not None:
            raise done.error
        progress.final = done.value
        if done.started is not None and done.ended is not None:
            progress.final_seconds = done.ended - done.started
        progress.complete = True
