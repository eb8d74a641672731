"""Whisper's audio encoder as an SER backbone (OpenAI Whisper, MIT-licensed weights).

Loads any Hugging Face-format Whisper checkpoint -- a local folder such as
``whisper-base`` or a hub id such as ``openai/whisper-base`` -- through
``WhisperForAudioClassification.from_pretrained`` in float32, keeps the encoder, and
by default runs it on unpadded inputs: the positional table is sliced to the clip's length
instead of padding every clip to 30 s. In a batch, padded frames are masked out of
attention and out of the mean-pooling, so an utterance gets the same features alone or in
a batch. Option ``pad`` pads with silence to ``maxlen`` or 30 s instead; ``layers`` picks
the hidden states to pool and ``pooling`` how (see ``WhisperSER``): ``attention`` pools
with learned weights that belong to the head.
"""

from __future__ import annotations

from typing import Literal, Optional, Union

from pydantic import Field, model_validator

from serbench import hookimpl
from serbench.backbones.base import Backbone, resolve_source
from serbench.spec import StrictModel


class WhisperOptions(StrictModel):
    layers: Union[Literal["last", "mean", "weighted"], int] = Field(
        "mean",
        description="Hidden states to pool: 'last' (after the final layer norm), 'mean' of "
        "all transformer layers' outputs, one index (0 = the input embeddings), or "
        "'weighted': a learned softmax-weighted sum of all of them, part of the head.",
    )
    pad: Literal["none", "maxlen", "30s"] = Field(
        "none",
        description="What the encoder sees after a clip: 'none' (unpadded, positional table "
        "sliced), 'maxlen' (silence up to the trial's maxlen) or '30s' (silence up to "
        "Whisper's 30-s window). Pooling always covers the clip's frames only.",
    )

    pooling: Literal["mean", "mean+std", "attention", "attention+std"] = Field(
        "mean",
        description="How a hidden state is pooled over the clip's frames: 'mean', "
        "'mean+std' (the mean and the standard deviation side by side: twice the features), "
        "'attention' (a learned attention over the frames, part of the head, starting as the "
        "mean) or 'attention+std' (its weighted mean and standard deviation). Attention "
        "does not combine with layers 'weighted' or train_layers.",
    )
    train_layers: Optional[int] = Field(
        None,
        ge=1,
        description="From the unfreeze epoch on, train only the top N transformer layers "
        "(and the final layer norm); the convolutional front and the layers below stay "
        "frozen, and their outputs are cached, so an unfrozen epoch runs only those N "
        "layers. Default: the whole encoder trains (convolutions included).",
    )


    @model_validator(mode="after")
    def _pooling_combines(self):
        conflict = pooling_conflict(self.pooling, self.layers, self.train_layers)
        if conflict:
            raise ValueError(f"pooling: {conflict}")
        return self


def pooling_conflict(pooling: str, layers, train_layers) -> str | None:
    """Why ``pooling`` does not combine with ``layers`` / ``train_layers`` (``None``: it
    does). A learned (attention) pooling pools one hidden state's frames in the head, so
    it refuses ``layers: weighted`` (the layer mix is standardised exactly from per-layer
    pooled vectors, which attention weights would change) and ``train_layers`` (the
    cached frozen prefix holds the lower layers' pooled rows, not their frames)."""
    if not pooling.startswith("attention"):
        return None
    if layers == "weighted":
        return (
            f"{pooling!r} does not combine with layers 'weighted' (the layer mix is standardised from "
            "per-layer pooled vectors); choose layers last, mean or an index"
        )
    if train_layers is not None:
        return (
            f"{pooling!r} does not combine with train_layers (the cached frozen prefix holds pooled rows, "
            "not frames); leave train_layers unset, so the whole encoder trains from unfreeze on"
        )
    return None


class WhisperBackbone(Backbone):
    name = "whisper"
    default_source = "openai/whisper-base"
    Options = WhisperOptions
    library = "transformers"
    # What WhisperForAudioClassification / WhisperFeatureExtractor.from_pretrained read.
    model_files = (("config.json",), ("preprocessor_config.json",), ("*.safetensors", "*.bin"))
    weight_files = ("config.json", "preprocessor_config.json", "*.safetensors", "*.bin")

    def load_pretrained(self, resolved: str):
        import torch

        from serbench.backbones.whisper_model import load_encoder

        # Loading initialises a classifier we drop, from the global RNG: keep the RNG as
        # it was, so the first model built after torch.manual_seed equals the later ones.
        with torch.random.fork_rng(devices=[]):
            return load_encoder(resolved)

    def build(self, num_classes: int):
        import copy

        from serbench.backbones.whisper_model import WhisperSER

        encoder, feature_extractor = self.pretrained()
        return WhisperSER(
            copy.deepcopy(encoder),
            feature_extractor,
            self.options.layers,
            num_classes,
            self.options.pad,
            self.options.train_layers,
            self.options.pooling,
        )

    def onnx_front_end(self):
        """The exported graph's inputs from the feature extractor alone (no weights read)."""
        from serbench.backbones.whisper_model import graph_front_end

        self.check_source()
        return graph_front_end(resolve_source(self.source), self.options.pad)

    def cache_key(self) -> str:
        """``describe()`` plus the folder the source resolved to and its weight files'
        sizes and times, so a persistent feature cache never serves another checkpoint's
        features under the same name."""
        import json
        from pathlib import Path

        resolved = resolve_source(self.source)
        folder = Path(resolved)
        files = {}
        if folder.is_dir():
            for path in sorted(folder.glob("*.safetensors")) + sorted(folder.glob("*.bin")):
                stat = path.stat()
                files[path.name] = [stat.st_size, stat.st_mtime_ns]
        return json.dumps({**self.describe(), "resolved": resolved, "weights": files}, sort_keys=True)


@hookimpl
def serbench_backbones():
    return [WhisperBackbone]
