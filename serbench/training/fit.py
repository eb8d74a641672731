"""Fine-tuning and prediction, as in the paper: cross-entropy, AdamW, a cosine-annealed
learning rate stepped per batch, clips cut to ``maxlen`` samples, and an encoder frozen
for epochs ``0 .. unfreeze-1`` and trained from epoch ``unfreeze`` on; and the batches
they run on.

Frozen features (and a frozen prefix's outputs) come from a
:class:`serbench.training.features.FeatureCache` when one is given: see that module.

Beyond the paper (all off by default): label smoothing, dropout before the head,
augmented copies of the training clips (:mod:`serbench.training.augment`), and
``speaker_norm``: each speaker's features standardised with that speaker's own
statistics (:mod:`serbench.training.grouping`), in training and whenever a speaker-
normalised model is scored (``logits_of(..., speakers=...)``). Statistics -- the training
set's or each speaker's -- come from the original clips, never from augmented copies:
under the frozen pre-trained encoder, and each speaker's refitted every epoch once the
encoder has trained. With ``speaker_enrolment`` the trained model also keeps each
training speaker's statistics as it encodes them after its last epoch
(``SERModel.enrolment``), for scoring those speakers without reading their scored audio
(``logits_of(..., enrolled=...)``).

A learned pooling (``SERModel.pool``: Whisper's ``pooling: attention``) belongs to the
head and trains in every epoch, frozen encoder or not; with a cache, frozen epochs pool
the cached frames (``FeatureCache.frames``) through it. Its pooled vectors change as it
trains, so the statistics -- the training set's and, with ``speaker_norm``, each
speaker's -- are refitted at the start of every epoch after the first to what the model
pools then (the first epoch's are exact: the attention starts as the mean). That is one
pass over the training clips per epoch, cheap from cached frames while the encoder is
frozen, an eval pass of the encoder once it trains.
"""

from __future__ import annotations

import math
from typing import Callable, Sequence

import numpy as np
import torch
from torch import nn

from serbench.data.base import Clip
from serbench.training.augment import augmented
from serbench.training.features import EVAL_BATCH, FeatureCache, encode_batched
from serbench.training.grouping import classify_grouped, group_statistics
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
    speakers: Sequence[str] | None = None,
) -> list[float]:
    """Train ``model`` in place on ``clips``; return the mean training loss per epoch.

    ``after_epoch(epochs_done)`` is called after each epoch (the model may be scored
    there: it is put back in training mode for the next epoch); True stops the training
    there, with the learning-rate schedule of the full ``params.epochs`` (a pruned run is
    the first epochs of the full run). ``speakers``: each clip's speaker, required by
    ``params.speaker_norm``. With ``params.augment`` an epoch also visits every clip's
    copies. Deterministic for a given seed, model initialisation and thread count.
    """
    if params.speaker_norm and (speakers is None or len(speakers) != len(clips)):
        raise ValueError("speaker_norm needs each training clip's speaker")
    generator = torch.Generator().manual_seed(seed)
    # fused: one kernel over all parameters; on CPU ~5x faster per step than the default
    # per-parameter loop, which otherwise costs a sizeable share of an unfrozen step.
    optimizer = torch.optim.AdamW(
        model.trainable_parameters(),
        lr=params.lr,
        weight_decay=params.weight_decay,
        fused=True,
    )
    originals = list(clips)
    copies = augmented(originals, params.augment)
    clips = originals + copies
    if speakers is not None:
        per_clip = len(copies) // max(len(originals), 1)
        speakers = list(speakers) + [speaker for speaker in speakers for _ in range(per_clip)]
    steps_per_epoch = math.ceil(len(clips) / params.batch_size)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=params.epochs * steps_per_epoch)
    loss_fn = nn.CrossEntropyLoss(label_smoothing=params.label_smoothing)
    model.dropout.p = params.dropout
    statistics = None  # per speaker, with speaker_norm
    if params.standardize or params.speaker_norm:
        model.set_encoder_trainable(False)
        with torch.no_grad():
            frozen = _frozen_features(model, originals, params.maxlen, cache)
            model.norm.set_statistics(frozen)
            if params.speaker_norm:
                statistics = group_statistics(model, frozen, speakers[: len(originals)])
    if cache is not None and model.encoder_pristine and params.unfreeze > 0:
        # fill it in batches, not one step at a time
        (cache.frames if model.pool is not None else cache.features)(model, clips, params.maxlen)
    if cache is not None and model.prefix_rows is not None and params.unfreeze < params.epochs:
        cache.prefix_states(model, clips, params.maxlen)  # likewise, for the unfrozen epochs
    losses = []
    for epoch in range(params.epochs):
        encoder_trains = epoch >= params.unfreeze
        if epoch > 0 and model.pool is not None and (params.standardize or params.speaker_norm):
            # The pooling has trained: refit the statistics to what it pools now.
            pooled = _encoded_frozen(model, originals, params.maxlen, cache)
            model.norm.set_statistics(pooled)
            if statistics is not None:
                statistics = group_statistics(model, pooled, speakers[: len(originals)])
        elif statistics is not None and not model.encoder_pristine:
            # The encoder has changed: refit each speaker's statistics to what it now
            # encodes, as scoring the model will (logits_of with speakers).
            statistics = _speaker_statistics(model, originals, speakers[: len(originals)], params.maxlen, cache)
        model.set_encoder_trainable(encoder_trains)
        model.train()
        total = 0.0
        for indices in epoch_batches(clips, params, generator):
            batch = [clips[i] for i in indices]
            features = _features(model, batch, params.maxlen, cache)
            if statistics is None:
                logits = model.classify(features)
            else:
                logits = classify_grouped(model, features, [speakers[i] for i in indices], statistics)
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
    model.enrolment = {}
    if statistics is not None and params.speaker_enrolment:
        trained_on = speakers[: len(originals)]
        changed = model.pool is not None or not model.encoder_pristine  # since ``statistics`` were fitted
        model.enrolment = _speaker_statistics(model, originals, trained_on, params.maxlen, cache) if changed else statistics
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


def predict(
    model: SERModel,
    clips: Sequence[Clip],
    maxlen: int,
    cache: FeatureCache | None = None,
    speakers: Sequence[str] | None = None,
    enrolled: dict | None = None,
) -> np.ndarray:
    """Predicted class indices (the largest logit), in the order of ``clips``."""
    return logits_of(model, clips, maxlen, cache, speakers, enrolled).argmax(axis=1)


def predict_proba(
    model: SERModel,
    clips: Sequence[Clip],
    maxlen: int,
    cache: FeatureCache | None = None,
    speakers: Sequence[str] | None = None,
    enrolled: dict | None = None,
) -> np.ndarray:
    """Class probabilities (softmax of the logits), one row per clip in ``clips``' order."""
    return torch.softmax(torch.from_numpy(logits_of(model, clips, maxlen, cache, speakers, enrolled)), dim=1).numpy()


def logits_of(
    model: SERModel,
    clips: Sequence[Clip],
    maxlen: int,
    cache: FeatureCache | None = None,
    speakers: Sequence[str] | None = None,
    enrolled: dict | None = None,
) -> np.ndarray:
    """Logits ``(len(clips), classes)`` in eval mode, each clip cut to its first ``maxlen``
    samples, computed in batches of similar length. ``speakers`` (each clip's; for a model
    trained with ``speaker_norm``): each speaker's clips are standardised with the
    statistics of that speaker's clips here -- the scored set's own unlabelled audio --
    or, for a speaker in ``enrolled`` (speaker -> statistics: ``model.enrolment``), with
    those."""
    model.eval()
    if not clips:
        return np.zeros((0, model.head.out_features), dtype=np.float32)
    features = _encoded(model, clips, maxlen, cache)
    with torch.no_grad():
        if speakers is None:
            return model.classify(features).numpy()
        return classify_grouped(model, features, speakers, group_statistics(model, features, speakers, enrolled)).numpy()


def _features(model: SERModel, batch: Sequence[Clip], maxlen: int, cache: FeatureCache | None) -> torch.Tensor:
    if cache is not None:
        if model.encoder_pristine and not model.encoder_trainable:
            if model.pool is not None:  # the pooling trains: pool the cached frames now
                return model.pool_frames(cache.frames(model, batch, maxlen))
            return cache.features(model, batch, maxlen)
        if model.prefix_rows is not None:
            states = cache.prefix_states(model, batch, maxlen)
            return model.encode_from_prefix(states, [min(len(c.wave), maxlen) for c in batch])
    return model.encode([c.wave[:maxlen] for c in batch], maxlen)


def _frozen_features(model: SERModel, clips: Sequence[Clip], maxlen: int, cache: FeatureCache | None) -> torch.Tensor:
    """Pooled features of ``clips`` under the current (frozen) encoder, in eval mode."""
    if model.pool is not None:  # pooled from (cached) frames, a batch at a time
        return _encoded(model, clips, maxlen, cache)
    if cache is not None and model.encoder_pristine:
        return cache.features(model, clips, maxlen)
    return torch.stack(encode_batched(model, clips, maxlen))


def _speaker_statistics(
    model: SERModel, clips: Sequence[Clip], speakers: Sequence[str], maxlen: int, cache: FeatureCache | None
) -> dict:
    """Each speaker's ``norm`` statistics of ``clips`` as the model encodes them now."""
    return group_statistics(model, _encoded_frozen(model, clips, maxlen, cache), speakers)


def _encoded_frozen(model: SERModel, clips: Sequence[Clip], maxlen: int, cache: FeatureCache | None) -> torch.Tensor:
    """:func:`_encoded` with the encoder frozen and the model in eval mode (the next
    training step sets both back as its epoch needs)."""
    model.set_encoder_trainable(False)
    model.eval()
    return _encoded(model, clips, maxlen, cache)


def _encoded(model: SERModel, clips: Sequence[Clip], maxlen: int, cache: FeatureCache | None) -> torch.Tensor:
    """Features of ``clips`` (in their order) as the model, in eval mode, encodes them
    now, computed without gradients in batches of similar length."""
    features: dict[str, torch.Tensor] = {}
    with torch.no_grad():
        for batch in _length_batches(clips, maxlen, EVAL_BATCH):
            features.update(zip([c.id for c in batch], _features(model, batch, maxlen, cache)))
    return torch.stack([features[c.id] for c in clips])


def _length_batches(clips: Sequence[Clip], maxlen: int, size: int) -> list[list[Clip]]:
    """Batches of similar length, so little compute goes into padding."""
    ordered = sorted(clips, key=lambda c: min(len(c.wave), maxlen))
    return [ordered[i : i + size] for i in range(0, len(ordered), size)]
