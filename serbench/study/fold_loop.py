"""Every fold of a study, through the execution pool: each fold's search
(:mod:`serbench.study.search`) and then its best configuration trained on
``train + val`` and scored once on ``test`` and on the transfer targets, scheduled over
the pool's slots by :mod:`serbench.study.scheduler` (with one slot: fold after fold,
as always; with several, the folds of a LOSO study side by side).

No fold's test data is seen before its search has ended.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any

from serbench.execution.backend import Pool
from serbench.results.schema import FoldResult, TransferScore, TrialRecord
from serbench.spec import JobSpec
from serbench.study.assemble import fold_result
from serbench.study.events import StudyEvents
from serbench.study.inputs import Inputs
from serbench.study.output import StudyOutput
from serbench.study.pruning import make_pruning
from serbench.study.resolve import Plugins, make_engine
from serbench.study.scheduler import Scheduler
from serbench.study.search import FoldSearch
from serbench.study.trial import Final


@dataclass(frozen=True)
class FoldRun:
    result: FoldResult
    trials: list[TrialRecord]
    transfer: list[TransferScore]  # the final model's, one per target; none without a final model
    final: Final | None = None  # the final model, with its weights unless they were not kept


class FoldLoop:
    def __init__(
        self,
        spec: JobSpec,
        plugins: Plugins,
        inputs: Inputs,
        output: StudyOutput,
        events: StudyEvents,
        keep_weights: bool = True,
    ):
        self.spec = spec
        self.keep_weights = keep_weights
        self.plugins = plugins
        self.folds = inputs.data.folds
        self.output = output
        self.events = events
        self.decided_by: str | None = None  # what made the pruning decisions (fold 0's)

    def run(self, pool: Pool, done: list[TrialRecord], inflight: list[dict[str, Any]] = ()) -> list[FoldRun]:
        """Every fold on ``pool``, resuming from the journalled trials ``done`` and the
        trials ``inflight.json`` listed."""
        self.events.trials_started(self.spec.budget.trials * len(self.folds))
        searches = []
        for fold in self.folds:
            engine = make_engine(self.spec, self.plugins)
            pruning = make_pruning(self.spec, self.plugins.pruner, engine, fold.index)
            self.decided_by = self.decided_by or pruning.decided_by
            search = FoldSearch(
                fold.index,
                engine,
                self.spec.budget,
                self.output.journal,
                self.events.trial_done,
                self.output.inflight,
                pruning,
                lambda params: self.spec.train_params(params).epochs,
            )
            search.resume([r for r in done if r.fold == fold.index], list(inflight))
            searches.append(search)
        runs = []
        for fold, progress in zip(self.folds, Scheduler(pool, searches, self.events, keep_weights=self.keep_weights).run()):
            search, final = progress.search, progress.final
            result = fold_result(
                fold, search.trials, search.stop_reason, progress.best, final, self.spec.thresholds,
                progress.final_seconds, search.epochs_spent(), search.engine.space_size(),
            )
            runs.append(FoldRun(result, search.trials, final.transfer if final is not None else [], final))
        return runs


def trials_per_node(runs: list[FoldRun]) -> dict[str, int]:
    """How many search trials each node ran (trials without a node are left out)."""
    return dict(sorted(Counter(t.node for run in runs for t in run.trials if t.node is not None).items()))
