"""The job spec: what one YAML job file says (dataset, backbone, training, search space,
engine, budget, resources), validated by pydantic, and ``load_job``, which turns a file
into a ``JobSpec`` or raises ``SpecError`` with a one-line message naming the file and the
offending field.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any, Literal, Union

from pydantic import Field, ValidationError, field_validator, model_validator

from serbench.errors import SpecError
from serbench.spec.options import StrictModel, describe_validation_error
from serbench.spec.space import Param, extremes
from serbench.spec.strict_yaml import load_yaml

JOB_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$"


class TrainParams(StrictModel):
    """The hyperparameters of one fine-tuning run, the paper's four first.

    A job fixes any of them under ``training`` and tunes any under ``search_space``.
    """

    lr: float = Field(1e-4, gt=0, description="AdamW peak learning rate (cosine-annealed to 0).")
    epochs: int = Field(3, ge=1, le=1000, description="Training epochs.")
    unfreeze: int = Field(
        1, ge=0, description="Epoch index from which the encoder is trained (0: from the start)."
    )
    maxlen: int = Field(
        64000, ge=1600, description="Utterances are cut to this many samples at 16 kHz."
    )
    batch_size: int = Field(1, ge=1, le=512, description="Utterances per optimiser step.")
    weight_decay: float = Field(0.01, ge=0, description="AdamW weight decay.")
    standardize: bool = Field(
        True,
        description="Standardise pooled features with the training set's statistics "
        "(from the frozen pre-trained encoder) before the linear head.",
    )
    group_by_length: bool = Field(
        False,
        description="Batch utterances of similar length: each epoch's shuffled order is cut "
        "into groups of 50 batches, each group sorted by length and batched, and the batches "
        "shuffled. Less padding is computed when the encoder trains; no effect at batch size 1.",
    )
    label_smoothing: float = Field(
        0.0, ge=0, lt=1, description="Cross-entropy label smoothing (0: none)."
    )
    dropout: float = Field(
        0.0,
        ge=0,
        lt=1,
        description="Dropout on the standardised pooled features before the linear head, "
        "while training only (0: none).",
    )
    speaker_norm: bool = Field(
        False,
        description="Standardise each speaker's pooled features with that speaker's own "
        "statistics (from the frozen pre-trained encoder), for the training speakers and for "
        "every scored set's speakers alike: the scored speakers' unlabelled audio is read "
        "before predicting it (transductive; results say so). Replaces the training set's "
        "statistics of ``standardize``.",
    )
    speaker_enrolment: bool = Field(
        False,
        description="With ``speaker_norm``: a scored speaker the model trained on is standardised "
        "with the statistics of its training utterances (its enrolment, fitted when the model "
        "trained) instead of the scored utterances' own, so no scored audio is read for it; a "
        "speaker it never trained on still reads its own. Matters only where scored speakers "
        "also train (the holdout protocol); no effect without ``speaker_norm``. The saved model "
        "keeps the enrolment: ``serbench predict --speaker ID`` scores an enrolled speaker's "
        "recordings with it.",
    )
    augment: Literal["none", "speed", "noise"] = Field(
        "none",
        description="Training-time augmentation: each training utterance is joined by two "
        "perturbed copies -- 'speed': resampled to 0.9x and 1.1x speed (pitch moves with "
        "it); 'noise': white noise at 20 and 10 dB SNR, seeded by the utterance. Scored "
        "sets are never augmented.",
    )


# Training fields added after studies were first journalled: left out of a spec's
# fingerprint and seed group while at these defaults (see ``drop_later_defaults``).
LATER_TRAINING_DEFAULTS = {
    "label_smoothing": 0.0,
    "dropout": 0.0,
    "speaker_norm": False,
    "augment": "none",
    "speaker_enrolment": False,
}


TUNABLE = tuple(TrainParams.model_fields)
#: A search-space key ``backbone.<option>`` searches one of the backbone's options (e.g.
#: Whisper's ``pooling`` or ``layers``): each trial's encoder is built with its value.
BACKBONE_PREFIX = "backbone."


# --- dataset ----------------------------------------------------------------------------


def val_folds_field(runs: str) -> Any:
    """The ``val_folds`` field of a protocol; ``runs`` says how that protocol makes its k
    validation runs."""
    return Field(
        1, ge=1, le=20,
        description="Validation folds of the search (inner cross-validation). 1: one validation split. "
        f"k > 1: {runs}; every trial trains k times and scores the mean validation BCA. The final model "
        "still trains on everything but the test split.",
    )


class HoldoutProtocol(StrictModel):
    """The paper's protocol, without its leak: a stratified test split by seed, and a
    stratified validation split carved out of the remaining training data. Only the
    validation score drives the search; the test split is scored once, at the end."""

    name: Literal["holdout"] = "holdout"
    test_fraction: float = Field(0.2, gt=0, lt=1)
    val_fraction: float = Field(0.2, gt=0, lt=1, description="Share of the training split.")
    val_folds: int = val_folds_field(
        "the non-test utterances are cut into k stratified folds, each the validation split of one "
        "training run on the other k - 1 (val_fraction does not apply)"
    )

    @model_validator(mode="after")
    def _one_way_to_validate(self) -> "HoldoutProtocol":
        if self.val_folds > 1 and "val_fraction" in self.model_fields_set:
            raise ValueError("give val_fraction or val_folds > 1, not both: with k validation folds each "
                             "validation split is 1/k of the non-test utterances")
        return self


class SpeakerHoldoutProtocol(StrictModel):
    """Speaker-independent holdout: test speakers (named, or a seeded ``test_fraction``
    of all speakers) never appear in training or validation, and validation speakers
    (a seeded ``val_fraction`` of the rest) never appear in training."""

    name: Literal["speaker-holdout"]
    test_speakers: list[str] | None = Field(None, min_length=1)
    test_fraction: float = Field(0.2, gt=0, lt=1, description="Share of speakers held out for test.")
    val_fraction: float = Field(0.2, gt=0, lt=1, description="Share of the remaining speakers for validation.")
    val_folds: int = val_folds_field(
        "k disjoint groups of validation speakers (each of val_fraction's size) are drawn from the "
        "training speakers, each the validation split of one training run on the rest"
    )


class LosoProtocol(StrictModel):
    """Leave-one-speaker-out with nested selection: one fold per test speaker, and in
    each fold a complete study (fresh engine, same seed and budget) that selects on
    validation speakers drawn from the other speakers only. The fold's best
    configuration is trained on all non-test speakers and scored on the test speaker.
    Reported: per-fold test BCA, their mean and standard deviation."""

    name: Literal["loso"]
    val_speakers: int = Field(2, ge=1, description="Speakers per fold held out for validation.")
    folds: list[str] | None = Field(
        None, min_length=1, description="Only these test speakers (default: every speaker)."
    )
    val_folds: int = val_folds_field(
        "each fold draws k disjoint groups of val_speakers from its training speakers, each the "
        "validation split of one training run on the rest"
    )


Protocol = Annotated[
    Union[HoldoutProtocol, SpeakerHoldoutProtocol, LosoProtocol], Field(discriminator="name")
]


class SubsetSpec(StrictModel):
    """A seeded subset of the corpus for quick runs: only the named ``speakers``, then
    per class at most ``per_class`` utterances and/or a ``fraction`` (stratified)."""

    speakers: list[str] | None = Field(None, min_length=1)
    per_class: int | None = Field(None, ge=1)
    fraction: float | None = Field(None, gt=0, le=1)

    @model_validator(mode="after")
    def _something_to_do(self) -> "SubsetSpec":
        if self.per_class is None and self.fraction is None and self.speakers is None:
            raise ValueError("a subset needs speakers, per_class and/or fraction")
        return self


class TransferTarget(StrictModel):
    """Another corpus the final model is scored on, zero-shot, through a label map."""

    name: str = Field(min_length=1, description="Dataset adapter plugin name, e.g. ravdess.")
    root: Path | None = None
    options: dict[str, Any] = Field(default_factory=dict, description="Options of the adapter.")
    label_map: dict[str, str | None] | None = None
    subset: SubsetSpec | None = None
    adapt: list[Literal["none", "corpus", "speaker"]] = Field(
        default_factory=lambda: ["none"],
        min_length=1,
        description="Test-time adaptation modes, each scored as its own result: none (zero-shot, key "
        "<name>), corpus (the feature standardisation re-fitted on the target's pooled unlabelled "
        "features, key <name>+adapt:corpus), speaker (re-fitted per target speaker, key "
        "<name>+adapt:speaker). corpus and speaker use the target's unlabelled audio (transductive).",
    )

    @field_validator("adapt")
    @classmethod
    def _distinct_modes(cls, modes: list[str]) -> list[str]:
        if len(set(modes)) != len(modes):
            raise ValueError("adapt lists a mode twice")
        return modes


class DatasetSpec(StrictModel):
    """Which corpus, where it lives, how it is split."""

    name: str = Field(min_length=1, description="Dataset adapter plugin name, e.g. emodb.")
    root: Path | None = Field(
        None, description="Corpus folder; default $SERBENCH_DATA/<corpus folder of the adapter>."
    )
    options: dict[str, Any] = Field(default_factory=dict, description="Options of the adapter.")
    protocol: Protocol = Field(default_factory=HoldoutProtocol)
    subset: SubsetSpec | None = None
    label_map: dict[str, str | None] | None = Field(
        None,
        description="Corpus label -> class (null drops it); replaces the adapter's default map.",
    )
    skip_bad_files: bool = Field(
        False, description="Skip (and count) unusable files instead of refusing to start."
    )


# --- the rest ---------------------------------------------------------------------------


class BackboneSpec(StrictModel):
    name: str = Field(min_length=1, description="Backbone plugin name, e.g. whisper.")
    source: str | None = Field(
        None,
        min_length=1,
        description="A local model folder, a name under $SERBENCH_MODELS, or a hub id. "
        "Model sources can contain code: name only sources you trust.",
    )
    options: dict[str, Any] = Field(default_factory=dict)


class EngineSpec(StrictModel):
    name: str = Field(min_length=1, description="Engine plugin name, e.g. random.")
    options: dict[str, Any] = Field(default_factory=dict)


class Budget(StrictModel):
    trials: int = Field(ge=1, le=100_000)
    wall_minutes: float | None = Field(
        None, gt=0, description="No new trial starts after this many minutes."
    )
    epochs: int | None = Field(
        None,
        ge=1,
        le=10_000_000,
        description="Training epochs across the search's trials (each fold's): no new trial starts once the "
        "epochs trained plus those planned by trials in flight reach it (a trial is never cut short by it; "
        "frozen-probe epochs are not counted). Compares pruned and full studies on equal compute.",
    )


class PrunerSpec(StrictModel):
    """Stopping unpromising trials from their epoch-level validation BCA."""

    name: str = Field(
        "none", min_length=1, description="Pruner plugin name: none, median, successive-halving, hyperband."
    )
    options: dict[str, Any] = Field(default_factory=dict, description="Options of the pruner.")
    by: Literal["serbench", "engine"] = Field(
        "serbench",
        description="serbench: the pruner plugin decides, with any engine; engine: the engine's own library "
        "decides with its equivalent of the named pruner (optuna; ax for median).",
    )
    report_every: int = Field(
        1,
        ge=1,
        le=1000,
        description="Epochs between a trial's validation reports (its curve; the pruner decides only at "
        "them); the last epoch always reports. Each report costs one validation pass.",
    )
    frozen_rung: bool = Field(
        False,
        description="Before a trial trains its encoder, score its configuration with the encoder frozen "
        "(cached features: seconds) and report it as step 0, so the pruner can stop it before any "
        "encoder training. Only for trials that unfreeze their encoder.",
    )


class Resources(StrictModel):
    cpus: float = Field(2, gt=0, le=1024)
    memory_gb: float = Field(8, gt=0, le=65536)


class ExecutionSpec(StrictModel):
    """Where the trials run and how many at once. Not part of the study's fingerprint:
    a study started on a laptop can be resumed on a cluster."""

    backend: str = Field("local", min_length=1, description="Execution backend plugin name: local or ray.")
    parallel: int = Field(1, ge=1, le=4096, description="Trials in flight at once (local: 1).")
    options: dict[str, Any] = Field(
        default_factory=dict, description="Options of the backend, e.g. ray: {address: local|auto|HOST:PORT}."
    )


class JobSpec(StrictModel):
    """One study: a corpus, a backbone, a search space, an engine and a budget."""

    name: str = Field(pattern=JOB_NAME_PATTERN, description="Used as the results folder name.")
    seed: int = Field(0, ge=0, lt=2**32)
    dataset: DatasetSpec
    backbone: BackboneSpec
    training: TrainParams = Field(default_factory=TrainParams)
    search_space: dict[str, Param] = Field(
        default_factory=dict,
        description="What the engine tunes: training hyperparameters by name (lr, epochs, ...) and backbone "
        "options as backbone.<option> (e.g. backbone.pooling), each trial's encoder built with its value.",
    )
    engine: EngineSpec
    budget: Budget
    transfer: list[TransferTarget] = Field(default_factory=list)
    resources: Resources = Field(default_factory=Resources)
    execution: ExecutionSpec = Field(default_factory=ExecutionSpec)
    pruner: PrunerSpec = Field(default_factory=PrunerSpec)
    objective: Literal["last", "best_epoch"] = Field(
        "last",
        description="A trial's score: its last epoch's validation BCA, or its best epoch's (best_epoch: the "
        "final model then trains for that trial's best number of epochs).",
    )
    select_on: Literal["validation", "test"] = Field(
        "validation",
        description="What the search scores trials on. validation (the default, honest): each fold's "
        "validation split; the test split is scored once, after the search. test: the paper's optimistic "
        "protocol, for comparison only -- each trial trains on train + validation and is scored on the test "
        "split it is then reported on, so the test score is selected on itself; results say so and the "
        "leaderboard never ranks them with honest ones.",
    )
    thresholds: list[float] = Field(default_factory=lambda: [0.8, 0.9])

    @model_validator(mode="after")
    def _validation_folds_fit(self) -> "JobSpec":
        """Inner cross-validation scores a trial after all its training runs: nothing for a
        pruner to stop early, and no validation split at all with ``select_on: test``."""
        if self.dataset.protocol.val_folds == 1:
            return self
        if self.pruner.name != "none" or self.pruner.frozen_rung:
            raise ValueError("dataset.protocol.val_folds > 1 does not combine with a pruner (a trial is scored "
                             "only after all its validation folds): use pruner none or val_folds 1")
        if self.select_on == "test":
            raise ValueError("dataset.protocol.val_folds > 1 does not combine with select_on: test (trials are "
                             "scored on the test split, no validation split is used)")
        return self

    @field_validator("name")
    @classmethod
    def _no_dots_only(cls, name: str) -> str:
        if ".." in name:
            raise ValueError("a job name may not contain '..'")
        return name

    @field_validator("thresholds")
    @classmethod
    def _thresholds_in_range(cls, values: list[float]) -> list[float]:
        for value in values:
            if not 0 < value <= 1:
                raise ValueError(f"threshold {value} is not in (0, 1]")
        return sorted(set(values))

    @field_validator("search_space")
    @classmethod
    def _space_fits_training(cls, space: dict[str, Any]) -> dict[str, Any]:
        for key, param in space.items():
            if key.startswith(BACKBONE_PREFIX):
                if not key[len(BACKBONE_PREFIX):].isidentifier():
                    raise ValueError(f"{key}: name one backbone option after {BACKBONE_PREFIX!r}, e.g. backbone.pooling")
                continue  # checked against the backbone's options when the plugin is known
            if key not in TUNABLE:
                raise ValueError(
                    f"unknown hyperparameter {key!r}; known: {', '.join(TUNABLE)}, or backbone.<option>"
                )
            for value in extremes(param):
                try:
                    TrainParams.model_validate({key: value})
                except ValidationError as exc:
                    msg = exc.errors()[0]["msg"]
                    raise ValueError(f"{key}: value {value!r} is not allowed ({msg})") from None
        return space

    def with_execution(
        self, backend: str | None = None, parallel: int | None = None, options: dict[str, Any] | None = None
    ) -> "JobSpec":
        """This spec with ``execution`` overridden (``serbench run --backend/--parallel``):
        a new ``backend`` drops the spec's backend options, ``options`` update them.
        Raises ``SpecError`` for a value ``execution`` does not accept."""
        execution = self.execution.model_dump()
        if backend is not None and backend != execution["backend"]:
            execution.update(backend=backend, options={})
        if parallel is not None:
            execution["parallel"] = parallel
        execution["options"].update(options or {})
        try:
            return self.model_copy(update={"execution": ExecutionSpec.model_validate(execution)})
        except ValidationError as exc:
            raise SpecError(f"execution: {describe_validation_error(exc, execution)}") from None

    def fingerprint_data(self) -> dict[str, Any]:
        """The spec as JSON data without ``execution``: what a study's results depend on.
        Sections added after studies were first journalled (``pruner``, ``objective``,
        ``budget.epochs``) are left out while at their defaults, so those journals still
        resume."""
        return drop_later_defaults(self.model_dump(mode="json", exclude={"execution"}))

    def train_params(self, overrides: dict[str, Any]) -> TrainParams:
        """The full set of training hyperparameters for a trial: fixed ones plus
        ``overrides`` (a trial's parameters; its ``backbone.<option>`` ones are not training's)."""
        training = {k: v for k, v in overrides.items() if not k.startswith(BACKBONE_PREFIX)}
        return TrainParams.model_validate({**self.training.model_dump(), **training})

    @staticmethod
    def backbone_overrides(params: dict[str, Any]) -> dict[str, Any]:
        """The backbone options a trial's parameters set (``backbone.pooling: mean+std`` ->
        ``{"pooling": "mean+std"}``), to be merged over ``backbone.options``; ``{}`` when
        the search space has none."""
        return {k[len(BACKBONE_PREFIX):]: v for k, v in params.items() if k.startswith(BACKBONE_PREFIX)}


LATER_DEFAULTS = {"pruner": PrunerSpec().model_dump(mode="json"), "objective": "last", "select_on": "validation"}


def drop_later_defaults(data: dict[str, Any]) -> dict[str, Any]:
    """A copy of a spec's JSON data without what was added after studies were first
    journalled while it is at its default (``LATER_DEFAULTS``, ``budget.epochs`` unset,
    ``LATER_TRAINING_DEFAULTS``, ``dataset.protocol.val_folds`` 1), so older journals resume and older results group with
    their reruns. Sections missing from ``data`` are left missing."""
    data = {k: v for k, v in data.items() if not (k in LATER_DEFAULTS and v == LATER_DEFAULTS[k])}
    dataset = data.get("dataset")
    if isinstance(dataset, dict) and isinstance(dataset.get("protocol"), dict) and dataset["protocol"].get("val_folds") == 1:
        data["dataset"] = {**dataset, "protocol": {k: v for k, v in dataset["protocol"].items() if k != "val_folds"}}
    budget = data.get("budget")
    if isinstance(budget, dict) and budget.get("epochs") is None:
        data["budget"] = {k: v for k, v in budget.items() if k != "epochs"}
    training = data.get("training")
    if isinstance(training, dict):
        data["training"] = {
            k: v for k, v in training.items() if not (k in LATER_TRAINING_DEFAULTS and v == LATER_TRAINING_DEFAULTS[k])
        }
    return data


# --- loading ----------------------------------------------------------------------------


def load_job(path: str | os.PathLike[str]) -> JobSpec:
    """Read and validate a job file; raise ``SpecError`` with a one-line message.

    The YAML is read strictly: a key given twice in one mapping is an error (PyYAML would
    keep the last value), as are tabs used for indentation and bytes that are not UTF-8.
    """
    path = Path(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise SpecError(f"{path}: no such job file") from None
    except (IsADirectoryError, PermissionError) as exc:
        raise SpecError(f"{path}: cannot read job file ({exc.__class__.__name__})") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        raise SpecError(
            f"{path}: cannot read job file: byte 0x{raw[exc.start]:02x} at line {line} (offset {exc.start}) "
            "is not UTF-8; a job file must be UTF-8 text"
        ) from None
    data = load_yaml(text, path)
    if not isinstance(data, dict):
        raise SpecError(f"{path}: a job file must be a YAML mapping, got {type(data).__name__}")
    return parse_job(data, source=str(path))


def parse_job(data: dict[str, Any], source: str = "<job>") -> JobSpec:
    try:
        return JobSpec.model_validate(data)
    except ValidationError as exc:
        raise SpecError(f"{source}: {describe_validation_error(exc, data)}") from None


def job_schema() -> dict[str, Any]:
    return JobSpec.model_json_schema()
