"""Writing a saved model's folder: weights, ``model.json`` and the model card.

The folder is replaced whole: written beside it under a temporary name, then renamed,
so a reader never sees a model.json whose weights belong to another training.
"""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

from serbench import atomic
from serbench.deploy.card import model_card
from serbench.deploy.format import CARD_FILE, INFO_FILE, WEIGHTS_FILE, ModelInfo, WeightsInfo


def weights_info(weights: bytes, encoder_tensors: int | None = None) -> WeightsInfo:
    """What ``weights`` (a safetensors blob) holds: its hash, size, tensor and number counts."""
    from safetensors.torch import load

    from serbench.backbones.model import ENROLMENT, SERModel

    tensors = load(weights)
    head = (*(f"{part}." for part in SERModel.HEAD_PARTS), ENROLMENT)
    encoder = sum(not name.startswith(head) for name in tensors)
    return WeightsInfo(
        file=WEIGHTS_FILE,
        sha256=hashlib.sha256(weights).hexdigest(),
        bytes=len(weights),
        tensors=len(tensors),
        parameters=sum(t.numel() for t in tensors.values()),
        encoder=f"{encoder} trained encoder tensors" if encoder else "none (the encoder stayed frozen)",
    )


def write_model(folder: Path, weights: bytes, info: ModelInfo) -> None:
    """``folder`` holding ``weights.safetensors``, ``model.json`` and ``README.md``."""
    staging = folder.with_name(f".{folder.name}.saving")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    atomic.write_bytes(staging / WEIGHTS_FILE, weights)
    atomic.write_json(staging / INFO_FILE, info.model_dump(mode="json"))
    atomic.write_text(staging / CARD_FILE, model_card(info))
    if folder.exists():
        shutil.rmtree(folder)
    staging.rename(folder)
