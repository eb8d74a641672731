"""Berlin Database of Emotional Speech (EmoDB), in its original layout.

``<root>/wav/SSTTTEV.wav``: speaker ``SS`` (two digits), text ``TTT``, emotion ``E``
(German initial: W Wut/anger, L Langeweile/boredom, E Ekel/disgust, A Angst/fear,
F Freude/happiness, T Trauer/sadness, N neutral), version ``V``.
The genuine corpus has 535 utterances by 10 speakers.
"""

from __future__ import annotations

import re
from pathlib import Path

from serbench import hookimpl
from serbench.data.base import BadFile, DatasetAdapter, Scan, Utterance
from serbench.data.sources import Source
from serbench.errors import DataError

EMOTIONS = {
    "W": "anger",
    "L": "boredom",
    "E": "disgust",
    "A": "fear",
    "F": "happiness",
    "T": "sadness",
    "N": "neutral",
}
FILENAME = re.compile(r"^(?P<speaker>\d\d)(?P<text>[ab]\d\d)(?P<emotion>[WLEAFTN])(?P<version>[a-z])\.wav$")


class EmoDB(DatasetAdapter):
    name = "emodb"
    corpus_dir = "emodb"
    classes = ("anger", "boredom", "disgust", "fear", "happiness", "neutral", "sadness")
    label_map = {label: label for label in classes}  # EmoDB defines the unified space
    fetch_hint = "EmoDB is distributed at http://emodb.bilderbar.info/download/ (download.zip)."
    source = Source(
        kind="archive",
        urls=("http://emodb.bilderbar.info/download/download.zip",),
        license="free for research (the authors' page); cite Burkhardt et al. 2005",
        note="The authors' own server (plain http); 535 wav files, 48 MB unpacked, each checked.",
    )
    manifest = "manifests/emodb.tsv"

    def scan(self, root: Path) -> Scan:
        wav_dir = root / "wav"
        if not wav_dir.is_dir():
            raise DataError(f"{root}: not an EmoDB folder (no wav/ sub-folder)")
        utterances = []
        bad = []
        for path in sorted(wav_dir.iterdir()):
            if path.suffix.lower() != ".wav":
                continue
            match = FILENAME.match(path.name)
            if match is None:
                bad.append(BadFile(path, "not an EmoDB file name (expected SSTTTEV.wav, e.g. 03a01Fa.wav)"))
                continue
            utterances.append(
                Utterance(
                    id=f"wav/{path.name}",
                    path=path,
                    label=EMOTIONS[match["emotion"]],
                    speaker=match["speaker"],
                )
            )
        if not utterances and not bad:
            raise DataError(f"{wav_dir}: holds no EmoDB .wav files")
        return Scan(utterances, bad)


@hookimpl
def serbench_datasets():
    return [EmoDB]
