"""Fine-tuning and prediction, as in the paper: cross-entropy, AdamW, a cosine-annealed
learning rate stepped per batch, clips cut to ``maxlen`` samples, and an encoder frozen
for epochs ``0 .. unfreeze-1`` and trained from epoch ``unfreeze`` on; and the batches
they run on.

Frozen features (and a frozen prefix's outputs) come from a
:class:`serbench.training.features.FeatureCache` when one is given: see that module.
"""

from __future__ import annotations

import math
from typing import Callable, Sequence

import numpy as np
import torch
from torch import nn

from serbench.data.base import Clip
from serbench.training.features import EVAL_BATCH, FeatureCache, encode_batched
from serbench.backbones.model import SERModel
from serbench.spec import TrainParams


def fit(
    model: SERModel,
    clips: Sequence[Clip],
    params: TrainParams,
    seed: int,
    cache: FeatureCache | None = None,
    on_epoch: Callable[[int, float], None] | None = None,
    after_epoch: Callable[[int], bool] | None = None,
) -> list[float]:
    """Train ``model`` in place on ``clips``; return the mean training loss per epoch.

    ``after_epoch(epochs_done)`` is called after each epoch (the model may be scored
    there: it is put back in training mode for the next epoch); True stops the training
    there, with the learning-rate schedule of the full ``params.epochs`` (a pruned run is
    the first epochs of the full run). Deterministic for a given seed, model
    initialisation and thread count.
    """
    generator = torch.Generator().manual_seed(seed)
    # fused: one kernel over all parameters; on CPU ~5x faster per step than the default
    # per-parameter loop, which otherwise costs a sizeable share of an unfrozen step.
    optimizer = torch.optim.AdamW(
        model.trainable_parameters(),
        lr=params.lr,
        weight_decay=params.weight_decay,
        fused=True,
    )
    steps_per_epoch = math.ceil(len(clips) / params.batch_size)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=params.epochs * steps_per_epoch)
    loss_fn = nn.CrossEntropyLoss()
    if params.standardize:
        model.set_encoder_trainable(False)
        with torch.no_grad():
            model.norm.set_statistics(_frozen_features(model, clips, params.maxlen, cache))
    elif cache is not None and model.encoder_pristine and params.unfreeze > 0:
        cache.features(model, clips, params.maxlen)  # fill it in batches, not one step at a time
    if cache is not None and model.prefix_rows is not None and params.unfreeze < params.epochs:
        cache.prefix_states(model, clips, params.maxlen)  # likewise, for the unfrozen epochs
    losses = []
    for epoch in range(params.epochs):
        encoder_trains = epoch >= params.unfreeze
        model.set_encoder_trainable(encoder_trains)
        model.train()
        total = 0.0
        for indices in epoch_batches(clips, params, generator):
            batch = [clips[i] for i in indices]
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
        if after_epoch is not None and after_epoch(epoch + 1):
            break
    model.set_encoder_trainable(False)
    model.eval()
    return losses


GROUP_BATCHES = 50  # batches per length-sorted group (as Hugging Face's group_by_length)


def epoch_batches(clips: Sequence[Clip], params: TrainParams, generator: torch.Generator) -> list[list[int]]:
    """One epoch's batches of indices into ``clips``: a random order cut into batches, or,
    with ``group_by_length``, cut into groups that are sorted by length, batched, and the
    batches shuffled."""
    order = torch.randperm(len(clips), generator=generator).tolist()
    size = params.batch_size
    if not params.group_by_length or size == 1:
        return [order[start : start + size] for start in range(0, len(order), size)]
    batches = []
    for start in range(0, len(order), size * GROUP_BATCHES):
        group = sorted(order[start : start + size * GROUP_BATCHES], key=lambda i: min(len(clips[i].wave), params.maxlen))
        batches += [group[first : first + size] for first in range(0, len(group), size)]
    return [batches[i] for i in torch.randperm(len(batches), generator=generator).tolist()]


def predict(model: SERModel, clips: Sequence[Clip], maxlen: int, cache: FeatureCache | None = None) -> np.ndarray:
    """Predicted class indices (the largest logit), in the order of ``clips``."""
    return logits_of(model, clips, maxlen, cache).argmax(axis=1)


def predict_proba(
    model: SERModel, clips: Sequence[Clip], maxlen: int, cache: FeatureCache | None = None
) -> np.ndarray:
    """Class probabilities (softmax of the logits), one row per clip in ``clips``' order."""
    return torch.softmax(torch.from_numpy(logits_of(model, clips, maxlen, cache)), dim=1).numpy()


def logits_of(model: SERModel, clips: Sequence[Clip], maxlen: int, cache: FeatureCache | None = None) -> np.ndarray:
    """Logits ``(len(clips), classes)`` in eval mode, each clip cut to its first ``maxlen``
    samples, computed in batches of similar length."""
    model.eval()
    rows: dict[str, np.ndarray] = {}
    with torch.no_grad():
        for batch in _length_batches(clips, maxlen, EVAL_BATCH):
            logits = model.classify(_features(model, batch, maxlen, cache))
            for clip, row in zip(batch, logits.numpy()):
                rows[clip.id] = row
    if not clips:
        return np.zeros((0, model.head.out_features), dtype=np.float32)
    return np.stack([rows[c.id] for c in clips])


def _features(model: SERModel, batch: Sequence[Clip], maxlen: int, cache: FeatureCache | None) -> torch.Tensor:
    if cache is not None:
        if model.encoder_pristine and not model.encoder_trainable:
            return cache.features(model, batch, maxlen)
        if model.prefix_rows is not None:
            states = cache.prefix_states(model, batch, maxlen)
            return model.encode_from_prefix(states, [min(len(c.wave), maxlen) for c in batch])
    return model.encode([c.wave[:maxlen] for c in batch], maxlen)


def _frozen_features(model: SERModel, clips: Sequence[Clip], maxlen: int, cache: FeatureCache | None) -> torch.Tensor:
    """Pooled features of ``clips`` under the current (frozen) encoder, in eval mode."""
    if cache is not None and model.encoder_pristine:
        return cache.features(model, clips, maxlen)
    return torch.stack(encode_batched(model, clips, maxlen))


def _length_batches(clips: Sequence[Clip], maxlen: int, size: int) -> list[list[Clip]]:
    """Batches of similar length, so little compute goes into padding."""
    ordered = sorted(clips, key=lambda c: min(len(c.wave), maxlen))
    return [ordered[i : i + size] for i in range(0, len(ordered), size)]
