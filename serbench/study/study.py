"""The HPO study: one job spec from data to ``result.json``.

1. resolve the job's engine, dataset adapter and backbone from the plugin registry;
2. load the corpus (relabelled, subset) and cut it into the protocol's folds;
3. in each fold, a search (:mod:`serbench.study.search`): the engine asks, serbench fine-tunes
   on ``train`` and scores BCA on ``val``, the engine is told, the trial is journalled;
4. in each fold, the best configuration is trained on ``train + val`` and scored once on
   ``test``, and on every transfer target;
5. ``result.json`` is written atomically.

No fold's test data is seen before its step 4.
"""

from __future__ import annotations

import hashlib
import json
import platform
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from serbench import __version__, atomic
from serbench.backbones.base import Backbone
from serbench.data.corpus import LoadedCorpus, load_corpus
from serbench.data.base import DatasetAdapter, Utterance, resolve_root
from serbench.engines.base import Engine
from serbench.errors import DataError, PluginError, UserError
from serbench.results.inflight import INFLIGHT_FILE, InflightMarker
from serbench.data.labels import class_order
from serbench.results.metrics import evaluate, mean_recall, score_predictions, summarize
from serbench.plugin.registry import PluginEntry, Registry, registry
from serbench.data.folds import Fold, make_folds
from serbench.results.provenance import distribution_version, plugin_library, serbench_checkout
from serbench.execution.limits import configure_torch_threads, limits_in_force
from serbench.results.schema import (
    DataSummary,
    Evaluation,
    FoldResult,
    LibraryVersion,
    PluginVersion,
    ResourcesUsed,
    Result,
    TransferResult,
    TransferScore,
    TrialRecord,
    Versions,
)
from serbench.results.journal import TrialJournal
from serbench.results.summary import best_trial, threshold_hits
from serbench.study.search import FoldSearch
from serbench.spec import JobSpec, TransferTarget, plugin_options

STUDY_FILE = "study.json"  # fingerprint of the spec a journal belongs to


class StudyEvents:
    """Progress callbacks; the CLI renders them with rich, tests ignore them."""

    def stage(self, message: str) -> None: ...
    def trials_started(self, total: int) -> None: ...
    def trial_started(self, number: int, params: dict[str, Any], epochs: int) -> None: ...
    def epoch_done(self, epoch: int, loss: float) -> None: ...
    def trial_done(self, record: TrialRecord) -> None: ...


@dataclass
class Plugins:
    engine: PluginEntry
    dataset: PluginEntry
    backbone: PluginEntry


def resolve_plugins(spec: JobSpec, reg: Registry | None = None) -> Plugins:
    """The job's plugins, with their options validated.

    Raises ``UserError`` naming the spec field (``engine.name``, ``backbone.options.x``).
    """
    reg = reg or registry()
    found = {}
    for kind, section in (("engine", spec.engine), ("dataset", spec.dataset), ("backbone", spec.backbone)):
        found[kind] = _get(reg, kind, section.name, f"{kind}.name")
    for index, target in enumerate(spec.transfer):
        adapter = _get(reg, "dataset", target.name, f"transfer.{index}.name").cls
        plugin_options(adapter.Options, target.options, f"transfer.{index}.options")
    plugins = Plugins(**found)
    plugin_options(plugins.dataset.cls.Options, spec.dataset.options, "dataset.options")
    plugin_options(plugins.engine.cls.Options, spec.engine.options, "engine.options")
    plugin_options(plugins.backbone.cls.Options, spec.backbone.options, "backbone.options")
    if not spec.search_space:
        raise UserError("search_space: empty; name at least one hyperparameter to tune")
    return plugins


def _get(reg: Registry, kind, name: str, field: str) -> PluginEntry:
    try:
        return reg.get(kind, name)
    except PluginError as exc:
        raise PluginError(f"{field}: {exc}") from None


def corpus_root(spec: JobSpec, adapter: type[DatasetAdapter], data_home: Path | None) -> Path:
    return resolve_root(adapter, spec.dataset.root, data_home)


def spec_fingerprint(spec: JobSpec) -> str:
    text = json.dumps(spec.model_dump(mode="json"), sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()


class Study:
    """Runs one job. ``out_dir`` receives ``study.json``, ``trials.jsonl`` and
    ``result.json``."""

    def __init__(
        self,
        spec: JobSpec,
        out_dir: Path,
        data_home: Path | None = None,
        events: StudyEvents | None = None,
        reg: Registry | None = None,
    ):
        self.spec = spec
        self.out_dir = out_dir
        self.data_home = data_home
        self.events = events or StudyEvents()
        self.registry = reg or registry()
        self.plugins = resolve_plugins(spec, self.registry)
        serbench_checkout()  # the commit as the study starts (cached for the process), not as it ends
        self.journal = TrialJournal(out_dir / "trials.jsonl")
        self.done: list[TrialRecord] = []

    # -- setup -------------------------------------------------------------------------

    def check_output(self, force: bool, resume: bool) -> None:
        """A fresh folder, or (``resume``) the journal of the same spec; never a mix.
        Reads the journal to resume from; writes nothing."""
        study_file = self.out_dir / STUDY_FILE
        existing = [p for p in (self.journal.path, self.out_dir / "result.json", study_file) if p.exists()]
        if resume:
            if not study_file.exists():
                raise UserError(f"{self.out_dir}: nothing to resume (no {STUDY_FILE}); run without --resume")
            if json.loads(study_file.read_text()).get("spec_sha256") != spec_fingerprint(self.spec):
                raise UserError(f"{self.out_dir}: the job spec changed since the study started; cannot resume it")
            self.done = self.journal.read()
        elif existing and not force:
            raise UserError(
                f"{self.out_dir} already holds results of job {self.spec.name!r}; "
                "pass --resume to continue it, --force to replace it, or --out to write elsewhere"
            )

    def start_output(self, resume: bool) -> None:
        """Lay out the folder for this study (after everything else was prepared)."""
        self.out_dir.mkdir(parents=True, exist_ok=True)
        (self.out_dir / "result.json").unlink(missing_ok=True)
        (self.out_dir / INFLIGHT_FILE).unlink(missing_ok=True)  # stale: its trial runs again
        if resume:
            self.journal.rewrite(self.done)  # drops a line cut short by a crash
            return
        self.journal.path.unlink(missing_ok=True)
        atomic.write_json(
            self.out_dir / STUDY_FILE,
            {"job": self.spec.name, "spec_sha256": spec_fingerprint(self.spec), "started_at": _now()},
        )

    def load_data(self) -> None:
        """Load the corpus and cut it into folds."""
        spec = self.spec
        adapter_cls: type[DatasetAdapter] = self.plugins.dataset.cls
        options = plugin_options(adapter_cls.Options, spec.dataset.options, "dataset.options")
        self.corpus: LoadedCorpus = load_corpus(
            adapter_cls(options),
            corpus_root(spec, adapter_cls, self.data_home),
            spec.dataset.label_map,
            spec.dataset.subset,
            spec.seed,
            spec.dataset.skip_bad_files,
            self.events.stage,
        )
        self.classes = class_order({u.label for u in self.corpus.utterances})
        if len(self.classes) < 2:
            raise DataError(f"{self.corpus.root}: needs at least two classes, found {self.classes}")
        self.corpus.set_class_indices(self.classes)
        self.clips = self.corpus.clips
        self.folds: list[Fold] = make_folds(self.corpus.utterances, spec.dataset.protocol, spec.seed)

    def load_transfer_targets(self) -> None:
        self.targets: list[tuple[TransferTarget, LoadedCorpus]] = []
        for target in self.spec.transfer:
            adapter_cls = self.registry.get("dataset", target.name).cls
            root = resolve_root(adapter_cls, target.root, self.data_home)
            options = plugin_options(adapter_cls.Options, target.options, "transfer.options")
            corpus = load_corpus(
                adapter_cls(options), root, target.label_map, target.subset, self.spec.seed,
                self.spec.dataset.skip_bad_files, self.events.stage,
            )
            corpus.set_class_indices(self.classes)
            self.targets.append((target, corpus))

    def make_backbone(self) -> None:
        """The backbone plugin with its options, its source checked (no weights loaded yet),
        so a bad source fails before any audio is read."""
        options = plugin_options(self.plugins.backbone.cls.Options, self.spec.backbone.options, "backbone.options")
        self.backbone: Backbone = self.plugins.backbone.cls(self.spec.backbone.source, options)
        self.backbone.check_source()

    def load_backbone(self) -> None:
        from serbench.training.fit import study_cache

        self.events.stage(f"loading backbone {self.backbone.name} from {self.backbone.source}")
        started = time.perf_counter()
        self.backbone.build(len(self.classes))  # fail now, not in every trial
        self.model_load_seconds = time.perf_counter() - started
        # Frozen features: $SERBENCH_CACHE (persistent) or spilled to <out>/.feature-cache.
        self.cache = study_cache(self.backbone.cache_key(), self.out_dir, self.spec.resources.memory_gb)

    def make_engine(self) -> Engine:
        cls = self.plugins.engine.cls
        options = plugin_options(cls.Options, self.spec.engine.options, "engine.options")
        return cls(self.spec.search_space, self.spec.seed, options)

    def prepare(self, force: bool = False, resume: bool = False) -> None:
        """Everything a bad spec, corpus or model source can make fail, before any trial:
        output folder, threads, corpora, folds, audio, backbone."""
        self.started_at = _now()
        self.wall_start = time.perf_counter()
        self.check_output(force, resume)
        self.threads, self.available = configure_torch_threads(self.spec.resources.cpus)
        self.make_backbone()
        self.load_data()
        self.load_transfer_targets()
        self.load_backbone()
        self.make_engine()  # the engine may reject the space or its options
        self.start_output(resume)
        self.prepared = True
        sizes = self.folds[0].split.sizes()
        folds = f"{len(self.folds)} folds, first: " if len(self.folds) > 1 else ""
        self.events.stage(
            f"{self.corpus.adapter}: {len(self.corpus.utterances)} utterances, {len(self.classes)} classes; "
            f"{folds}train {sizes['train']}, val {sizes['val']}, test {sizes['test']}; torch threads {self.threads}"
            + (f"; resuming after {len(self.done)} finished trials" if resume else "")
        )

    # -- the study ---------------------------------------------------------------------

    def run(self, force: bool = False, resume: bool = False) -> Result:
        """Prepare (unless done), search and score every fold, write ``result.json``."""
        if not getattr(self, "prepared", False):
            self.prepare(force, resume)
        self.events.trials_started(self.spec.budget.trials * len(self.folds))
        folds, trials, transfer_scores = [], [], []
        for fold in self.folds:
            fold_result, fold_trials, fold_transfer = self._run_fold(fold)
            folds.append(fold_result)
            trials += fold_trials
            transfer_scores.append(fold_transfer)
        result = self._result(folds, trials, transfer_scores)
        atomic.write_json(self.out_dir / "result.json", result.model_dump(mode="json"))
        return result

    def _run_fold(self, fold: Fold) -> tuple[FoldResult, list[TrialRecord], list[TransferScore]]:
        done = [r for r in self.done if r.fold == fold.index]
        search = FoldSearch(
            fold.index,
            self.make_engine(),
            self.spec.budget,
            lambda number, params: self._trial(fold, number, params),
            self.journal,
            self.events.trial_done,
            InflightMarker(self.out_dir / INFLIGHT_FILE),
        )
        trials, stopped_by = search.run(done)
        best = best_trial(trials)
        final_started = time.perf_counter()
        test, transfer, final_params = None, [], None
        if best is not None:
            where = f"fold {fold.index}: " if len(self.folds) > 1 else ""
            self.events.stage(f"{where}training trial {best.trial}'s configuration on train+val, scoring test once")
            train_params = self.spec.train_params(best.params)
            final_params = train_params.model_dump()
            self.events.trial_started(-1, best.params, train_params.epochs)
            model, _ = self._train(train_params, fold.split.selection)
            test = self._score(model, [self.clips[u.id] for u in fold.split.test], train_params.maxlen)
            transfer = [self._score_target(model, corpus, train_params.maxlen) for _, corpus in self.targets]
        parts = {"train": fold.split.train, "val": fold.split.val, "test": fold.split.test}
        return (
            FoldResult(
                fold=fold.index,
                test_speakers=list(fold.test_speakers),
                sizes=fold.split.sizes(),
                speakers={name: len({u.speaker for u in utts}) for name, utts in parts.items()},
                stopped_by=stopped_by,
                best=best,
                thresholds=threshold_hits(trials, self.spec.thresholds),
                final_params=final_params,
                test=test,
                search_seconds=trials[-1].cumulative_s if trials else 0.0,
                final_seconds=time.perf_counter() - final_started,
            ),
            trials,
            transfer,
        )

    def _trial(self, fold: Fold, number: int, params: dict[str, Any]) -> dict[str, Any]:
        """Train on the fold's train split, score on its validation split."""
        train_params = self.spec.train_params(params)
        self.events.trial_started(number, params, train_params.epochs)
        model, losses = self._train(train_params, fold.split.train)
        val = [self.clips[u.id] for u in fold.split.val]
        predicted = self._predict(model, val, train_params.maxlen)
        truth = np.array([c.label for c in val])
        score = score_predictions(truth, predicted, self.classes)
        return {
            "status": "ok",
            "value": score.bca,
            "val_accuracy": score.accuracy,
            "collapsed": len(set(predicted.tolist())) == 1,
            "epoch_losses": losses,
        }

    def _train(self, train_params, utterances: list[Utterance]):
        import torch

        from serbench.training.fit import fit

        torch.manual_seed(self.spec.seed)  # every trial starts from the same head
        model = self.backbone.build(len(self.classes))
        clips = [self.clips[u.id] for u in utterances]
        losses = fit(model, clips, train_params, self.spec.seed, self.cache, self.events.epoch_done)
        return model, losses

    def _predict(self, model, clips, maxlen: int) -> np.ndarray:
        from serbench.training.fit import predict

        return predict(model, clips, maxlen, self.cache)

    def _score(self, model, clips, maxlen: int) -> Evaluation:
        truth = np.array([c.label for c in clips])
        return evaluate(truth, self._predict(model, clips, maxlen), self.classes, "test")

    def _score_target(self, model, corpus: LoadedCorpus, maxlen: int) -> TransferScore:
        """Zero-shot: only target utterances whose class the model knows are scored.

        Target clips are not in the study's feature cache (their ids could collide with
        the source corpus's), so they always run through the encoder.
        """
        from serbench.training.fit import predict

        clips = [c for c in corpus.clips.values() if c.label >= 0]
        truth = np.array([c.label for c in clips])
        return score_predictions(truth, predict(model, clips, maxlen, None), self.classes)

    # -- the result --------------------------------------------------------------------

    def _result(self, folds: list[FoldResult], trials: list[TrialRecord], transfer: list[list[TransferScore]]) -> Result:
        single = folds[0] if len(folds) == 1 else None
        tested = [f.test for f in folds if f.test is not None]
        return Result(
            job=self.spec.name,
            status="completed" if len(tested) == len(folds) else "partial" if tested else "all_failed",
            started_at=self.started_at,
            finished_at=_now(),
            spec=self.spec.model_dump(mode="json"),
            versions=self._versions(),
            resources=ResourcesUsed(
                **limits_in_force(
                    self.spec.resources.cpus, self.spec.resources.memory_gb, self.threads, self.available
                )
            ),
            data=self._data_summary(),
            backbone=self.backbone.describe(),
            stopped_by=next((f.stopped_by for f in folds if f.stopped_by != "trials"), "trials"),
            trials=trials,
            folds=folds,
            best=single.best if single else None,
            thresholds=single.thresholds if single else [],
            final_params=single.final_params if single else None,
            test=single.test if single else None,
            test_summary=summarize(tested) if tested else None,
            transfer=self._transfer_results([t for t in transfer if t]),
            resumed=len(self.done),
            search_seconds=sum(f.search_seconds for f in folds),
            final_seconds=sum(f.final_seconds for f in folds),
            wall_seconds=time.perf_counter() - self.wall_start,
            model_load_seconds=self.model_load_seconds,
        )

    def _transfer_results(self, per_fold: list[list[TransferScore]]) -> dict[str, TransferResult]:
        results = {}
        for index, (target, corpus) in enumerate(self.targets):
            scores = [fold_scores[index] for fold_scores in per_fold]
            if not scores:
                continue
            summary = summarize(scores)
            not_in_model: dict[str, int] = {}
            for utt in corpus.utterances:
                if utt.label not in self.classes:
                    not_in_model[utt.label] = not_in_model.get(utt.label, 0) + 1
            results[target.name] = TransferResult(
                target=target.name,
                root=str(corpus.root),
                labels=self.classes,
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

    def _data_summary(self) -> DataSummary:
        corpus = self.corpus
        return DataSummary(
            dataset=self.plugins.dataset.name,
            root=str(corpus.root),
            protocol=self.spec.dataset.protocol.model_dump(),
            classes=self.classes,
            utterances=len(corpus.utterances),
            speakers=len({u.speaker for u in corpus.utterances}),
            label_map=corpus.label_map,
            dropped=corpus.dropped,
            skipped_files=[f"{b.path}: {b.reason}" for b in corpus.skipped],
            load_seconds=corpus.load_seconds,
        )

    def _versions(self) -> Versions:
        import torch

        try:
            import transformers

            transformers_version = transformers.__version__
        except ImportError:
            transformers_version = None
        checkout = serbench_checkout()
        libraries = {kind: plugin_library(entry.cls) for kind, entry in vars(self.plugins).items()}
        return Versions(
            serbench=__version__,
            commit=checkout.commit,
            dirty=checkout.dirty,
            python=platform.python_version(),
            torch=torch.__version__,
            transformers=transformers_version,
            plugins={
                kind: PluginVersion(name=entry.name, package=entry.package, version=entry.version)
                for kind, entry in vars(self.plugins).items()
            },
            libraries={
                kind: LibraryVersion(name=name, version=distribution_version(name))
                for kind, name in libraries.items()
                if name is not None
            },
        )


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")
