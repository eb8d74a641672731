"""A corpus made ready for a study: scanned, relabelled, subset, audio loaded.

What the label map drops is counted in the population the subset takes its utterances
from (:func:`dropped_in_subset`), so that utterances kept, dropped and unreadable account
for the same files. Files whose name or label does not fit the corpus's scheme or map
are skipped (or refused) for the whole folder, subset or not.

Files that cannot be used (a name outside the corpus's scheme, a label the map does not
know, audio that cannot be read or is too short) stop loading with a one-line
``DataError`` naming the first of them, unless the job says to skip them; skipped files
are counted and reported.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from serbench.data.base import BadFile, Clip, DatasetAdapter, Utterance

from serbench.data.audio import MIN_SAMPLES, load_audio
from serbench.errors import DataError
from serbench.data.labels import identity_map, map_labels
from serbench.data.folds import subset_count, take_subset
from serbench.spec import SubsetSpec


@dataclass
class LoadedCorpus:
    """Usable utterances (labels in the target space) and their clips by id."""

    adapter: str
    root: Path
    utterances: list[Utterance]
    clips: dict[str, Clip]
    label_map: dict[str, str | None]
    dropped: dict[str, int]
    skipped: list[BadFile]
    load_seconds: float

    def set_class_indices(self, classes: list[str]) -> None:
        """Point each clip's label at its class's index (-1 when not in ``classes``)."""
        for utt in self.utterances:
            self.clips[utt.id].label = classes.index(utt.label) if utt.label in classes else -1


def load_corpus(
    adapter: DatasetAdapter,
    root: Path,
    label_map: dict[str, str | None] | None,
    subset: SubsetSpec | None,
    seed: int,
    skip_bad_files: bool,
    stage: Callable[[str], None] = lambda message: None,
) -> LoadedCorpus:
    stage(f"scanning {adapter.name} at {root}")
    scan = adapter.scan(root)
    # No map from the job or the adapter (a user's own corpus): labels are used as they are.
    used_map = dict(label_map or adapter.label_map or identity_map(sorted({u.label for u in scan.utterances})))
    mapped = map_labels(scan.utterances, used_map)
    skipped = _allowed(scan.bad + mapped.unknown, root, skip_bad_files)
    utterances = take_subset(mapped.utterances, subset, seed)
    dropped = dropped_in_subset(scan.utterances, used_map, subset)
    stage(f"loading {len(utterances)} {adapter.name} utterances")
    started = time.perf_counter()
    clips, unreadable = {}, []
    for utt in utterances:
        try:
            clips[utt.id] = load_clip(utt)
        except DataError as exc:
            unreadable.append(BadFile(utt.path, str(exc).removeprefix(f"{utt.path}: ")))
    skipped += _allowed(unreadable, root, skip_bad_files)
    return LoadedCorpus(
        adapter=adapter.name,
        root=root,
        utterances=[u for u in utterances if u.id in clips],
        clips=clips,
        label_map=used_map,
        dropped=dropped,
        skipped=skipped,
        load_seconds=time.perf_counter() - started,
    )


def dropped_in_subset(
    utterances: list[Utterance], label_map: dict[str, str | None], subset: SubsetSpec | None
) -> dict[str, int]:
    """Utterances the label map drops, per corpus label, counted in the population the
    corpus's utterances are taken from: with a subset, only its ``speakers``, and of each
    dropped label what ``per_class`` / ``fraction`` would keep of a class that size (a
    dropped label counts as a class of its own). So ``dropped`` and the utterances kept
    describe the same files: without a subset, every file of the corpus."""
    counts: dict[str, int] = {}
    speakers = set(subset.speakers) if subset is not None and subset.speakers is not None else None
    for utt in utterances:
        if utt.label in label_map and label_map[utt.label] is None and (speakers is None or utt.speaker in speakers):
            counts[utt.label] = counts.get(utt.label, 0) + 1
    return {label: subset_count(count, subset) for label, count in sorted(counts.items())}


def load_clip(utt: Utterance) -> Clip:
    """The utterance's audio as a clip; its class index is set by the caller."""
    wave = load_audio(utt.path)
    if len(wave) < MIN_SAMPLES:
        raise DataError(f"{utt.path}: only {len(wave)} samples at 16 kHz; at least {MIN_SAMPLES} needed")
    return Clip(utt.id, wave, -1)


def _allowed(bad: list[BadFile], root: Path, skip: bool) -> list[BadFile]:
    if bad and not skip:
        first = bad[0]
        plural = "s" if len(bad) > 1 else ""
        raise DataError(
            f"{len(bad)} unusable file{plural} in {root}, first {first.path}: {first.reason} "
            "(see serbench data check; set skip_bad_files: true to skip them)"
        )
    return bad
