"""Every fold of a study, one after the other: the search (:mod:`serbench.study.search`),
then the best configuration trained on ``train + val`` and scored once on ``test`` and on
the transfer targets (:mod:`serbench.study.trial`).

No fold's test data is seen before its search has ended.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from serbench.data.folds import Fold
from serbench.results.schema import FoldResult, TransferScore, TrialRecord
from serbench.results.summary import best_trial
from serbench.spec import JobSpec
from serbench.study.assemble import fold_result
from serbench.study.events import StudyEvents
from serbench.study.inputs import Inputs
from serbench.study.output import StudyOutput
from serbench.study.resolve import Plugins, make_engine
from serbench.study.search import FoldSearch
from serbench.study.trial import Training


@dataclass(frozen=True)
class FoldRun:
    result: FoldResult
    trials: list[TrialRecord]
    transfer: list[TransferScore]  # the final model's, one per target; none without a final model


class FoldLoop:
    def __init__(self, spec: JobSpec, plugins: Plugins, inputs: Inputs, output: StudyOutput, events: StudyEvents):
        self.spec = spec
        self.plugins = plugins
        self.folds = inputs.data.folds
        self.output = output
        self.events = events
        self.training = Training(spec, inputs, events)

    def run(self, done: list[TrialRecord]) -> list[FoldRun]:
        """Every fold, resuming from the journalled trials ``done``."""
        self.events.trials_started(self.spec.budget.trials * len(self.folds))
        return [self.fold(fold, [r for r in done if r.fold == fold.index]) for fold in self.folds]

    def fold(self, fold: Fold, done: list[TrialRecord]) -> FoldRun:
        search = FoldSearch(
            fold.index,
            make_engine(self.spec, self.plugins),
            self.spec.budget,
            lambda number, params: self.training.trial(fold, number, params),
            self.output.journal,
            self.events.trial_done,
            self.output.inflight,
        )
        trials, stopped_by = search.run(done)
        best = best_trial(trials)
        final_started = time.perf_counter()
        final = None
        if best is not None:
            where = f"fold {fold.index}: " if len(self.folds) > 1 else ""
            self.events.step(f"{where}training trial {best.trial}'s configuration on train+val, scoring test once")
            final = self.training.final(fold, best)
        final_seconds = time.perf_counter() - final_started
        result = fold_result(fold, trials, stopped_by, best, final, self.spec.thresholds, final_seconds)
        return FoldRun(result, trials, final.transfer if final is not None else [])
