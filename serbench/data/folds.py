"""Evaluation protocols: how a corpus is cut into folds of train, validation and test.

Every protocol is nested: hyperparameters are chosen on ``val`` only, and ``test`` is
scored once per fold, for the configuration chosen in that fold, after its search. All
choices are fixed by the job seed. ``holdout`` is stratified by label;
``speaker-holdout`` and ``loso`` keep speakers disjoint across train, val and test.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import numpy as np
from sklearn.model_selection import train_test_split

from serbench.data.base import Utterance
from serbench.errors import DataError
from serbench.spec import HoldoutProtocol, LosoProtocol, SpeakerHoldoutProtocol, SubsetSpec


@dataclass(frozen=True)
class Split:
    """Disjoint lists of utterances. ``train`` and ``val`` serve the search; the final
    model is trained on ``train + val`` and scored on ``test``."""

    train: list[Utterance]
    val: list[Utterance]
    test: list[Utterance]
    # With ``val_folds`` k > 1: the k (train, val) runs of the search, whose train and val
    # together are always ``selection``; ``train`` and ``val`` are then the first of them.
    inner: tuple[tuple[list[Utterance], list[Utterance]], ...] = ()

    def validation_runs(self) -> list[tuple[list[Utterance], list[Utterance]]]:
        """What a search trial trains on and scores, once per validation fold: the one
        ``(train, val)`` pair, or each of the ``inner`` ones."""
        return list(self.inner) or [(self.train, self.val)]

    @property
    def selection(self) -> list[Utterance]:
        """Everything but the test split: what the final model is trained on."""
        return self.train + self.val

    def sizes(self) -> dict[str, int]:
        return {"train": len(self.train), "val": len(self.val), "test": len(self.test)}


@dataclass(frozen=True)
class Fold:
    """One split of a protocol; ``test_speakers`` is empty for a stratified holdout."""

    index: int
    split: Split
    test_speakers: tuple[str, ...] = ()


def take_subset(utterances: list[Utterance], subset: SubsetSpec | None, seed: int) -> list[Utterance]:
    """A seeded subset: the named speakers only, then per class a ``fraction`` (rounded,
    at least one) and at most ``per_class`` utterances. Order follows the input."""
    if subset is None:
        return utterances
    if subset.speakers is not None:
        present = {u.speaker for u in utterances}
        missing = sorted(set(subset.speakers) - present)
        if missing:
            raise DataError(f"dataset.subset.speakers: no utterances of speakers {missing}; present: {sorted(present)}")
        utterances = [u for u in utterances if u.speaker in set(subset.speakers)]
    if subset.per_class is None and subset.fraction is None:
        return utterances
    rng = np.random.default_rng(seed)
    by_label: dict[str, list[int]] = {}
    for index, utt in enumerate(utterances):
        by_label.setdefault(utt.label, []).append(index)
    keep: list[int] = []
    for label in sorted(by_label):
        indices = np.array(by_label[label])
        rng.shuffle(indices)
        keep.extend(indices[:subset_count(len(indices), subset)].tolist())
    return [utterances[i] for i in sorted(keep)]


def subset_count(count: int, subset: SubsetSpec | None) -> int:
    """How many of a class's ``count`` utterances (of the subset's speakers) the subset
    keeps: a ``fraction`` (rounded, at least one), at most ``per_class``."""
    if subset is None:
        return count
    if subset.fraction is not None:
        count = max(1, round(count * subset.fraction))
    if subset.per_class is not None:
        count = min(count, subset.per_class)
    return count


def holdout_split(utterances: list[Utterance], protocol: HoldoutProtocol, seed: int) -> Split:
    """Stratified test split, then a stratified validation split of what remains (with
    ``val_folds`` k > 1: what remains cut into k stratified folds, each one run's validation)."""
    rest, test = _stratified(utterances, protocol.test_fraction, seed, "test")
    if protocol.val_folds == 1:
        train, val = _stratified(rest, protocol.val_fraction, seed + 1, "validation")
        return Split(train=train, val=val, test=test)
    runs = _stratified_folds(rest, protocol.val_folds, seed + 1)
    return Split(train=runs[0][0], val=runs[0][1], test=test, inner=tuple(runs))


def speaker_holdout_split(utterances: list[Utterance], protocol: SpeakerHoldoutProtocol, seed: int) -> Fold:
    speakers = sorted({u.speaker for u in utterances})
    rng = np.random.default_rng(seed)
    if protocol.test_speakers is not None:
        unknown = sorted(set(protocol.test_speakers) - set(speakers))
        if unknown:
            raise DataError(f"dataset.protocol.test_speakers: unknown speakers {unknown}; present: {speakers}")
        test = sorted(protocol.test_speakers)
    else:
        test = sorted(rng.choice(speakers, _count(len(speakers), protocol.test_fraction), replace=False).tolist())
    rest = [s for s in speakers if s not in test]
    size = _count(len(rest), protocol.val_fraction) if rest else 0
    return Fold(0, _speaker_split(utterances, test, _val_groups(rest, size, protocol.val_folds, rng)), tuple(test))


def loso_folds(utterances: list[Utterance], protocol: LosoProtocol, seed: int) -> list[Fold]:
    """One fold per test speaker; each fold's validation speakers are a seeded draw of
    ``val_speakers`` from the others."""
    speakers = sorted({u.speaker for u in utterances})
    chosen = speakers if protocol.folds is None else sorted(protocol.folds)
    unknown = sorted(set(chosen) - set(speakers))
    if unknown:
        raise DataError(f"dataset.protocol.folds: unknown speakers {unknown}; present: {speakers}")
    if len(speakers) < protocol.val_speakers + 2:
        raise DataError(
            f"loso needs at least {protocol.val_speakers + 2} speakers (test, validation, training); found {len(speakers)}"
        )
    folds = []
    for index, speaker in enumerate(chosen):
        rest = [s for s in speakers if s != speaker]
        rng = np.random.default_rng([seed, index])
        groups = _val_groups(rest, protocol.val_speakers, protocol.val_folds, rng)
        folds.append(Fold(index, _speaker_split(utterances, [speaker], groups), (speaker,)))
    return folds


def make_folds(utterances: list[Utterance], protocol, seed: int) -> list[Fold]:
    """The folds of the protocol named in the job (one for the holdout protocols)."""
    if isinstance(protocol, HoldoutProtocol):
        return [Fold(0, holdout_split(utterances, protocol, seed))]
    if isinstance(protocol, SpeakerHoldoutProtocol):
        return [speaker_holdout_split(utterances, protocol, seed)]
    if isinstance(protocol, LosoProtocol):
        return loso_folds(utterances, protocol, seed)
    raise DataError(f"dataset.protocol.name: unknown protocol {protocol.name!r}")


def _count(total: int, fraction: float) -> int:
    """At least one, and never all."""
    return min(max(1, round(total * fraction)), total - 1)


def _val_groups(rest: list[str], size: int, folds: int, rng: np.random.Generator) -> list[list[str]]:
    """``folds`` disjoint, seeded groups of ``size`` validation speakers drawn from ``rest``
    (one group: the draw the protocols always made)."""
    if folds == 1:
        return [sorted(rng.choice(rest, size, replace=False).tolist()) if rest else []]
    if folds * size > len(rest) - 1:
        raise DataError(
            f"dataset.protocol.val_folds: {folds} groups of {size} validation speakers need at least "
            f"{folds * size + 1} speakers besides the test speakers (one left to train on); there are {len(rest)}"
        )
    order = rng.permutation(rest).tolist()
    return [sorted(order[i * size:(i + 1) * size]) for i in range(folds)]


def _speaker_split(utterances: list[Utterance], test: list[str], groups: list[list[str]]) -> Split:
    """The split with the first validation group, and each group's run when there are several."""
    splits = [_by_speakers(utterances, test, group) for group in groups]
    inner = tuple((split.train, split.val) for split in splits) if len(splits) > 1 else ()
    return Split(train=splits[0].train, val=splits[0].val, test=splits[0].test, inner=inner)


def _stratified_folds(utterances: list[Utterance], folds: int, seed: int) -> list[tuple[list[Utterance], list[Utterance]]]:
    """``folds`` stratified (train, val) runs whose validation parts partition ``utterances``."""
    from sklearn.model_selection import StratifiedKFold

    labels = [u.label for u in utterances]
    smallest = min(Counter(labels).items(), key=lambda item: item[1])
    if smallest[1] < folds:
        raise DataError(
            f"dataset.protocol.val_folds: {folds} stratified validation folds need at least {folds} utterances "
            f"of every class outside the test split; {smallest[0]!r} has {smallest[1]}: use fewer folds or more data"
        )
    splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    return [(sorted((utterances[i] for i in train), key=_key), sorted((utterances[i] for i in val), key=_key))
            for train, val in splitter.split(np.zeros(len(labels)), labels)]


def _by_speakers(utterances: list[Utterance], test: list[str], val: list[str]) -> Split:
    test_set, val_set = set(test), set(val)
    split = Split(
        train=[u for u in utterances if u.speaker not in test_set | val_set],
        val=[u for u in utterances if u.speaker in val_set],
        test=[u for u in utterances if u.speaker in test_set],
    )
    for name, part in (("train", split.train), ("validation", split.val), ("test", split.test)):
        if not part:
            raise DataError(f"the speaker split leaves the {name} set empty: use more speakers")
    missing = sorted({u.label for u in utterances} - {u.label for u in split.train})
    if missing:
        raise DataError(f"the speaker split leaves no training utterances of {missing}")
    return split


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
