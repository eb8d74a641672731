"""The result schema: what ``result.json`` and each line of ``trials.jsonl`` hold, as
pydantic models (``serbench schema result`` prints the JSON Schema).

Times are seconds of study wall clock, counted from the start of the first trial (data
loading and model loading, shared by every engine, are reported separately).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

SCHEMA_VERSION = 1


class Record(BaseModel):
    model_config = ConfigDict(extra="forbid")


class EpochScore(Record):
    """One validation report of a trial: its BCA after ``epoch`` epochs of training
    (epoch 0: the frozen probe, its configuration trained with the encoder frozen)."""

    epoch: int = Field(ge=0)
    bca: float


class TrialRecord(Record):
    """One trial as the engine asked for it and as it came back."""

    fold: int = Field(0, ge=0, description="Protocol fold (0 for the holdout protocols).")
    number: int = Field(ge=0, description="Trial number within its fold.")
    params: dict[str, Any] = Field(description="What the engine asked for.")
    status: Literal["ok", "failed", "pruned"] = Field(
        description="ok: trained every epoch; pruned: stopped by the pruner after its last report; failed."
    )
    value: float | None = Field(
        None,
        description="Validation BCA: the last epoch's (objective: last) or the best epoch's (best_epoch); "
        "for a pruned trial its last report's; null when failed.",
    )
    val_accuracy: float | None = None
    collapsed: bool = Field(
        False,
        description="The report its value comes from said nothing about the classes: every validation "
        "prediction in one class, or a validation BCA at or below chance, 1 / (classes present in the "
        "validation split). The value is still the real score.",
    )
    curve: list[EpochScore] = Field(
        default_factory=list, description="Validation BCA by epoch, as reported (pruner.report_every)."
    )
    epochs_trained: int | None = Field(
        None, ge=0, description="Epochs the trial trained (fewer than its epochs when pruned); null when failed."
    )
    pruned_at: int | None = Field(None, ge=0, description="The epoch after which the pruner stopped it (0: the probe).")
    best_epoch: int | None = Field(None, ge=1, description="objective: best_epoch: the epoch whose BCA is the value.")
    probe_s: float | None = Field(None, ge=0, description="Seconds of its frozen probe (pruner.frozen_rung).")
    val_folds: list[float] | None = Field(
        None,
        description="With dataset.protocol.val_folds k > 1: each validation fold's BCA at the epoch of the "
        "value, which is their mean (the curve, too, is the folds' mean); null with one validation split.",
    )
    reason: str | None = Field(
        None, description="Why it failed: error, oom, timeout, lost (its slot's process or node died twice)."
    )
    error: str | None = None
    epoch_losses: list[float] = Field(default_factory=list)
    duration_s: float = Field(ge=0, description="Seconds the trial ran on its slot.")
    cumulative_s: float = Field(ge=0, description="Seconds of this fold's search when this trial was journalled.")
    asked_after: int | None = Field(
        None,
        ge=0,
        description="Tells this fold's engine had received when the trial was asked (its place in the "
        "ask/tell interleaving, replayed by --resume); null in journals from before parallel trials.",
    )
    node: str | None = Field(None, description="The node the trial ran on.")
    slot: int | None = Field(None, ge=0, description="The execution slot it ran in.")
    queued_s: float | None = Field(None, ge=0, description="Seconds from submission to its start on the slot.")
    returned_s: float | None = Field(None, ge=0, description="Seconds from its end on the slot to the journal.")
    reruns: int = Field(0, ge=0, description="Times it was run again after its slot's process or node died.")


class ThresholdHit(Record):
    threshold: float
    reached: bool
    trial: int | None = Field(None, description="First trial whose validation BCA reached it.")
    minutes: float | None = Field(None, description="Study minutes when that trial ended.")
    efficiency: float | None = Field(None, description="threshold / minutes (BCA per minute).")


class Best(Record):
    trial: int
    params: dict[str, Any]
    val_bca: float
    epoch: int | None = Field(
        None, description="objective: best_epoch: the best trial's best epoch, the epochs its final model trains."
    )
    pruned: bool = Field(False, description="The best trial was pruned (no trial trained every epoch).")
    minutes: float = Field(description="Study minutes when the best trial ended.")
    efficiency: float | None = Field(description="Best validation BCA per minute to reach it (paper's E).")


class ClipPrediction(Record):
    """The final model's prediction for one test utterance."""

    id: str = Field(description="The utterance's id: its path relative to the corpus root.")
    label: str = Field(description="Its true class.")
    predicted: str = Field(description="The class of the largest probability.")
    probabilities: list[float] = Field(description="Softmax probabilities, in the order of the labels.")


class Evaluation(Record):
    """Scores of the final model on a held-out split it never saw during selection."""

    split: str
    n: int
    bca: float
    accuracy: float
    labels: list[str]
    per_class_recall: dict[str, float]
    confusion_matrix: list[list[int]] = Field(description="Rows: true labels; columns: predicted.")
    predictions: list[ClipPrediction] = Field(
        default_factory=list, description="Per test utterance, in id order (absent from older results)."
    )
    transductive: bool = Field(
        False,
        description="True when the scored utterances' own unlabelled audio set their standardisation "
        "before they were predicted (speaker_norm: each test speaker's statistics, unless "
        "speaker_enrolment standardised every test speaker with its training utterances').",
    )


class TransferScore(Record):
    """One final model scored zero-shot on another corpus through the label map."""

    n: int = Field(description="Target utterances scored.")
    bca: float = Field(description="BCA over the classes the target has.")
    accuracy: float
    per_class_recall: dict[str, float]
    confusion_matrix: list[list[int]]
    uses_target_audio: bool = Field(
        False, description="True when the target's unlabelled audio set its standardisation before predicting it."
    )


class TransferResult(Record):
    """Scores on one target corpus in one ``adapt`` mode (mean over folds where there are
    several): zero-shot, or after unsupervised test-time adaptation."""

    target: str
    adapt: Literal["none", "corpus", "speaker"] = Field(
        "none",
        description="Test-time adaptation: none (zero-shot), corpus or speaker (the feature standardisation "
        "re-fitted on the target's unlabelled features, pooled or per speaker).",
    )
    uses_target_audio: bool = Field(
        False,
        description="True when the scores used the target's unlabelled audio before predicting it "
        "(transductive: adapt corpus or speaker).",
    )
    root: str
    labels: list[str] = Field(description="The model's classes: rows/columns of the confusion matrix.")
    label_map: dict[str, str | None]
    n: int = Field(
        description="Target utterances scored. n + dropped + not_in_model + skipped_files = the files "
        "considered: the target's files, or with a subset the files of its population."
    )
    bca: float
    bca_sd: float
    bca_per_fold: list[float]
    accuracy: float
    per_class_recall: dict[str, float]
    confusion_matrix: list[list[int]] = Field(description="Summed over folds.")
    dropped: dict[str, int] = Field(
        description="Dropped by the label map, per target label, counted in the population n is taken from "
        "(with a subset: its speakers, and per label what per_class/fraction would keep)."
    )
    not_in_model: dict[str, int] = Field(description="Mapped to a class the model was not trained on.")
    skipped_files: list[str] = Field(
        description="Unusable files skipped (dataset.skip_bad_files): unreadable audio of the population, and "
        "files whose name or label fits no scheme or map anywhere in the folder."
    )


class FoldResult(Record):
    """One fold: its search, its chosen configuration and its single test score."""

    fold: int
    test_speakers: list[str]
    test_classes: list[str] = Field(
        default_factory=list,
        description="The classes present in the fold's test split, over which its test BCA is averaged (a "
        "LOSO fold: the classes its speaker has); empty in results from before it was recorded, where "
        "test.per_class_recall names them.",
    )
    sizes: dict[str, int]
    speakers: dict[str, int]
    stopped_by: Literal["trials", "wall_minutes", "exhausted", "epochs"]
    epochs_spent: int = Field(0, ge=0, description="Epochs the fold's trials trained (budget.epochs counts them).")
    pruned: int = Field(0, ge=0, description="Trials the pruner stopped.")
    trials_run: int | None = Field(
        None, ge=0, description="Search trials of this fold (ok, pruned and failed); null in results from before it "
        "was recorded."
    )
    search_space_size: int | None = Field(
        None,
        ge=1,
        description="Configurations in the engine's space when it is a finite one it walks through (grid: the "
        "grid's size; Engine.space_size()), so trials_run / search_space_size is the share of it the search "
        "covered; null for sampled spaces and in older results.",
    )
    best: Best | None
    thresholds: list[ThresholdHit]
    final_params: dict[str, Any] | None = Field(None, description="All hyperparameters of the final model.")
    test: Evaluation | None
    model: str | None = Field(
        None, description="The saved final model's folder, relative to the result's (null: not saved, --no-model)."
    )
    search_seconds: float
    final_seconds: float


class TestSummary(Record):
    """Test scores over folds (one fold for the holdout protocols)."""

    n_folds: int
    bca_mean: float
    bca_sd: float = Field(description="Population standard deviation over folds (0 for one fold).")
    bca_per_fold: list[float]
    accuracy_mean: float
    confusion_matrix: list[list[int]] = Field(description="Summed over folds; rows true, columns predicted.")


class ResourcesUsed(Record):
    """What the job asked for (``resources``) and the limits it ran under."""

    cpus_requested: float
    cpus_available: float = Field(description="The smallest of the CPU affinity and the cgroup CPU quota.")
    cpu_source: str = Field(description="Where cpus_available comes from: affinity, cgroup-v1, cgroup-v2, cpu_count.")
    cpu_affinity: list[int] | None = Field(None, description="The CPUs the study's process could run on.")
    torch_threads: int
    memory_requested_gb: float
    memory_limit_bytes: int | None = Field(
        description="The memory limit in force (cgroup or RSS guard, the tighter); null: none but physical RAM."
    )
    memory_limit_source: str | None = Field(None, description="cgroup-v1, cgroup-v2 or rss-guard; null: no limit.")
    physical_memory_bytes: int | None = None
    executor: str = Field("local", description="local or docker (serbench run --executor).")
    isolation: str = Field(
        "none",
        description="How the limits were enforced: none; cgroup-v1 or cgroup-v2 (a cgroup made by --isolate); "
        "affinity+rss-guard (--isolate without a usable cgroup); inherited-cgroup-v1 or inherited-cgroup-v2 "
        "(limits set by whoever started serbench, e.g. a container; serbench watched for OOM kills).",
    )


class DataSummary(Record):
    dataset: str
    root: str
    protocol: dict[str, Any]
    classes: list[str]
    utterances: int
    speakers: int
    label_map: dict[str, str | None] = Field(description="Corpus label -> class; null: dropped.")
    dropped: dict[str, int] = Field(
        description="Utterances dropped by the label map, per corpus label, counted in the population the "
        "utterances are taken from (with a subset: its speakers, and per label what per_class/fraction would keep)."
    )
    skipped_files: list[str] = Field(description="Unusable files skipped (dataset.skip_bad_files).")
    load_seconds: float


class PluginVersion(Record):
    name: str
    package: str
    version: str


class LibraryVersion(Record):
    name: str = Field(description="The distribution (what pip installs, e.g. ax-platform).")
    version: str | None = Field(description="Its installed version; null: not installed as a distribution.")


class Versions(Record):
    """The code that made the result. ``commit``, ``dirty`` and ``libraries`` are absent
    from results written before they were recorded; such files still load."""

    serbench: str
    commit: str | None = Field(
        None,
        description="Full git sha of the checkout serbench was imported from; null: not run from a "
        "git checkout (a wheel install, a container image without .git) or git unavailable.",
    )
    dirty: bool | None = Field(
        None,
        description="The checkout had changes to tracked files against that commit (untracked files "
        "do not count); null when commit is null or git could not tell.",
    )
    python: str
    torch: str
    transformers: str | None
    plugins: dict[str, PluginVersion]
    libraries: dict[str, LibraryVersion] = Field(
        default_factory=dict,
        description="By plugin kind (engine, dataset, backbone): the third-party library the job's "
        "plugin declares it is built on (its library attribute), e.g. engine: optuna; plugins that "
        "declare none are absent.",
    )


class ExecutionUsed(Record):
    """Where the trials ran: the backend, the trials in flight at most, and the nodes."""

    backend: str
    parallel: int = Field(ge=1)
    where: str = Field(description="The backend's own description, e.g. ray at 127.0.0.1:6379 (2 nodes).")
    slot_cpus: float = Field(gt=0, description="CPUs granted to each slot (torch threads follow them).")
    slot_memory_gb: float = Field(gt=0, description="Memory granted to each slot, guarded where it runs.")
    trials_per_node: dict[str, int] = Field(description="Search trials journalled from each node.")


class PruningUsed(Record):
    """Who decided which trials to stop, and what the trials cost."""

    pruner: str = Field(description="The spec's pruner.name (none: no trial is stopped).")
    by: Literal["serbench", "engine"]
    decided_by: str = Field(
        description="What made the decisions: the serbench plugin with its options, or the engine's library "
        "object, e.g. optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=0)."
    )
    options: dict[str, Any]
    report_every: int
    frozen_rung: bool
    objective: Literal["last", "best_epoch"]
    trials: int = Field(description="Search trials journalled (every fold).")
    pruned: int
    completed: int
    epochs_spent: int = Field(description="Training epochs of every search trial (frozen probes not counted).")
    probe_seconds: float = Field(description="Seconds spent in frozen probes.")


class Result(Record):
    """A finished study. For one-fold protocols ``best``, ``thresholds``, ``test`` and
    ``final_params`` repeat the fold's; with several folds (LOSO) they are null and
    ``folds`` plus ``test_summary`` hold the scores."""

    schema_version: int = SCHEMA_VERSION
    job: str
    select_on: Literal["validation", "test"] = Field(
        "validation",
        description="What the search selected on. test: the paper's optimistic protocol (select_on: test) -- "
        "the test score was selected on the test split itself, so it is not an honest estimate.",
    )
    status: Literal["completed", "partial", "all_failed"] = Field(
        description="partial: some folds had no finished trial, so no test score."
    )
    started_at: str
    finished_at: str
    spec: dict[str, Any] = Field(description="The job spec as validated.")
    versions: Versions
    resources: ResourcesUsed
    execution: ExecutionUsed | None = Field(None, description="Null in results from before execution backends.")
    data: DataSummary
    backbone: dict[str, Any]
    stopped_by: Literal["trials", "wall_minutes", "exhausted", "epochs"] = Field(
        description="What ended the search (of any fold): the trial budget, the wall-clock "
        "budget, an engine with nothing left to ask (a finished grid), or the epoch budget."
    )
    pruning: PruningUsed | None = Field(None, description="Null in results from before pruners.")
    trials: list[TrialRecord]
    folds: list[FoldResult]
    best: Best | None
    thresholds: list[ThresholdHit]
    final_params: dict[str, Any] | None = None
    test: Evaluation | None
    test_summary: TestSummary | None
    model: str | None = Field(
        None,
        description="The saved final model's folder, relative to the result's (one-fold protocols; "
        "with several folds each fold names its own); null: not saved.",
    )
    transfer: dict[str, TransferResult] = Field(default_factory=dict)
    resumed: int = Field(0, description="Trials read back from trials.jsonl by --resume.")
    search_seconds: float
    final_seconds: float
    wall_seconds: float
    model_load_seconds: float | None = Field(
        None,
        description="Seconds to load the backbone's pre-trained weights, once before the first "
        "trial; like data.load_seconds, not part of any study time. Null in results written before "
        "it was recorded.",
    )


def result_schema() -> dict[str, Any]:
    return Result.model_json_schema()
