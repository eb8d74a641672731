"""The torch side of the Whisper backbone (imported only when a model is built)."""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
from torch import nn

from serbench.dataset import SAMPLE_RATE
from serbench.errors import DataError, ModelError
from serbench.model import SERModel

MEL_HOP = 160  # samples per mel frame; the encoder halves the frame rate (20 ms per output)


def load_encoder(source: str):
    """``(encoder, feature_extractor)`` from a local folder or hub id, in float32.

    ``WhisperEncoder.from_pretrained`` would silently give a random encoder for these
    checkpoints (their keys live under ``model.encoder``), so the classification model
    is loaded and its encoder kept.
    """
    import transformers
    from transformers import WhisperFeatureExtractor, WhisperForAudioClassification

    transformers.logging.set_verbosity_error()  # "newly initialised head" is expected
    transformers.logging.disable_progress_bar()
    try:
        feature_extractor = WhisperFeatureExtractor.from_pretrained(source)
        model = WhisperForAudioClassification.from_pretrained(source, dtype=torch.float32)
    except (OSError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else exc.__class__.__name__
        raise ModelError(
            f"cannot load Whisper model {source!r}: {first} (name a local Hugging Face-format "
            "folder, a folder under $SERBENCH_MODELS, or a hub id reachable from here)"
        ) from None
    return model.encoder, feature_extractor


class WhisperSER(SERModel):
    def __init__(self, encoder: nn.Module, feature_extractor, layers: str | int, num_classes: int):
        super().__init__(encoder.config.d_model, num_classes)
        self.encoder = encoder
        self.feature_extractor = feature_extractor
        n_layers = len(encoder.layers)
        if isinstance(layers, int) and not 0 <= layers <= n_layers:
            raise ModelError(f"backbone.options.layers: {layers} is out of range 0..{n_layers}")
        self.layers = layers

    def encoder_modules(self):
        return [self.encoder]

    def fixed_parameters(self):
        return [self.encoder.embed_positions.weight]  # Whisper's sinusoids are not trained

    def log_mel(self, wave: np.ndarray) -> torch.Tensor:
        """``(80, frames)`` log-mel of one unpadded clip, ``frames`` even."""
        frames = len(wave) // MEL_HOP
        frames -= frames % 2
        if frames < 2:
            raise DataError(f"a clip of {len(wave)} samples is too short for Whisper (needs {2 * MEL_HOP})")
        features = self.feature_extractor(
            wave, sampling_rate=SAMPLE_RATE, padding="longest", return_tensors="pt"
        ).input_features[0]
        return features[:, :frames]

    def _encode(self, waves: Sequence[np.ndarray]) -> torch.Tensor:
        encoder = self.encoder
        mels = [self.log_mel(w) for w in waves]
        frames = torch.tensor([m.shape[1] for m in mels])
        longest = int(frames.max())
        # Zero padding behaves exactly like the convolutions' own zero padding, so with an
        # even frame count the valid outputs never see a padded frame.
        batch = torch.zeros(len(mels), mels[0].shape[0], longest)
        for i, mel in enumerate(mels):
            batch[i, :, : mel.shape[1]] = mel
        x = nn.functional.gelu(encoder.conv1(batch))
        x = nn.functional.gelu(encoder.conv2(x)).permute(0, 2, 1)
        steps = x.shape[1]
        x = x + encoder.embed_positions.weight[:steps]
        valid = torch.arange(steps)[None, :] < (frames // 2)[:, None]  # (B, steps)
        mask = None
        if not bool(valid.all()):
            mask = torch.zeros(len(mels), 1, steps, steps, dtype=x.dtype)
            mask.masked_fill_(~valid[:, None, None, :], torch.finfo(x.dtype).min)
        hidden = [x]
        for layer in encoder.layers:
            x = layer(x, mask)
            if isinstance(x, tuple):  # older transformers return (hidden, attentions)
                x = x[0]
            hidden.append(x)
        hidden[-1] = encoder.layer_norm(hidden[-1])
        if self.layers == "last":
            chosen = hidden[-1]
        elif self.layers == "mean":
            chosen = torch.stack(hidden[1:]).mean(dim=0)
        else:
            chosen = hidden[self.layers]
        weights = valid.to(chosen.dtype)[:, :, None]
        return (chosen * weights).sum(dim=1) / weights.sum(dim=1)
