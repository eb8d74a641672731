"""Standardisation by group: each group of rows (a speaker's utterances, a whole target
corpus) standardised with that group's own statistics, the model's head shared.

This is what ``speaker_norm`` trains and scores with, and what test-time adaptation of a
transfer target (:mod:`serbench.training.adapt`) does. The statistics are those of the
model's ``norm`` layer (``norm.statistics``: a mean and spread, or a ``LayerMix``'s
per-layer means and covariances; a ``LayerMix``'s learned weights stay shared), fitted
on the encoded features of each group's rows. Labels are never read.

The features are pooled vectors. For a model with a learned pooling (``SERModel.pool``,
attention) they are what its pooling gives now: ``fit`` refits the statistics at the
start of every epoch after the first, as the attention trains, and at scoring they are
fitted on what the trained attention pools.
"""

from __future__ import annotations

from typing import Hashable, Sequence

import torch

from serbench.backbones.model import SERModel

Statistics = dict[str, torch.Tensor]


def group_statistics(
    model: SERModel, features: torch.Tensor, groups: Sequence[Hashable], known: dict[Hashable, Statistics] | None = None
) -> dict[Hashable, Statistics]:
    """Per group, in order of first appearance, the ``norm`` statistics of its rows of
    ``features`` (``(N, D)`` or ``(N, L, D)``; ``groups[i]`` names row ``i``'s group), or,
    for a group in ``known``, those statistics (its rows are not read). A group of one
    row standardises it to zero (its spread is zero)."""
    if len(groups) != len(features):
        raise ValueError(f"{len(groups)} group names for {len(features)} feature rows")
    known = known or {}
    with torch.no_grad():
        return {group: known[group] if group in known else model.norm.statistics(features[rows_of(groups, group)])
                for group in dict.fromkeys(groups)}


def classify_grouped(
    model: SERModel, features: torch.Tensor, groups: Sequence[Hashable], statistics: dict[Hashable, Statistics]
) -> torch.Tensor:
    """Logits of ``features``, row ``i`` standardised with ``statistics[groups[i]]``; rows
    keep their order, gradients flow as through ``model.classify``."""
    parts = []
    order = []
    for group in dict.fromkeys(groups):
        rows = rows_of(groups, group)
        parts.append(model.classify(features[rows], statistics[group]))
        order += rows
    logits = torch.cat(parts)
    return logits[torch.argsort(torch.tensor(order))]


def rows_of(groups: Sequence[Hashable], group: Hashable) -> list[int]:
    """The indices of ``group``'s rows."""
    return [i for i, g in enumerate(groups) if g == group]
