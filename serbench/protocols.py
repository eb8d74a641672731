"""Evaluation protocols: how a corpus is cut into train, validation and test.

Every protocol is nested: hyperparameters are chosen on ``val`` only, and ``test`` is
scored once, for the chosen configuration, after the search. All splits are stratified
by label and fixed by the job seed.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import numpy as np
from sklearn.model_selection import train_test_split

from serbench.dataset import Utterance
from serbench.errors import DataError
from serbench.spec import HoldoutProtocol, SubsetSpec


@dataclass(frozen=True)
class Split:
    """Disjoint lists of utterances. ``train`` and ``val`` serve the search; the final
    model is trained on ``train + val`` and scored on ``test``."""

    train: list[Utterance]
    val: list[Utterance]
    test: list[Utterance]

    @property
    def selection(self) -> list[Utterance]:
        """Everything but the test split: what the final model is trained on."""
        return self.train + self.val

    def sizes(self) -> dict[str, int]:
        return {"train": len(self.train), "val": len(self.val), "test": len(self.test)}


def take_subset(utterances: list[Utterance], subset: SubsetSpec | None, seed: int) -> list[Utterance]:
    """A seeded, stratified subset: per class, a ``fraction`` (rounded, at least one) and
    then at most ``per_class`` utterances. Order follows the input."""
    if subset is None:
        return utterances
    rng = np.random.default_rng(seed)
    by_label: dict[str, list[int]] = {}
    for index, utt in enumerate(utterances):
        by_label.setdefault(utt.label, []).append(index)
    keep: list[int] = []
    for label in sorted(by_label):
        indices = np.array(by_label[label])
        rng.shuffle(indices)
        count = len(indices)
        if subset.fraction is not None:
            count = max(1, round(count * subset.fraction))
        if subset.per_class is not None:
            count = min(count, subset.per_class)
        keep.extend(indices[:count].tolist())
    return [utterances[i] for i in sorted(keep)]


def holdout_split(utterances: list[Utterance], protocol: HoldoutProtocol, seed: int) -> Split:
    """Stratified test split, then a stratified validation split of what remains."""
    rest, test = _stratified(utterances, protocol.test_fraction, seed, "test")
    train, val = _stratified(rest, protocol.val_fraction, seed + 1, "validation")
    return Split(train=train, val=val, test=test)


def make_split(utterances: list[Utterance], protocol: HoldoutProtocol, seed: int) -> Split:
    """Dispatch on the protocol named in the job."""
    if protocol.name == "holdout":
        return holdout_split(utterances, protocol, seed)
    raise DataError(f"dataset.protocol.name: unknown protocol {protocol.name!r}")


def _stratified(
    utterances: list[Utterance], fraction: float, seed: int, what: str
) -> tuple[list[Utterance], list[Utterance]]:
    labels = [u.label for u in utterances]
    counts = Counter(labels)
    n_classes = len(counts)
    n_held = int(np.ceil(len(utterances) * fraction))
    too_small = [label for label, n in counts.items() if n < 2]
    if too_small or n_held < n_classes or len(utterances) - n_held < n_classes:
        raise DataError(
            f"too few utterances for a stratified {what} split: {len(utterances)} over "
            f"{n_classes} classes (each class needs at least 2; the {what} share "
            f"{fraction} must hold at least one per class); use a larger subset"
        )
    kept, held = train_test_split(
        utterances, test_size=n_held, stratify=labels, random_state=seed, shuffle=True
    )
    return sorted(kept, key=_key), sorted(held, key=_key)


def _key(utt: Utterance) -> str:
    return utt.id
