"""What a study's folds add up to: a fold's ``FoldResult``, and the ``Result`` written to
``result.json`` (status, data summary, versions, limits in force, the test summary over
folds, transfer results)."""

from __future__ import annotations

import platform
import time
from typing import TYPE_CHECKING

from serbench import __version__
from serbench.data.corpus import LoadedCorpus
from serbench.data.labels import class_order
from serbench.data.folds import Fold
from serbench.execution.limits import limits_in_force
from serbench.results.metrics import mean_recall, summarize
from serbench.results.provenance import distribution_version, plugin_library, serbench_checkout
from serbench.results.schema import (
    Best,
    DataSummary,
    ExecutionUsed,
    FoldResult,
    LibraryVersion,
    PluginVersion,
    PruningUsed,
    ResourcesUsed,
    Result,
    TransferResult,
    TransferScore,
    TrialRecord,
    Versions,
)
from serbench.results.summary import threshold_hits
from serbench.spec import JobSpec, TransferTarget
from serbench.study.inputs import Data, Inputs, transfer_runs
from serbench.study.output import now
from serbench.study.resolve import Plugins

if TYPE_CHECKING:
    from serbench.study.fold_loop import FoldRun
    from serbench.study.trial import Final


def fold_result(
    fold: Fold,
    trials: list[TrialRecord],
    stopped_by: str,
    best: Best | None,
    final: Final | None,
    thresholds: list[float],
    final_seconds: float,
    epochs_spent: int = 0,
    space_size: int | None = None,
) -> FoldResult:
    parts = {"train": fold.split.train, "val": fold.split.val, "test": fold.split.test}
    return FoldResult(
        fold=fold.index,
        test_speakers=list(fold.test_speakers),
        test_classes=class_order({u.label for u in fold.split.test}),
        sizes=fold.split.sizes(),
        speakers={name: len({u.speaker for u in utts}) for name, utts in parts.items()},
        stopped_by=stopped_by,
        epochs_spent=epochs_spent,
        pruned=sum(t.status == "pruned" for t in trials),
        trials_run=len(trials),
        search_space_size=space_size,
        best=best,
        thresholds=threshold_hits(trials, thresholds),
        final_params=final.params if final is not None else None,
        test=final.test if final is not None else None,
        search_seconds=max((t.cumulative_s for t in trials), default=0.0),
        final_seconds=final_seconds,
    )


def study_result(
    spec: JobSpec,
    plugins: Plugins,
    inputs: Inputs,
    runs: list[FoldRun],
    resumed: int,
    started_at: str,
    wall_start: float,
    execution: ExecutionUsed | None = None,
    decided_by: str | None = None,
) -> Result:
    """The study's ``Result``; ``wall_start`` is the ``time.perf_counter()`` it started at."""
    folds = [run.result for run in runs]
    single = folds[0] if len(folds) == 1 else None
    tested = [f.test for f in folds if f.test is not None]
    trials = [trial for run in runs for trial in run.trials]
    return Result(
        job=spec.name,
        select_on=spec.select_on,
        status="completed" if len(tested) == len(folds) else "partial" if tested else "all_failed",
        started_at=started_at,
        finished_at=now(),
        spec=spec.model_dump(mode="json"),
        versions=versions(plugins),
        resources=ResourcesUsed(
            **limits_in_force(spec.resources.cpus, spec.resources.memory_gb, inputs.threads, inputs.available)
        ),
        execution=execution,
        data=data_summary(spec, plugins, inputs.data),
        backbone=inputs.backbone.describe(),
        stopped_by=next((f.stopped_by for f in folds if f.stopped_by != "trials"), "trials"),
        pruning=pruning_used(spec, trials, folds, decided_by),
        trials=trials,
        folds=folds,
        best=single.best if single else None,
        thresholds=single.thresholds if single else [],
        final_params=single.final_params if single else None,
        test=single.test if single else None,
        test_summary=summarize(tested) if tested else None,
        transfer=transfer_results(inputs.targets, inputs.data.classes, [run.transfer for run in runs if run.transfer]),
        resumed=resumed,
        search_seconds=sum(f.search_seconds for f in folds),
        final_seconds=sum(f.final_seconds for f in folds),
        wall_seconds=time.perf_counter() - wall_start,
        model_load_seconds=inputs.model_load_seconds,
    )


def transfer_results(
    targets: list[tuple[TransferTarget, LoadedCorpus]], classes: list[str], per_fold: list[list[TransferScore]]
) -> dict[str, TransferResult]:
    """Each transfer result's scores (a target in one ``adapt`` mode, keyed as
    :func:`~serbench.study.inputs.transfer_runs` says) over the folds that had a final model."""
    results = {}
    for index, (key, target, corpus, mode) in enumerate(transfer_runs(targets)):
        scores = [fold_scores[index] for fold_scores in per_fold]
        if not scores:
            continue
        summary = summarize(scores)
        not_in_model: dict[str, int] = {}
        for utt in corpus.utterances:
            if utt.label not in classes:
                not_in_model[utt.label] = not_in_model.get(utt.label, 0) + 1
        results[key] = TransferResult(
            target=target.name,
            adapt=mode,
            uses_target_audio=any(score.uses_target_audio for score in scores),
            root=str(corpus.root),
            labels=classes,
            label_map=corpus.label_map,
            n=scores[0].n,
            bca=summary.bca_mean,
            bca_sd=summary.bca_sd,
            bca_per_fold=summary.bca_per_fold,
            accuracy=summary.accuracy_mean,
            per_class_recall=mean_recall(scores),
            confusion_matrix=summary.confusion_matrix,
            dropped=corpus.dropped,
            not_in_model=not_in_model,
            skipped_files=[f"{b.path}: {b.reason}" for b in corpus.skipped],
        )
    return results


def pruning_used(
    spec: JobSpec, trials: list[TrialRecord], folds: list[FoldResult], decided_by: str | None
) -> PruningUsed:
    return PruningUsed(
        pruner=spec.pruner.name,
        by=spec.pruner.by,
        decided_by=decided_by or spec.pruner.name,
        options=spec.pruner.options,
        report_every=spec.pruner.report_every,
        frozen_rung=spec.pruner.frozen_rung,
        objective=spec.objective,
        trials=len(trials),
        pruned=sum(f.pruned for f in folds),
        completed=sum(t.status == "ok" for t in trials),
        epochs_spent=sum(f.epochs_spent for f in folds),
        probe_seconds=sum(t.probe_s or 0.0 for t in trials),
    )


def data_summary(spec: JobSpec, plugins: Plugins, data: Data) -> DataSummary:
    corpus = data.corpus
    return DataSummary(
        dataset=plugins.dataset.name,
        root=str(corpus.root),
        protocol=spec.dataset.protocol.model_dump(),
        classes=data.classes,
        utterances=len(corpus.utterances),
        speakers=len({u.speaker for u in corpus.utterances}),
        label_map=corpus.label_map,
        dropped=corpus.dropped,
        skipped_files=[f"{b.path}: {b.reason}" for b in corpus.skipped],
        load_seconds=corpus.load_seconds,
    )


def versions(plugins: Plugins) -> Versions:
    import torch

    try:
        import transformers

        transformers_version = transformers.__version__
    except ImportError:
        transformers_version = None
    checkout = serbench_checkout()
    libraries = {kind: plugin_library(entry.cls) for kind, entry in vars(plugins).items()}
    return Versions(
        serbench=__version__,
        commit=checkout.commit,
        dirty=checkout.dirty,
        python=platform.python_version(),
        torch=torch.__version__,
        transformers=transformers_version,
        plugins={
            kind: PluginVersion(name=entry.name, package=entry.package, version=entry.version)
            for kind, entry in vars(plugins).items()
        },
        libraries={
            kind: LibraryVersion(name=name, version=distribution_version(name))
            for kind, name in libraries.items()
            if name is not None
        },
    )
