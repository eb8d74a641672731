"""CREMA-D (Crowd-sourced Emotional Multimodal Actors Dataset), audio, in its original layout.

``<root>/AudioWAV/AAAA_SSS_EEE_LL.wav``: actor ``AAAA`` (1001-1091, the speaker),
sentence ``SSS`` (one of twelve codes, e.g. DFA "Don't forget a jacket"), emotion ``EEE``
(ANG, DIS, FEA, HAP, NEU, SAD), level ``LL`` (LO, MD, HI, or XX unspecified).
The genuine corpus has 7442 files by 91 actors, 16 kHz mono. Labels are the corpus's own
codes; each maps to its unified class (all six exist in EmoDB; CREMA-D has no boredom).
"""

from __future__ import annotations

import re
from pathlib import Path

from serbench import hookimpl
from serbench.data.base import BadFile, DatasetAdapter, Scan, Utterance
from serbench.data.sources import Source
from serbench.errors import DataError

EMOTIONS = {
    "ANG": "anger",
    "DIS": "disgust",
    "FEA": "fear",
    "HAP": "happiness",
    "NEU": "neutral",
    "SAD": "sadness",
}
SENTENCES = frozenset({"DFA", "IEO", "IOM", "ITH", "ITS", "IWL", "IWW", "MTI", "TAI", "TIE", "TSI", "WSI"})
LEVELS = frozenset({"LO", "MD", "HI", "XX"})
FILENAME = re.compile(r"^(\d{4})_([A-Z]{3})_([A-Z]{3})_([A-Z]{2})\.wav$")
SCHEME = "expected AAAA_SSS_EEE_LL.wav, e.g. 1001_DFA_ANG_XX.wav"


class CremaD(DatasetAdapter):
    name = "cremad"
    corpus_dir = "cremad"
    classes = tuple(EMOTIONS)
    label_map = dict(EMOTIONS)
    fetch_hint = (
        "CREMA-D's AudioWAV/ is in github.com/CheyneyComputerScience/CREMA-D (Git LFS, ODbL); "
        "serbench data fetch cremad downloads and checks it."
    )
    source = Source(
        kind="files",
        urls=(
            "https://media.githubusercontent.com/media/CheyneyComputerScience/CREMA-D/master/{path}",
            "https://gitlab.com/cs-cooper-lab/crema-d-mirror/-/raw/main/{path}",
        ),
        license="Open Database License (ODbL 1.0) / Database Contents License (DbCL 1.0)",
        note=(
            "7442 files (606 MB) from the official repository's Git LFS storage, one request each; "
            "when GitHub's LFS bandwidth for the repository is used up, the maintainers' GitLab "
            "mirror is tried. A `git lfs clone` of the repository is also a valid root."
        ),
    )
    manifest = "manifests/cremad.tsv"

    def scan(self, root: Path) -> Scan:
        wav_dir = root / "AudioWAV"
        if not wav_dir.is_dir():
            raise DataError(f"{root}: not a CREMA-D folder (no AudioWAV/ sub-folder)")
        utterances: list[Utterance] = []
        bad: list[BadFile] = []
        for path in sorted(wav_dir.iterdir()):
            if path.suffix.lower() != ".wav":
                continue
            problem = _problem(path.name)
            if problem:
                bad.append(BadFile(path, problem))
                continue
            actor, _, emotion, _ = FILENAME.match(path.name).groups()
            utterances.append(Utterance(id=f"AudioWAV/{path.name}", path=path, label=emotion, speaker=actor))
        if not utterances and not bad:
            raise DataError(f"{wav_dir}: holds no CREMA-D .wav files")
        return Scan(utterances, bad)


def _problem(filename: str) -> str | None:
    """Why ``filename`` is not a CREMA-D audio file name, or None."""
    match = FILENAME.match(filename)
    if match is None:
        return f"not a CREMA-D file name ({SCHEME})"
    actor, sentence, emotion, level = match.groups()
    if not 1001 <= int(actor) <= 1091:
        return f"actor {actor} is not 1001-1091"
    if sentence not in SENTENCES:
        return f"sentence code {sentence} is not one of {', '.join(sorted(SENTENCES))}"
    if emotion not in EMOTIONS:
        return f"emotion code {emotion} is not one of {', '.join(EMOTIONS)}"
    if level not in LEVELS:
        return f"level {level} is not LO, MD, HI or XX"
    return None


@hookimpl
def serbench_datasets():
    return [CremaD]
