"""``load_model(path)``: a saved model folder (or a result folder holding one) as a
:class:`~serbench.deploy.predictor.TunedModel`, after checking what it rests on.

Refused with one line (``ModelError``, exit 2): a folder that holds no model, a
``model.json`` of another format version, a missing or altered weight file, a backbone
plugin that is not installed, pre-trained files whose fingerprint differs from the one
recorded at training (the checkpoint changed since), and weights that do not fit the
model the backbone builds.
"""

from __future__ import annotations

import json
from pathlib import Path

from serbench.data.manifest import sha256_file
from serbench.deploy.format import INFO_FILE, ModelInfo, read_info
from serbench.deploy.fingerprint import combined, pretrained_files
from serbench.deploy.predictor import TunedModel
from serbench.errors import ModelError

RESULT_FILE = "result.json"
MODEL_DIR = "model"


def locate(path: Path) -> Path:
    """The model folder ``path`` names: itself (it holds ``model.json``), or the model a
    result folder's ``result.json`` points at (``model/`` for one-fold protocols). A
    result with one model per fold must be narrowed to one of them."""
    path = Path(path)
    if not path.exists():
        raise ModelError(f"{path}: no such model or result folder")
    if (path / INFO_FILE).is_file():
        return path
    result = path / RESULT_FILE
    if result.is_file():
        try:
            raw = json.loads(result.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ModelError(f"{result}: cannot be read as JSON ({exc})") from None
        if raw.get("model"):
            return path / raw["model"]
        per_fold = [f["model"] for f in raw.get("folds", []) if f.get("model")]
        if len(per_fold) > 1:
            raise ModelError(
                f"{path}: this result holds one model per fold ({len(per_fold)}); name one, e.g. {path / per_fold[0]}"
            )
        if per_fold:
            return path / per_fold[0]
        raise ModelError(f"{path}: this result saved no model (it ran with --no-model, or before models were saved)")
    if (path / MODEL_DIR / INFO_FILE).is_file():
        return path / MODEL_DIR
    raise ModelError(f"{path}: neither a model folder (no {INFO_FILE}) nor a result folder (no {RESULT_FILE})")


def load_model(path: Path | str, source: str | None = None, runtime: str = "torch") -> TunedModel:
    """The saved model at ``path`` (see :func:`locate`), ready to predict.

    ``source``: where the pre-trained backbone is on this machine, when not where the job
    found it (a folder or hub id; its files must have the recorded fingerprint).
    ``runtime``: ``torch``, or ``onnx`` (the folder's ``model.onnx`` from ``serbench
    export``, run by onnxruntime).
    """
    folder = locate(Path(path))
    info = read_info(folder)
    weights = folder / info.weights.file
    if not weights.is_file():
        raise ModelError(f"{folder}: the weight file {info.weights.file} is missing")
    if sha256_file(weights) != info.weights.sha256:
        raise ModelError(f"{weights}: its sha256 differs from the one model.json records (the file was altered)")
    backbone = _backbone(info, source)
    found = pretrained_files(backbone)
    if combined(found.items()) != info.backbone.fingerprint:
        changed = sorted(n for n in set(found) | set(info.backbone.files) if found.get(n) != info.backbone.files.get(n))
        raise ModelError(
            f"{folder}: the pre-trained {info.backbone.name} weights at {backbone.source!r} differ from those it was "
            f"trained on ({', '.join(changed)} changed since training)"
        )
    if runtime == "torch":
        from serbench.deploy.torch_runtime import TorchScorer

        scorer = TorchScorer.load(backbone, info, weights)
    elif runtime == "onnx":
        from serbench.deploy.onnx_runtime import OnnxScorer

        scorer = OnnxScorer.load(folder, backbone, info)
    else:
        raise ModelError(f"runtime {runtime!r}: choose torch or onnx")
    return TunedModel(folder, info, scorer)


def _backbone(info: ModelInfo, source: str | None):
    """The backbone plugin the model was trained with, on ``source`` or the recorded one."""
    from serbench.plugin.registry import registry
    from serbench.errors import PluginError

    try:
        cls = registry().get("backbone", info.backbone.name).cls
    except PluginError as exc:
        raise ModelError(f"the model's backbone {info.backbone.name!r} is not installed here ({exc})") from None
    try:
        options = cls.Options.model_validate(info.backbone.options)
    except Exception as exc:  # pydantic's ValidationError: options of another plugin version
        raise ModelError(f"backbone {info.backbone.name!r} no longer accepts the model's options: {exc}") from None
    backbone = cls(source or info.backbone.source, options)
    backbone.check_source()
    return backbone
