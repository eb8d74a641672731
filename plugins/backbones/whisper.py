"""Whisper's audio encoder as an SER backbone (OpenAI Whisper, MIT-licensed weights).

Loads any Hugging Face-format Whisper checkpoint -- a local folder such as
``whisper-base`` or a hub id such as ``openai/whisper-base`` -- through
``WhisperForAudioClassification.from_pretrained`` in float32, keeps the encoder, and
runs it on unpadded inputs: the positional table is sliced to the clip's length instead
of padding every clip to 30 s. In a batch, padded frames are masked out of attention and
out of the mean-pooling, so an utterance gets the same features alone or in a batch.
"""

from __future__ import annotations

from typing import Literal, Union

from pydantic import Field

from serbench import hookimpl
from serbench.backbone import Backbone, resolve_source
from serbench.spec import StrictModel


class WhisperOptions(StrictModel):
    layers: Union[Literal["last", "mean"], int] = Field(
        "mean",
        description="Hidden states to pool: 'last' (after the final layer norm), 'mean' of "
        "all transformer layers' outputs, or one index (0 = the input embeddings).",
    )


class WhisperBackbone(Backbone):
    name = "whisper"
    default_source = "openai/whisper-base"
    Options = WhisperOptions

    def __init__(self, source=None, options=None):
        super().__init__(source, options)
        self._pretrained = None

    def build(self, num_classes: int):
        import copy

        from serbench_plugins.backbones.whisper_model import WhisperSER, load_encoder

        if self._pretrained is None:
            self._pretrained = load_encoder(resolve_source(self.source))
        encoder, feature_extractor = self._pretrained
        return WhisperSER(copy.deepcopy(encoder), feature_extractor, self.options.layers, num_classes)


@hookimpl
def serbench_backbones():
    return [WhisperBackbone]
