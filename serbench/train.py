"""Fine-tuning and prediction, as in the paper: cross-entropy, AdamW, a cosine-annealed
learning rate stepped per batch, clips cut to ``maxlen`` samples, and an encoder frozen
for epochs ``0 .. unfreeze-1`` and trained from epoch ``unfreeze`` on.

While the encoder is frozen (and has never been trained), its pooled outputs for a clip
never change, so they come from a :class:`FeatureCache` shared by all trials of a study:
frozen epochs then cost a head update, not an encoder pass.
"""

from __future__ import annotations

import math
from typing import Callable, Sequence

import numpy as np
import torch
from torch import nn

from serbench.dataset import Clip
from serbench.model import SERModel
from serbench.spec import TrainParams

EVAL_BATCH = 8


class FeatureCache:
    """Pooled features of the pre-trained (frozen, never trained) encoder, keyed by
    ``(clip id, maxlen)``. One cache serves one backbone configuration; it is only valid
    for models whose ``encoder_pristine`` is true."""

    def __init__(self) -> None:
        self._store: dict[tuple[str, int], torch.Tensor] = {}
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self._store)

    def features(self, model: SERModel, clips: Sequence[Clip], maxlen: int) -> torch.Tensor:
        missing = list({c.id: c for c in clips if (c.id, maxlen) not in self._store}.values())
        self.hits += len(clips) - len(missing)
        self.misses += len(missing)
        for clip_id, vector in encode_eval(model, missing, maxlen).items():
            self._store[(clip_id, maxlen)] = vector
        return torch.stack([self._store[(c.id, maxlen)] for c in clips])


def fit(
    model: SERModel,
    clips: Sequence[Clip],
    params: TrainParams,
    seed: int,
    cache: FeatureCache | None = None,
    on_epoch: Callable[[int, float], None] | None = None,
) -> list[float]:
    """Train ``model`` in place on ``clips``; return the mean training loss per epoch.

    Deterministic for a given seed, model initialisation and thread count.
    """
    generator = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.AdamW(
        model.trainable_parameters(),
        lr=params.lr,
        weight_decay=params.weight_decay,
    )
    steps_per_epoch = math.ceil(len(clips) / params.batch_size)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=params.epochs * steps_per_epoch)
    loss_fn = nn.CrossEntropyLoss()
    if params.standardize:
        model.set_encoder_trainable(False)
        with torch.no_grad():
            model.norm.set_statistics(_frozen_features(model, clips, params.maxlen, cache))
    losses = []
    for epoch in range(params.epochs):
        encoder_trains = epoch >= params.unfreeze
        model.set_encoder_trainable(encoder_trains)
        model.train()
        order = torch.randperm(len(clips), generator=generator).tolist()
        total = 0.0
        for start in range(0, len(order), params.batch_size):
            batch = [clips[i] for i in order[start : start + params.batch_size]]
            features = _features(model, batch, params.maxlen, cache)
            logits = model.classify(features)
            loss = loss_fn(logits, torch.tensor([c.label for c in batch]))
            # Grads are set to None, so AdamW skips a frozen encoder's parameters entirely
            # (no weight decay either) until they receive gradients.
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            if encoder_trains:
                model.encoder_pristine = False
            total += loss.item() * len(batch)
        losses.append(total / len(clips))
        if on_epoch is not None:
            on_epoch(epoch, losses[-1])
    model.set_encoder_trainable(False)
    model.eval()
    return losses


def predict(model: SERModel, clips: Sequence[Clip], maxlen: int, cache: FeatureCache | None = None) -> np.ndarray:
    """Predicted class indices, in the order of ``clips``."""
    model.eval()
    predictions: dict[str, int] = {}
    with torch.no_grad():
        for batch in _length_batches(clips, maxlen, EVAL_BATCH):
            logits = model.classify(_features(model, batch, maxlen, cache))
            for clip, index in zip(batch, logits.argmax(dim=1).tolist()):
                predictions[clip.id] = index
    return np.array([predictions[c.id] for c in clips])


def _features(model: SERModel, batch: Sequence[Clip], maxlen: int, cache: FeatureCache | None) -> torch.Tensor:
    if cache is not None and model.encoder_pristine and not model.encoder_trainable:
        return cache.features(model, batch, maxlen)
    return model.encode([c.wave[:maxlen] for c in batch])


def _frozen_features(model: SERModel, clips: Sequence[Clip], maxlen: int, cache: FeatureCache | None) -> torch.Tensor:
    """Pooled features of ``clips`` under the current (frozen) encoder, in eval mode."""
    if cache is not None and model.encoder_pristine:
        return cache.features(model, clips, maxlen)
    by_id = encode_eval(model, clips, maxlen)
    return torch.stack([by_id[c.id] for c in clips])


def encode_eval(model: SERModel, clips: Sequence[Clip], maxlen: int) -> dict[str, torch.Tensor]:
    """Pooled features by clip id, computed in eval mode without gradients, batched by
    length; the model's train/eval mode is restored afterwards."""
    was_training = model.training
    model.eval()
    by_id: dict[str, torch.Tensor] = {}
    with torch.no_grad():
        for batch in _length_batches(clips, maxlen, EVAL_BATCH):
            for clip, vector in zip(batch, model.encode([c.wave[:maxlen] for c in batch])):
                by_id[clip.id] = vector.clone()
    model.train(was_training)
    return by_id


def _length_batches(clips: Sequence[Clip], maxlen: int, size: int) -> list[list[Clip]]:
    """Batches of similar length, so little compute goes into padding."""
    ordered = sorted(clips, key=lambda c: min(len(c.wave), maxlen))
    return [ordered[i : i + size] for i in range(0, len(ordered), size)]
