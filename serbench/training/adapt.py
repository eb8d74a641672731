"""Unsupervised test-time adaptation of a transfer target: re-fit the model's feature
standardisation (its ``norm`` layer) on the target's own encoded features, then classify.

Modes (``TransferTarget.adapt``):

* ``none``: the trained model as it is (zero-shot; the source corpus's statistics).
* ``corpus``: one set of statistics, fitted on all of the target's utterances pooled.
* ``speaker``: one set per target speaker; each speaker's utterances are standardised
  with that speaker's statistics.

Only the statistics are re-fitted (:class:`~serbench.backbones.model.Standardize`'s mean
and std, or :class:`~serbench.backbones.model.LayerMix`'s per-layer means and
covariances; a ``LayerMix``'s learned layer weights are kept). The head is unchanged and
labels are never read: the statistics come from the target's unlabelled audio, which
makes the adapted modes *transductive* (they see the whole target set before predicting
any of it). The trained model is never changed: each group gets a copy of its ``norm``.
"""

from __future__ import annotations

import copy
from typing import Hashable, Sequence

import torch

from serbench.backbones.model import SERModel

MODES = ("none", "corpus", "speaker")


def result_key(target: str, mode: str) -> str:
    """The key of a target's result in ``result.transfer``: ``ravdess`` (mode ``none``),
    ``ravdess+adapt:corpus``, ``ravdess+adapt:speaker``."""
    return target if mode == "none" else f"{target}+adapt:{mode}"


def adapted_norms(model: SERModel, features: torch.Tensor, groups: Sequence[Hashable]) -> dict[Hashable, torch.nn.Module]:
    """Per group, a copy of ``model.norm`` whose statistics are fitted on that group's rows
    of ``features`` (encoded features, ``(N, D)`` or ``(N, L, D)``)."""
    if len(groups) != len(features):
        raise ValueError(f"{len(groups)} group names for {len(features)} feature rows")
    norms = {}
    for group in dict.fromkeys(groups):
        rows = [i for i, g in enumerate(groups) if g == group]
        norm = copy.deepcopy(model.norm)
        with torch.no_grad():
            norm.set_statistics(features[rows])
        norms[group] = norm
    return norms


def adapted_logits(model: SERModel, features: torch.Tensor, groups: Sequence[Hashable] | None) -> torch.Tensor:
    """Logits of encoded ``features`` (one row per utterance), each row standardised with
    the statistics of its group (``groups[i]``: e.g. one name for the whole corpus, or the
    utterance's speaker), fitted on that group's rows; ``groups=None``: the model's own
    statistics (``model.classify``). Rows keep their order; the model is not mutated.

    A group of one utterance standardises it to zero (its spread is zero), so its logits
    are the head's bias."""
    with torch.no_grad():
        if groups is None:
            return model.classify(features)
        norms = adapted_norms(model, features, groups)
        logits = torch.empty(len(features), model.head.out_features)
        for group, norm in norms.items():
            rows = [i for i, g in enumerate(groups) if g == group]
            logits[rows] = model.head(norm(features[rows]))
        return logits


def groups_for(mode: str, speakers: Sequence[str]) -> list[str] | None:
    """What :func:`adapted_logits` groups by for ``mode``, given each utterance's speaker."""
    if mode == "none":
        return None
    if mode == "corpus":
        return ["corpus"] * len(speakers)
    if mode == "speaker":
        return list(speakers)
    raise ValueError(f"unknown adaptation mode {mode!r} (one of {', '.join(MODES)})")
