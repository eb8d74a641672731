"""What a saved model's folder holds, ``<out>/<job>/model/`` (one per fold under LOSO,
``model/fold-NN-<test speakers>/``):

- ``model.json``: :class:`ModelInfo`, everything needed to rebuild the model and to know
  what it is -- the backbone and a fingerprint of the pre-trained files it builds on,
  classes, ``maxlen``, the job, the speakers and audio it was trained on, its scores;
- ``weights.safetensors``: the tensors training changed
  (:meth:`serbench.backbones.model.SERModel.trained_state`), never pickle;
- ``README.md``: the model card (:mod:`serbench.deploy.card`);
- ``model.onnx`` and ``onnx.json`` (:class:`OnnxInfo`, the export's record) once
  ``serbench export`` ran (:mod:`serbench.deploy.onnx_export`); ``model.json`` is left
  as it was.

A reader refuses any other ``format_version`` than :data:`FORMAT_VERSION`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from serbench.errors import ModelError

FORMAT = "serbench-model"
FORMAT_VERSION = 1
INFO_FILE = "model.json"
WEIGHTS_FILE = "weights.safetensors"
CARD_FILE = "README.md"
ONNX_FILE = "model.onnx"
ONNX_INFO_FILE = "onnx.json"


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class PretrainedInfo(Section):
    """The backbone as the job named it, and the pre-trained files it was built from."""

    name: str = Field(description="The backbone plugin's name (backbone.name).")
    source: str = Field(description="backbone.source as the job gave it (a hub id or a folder name).")
    options: dict[str, Any]
    files: dict[str, str] = Field(description="sha256 of each pre-trained file the encoder was read from, by name.")
    fingerprint: str = Field(description="sha256 over the files' names and hashes: what loading checks.")


class WeightsInfo(Section):
    file: str = WEIGHTS_FILE
    sha256: str
    bytes: int
    tensors: int
    parameters: int = Field(description="Numbers stored (parameters and statistics).")
    encoder: str = Field(description="Which encoder weights are stored: none (frozen), top N layers, or all.")


class TrainingInfo(Section):
    """What the model was trained on, and how it was chosen."""

    job: str
    job_fingerprint: str = Field(description="sha256 of the job spec (study.json's spec_sha256).")
    seed: int
    dataset: str
    protocol: dict[str, Any]
    fold: int
    train_speakers: list[str] = Field(description="Speakers of train + val, which the final model trained on.")
    test_speakers: list[str]
    utterances: int = Field(description="Training utterances (train + val).")
    audio_fingerprint: str = Field(description="sha256 over the training files' ids and sha256s, sorted by id.")
    manifest: str | None = Field(None, description="The corpus manifest the adapter checks copies against, if any.")
    licence: str | None = Field(None, description="The corpus's licence, as its dataset adapter states it.")
    label_map: dict[str, str | None]
    params: dict[str, Any] = Field(description="Every hyperparameter of the final training.")
    engine: str
    pruner: str
    trials: int = Field(description="Search trials of this fold.")
    best_trial: int
    best_val_bca: float


class Scores(Section):
    """The final model's scores, as ``result.json`` holds them."""

    test: dict[str, Any] = Field(description="n, bca, accuracy, per_class_recall, confusion_matrix.")
    transfer: dict[str, dict[str, Any]] = Field(default_factory=dict, description="Per target: n, bca, accuracy.")


class ModelInfo(Section):
    format: str = FORMAT
    format_version: int = FORMAT_VERSION
    created_at: str
    serbench: dict[str, Any] = Field(description="version, commit and dirty of the code that trained it.")
    backbone: PretrainedInfo
    classes: list[str] = Field(description="The output classes, in the order of the probabilities.")
    sample_rate: int = Field(description="Audio is read mono at this rate (Hz) before the encoder.")
    maxlen: int = Field(description="Samples of one input: longer recordings are cut into windows of it.")
    pad: str | None = Field(None, description="The backbone's pad policy (what the encoder sees after a clip).")
    weights: WeightsInfo
    training: TrainingInfo
    scores: Scores


def read_info(folder: Path) -> ModelInfo:
    """``folder/model.json`` as :class:`ModelInfo`; ``ModelError`` (one line) when it is
    missing, not JSON, of another format or version, or does not validate."""
    path = folder / INFO_FILE
    raw = _read_json(path, f"{folder}: no {INFO_FILE} here: not a saved serbench model")
    if not isinstance(raw, dict) or raw.get("format") != FORMAT:
        raise ModelError(f"{path}: not a serbench model description (format is not {FORMAT!r})")
    version = raw.get("format_version")
    if version != FORMAT_VERSION:
        raise ModelError(
            f"{path}: model format version {version}, but this serbench ({FORMAT!r} version {FORMAT_VERSION}) "
            "reads only its own; use the serbench version that saved it"
        )
    return _validated(ModelInfo, raw, path)


def _read_json(path: Path, missing: str) -> Any:
    """``path`` parsed as JSON; ``ModelError`` with ``missing`` when there is no such file,
    or naming the file when it cannot be read or parsed."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ModelError(missing) from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelError(f"{path}: cannot be read as JSON ({exc})") from None


def _validated(model: type[Section], raw: Any, path: Path, advice: str = "") -> Any:
    """``raw`` validated as ``model``; ``ModelError`` naming ``path`` and the first bad
    field (then ``advice``) when it does not validate."""
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"])
        raise ModelError(f"{path}: {where}: {first['msg']}{advice}") from None


class OnnxParity(Section):
    max_abs_diff: float = Field(description="Largest |ONNX - PyTorch| over the probes' class probabilities.")
    tolerance: float
    probes: list[int] = Field(description="Samples of each probe signal scored by both runtimes.")


class OnnxGraph(Section):
    """One more graph of an export: its file (beside the main graph), its sha256 and names."""

    file: str = Field(description="Relative to the model folder, or absolute when written outside it.")
    sha256: str
    bytes: int
    inputs: list[str]
    outputs: list[str]


class OnnxSpeakerNorm(Section):
    """The graphs of a model trained with ``speaker_norm``: the main graph gives pooled
    features, and a speaker's standardisation and the head run on a group of them."""

    statistics: OnnxGraph = Field(description="features (N, ...) -> the norm statistics of those N rows.")
    head: OnnxGraph = Field(description="features (N, ...) and statistics -> probabilities (N, classes).")


class OnnxInfo(Section):
    """``onnx.json``: which graph was exported, from what, with what; a runtime checks it."""

    file: str = Field(description="The graph: relative to the model folder, or absolute when written outside it.")
    sha256: str
    bytes: int
    opset: int
    inputs: list[str] = Field(description="The graph's inputs, in order (SERModel.onnx_inputs' names).")
    output: str = Field(description="probabilities, or features for a model trained with speaker_norm.")
    speaker_norm: OnnxSpeakerNorm | None = Field(
        None, description="The statistics and head graphs of a model trained with speaker_norm (else none)."
    )
    weights_sha256: str = Field(description="sha256 of the weight file it was exported from (model.json's weights.sha256).")
    pretrained_fingerprint: str = Field(description="The pre-trained files' fingerprint it was exported from.")
    exporter: str
    versions: dict[str, str] = Field(description="torch, onnx, onnxruntime, serbench at export.")
    parity: OnnxParity
    seconds: float = Field(description="Wall time of the export, parity check included.")
    exported_at: str


def read_onnx_info(folder: Path) -> OnnxInfo:
    """``folder/onnx.json``; ``ModelError`` (one line) when there is none (no export yet)
    or it does not validate."""
    path = folder / ONNX_INFO_FILE
    missing = f"{folder}: no ONNX export here ({ONNX_INFO_FILE} is missing): run serbench export {folder} --format onnx first"
    raw = _read_json(path, missing)
    return _validated(OnnxInfo, raw, path, f"; run serbench export {folder} --format onnx again")
