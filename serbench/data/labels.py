"""One label space across corpora, aligned to EmoDB's seven classes (the paper's Table 1).

Each adapter names its corpus's labels as the corpus does and declares a default
``label_map`` from those names into this space (``None`` drops a label: RAVDESS
"surprised" has no EmoDB counterpart). A job can replace the map
(``dataset.label_map``). Dropped utterances are counted and reported, never silent.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, replace
from typing import Mapping

from serbench.data.base import BadFile, Utterance

UNIFIED = ("anger", "boredom", "disgust", "fear", "happiness", "neutral", "sadness")

LabelMap = Mapping[str, "str | None"]


@dataclass
class Mapped:
    """Utterances relabelled into the target space, what was dropped, what was unknown."""

    utterances: list[Utterance]
    dropped: dict[str, int]
    unknown: list[BadFile]


def map_labels(utterances: list[Utterance], label_map: LabelMap) -> Mapped:
    kept, dropped, unknown = [], Counter(), []
    for utt in utterances:
        if utt.label not in label_map:
            unknown.append(BadFile(utt.path, f"label {utt.label!r} is not in the label map"))
        elif label_map[utt.label] is None:
            dropped[utt.label] += 1
        else:
            kept.append(replace(utt, label=label_map[utt.label]))
    return Mapped(kept, dict(sorted(dropped.items())), unknown)


def class_order(labels: set[str] | list[str]) -> list[str]:
    """The unified classes present, in their fixed order, then any others sorted."""
    present = set(labels)
    return [c for c in UNIFIED if c in present] + sorted(present - set(UNIFIED))


def identity_map(labels: tuple[str, ...] | list[str]) -> dict[str, str | None]:
    return {label: label for label in labels}
