"""The HPO study: one job spec from data to ``result.json``.

1. resolve the job's engine, dataset adapter and backbone from the plugin registry;
2. list the corpus, take the subset, split it by the protocol, load the audio;
3. ask the engine for a configuration, fine-tune on ``train``, score BCA on ``val``,
   tell the engine, journal the trial -- until the trial or wall-clock budget is spent;
4. train the best configuration on ``train + val`` and score it once on ``test``;
5. write ``result.json`` atomically.

The test split is never seen before step 4.
"""

from __future__ import annotations

import platform
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from serbench import __version__
from serbench.backbone import Backbone
from serbench.dataset import DatasetAdapter, Utterance, load_audio, resolve_root
from serbench.engine import Engine, Outcome
from serbench.errors import DataError, PluginError, UserError
from serbench.plugins import PluginEntry, Registry, registry
from serbench.protocols import Split, make_split, take_subset
from serbench.resources import configure_torch_threads, memory_limit_bytes
from serbench.results import (
    Best,
    DataSummary,
    Evaluation,
    PluginVersion,
    ResourcesUsed,
    Result,
    TrialJournal,
    TrialRecord,
    Versions,
    best_trial,
    threshold_hits,
    write_json_atomic,
)
from serbench.spec import JobSpec, plugin_options

MIN_SAMPLES = 1600  # 0.1 s at 16 kHz


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
        try:
            found[kind] = reg.get(kind, section.name)
        except PluginError as exc:
            raise PluginError(f"{kind}.name: {exc}") from None
    plugins = Plugins(**found)
    plugin_options(plugins.engine.cls.Options, spec.engine.options, "engine.options")
    plugin_options(plugins.backbone.cls.Options, spec.backbone.options, "backbone.options")
    return plugins


def corpus_root(spec: JobSpec, adapter: type[DatasetAdapter], data_home: Path | None) -> Path:
    return resolve_root(adapter, spec.dataset.root, data_home)


class Study:
    """Runs one job. ``out_dir`` receives ``trials.jsonl`` and ``result.json``."""

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
        self.plugins = resolve_plugins(spec, reg)
        self.journal = TrialJournal(out_dir / "trials.jsonl")

    # -- setup -------------------------------------------------------------------------

    def prepare_output(self, force: bool) -> None:
        """Refuse to mix a new study into an old one's files, unless ``force``."""
        existing = [p for p in (self.journal.path, self.out_dir / "result.json") if p.exists()]
        if existing and not force:
            raise UserError(
                f"{self.out_dir} already holds results of job {self.spec.name!r}; "
                "pass --force to replace them or --out to write elsewhere"
            )
        for path in existing:
            path.unlink()
        self.out_dir.mkdir(parents=True, exist_ok=True)

    def load_data(self) -> None:
        spec = self.spec
        adapter_cls: type[DatasetAdapter] = self.plugins.dataset.cls
        adapter = adapter_cls()
        self.root = corpus_root(spec, adapter_cls, self.data_home)
        self.events.stage(f"scanning {adapter_cls.name} at {self.root}")
        utterances = take_subset(adapter.scan(self.root), spec.dataset.subset, spec.seed)
        unknown = {u.label for u in utterances} - set(adapter_cls.classes)
        if unknown:
            raise DataError(f"{self.root}: labels {sorted(unknown)} are not classes of {adapter_cls.name}")
        self.classes = [c for c in adapter_cls.classes if any(u.label == c for u in utterances)]
        if len(self.classes) < 2:
            raise DataError(f"{self.root}: needs at least two classes, found {self.classes}")
        self.split: Split = make_split(utterances, spec.dataset.protocol, spec.seed)
        self.events.stage(f"loading {len(utterances)} utterances")
        started = time.perf_counter()
        self.clips = {u.id: self._clip(u) for u in utterances}
        self.load_seconds = time.perf_counter() - started

    def _clip(self, utt: Utterance):
        from serbench.train import Clip

        wave = load_audio(utt.path)
        if len(wave) < MIN_SAMPLES:
            raise DataError(f"{utt.path}: only {len(wave)} samples at 16 kHz; at least {MIN_SAMPLES} needed")
        return Clip(utt.id, wave, self.classes.index(utt.label))

    def load_backbone(self) -> None:
        from serbench.train import FeatureCache

        options = plugin_options(self.plugins.backbone.cls.Options, self.spec.backbone.options, "backbone.options")
        self.backbone: Backbone = self.plugins.backbone.cls(self.spec.backbone.source, options)
        self.events.stage(f"loading backbone {self.backbone.name} from {self.backbone.source}")
        self.backbone.build(len(self.classes))  # fail now, not in every trial
        self.cache = FeatureCache()

    def make_engine(self) -> Engine:
        cls = self.plugins.engine.cls
        options = plugin_options(cls.Options, self.spec.engine.options, "engine.options")
        if not self.spec.search_space:
            raise UserError("search_space: empty; name at least one hyperparameter to tune")
        return cls(self.spec.search_space, self.spec.seed, options)

    # -- the study ---------------------------------------------------------------------

    def prepare(self, force: bool = False) -> None:
        """Everything a bad spec, corpus or model source can make fail, before any trial:
        output folder, threads, corpus, split, audio, backbone, engine."""
        self.started_at = _now()
        self.wall_start = time.perf_counter()
        self.prepare_output(force)
        self.threads, self.available = configure_torch_threads(self.spec.resources.cpus)
        self.load_data()
        self.load_backbone()
        self.engine = self.make_engine()
        sizes = self.split.sizes()
        self.events.stage(
            f"{self.plugins.dataset.name}: {sum(sizes.values())} utterances, {len(self.classes)} classes; "
            f"train {sizes['train']}, val {sizes['val']}, test {sizes['test']}; "
            f"torch threads {self.threads}"
        )

    def run(self, force: bool = False) -> Result:
        """Prepare (unless done), search, train the best configuration, score the test
        split once, write ``result.json``."""
        if not hasattr(self, "engine"):
            self.prepare(force)
        engine = self.engine
        threads, available, started_at, wall_start = self.threads, self.available, self.started_at, self.wall_start

        trials, budget_stop = self._search(engine)
        search_seconds = trials[-1].cumulative_s if trials else 0.0

        best = best_trial(trials)
        final_started = time.perf_counter()
        test = final_params = None
        if best is not None:
            self.events.stage(f"training trial {best.trial}'s configuration on train+val, scoring test once")
            final_params = self.spec.train_params(best.params).model_dump()
            test = self._final_evaluation(best)
        final_seconds = time.perf_counter() - final_started

        result = Result(
            job=self.spec.name,
            status="completed" if best is not None else "all_failed",
            started_at=started_at,
            finished_at=_now(),
            spec=self.spec.model_dump(mode="json"),
            versions=self._versions(),
            resources=ResourcesUsed(
                cpus_requested=self.spec.resources.cpus,
                cpus_available=available.cpus,
                cpu_source=available.source,
                torch_threads=threads,
                memory_requested_gb=self.spec.resources.memory_gb,
                memory_limit_bytes=memory_limit_bytes(),
            ),
            data=self._data_summary(),
            backbone=self.backbone.describe(),
            budget_stop=budget_stop,
            trials=trials,
            best=best,
            thresholds=threshold_hits(trials, self.spec.thresholds),
            final_params=final_params,
            test=test,
            search_seconds=search_seconds,
            final_seconds=final_seconds,
            wall_seconds=time.perf_counter() - wall_start,
        )
        write_json_atomic(self.out_dir / "result.json", result.model_dump(mode="json"))
        return result

    def _search(self, engine: Engine) -> tuple[list[TrialRecord], str]:
        budget = self.spec.budget
        trials: list[TrialRecord] = []
        self.events.trials_started(budget.trials)
        clock = time.perf_counter()
        for number in range(budget.trials):
            if budget.wall_minutes is not None and time.perf_counter() - clock >= budget.wall_minutes * 60:
                return trials, "wall_minutes"
            params = engine.ask(number)
            record = self._trial(number, params, clock)
            self.journal.append(record)
            engine.tell(number, Outcome.ok(record.value) if record.status == "ok" else Outcome.failed(record.reason))
            trials.append(record)
            self.events.trial_done(record)
        return trials, "trials"

    def _trial(self, number: int, params: dict[str, Any], clock: float) -> TrialRecord:
        from sklearn.metrics import accuracy_score, balanced_accuracy_score

        started = time.perf_counter()
        common = {"number": number, "params": params}
        try:
            train_params = self.spec.train_params(params)
            self.events.trial_started(number, params, train_params.epochs)
            model, losses = self._train(train_params, self.split.train)
            val = [self.clips[u.id] for u in self.split.val]
            predicted = self._predict(model, val, train_params.maxlen)
            truth = np.array([c.label for c in val])
            record = TrialRecord(
                **common,
                status="ok",
                value=float(balanced_accuracy_score(truth, predicted)),
                val_accuracy=float(accuracy_score(truth, predicted)),
                collapsed=len(set(predicted.tolist())) == 1,
                epoch_losses=losses,
                duration_s=time.perf_counter() - started,
                cumulative_s=time.perf_counter() - clock,
            )
        except MemoryError:
            record = self._failed(common, "oom", "MemoryError", started, clock)
        except UserError:
            raise
        except Exception as exc:  # a diverging or crashing trial must not end the study
            detail = f"{exc.__class__.__name__}: {exc}"
            record = self._failed(common, "error", detail, started, clock)
            self.events.stage(f"trial {number} failed: {detail}")
        return record

    @staticmethod
    def _failed(common: dict[str, Any], reason: str, error: str, started: float, clock: float) -> TrialRecord:
        now = time.perf_counter()
        return TrialRecord(
            **common, status="failed", reason=reason, error=error, duration_s=now - started, cumulative_s=now - clock
        )

    def _train(self, train_params, utterances: list[Utterance]):
        import torch

        from serbench.train import fit

        torch.manual_seed(self.spec.seed)  # every trial starts from the same head
        model = self.backbone.build(len(self.classes))
        clips = [self.clips[u.id] for u in utterances]
        losses = fit(model, clips, train_params, self.spec.seed, self.cache, self.events.epoch_done)
        return model, losses

    def _predict(self, model, clips, maxlen: int) -> np.ndarray:
        from serbench.train import predict

        return predict(model, clips, maxlen, self.cache)

    def _final_evaluation(self, best: Best) -> Evaluation:
        train_params = self.spec.train_params(best.params)
        self.events.trial_started(-1, best.params, train_params.epochs)
        model, _ = self._train(train_params, self.split.selection)
        test = [self.clips[u.id] for u in self.split.test]
        return evaluate(np.array([c.label for c in test]), self._predict(model, test, train_params.maxlen), self.classes, "test")

    def _data_summary(self) -> DataSummary:
        split = self.split
        parts = {"train": split.train, "val": split.val, "test": split.test}
        return DataSummary(
            dataset=self.plugins.dataset.name,
            root=str(self.root),
            protocol=self.spec.dataset.protocol.model_dump(),
            classes=self.classes,
            sizes=split.sizes(),
            speakers={name: len({u.speaker for u in utts}) for name, utts in parts.items()},
            load_seconds=self.load_seconds,
        )

    def _versions(self) -> Versions:
        import torch

        try:
            import transformers

            transformers_version = transformers.__version__
        except ImportError:
            transformers_version = None
        return Versions(
            serbench=__version__,
            python=platform.python_version(),
            torch=torch.__version__,
            transformers=transformers_version,
            plugins={
                kind: PluginVersion(name=entry.name, package=entry.package, version=entry.version)
                for kind, entry in vars(self.plugins).items()
            },
        )


def evaluate(truth: np.ndarray, predicted: np.ndarray, classes: list[str], split: str) -> Evaluation:
    """BCA, accuracy, per-class recall and confusion matrix over ``classes``."""
    from sklearn.metrics import accuracy_score, balanced_accuracy_score, confusion_matrix, recall_score

    labels = list(range(len(classes)))
    present = sorted(set(truth.tolist()))
    recalls = recall_score(truth, predicted, labels=present, average=None, zero_division=0)
    return Evaluation(
        split=split,
        n=len(truth),
        bca=float(balanced_accuracy_score(truth, predicted)),
        accuracy=float(accuracy_score(truth, predicted)),
        labels=classes,
        per_class_recall={classes[i]: float(r) for i, r in zip(present, recalls)},
        confusion_matrix=confusion_matrix(truth, predicted, labels=labels).tolist(),
    )


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")
