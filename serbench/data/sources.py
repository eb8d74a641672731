"""Where each fetchable corpus is officially distributed, and how.

Two kinds of source:

- ``archive``: one zip (EmoDB's ``download.zip``, RAVDESS's Zenodo archive). It is
  downloaded, optionally checked against its published checksum, and the files it holds
  are unpacked under the corpus root at the paths the manifest lists.
- ``files``: one URL per listed file (CREMA-D keeps its audio in Git LFS; GitHub's
  repository archive holds LFS pointer stubs, not audio). ``urls`` are templates with
  ``{path}`` (the manifest path), tried in order: the official host first, then mirrors.

Whatever the source, every file is verified against the shipped per-file sha256
manifest (:mod:`serbench.data.manifest`), which is what makes a copy trustworthy.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal


@dataclass(frozen=True)
class Source:
    """How to get corpus ``name`` (a dataset adapter name, and its manifest's name)."""

    name: str
    kind: Literal["archive", "files"]
    urls: tuple[str, ...]
    license: str
    note: str
    archive_md5: str | None = None  # as the host publishes it; per-file sha256 is checked regardless


SOURCES: dict[str, Source] = {
    "emodb": Source(
        name="emodb",
        kind="archive",
        urls=("http://emodb.bilderbar.info/download/download.zip",),
        license="free for research (the authors' page); cite Burkhardt et al. 2005",
        note="The authors' own server (plain http); 535 wav files, 48 MB unpacked, each checked.",
    ),
    "ravdess": Source(
        name="ravdess",
        kind="archive",
        urls=("https://zenodo.org/records/1188976/files/Audio_Speech_Actors_01-24.zip?download=1",),
        license="CC BY-NC-SA 4.0 (non-commercial; cite Livingstone & Russo 2018)",
        note="Zenodo record 1188976, the audio-only speech archive: 1440 files, 590 MB unpacked.",
        archive_md5="bc696df654c87fed845eb13823edef8a",
    ),
    "cremad": Source(
        name="cremad",
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
    ),
}
