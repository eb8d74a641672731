"""The torch side of the Whisper backbone (imported only when a model is built)."""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
from torch import nn

from serbench.data.audio import SAMPLE_RATE
from serbench.errors import DataError, ModelError
from serbench.backbones.model import AttentionPool, SERModel

MEL_HOP = 160  # samples per mel frame; the encoder halves the frame rate (20 ms per output)
WINDOW = 480000  # Whisper's 30-s input window, in samples (3000 mel frames, 1500 positions)
PAD_POLICIES = ("none", "maxlen", "30s")
POOLINGS = ("mean", "mean+std", "attention", "attention+std")
LEARNED_POOLINGS = ("attention", "attention+std")  # pooled by the head (AttentionPool)
ATTENTION_HIDDEN = 64  # the attention's hidden size


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


def graph_front_end(source: str, pad: str):
    """``graph_inputs`` bound to the feature extractor of ``source`` (its
    ``preprocessor_config.json`` only: no weights are read) and to ``pad``."""
    import functools

    from transformers import WhisperFeatureExtractor

    try:
        feature_extractor = WhisperFeatureExtractor.from_pretrained(source)
    except (OSError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else exc.__class__.__name__
        raise ModelError(f"cannot load the Whisper feature extractor of {source!r}: {first}") from None
    return functools.partial(graph_inputs, feature_extractor, pad)


def log_mel(feature_extractor, wave: np.ndarray, length: int | None = None) -> torch.Tensor:
    """``(80, frames)`` log-mel of one clip zero-padded to ``length`` samples (default:
    unpadded), ``frames`` even."""
    samples = length or len(wave)
    frames = min(samples, WINDOW) // MEL_HOP
    frames -= frames % 2
    if len(wave) < 2 * MEL_HOP:
        raise DataError(f"a clip of {len(wave)} samples is too short for Whisper (needs {2 * MEL_HOP})")
    if samples > len(wave):
        wave = np.pad(wave, (0, samples - len(wave)))
    features = feature_extractor(
        wave[:WINDOW], sampling_rate=SAMPLE_RATE, padding="longest", return_tensors="pt"
    ).input_features[0]
    return features[:, :frames]


def pad_length(pad: str, maxlen: int | None) -> int | None:
    """Samples every clip is padded to under pad policy ``pad`` (``None``: unpadded)."""
    if pad == "30s":
        return WINDOW
    if pad == "maxlen":
        if maxlen is None:
            raise ValueError("pad='maxlen' needs the clips' maxlen: call encode(waves, maxlen)")
        return min(maxlen, WINDOW)
    return None


def graph_inputs(feature_extractor, pad: str, wave: np.ndarray, maxlen: int) -> dict[str, np.ndarray]:
    """The exported graph's inputs for one clip of at most ``maxlen`` samples: ``mel``,
    its log-mel ``(1, 80, frames)`` as the encoder sees it (padded under ``pad``), and
    when padded ``pooled``, ``(1,)`` int64, the output frames that hold the clip (what
    the mean over time covers). Needs only the feature extractor, no weights."""
    length = pad_length(pad, maxlen)
    wave = wave[: min(maxlen, length or WINDOW)]
    mel = log_mel(feature_extractor, wave, length)
    inputs = {"mel": mel.numpy()[None].astype(np.float32, copy=False)}
    if length is not None:
        steps = mel.shape[1] // 2
        inputs["pooled"] = np.array([min(max(-(-len(wave) // (2 * MEL_HOP)), 1), steps)], dtype=np.int64)
    return inputs


class WhisperSER(SERModel):
    """Whisper's encoder, pooled over the frames that hold the clip.

    ``pad`` says what the encoder sees beyond a clip's last sample (clips longer than
    Whisper's 30-s window are cut to it under every policy):

    - ``none``: nothing. The clip's log-mel is encoded as it is, with the positional table
      sliced to its length; in a batch, shorter clips' padded frames are masked out of
      attention, so a clip's features are the same alone or batched.
    - ``maxlen``: zeros (silence) up to the trial's ``maxlen`` samples, encoded and attended
      to like any input, as fixed-length padding does.
    - ``30s``: zeros up to 480000 samples (3000 mel frames), Whisper's native input; the
      encoder attends to the silence, as in its training.

    Under every policy the pooling covers only the output frames that hold the clip:
    ``frames // 2`` unpadded, ``ceil(samples / 320)`` padded. ``pooling``: ``mean`` over
    those frames, or ``mean+std``, their mean and standard deviation concatenated (the
    feature size doubles); ``attention`` (``attention+std``): a learned attention over
    those frames (:class:`~serbench.backbones.model.AttentionPool`, part of the head),
    their attention-weighted mean (and standard deviation). Attention pools the frames of
    the hidden state ``layers`` selects (for ``mean``, the frame-wise mean of the layers'
    outputs); it starts as the plain mean. It is refused (``ModelError``) with
    ``layers: weighted`` (the layer mix is standardised from per-layer pooled vectors)
    and with ``train_layers`` (the cached prefix holds pooled rows).

    ``layers``: ``last`` (after the final layer norm), ``mean`` of the transformer layers'
    outputs, an index (0 = the input embeddings), or ``weighted``: the pooled vectors of
    all ``L + 1`` hidden states, ``(B, L + 1, D)``, mixed by the head's learned weights.
    """

    def __init__(
        self,
        encoder: nn.Module,
        feature_extractor,
        layers: str | int,
        num_classes: int,
        pad: str = "none",
        train_layers: int | None = None,
        pooling: str = "mean",
    ):
        n_layers = len(encoder.layers)
        if isinstance(layers, int) and not 0 <= layers <= n_layers:
            raise ModelError(f"backbone.options.layers: {layers} is out of range 0..{n_layers}")
        if pad not in PAD_POLICIES:
            raise ModelError(f"backbone.options.pad: {pad!r} is not one of {', '.join(PAD_POLICIES)}")
        if train_layers is not None and not 1 <= train_layers <= n_layers:
            raise ModelError(f"backbone.options.train_layers: {train_layers} is out of range 1..{n_layers}")
        if pooling not in POOLINGS:
            raise ModelError(f"backbone.options.pooling: {pooling!r} is not one of {', '.join(POOLINGS)}")
        check_pooling(pooling, layers, train_layers)
        feature_layers = n_layers + 1 if layers == "weighted" else None
        pooled_rows = 2 if pooling.endswith("+std") else 1  # d_model-wide rows per pooled state
        super().__init__(encoder.config.d_model * pooled_rows, num_classes, feature_layers)
        if pooling in LEARNED_POOLINGS:
            self.pool = AttentionPool(encoder.config.d_model, ATTENTION_HIDDEN, std=pooling == "attention+std")
        self.pooled_rows = pooled_rows
        self.pooling = pooling
        self.encoder = encoder
        self.feature_extractor = feature_extractor
        self.layers = layers
        self.pad = pad
        self.train_layers = train_layers
        # Transformer layers [0, split) never train: with train_layers set they (and the
        # convolutional front) form a frozen prefix whose output a feature cache can keep.
        self.split = 0 if train_layers is None else n_layers - train_layers
        if train_layers is not None:
            self.prefix_rows = self.split + 1
            for param in self._prefix_parameters():
                param.requires_grad_(False)

    def encoder_modules(self):
        if self.train_layers is None:
            return [self.encoder]
        return [self.encoder.layers[self.split :], self.encoder.layer_norm]

    def frozen_modules(self):
        if self.train_layers is None:
            return []
        return [self.encoder.conv1, self.encoder.conv2, self.encoder.layers[: self.split]]

    def fixed_parameters(self):
        # Whisper's sinusoids are never trained; nor is a frozen prefix.
        return [self.encoder.embed_positions.weight, *self._prefix_parameters()]

    def _prefix_parameters(self) -> list[nn.Parameter]:
        return [p for module in self.frozen_modules() for p in module.parameters()]

    def log_mel(self, wave: np.ndarray, length: int | None = None) -> torch.Tensor:
        """``(80, frames)`` log-mel of one clip zero-padded to ``length`` samples (default:
        unpadded), ``frames`` even."""
        return log_mel(self.feature_extractor, wave, length)

    def pad_length(self, maxlen: int | None) -> int | None:
        """Samples every clip is padded to under this policy (``None``: unpadded)."""
        return pad_length(self.pad, maxlen)

    def input_key(self, samples: int, maxlen: int) -> tuple[int, ...]:
        cut = min(samples, maxlen, WINDOW)
        return (cut,) if self.pad == "none" else (cut, self.pad_length(maxlen))

    def _encode(self, waves: Sequence[np.ndarray]) -> torch.Tensor:
        return self._encode_cut(waves, None)

    def _encode_cut(self, waves: Sequence[np.ndarray], maxlen: int | None) -> torch.Tensor:
        cut = self.pad_length(maxlen) or WINDOW
        return self._encode_from_prefix(self._prefix_states(waves, maxlen), [min(len(w), cut) for w in waves])

    def _prefix_states(self, waves: Sequence[np.ndarray], maxlen: int | None) -> list[torch.Tensor]:
        """Per clip, the frozen prefix's output packed as one ``(R + steps, D)`` tensor: the
        pooled hidden states ``0 .. split`` (``R = (split + 1) * pooled_rows`` rows, each
        pooled state ``pooled_rows`` rows), then the hidden state entering layer ``split``,
        one row per output frame (all frames when padded, the clip's own frames when not)."""
        encoder = self.encoder
        x, own, valid, mask = self._front(waves, maxlen)
        pooled = [_pool(x, valid, self.pooling)]
        for layer in encoder.layers[: self.split]:
            x = _layer(layer, x, mask)
            pooled.append(_pool(x, valid, self.pooling))
        rows = torch.stack(pooled, dim=1).reshape(len(waves), -1, x.shape[2])  # (B, R, D)
        return [torch.cat([rows[i], x[i, : int(own[i])]]) for i in range(len(waves))]

    def _front(self, waves: Sequence[np.ndarray], maxlen: int | None):
        """``(x, own, valid, mask)``: the embedded batch ``(B, steps, D)`` entering layer 0,
        each clip's own frame count, the frames pooled, and the attention mask."""
        encoder = self.encoder
        length = self.pad_length(maxlen)
        waves = [w[: length or WINDOW] for w in waves]
        mels = [self.log_mel(w, length) for w in waves]
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
        own = frames // 2 if length is None else torch.full((len(waves),), steps)
        valid, mask = self._valid_and_mask([len(w) for w in waves], own, steps)
        return x, own, valid, mask

    def _frames(self, waves: Sequence[np.ndarray], maxlen: int | None) -> list[torch.Tensor]:
        """Per clip, the frames of the hidden state ``layers`` selects, ``(covered, D)``:
        only those the pooling covers (the clip's own frames, not padding)."""
        x, _, valid, mask = self._front(waves, maxlen)
        selected = select_frames(self.encoder, x, mask, self.layers)
        counts = valid.sum(dim=1)
        return [selected[i, : int(counts[i])] for i in range(len(waves))]

    def _encode_from_prefix(self, states: Sequence[torch.Tensor], samples: Sequence[int]) -> torch.Tensor:
        """Features from :meth:`_prefix_states` of clips of ``samples`` samples (as cut)."""
        head_rows = (self.split + 1) * self.pooled_rows
        own = torch.tensor([len(s) - head_rows for s in states])
        steps = int(own.max())
        x = torch.zeros(len(states), steps, states[0].shape[1], dtype=states[0].dtype)
        for i, state in enumerate(states):
            x[i, : int(own[i])] = state[head_rows:]
        valid, mask = self._valid_and_mask(samples, own, steps)
        pooled = [s[:head_rows].reshape(self.split + 1, -1) for s in states]
        top = []
        trained = self.encoder.layers[self.split :]
        for index, layer in enumerate(trained):
            x = _layer(layer, x, mask)
            if index == len(trained) - 1:
                x = self.encoder.layer_norm(x)
            top.append(_pool(x, valid, self.pooling))
        hidden = torch.cat([torch.stack(pooled), torch.stack(top, dim=1)], dim=1)  # (B, L + 1, D)
        if self.layers == "weighted":
            return hidden
        if self.layers == "last":
            return hidden[:, -1]
        if self.layers == "mean":
            return hidden[:, 1:].mean(dim=1)
        return hidden[:, self.layers]

    def onnx_inputs(self, wave: np.ndarray, maxlen: int) -> dict[str, np.ndarray]:
        """``mel``, and under a padded policy ``pooled`` (see :func:`graph_inputs`)."""
        return graph_inputs(self.feature_extractor, self.pad, wave, maxlen)

    def onnx_module(self) -> nn.Module:
        return WhisperOnnxEncoder(self.encoder, self.layers, self.pad != "none", self.pooling, self.pool).eval()

    def _valid_and_mask(
        self, samples: Sequence[int], own: torch.Tensor, steps: int
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``valid`` (B, steps): the frames pooled; ``mask``: the additive attention mask
        hiding other clips' padding (unpadded policy only; padded inputs attend to their
        silence, as in Whisper's training)."""
        if self.pad == "none":
            covered = own
        else:  # pooling covers the clip only
            covered = torch.tensor([-(-n // (2 * MEL_HOP)) for n in samples]).clamp(1, steps)
        valid = torch.arange(steps)[None, :] < covered[:, None]
        mask = None
        if self.pad == "none" and not bool(valid.all()):
            mask = torch.zeros(len(samples), 1, steps, steps)
            mask.masked_fill_(~valid[:, None, None, :], torch.finfo(mask.dtype).min)
        return valid, mask


class WhisperOnnxEncoder(nn.Module):
    """One clip through the encoder, for export: ``mel`` ``(1, 80, frames)`` (and with
    ``padded`` the output frames pooled, ``(1,)``) to the features ``WhisperSER`` encodes.
    Unmasked (a batch of one has no other clip's padding) and only as deep as ``layers``
    needs: an index stops at that layer. The same arithmetic as
    ``WhisperSER._prefix_states`` / ``_encode_from_prefix``, or with a learned ``pool``
    (attention) as ``WhisperSER._frames`` then ``pool``."""

    def __init__(
        self, encoder: nn.Module, layers: str | int, padded: bool, pooling: str = "mean", pool: nn.Module | None = None
    ):
        super().__init__()
        self.encoder = encoder
        self.layers = layers
        self.padded = padded
        self.pooling = pooling
        self.pool = pool
        self.depth = layers if isinstance(layers, int) else len(encoder.layers)

    def forward(self, mel: torch.Tensor, pooled: torch.Tensor | None = None) -> torch.Tensor:
        encoder = self.encoder
        x = nn.functional.gelu(encoder.conv1(mel))
        x = nn.functional.gelu(encoder.conv2(x)).permute(0, 2, 1)
        positions = torch.arange(x.shape[1])
        x = x + encoder.embed_positions.weight[: x.shape[1]]
        valid = positions[None, :] < (pooled[:, None] if self.padded else x.shape[1])
        if self.pool is not None:
            return self.pool(select_frames(encoder, x, None, self.layers), valid)
        hidden = [_pool(x, valid, self.pooling)]
        last = len(encoder.layers) - 1
        for index, layer in enumerate(encoder.layers[: self.depth]):
            x = _layer(layer, x, None)
            if index == last:
                x = encoder.layer_norm(x)
            hidden.append(_pool(x, valid, self.pooling))
        if isinstance(self.layers, int):
            return hidden[self.layers]
        stacked = torch.stack(hidden, dim=1)  # (1, L + 1, D)
        if self.layers == "weighted":
            return stacked
        if self.layers == "last":
            return stacked[:, -1]
        return stacked[:, 1:].mean(dim=1)


def check_pooling(pooling: str, layers: str | int, train_layers: int | None) -> None:
    """``ModelError`` for the combinations a learned pooling does not support (the
    options are checked alike when a job is read: ``WhisperOptions``)."""
    from serbench.backbones.whisper import pooling_conflict

    conflict = pooling_conflict(pooling, layers, train_layers)
    if conflict:
        raise ModelError(f"backbone.options.pooling: {conflict}")


def select_frames(encoder: nn.Module, x: torch.Tensor, mask: torch.Tensor | None, layers: str | int) -> torch.Tensor:
    """The frames ``(B, steps, D)`` of the hidden state ``layers`` selects, from ``x``
    entering layer 0: an index (0 = ``x`` itself; the last layer's output after the final
    layer norm), ``last``, or ``mean``: the frame-wise mean of all layers' outputs. Runs
    only as deep as needed. (With ``mean`` pooling this gives the same pooled vector as
    averaging per-layer means.)"""
    n_layers = len(encoder.layers)
    depth = layers if isinstance(layers, int) else n_layers
    total = None
    for index, layer in enumerate(encoder.layers[:depth]):
        x = _layer(layer, x, mask)
        if index == n_layers - 1:
            x = encoder.layer_norm(x)
        if layers == "mean":
            total = x if total is None else total + x
    return total / n_layers if layers == "mean" else x


def _layer(layer: nn.Module, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    x = layer(x, mask)
    return x[0] if isinstance(x, tuple) else x  # older transformers return (hidden, attentions)


def _pool(h: torch.Tensor, valid: torch.Tensor, pooling: str = "mean") -> torch.Tensor:
    """Mean over the ``valid`` frames, ``(B, steps, D) -> (B, D)``; ``mean+std``: the mean
    and the (population) standard deviation over them, ``(B, 2 D)``."""
    weights = valid.to(h.dtype)[:, :, None]
    count = weights.sum(dim=1)
    mean = (h * weights).sum(dim=1) / count
    if pooling == "mean":
        return mean
    variance = (((h - mean[:, None, :]) ** 2) * weights).sum(dim=1) / count
    return torch.cat([mean, variance.clamp_min(1e-12).sqrt()], dim=1)
