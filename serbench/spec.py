"""Job specs: the YAML a user writes, validated by pydantic.

Every model forbids unknown keys, so a typo is an error rather than a silently ignored
setting. ``load_job`` turns a file into a ``JobSpec`` or raises ``SpecError`` with a
one-line message naming the file and the offending field.
"""

from __future__ import annotations

import math
import os
import re
from pathlib import Path
from typing import Annotated, Any, Literal, Union

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from serbench.errors import SpecError

JOB_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$"


class StrictModel(BaseModel):
    """Base for every spec model: unknown keys are rejected."""

    model_config = ConfigDict(extra="forbid")


class NoOptions(StrictModel):
    """Options model of a plugin that takes none."""


def plugin_options(model: type[BaseModel], options: dict[str, Any], where: str) -> BaseModel:
    """Validate a plugin's ``options`` mapping; ``SpecError`` names ``where.<field>``."""
    try:
        return model.model_validate(options)
    except ValidationError as exc:
        raise SpecError(describe_validation_error(exc, options, prefix=where)) from None


# --- search space ---------------------------------------------------------------------


class FloatParam(StrictModel):
    """A real-valued hyperparameter in [low, high], optionally sampled on a log scale."""

    type: Literal["float"]
    low: float
    high: float
    log: bool = False

    @model_validator(mode="after")
    def _check_bounds(self) -> "FloatParam":
        _check_range(self.low, self.high, self.log)
        return self


class IntParam(StrictModel):
    """An integer hyperparameter in [low, high] (both included), optionally log-scaled."""

    type: Literal["int"]
    low: int
    high: int
    log: bool = False

    @model_validator(mode="after")
    def _check_bounds(self) -> "IntParam":
        _check_range(self.low, self.high, self.log)
        return self


class ChoiceParam(StrictModel):
    """A hyperparameter taking one of a list of values (numbers or strings)."""

    type: Literal["choice"]
    values: list[Union[int, float, str, bool]]

    @field_validator("values")
    @classmethod
    def _non_empty_unique(cls, values: list[Any]) -> list[Any]:
        if not values:
            raise ValueError("a choice needs at least one value")
        if len({repr(v) for v in values}) != len(values):
            raise ValueError("choice values must be distinct")
        return values


def _check_range(low: float, high: float, log: bool) -> None:
    if not (math.isfinite(low) and math.isfinite(high)):
        raise ValueError("low and high must be finite")
    if low >= high:
        raise ValueError(f"low ({low:g}) must be less than high ({high:g})")
    if log and low <= 0:
        raise ValueError(f"a log-scaled range needs low > 0 (got {low:g})")


Param = Annotated[Union[FloatParam, IntParam, ChoiceParam], Field(discriminator="type")]


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


TUNABLE = tuple(TrainParams.model_fields)


# --- dataset ----------------------------------------------------------------------------


class HoldoutProtocol(StrictModel):
    """The paper's protocol, without its leak: a stratified test split by seed, and a
    stratified validation split carved out of the remaining training data. Only the
    validation score drives the search; the test split is scored once, at the end."""

    name: Literal["holdout"] = "holdout"
    test_fraction: float = Field(0.2, gt=0, lt=1)
    val_fraction: float = Field(0.2, gt=0, lt=1, description="Share of the training split.")


class SpeakerHoldoutProtocol(StrictModel):
    """Speaker-independent holdout: test speakers (named, or a seeded ``test_fraction``
    of all speakers) never appear in training or validation, and validation speakers
    (a seeded ``val_fraction`` of the rest) never appear in training."""

    name: Literal["speaker-holdout"]
    test_speakers: list[str] | None = Field(None, min_length=1)
    test_fraction: float = Field(0.2, gt=0, lt=1, description="Share of speakers held out for test.")
    val_fraction: float = Field(0.2, gt=0, lt=1, description="Share of the remaining speakers for validation.")


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


class Resources(StrictModel):
    cpus: float = Field(2, gt=0, le=1024)
    memory_gb: float = Field(8, gt=0, le=65536)


class JobSpec(StrictModel):
    """One study: a corpus, a backbone, a search space, an engine and a budget."""

    name: str = Field(pattern=JOB_NAME_PATTERN, description="Used as the results folder name.")
    seed: int = Field(0, ge=0, lt=2**32)
    dataset: DatasetSpec
    backbone: BackboneSpec
    training: TrainParams = Field(default_factory=TrainParams)
    search_space: dict[str, Param] = Field(default_factory=dict)
    engine: EngineSpec
    budget: Budget
    transfer: list[TransferTarget] = Field(default_factory=list)
    resources: Resources = Field(default_factory=Resources)
    thresholds: list[float] = Field(default_factory=lambda: [0.8, 0.9])

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
            if key not in TUNABLE:
                raise ValueError(f"unknown hyperparameter {key!r}; known: {', '.join(TUNABLE)}")
            for value in _extremes(param):
                try:
                    TrainParams.model_validate({key: value})
                except ValidationError as exc:
                    msg = exc.errors()[0]["msg"]
                    raise ValueError(f"{key}: value {value!r} is not allowed ({msg})") from None
        return space

    def train_params(self, overrides: dict[str, Any]) -> TrainParams:
        """The full set of hyperparameters for a trial: fixed ones plus ``overrides``."""
        return TrainParams.model_validate({**self.training.model_dump(), **overrides})


def _extremes(param: FloatParam | IntParam | ChoiceParam) -> list[Any]:
    if isinstance(param, ChoiceParam):
        return list(param.values)
    return [param.low, param.high]


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
    data = _load_yaml(text, path)
    if not isinstance(data, dict):
        raise SpecError(f"{path}: a job file must be a YAML mapping, got {type(data).__name__}")
    return parse_job(data, source=str(path))


class DuplicateKeyError(yaml.YAMLError):
    """A mapping that names one key twice; ``path`` is the key's dotted path."""

    def __init__(self, path: str, first: yaml.Mark, again: yaml.Mark):
        self.path, self.first, self.again = path, first, again
        where, before = f"line {again.line + 1}", f"line {first.line + 1}"
        if first.line == again.line:  # a flow mapping on one line
            where, before = f"{where}, column {again.column + 1}", f"{before}, column {first.column + 1}"
        super().__init__(f"duplicate key {path!r} at {where} (first at {before})")


class StrictLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that rejects a key given twice in one mapping (block or flow,
    at any depth, in lists too) with :class:`DuplicateKeyError`.

    Merge keys keep working: a key of the mapping itself may override one merged in
    with ``<<``; only the mapping's own keys must be distinct.
    """

    def __init__(self, stream: Any):
        super().__init__(stream)
        self._paths: dict[int, tuple[str, ...]] = {}  # id(mapping node) -> its dotted path
        self._checked: set[int] = set()

    def construct_document(self, node: yaml.Node) -> Any:
        self._paths, self._checked = {}, set()
        _record_paths(node, (), self._paths)
        return super().construct_document(node)

    def flatten_mapping(self, node: yaml.MappingNode) -> None:
        # Called by construct_mapping, and on every mapping merged in with ``<<``, before
        # the merged keys are spliced into ``node.value``: check the mapping's own keys
        # then, once (an anchored mapping may be flattened again).
        if id(node) not in self._checked:
            self._checked.add(id(node))
            self._check_unique(node)
        super().flatten_mapping(node)

    def _check_unique(self, node: yaml.MappingNode) -> None:
        seen: dict[Any, yaml.Mark] = {}
        for key_node, _ in node.value:
            if not isinstance(key_node, yaml.ScalarNode):
                continue  # a list or mapping as key: PyYAML rejects it as unhashable
            if key_node.tag in ("tag:yaml.org,2002:merge", "tag:yaml.org,2002:value"):
                key: Any = key_node.value
            else:
                key = self.construct_object(key_node)
            try:
                first = seen.setdefault(key, key_node.start_mark)
            except TypeError:
                continue
            if first is not key_node.start_mark:
                parent = self._paths.get(id(node), ())
                raise DuplicateKeyError(".".join((*parent, str(key))), first, key_node.start_mark)


def _record_paths(node: yaml.Node, path: tuple[str, ...], paths: dict[int, tuple[str, ...]]) -> None:
    """``paths[id(mapping node)]``: the dotted path of every mapping in the document
    (list items by index), for messages. An aliased node keeps its first path."""
    if id(node) in paths:
        return
    if isinstance(node, yaml.MappingNode):
        paths[id(node)] = path
        for key_node, value_node in node.value:
            key = key_node.value if isinstance(key_node, yaml.ScalarNode) else "?"
            _record_paths(value_node, path if key == "<<" else (*path, key), paths)
    elif isinstance(node, yaml.SequenceNode):
        paths[id(node)] = path
        for index, item in enumerate(node.value):
            _record_paths(item, (*path, str(index)), paths)


def _load_yaml(text: str, path: Path) -> Any:
    """``text`` parsed with :class:`StrictLoader`; ``SpecError`` with a one-line message."""
    try:
        return yaml.load(text, Loader=StrictLoader)
    except DuplicateKeyError as exc:
        raise SpecError(f"{path}: {exc}") from None
    except yaml.reader.ReaderError as exc:
        line = text.count("\n", 0, exc.position) + 1
        code = exc.character if isinstance(exc.character, int) else ord(exc.character)
        raise SpecError(
            f"{path}: YAML does not parse at line {line}: character U+{code:04X} "
            "is not allowed in a YAML file"
        ) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or "invalid YAML"
        if mark is not None and "'\\t'" in problem:
            rows = re.split("\r\n|[\r\n\x85\u2028\u2029]", text)  # PyYAML's line breaks
            row = rows[mark.line] if mark.line < len(rows) else ""
            if not row[: mark.column].strip(" \t-"):  # only indentation (and list dashes) before it
                problem = "tabs are not allowed for indentation; indent with spaces"
            else:
                problem = f"a tab at column {mark.column + 1}: outside quoted strings and comments, use spaces"
        raise SpecError(f"{path}: YAML does not parse{where}: {problem}") from None


def parse_job(data: dict[str, Any], source: str = "<job>") -> JobSpec:
    try:
        return JobSpec.model_validate(data)
    except ValidationError as exc:
        raise SpecError(f"{source}: {describe_validation_error(exc, data)}") from None


def describe_validation_error(exc: ValidationError, data: Any, prefix: str = "") -> str:
    """One line: the first error's field path and message, plus a count of the others.

    ``data`` is the validated input: pydantic's error locations also hold union member
    tags (``float``, ``literal[...]``), which are kept out of the path by following the
    location through the input.
    """
    located = []
    for error in exc.errors():
        msg = error["msg"].removeprefix("Value error, ")
        if error["type"] == "extra_forbidden":
            msg = "unknown key"
        path = _input_path(data, error["loc"], error["type"] == "missing")
        # A validator's message "<key>: ..." about an entry of the field: fold the key in.
        key, sep, rest = msg.partition(": ")
        inner = _lookup(data, path)
        if sep and isinstance(inner, dict) and key in inner:
            path, msg = path + [key], rest
        located.append((".".join([prefix] + path if prefix else path), msg))
    distinct = list(dict.fromkeys(loc for loc, _ in located))
    loc, msg = located[0]
    line = f"{loc}: {msg}" if loc else msg
    if len(distinct) > 1:
        line += f" (and errors in {len(distinct) - 1} more field{'s' if len(distinct) > 2 else ''})"
    return " ".join(line.split())


def _input_path(data: Any, loc: tuple[Any, ...], missing: bool) -> list[str]:
    """The parts of ``loc`` that are keys or indexes of the input (and, for a missing
    field, its name)."""
    path: list[str] = []
    current = data
    for index, part in enumerate(loc):
        if isinstance(current, dict) and part in current:
            current = current[part]
            path.append(str(part))
        elif isinstance(current, list) and isinstance(part, int) and 0 <= part < len(current):
            current = current[part]
            path.append(str(part))
        elif missing and index == len(loc) - 1:
            path.append(str(part))
    return path


def _lookup(data: Any, path: list[str]) -> Any:
    for part in path:
        if isinstance(data, dict):
            data = data.get(part)
        elif isinstance(data, list) and part.isdigit():
            data = data[int(part)]
        else:
            return None
    return data


def job_schema() -> dict[str, Any]:
    return JobSpec.model_json_schema()

