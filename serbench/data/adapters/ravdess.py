"""RAVDESS, audio-only speech (``Audio_Speech_Actors_01-24``), in its original layout.

``<root>/Actor_AA/MM-VV-EE-II-SS-RR-AA.wav``: modality ``MM`` (03 audio-only), vocal
channel ``VV`` (01 speech; 02 is song, not part of this corpus), emotion ``EE`` (01
neutral, 02 calm, 03 happy, 04 sad, 05 angry, 06 fearful, 07 disgust, 08 surprised),
intensity ``II`` (01 normal, 02 strong; neutral has no strong), statement ``SS`` (01, 02),
repetition ``RR`` (01, 02), actor ``AA`` (01-24, the speaker; it must match the folder).
The genuine corpus has 1440 files by 24 actors, 48 kHz; five are stereo (downmixed on
loading).

Default map into the unified space: calm joins neutral, surprised is dropped (EmoDB has
no counterpart), the rest map to their EmoDB names.
"""

from __future__ import annotations

import re
from pathlib import Path

from serbench import hookimpl
from serbench.data.base import BadFile, DatasetAdapter, Scan, Utterance
from serbench.data.sources import Source
from serbench.errors import DataError

EMOTIONS = {
    "01": "neutral",
    "02": "calm",
    "03": "happy",
    "04": "sad",
    "05": "angry",
    "06": "fearful",
    "07": "disgust",
    "08": "surprised",
}
FILENAME = re.compile(r"^(\d\d)-(\d\d)-(\d\d)-(\d\d)-(\d\d)-(\d\d)-(\d\d)\.wav$")
ACTOR_DIR = re.compile(r"^Actor_(\d\d)$")
SCHEME = "expected MM-VV-EE-II-SS-RR-AA.wav, e.g. 03-01-05-02-01-01-08.wav"


class RAVDESS(DatasetAdapter):
    name = "ravdess"
    corpus_dir = "ravdess"
    classes = tuple(EMOTIONS.values())
    label_map = {
        "neutral": "neutral",
        "calm": "neutral",
        "happy": "happiness",
        "sad": "sadness",
        "angry": "anger",
        "fearful": "fear",
        "disgust": "disgust",
        "surprised": None,
    }
    fetch_hint = (
        "RAVDESS speech audio is Audio_Speech_Actors_01-24.zip of Zenodo record 1188976 "
        "(CC BY-NC-SA 4.0); serbench data fetch ravdess downloads and checks it."
    )
    source = Source(
        kind="archive",
        urls=("https://zenodo.org/records/1188976/files/Audio_Speech_Actors_01-24.zip?download=1",),
        license="CC BY-NC-SA 4.0 (non-commercial; cite Livingstone & Russo 2018)",
        note="Zenodo record 1188976, the audio-only speech archive: 1440 files, 590 MB unpacked.",
        archive_md5="bc696df654c87fed845eb13823edef8a",
    )
    manifest = "manifests/ravdess.tsv"

    def scan(self, root: Path) -> Scan:
        actor_dirs = sorted(p for p in root.iterdir() if p.is_dir() and ACTOR_DIR.match(p.name))
        if not actor_dirs:
            raise DataError(f"{root}: not a RAVDESS folder (no Actor_XX sub-folders)")
        utterances: list[Utterance] = []
        bad: list[BadFile] = []
        for folder in actor_dirs:
            actor = ACTOR_DIR.match(folder.name)[1]
            for path in sorted(folder.iterdir()):
                if path.suffix.lower() != ".wav":
                    continue
                problem = _problem(path.name, actor)
                if problem:
                    bad.append(BadFile(path, problem))
                    continue
                utterances.append(
                    Utterance(
                        id=f"{folder.name}/{path.name}",
                        path=path,
                        label=EMOTIONS[path.name[6:8]],
                        speaker=actor,
                    )
                )
        if not utterances and not bad:
            raise DataError(f"{root}: its Actor_XX folders hold no .wav files")
        return Scan(utterances, bad)


def _problem(filename: str, folder_actor: str) -> str | None:
    """Why ``filename`` is not a RAVDESS speech file in ``Actor_<folder_actor>``, or None."""
    match = FILENAME.match(filename)
    if match is None:
        return f"not a RAVDESS file name ({SCHEME})"
    modality, channel, emotion, intensity, statement, repetition, actor = match.groups()
    if modality != "03":
        return f"modality {modality} is not audio-only (03)"
    if channel != "01":
        kind = "song" if channel == "02" else "not a RAVDESS channel"
        return f"vocal channel {channel} is {kind}, not speech (01)"
    if emotion not in EMOTIONS:
        return f"emotion code {emotion} is not 01-08"
    if intensity not in ("01", "02") or (emotion == "01" and intensity != "01"):
        return f"intensity {intensity} is not 01 or 02 (neutral has only 01)"
    if statement not in ("01", "02") or repetition not in ("01", "02"):
        return f"statement {statement} / repetition {repetition} is not 01 or 02"
    if not 1 <= int(actor) <= 24:
        return f"actor {actor} is not 01-24"
    if actor != folder_actor:
        return f"actor {actor} in the name, but the file is in Actor_{folder_actor}"
    return None


@hookimpl
def serbench_datasets():
    return [RAVDESS]
