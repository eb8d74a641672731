"""SpeechBrain's wav2vec2 emotion checkpoints as an SER backbone (the paper's default).

Loads an ``EncoderClassifier``-style checkpoint -- a hub id such as
``speechbrain/emotion-recognition-wav2vec2-IEMOCAP`` or a local folder holding the same
files -- with SpeechBrain's own loader (``EncoderClassifier.from_hparams``), keeps the
fine-tuned wav2vec2 encoder and the checkpoint's mean over time, and drops its 4-class
``output_mlp`` for serbench's head. Unfreezing is real: the published hyperparams build
the encoder with ``freeze: True`` (its forward then runs under ``torch.no_grad()``), and
the model flips that flag together with ``requires_grad``. The CNN feature extractor
stays frozen by default, as in SpeechBrain's IEMOCAP recipe.

A ``hyperparams.yaml`` is code (``!new:`` tags construct arbitrary objects): only the
source the job names is loaded. Folder layout and offline use: see the README.
"""

from __future__ import annotations

import os
from pathlib import Path

from pydantic import Field

from serbench import hookimpl
from serbench.backbones.base import Backbone
from serbench.spec import StrictModel

HPARAMS = "hyperparams.yaml"


def default_savedir() -> Path:
    cache = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(cache) / "serbench" / "speechbrain"


def collect_dir(source: str, savedir: str | None) -> Path:
    """Where the files of hub id ``source`` are collected: ``<savedir>/<owner>--<name>``."""
    return (Path(savedir).expanduser() if savedir else default_savedir()) / source.replace("/", "--")


class SpeechBrainWav2Vec2Options(StrictModel):
    savedir: str | None = Field(
        None,
        description="Where the files of a hub source are collected, one folder per source inside "
        "it (default: $XDG_CACHE_HOME/serbench/speechbrain, else ~/.cache/serbench/speechbrain). "
        "Local folders are read in place.",
    )
    freeze_feature_extractor: bool = Field(
        True,
        description="Keep wav2vec2's CNN feature extractor frozen in unfrozen epochs too, as "
        "SpeechBrain's IEMOCAP recipe does (freeze_wav2vec2_conv: True).",
    )


class SpeechBrainWav2Vec2Backbone(Backbone):
    name = "speechbrain-wav2vec2"
    default_source = "speechbrain/emotion-recognition-wav2vec2-IEMOCAP"
    Options = SpeechBrainWav2Vec2Options
    library = "speechbrain"
    model_files = ((HPARAMS,),)
    weight_files = (HPARAMS, "*.ckpt")
    loading_options = ("savedir",)

    def load_pretrained(self, resolved: str):
        from serbench.backbones.speechbrain_wav2vec2_model import load_checkpoint

        return load_checkpoint(resolved, self.options.savedir)

    def build(self, num_classes: int):
        import copy

        from serbench.backbones.speechbrain_wav2vec2_model import SpeechBrainWav2Vec2SER

        return SpeechBrainWav2Vec2SER(
            copy.deepcopy(self.pretrained()), num_classes, self.options.freeze_feature_extractor
        )

    def hub_cached(self, hub_id: str) -> bool:
        """Collected earlier into ``savedir`` (SpeechBrain then reads it from there), or in
        the Hugging Face cache."""
        return (collect_dir(hub_id, self.options.savedir) / HPARAMS).is_file() or super().hub_cached(hub_id)


@hookimpl
def serbench_backbones():
    return [SpeechBrainWav2Vec2Backbone]
