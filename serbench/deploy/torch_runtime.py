"""The PyTorch runtime of a saved model: the backbone built from its pre-trained weights,
the saved tensors put back, scored as a study scores its test split (each input cut to
``maxlen``, batches of similar length: :func:`encode_waves`, softmax of the logits)."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence, TYPE_CHECKING

import numpy as np
import torch

from serbench.deploy.format import ModelInfo
from serbench.deploy.speakers import SpeakerRule
from serbench.errors import ModelError
from serbench.training.features import encode_waves
from serbench.training.grouping import group_statistics

if TYPE_CHECKING:
    from serbench.backbones.base import Backbone
    from serbench.backbones.model import SERModel


class TorchScorer(SpeakerRule):
    """Class probabilities of 16 kHz mono inputs (each at most ``maxlen`` samples)."""

    name = "torch"

    def __init__(self, model: "SERModel", maxlen: int, speaker_norm: bool = False):
        self.model = model.eval()
        self.maxlen = maxlen
        self.speaker_norm = speaker_norm  # standardise each call's inputs with their own statistics

    @classmethod
    def load(cls, backbone: "Backbone", info: ModelInfo, weights: Path) -> "TorchScorer":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            state = load_file(str(weights))
        except (SafetensorError, OSError) as exc:
            raise ModelError(f"{weights}: not a readable safetensors file ({exc})") from None
        model = backbone.build(len(info.classes))
        try:
            model.load_trained_state(state)
        except (KeyError, RuntimeError) as exc:
            first = str(exc).strip().splitlines()[0]
            raise ModelError(f"{weights}: these weights do not fit the {info.backbone.name} model ({first})") from None
        return cls(model, info.maxlen, bool(info.training.params.get("speaker_norm")))

    @property
    def enrolment(self) -> dict:
        return self.model.enrolment

    def probabilities(self, waves: Sequence[np.ndarray], speaker: str | None = None) -> np.ndarray:
        """``(len(waves), classes)`` probabilities, in the order of ``waves``. A model
        trained with ``speaker_norm`` standardises ``waves`` with their own statistics:
        they must all be one speaker's, and at least two -- or, naming an enrolled
        ``speaker``, with that speaker's training statistics (any number of waves)."""
        self.check_group(len(waves), speaker)
        if not waves:
            return np.zeros((0, len(self.model.head.bias)))
        features = torch.stack(encode_waves(self.model, waves, self.maxlen))
        # one group: the named (enrolled, so speaker_norm) speaker's training statistics, or
        # the waves' own
        statistics = group_statistics(self.model, features, [speaker] * len(waves), self.model.enrolment)[speaker] \
            if self.speaker_norm else None
        with torch.no_grad():
            return torch.softmax(self.model.classify(features, statistics), dim=1).numpy()
