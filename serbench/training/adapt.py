"""Unsupervised test-time adaptation of a transfer target: standardise the target's
encoded features with the target's own statistics instead of the source training set's,
then classify (:mod:`serbench.training.grouping`).

Modes (``TransferTarget.adapt``):

* ``none``: the trained model as it is (zero-shot; the source corpus's statistics -- or,
  for a model trained with ``speaker_norm``, each target speaker's own, its own rule).
* ``corpus``: one set of statistics, fitted on all of the target's utterances pooled.
* ``speaker``: one set per target speaker; each speaker's utterances are standardised
  with that speaker's statistics.

Only the statistics change; the head (and a ``LayerMix``'s learned layer weights) is the
trained model's, and labels are never read: the statistics come from the target's
unlabelled audio, which makes the adapted modes *transductive* (they see the whole target
set before predicting any of it). The trained model is never changed. With a learned
pooling (attention) the features are what the trained attention pools; it is fixed once
training ends, so adaptation fits its statistics on them as for any pooling.
"""

from __future__ import annotations

from typing import Hashable, Sequence

import torch

from serbench.backbones.model import SERModel
from serbench.training.grouping import classify_grouped, group_statistics

MODES = ("none", "corpus", "speaker")


def result_key(target: str, mode: str) -> str:
    """The key of a target's result in ``result.transfer``: ``ravdess`` (mode ``none``),
    ``ravdess+adapt:corpus``, ``ravdess+adapt:speaker``."""
    return target if mode == "none" else f"{target}+adapt:{mode}"


def adapted_logits(model: SERModel, features: torch.Tensor, groups: Sequence[Hashable] | None) -> torch.Tensor:
    """Logits of encoded ``features`` (one row per utterance), each row standardised with
    the statistics of its group (``groups[i]``: e.g. one name for the whole corpus, or the
    utterance's speaker), fitted on that group's rows; ``groups=None``: the model's own
    statistics (``model.classify``). Rows keep their order; the model is not mutated."""
    model.eval()
    with torch.no_grad():
        if groups is None:
            return model.classify(features)
        return classify_grouped(model, features, groups, group_statistics(model, features, groups))


def groups_for(mode: str, speakers: Sequence[str], speaker_norm: bool = False) -> list[str] | None:
    """What :func:`adapted_logits` groups by for ``mode``, given each utterance's speaker
    (``speaker_norm``: the model standardises per speaker, so ``none`` groups by speaker)."""
    if mode == "none":
        return list(speakers) if speaker_norm else None
    if mode == "corpus":
        return ["corpus"] * len(speakers)
    if mode == "speaker":
        return list(speakers)
    raise ValueError(f"unknown adaptation mode {mode!r} (one of {', '.join(MODES)})")
