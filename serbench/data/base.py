"""The dataset adapter contract: utterances, clips, bad files, what a scan finds, and
where corpora live.

An adapter knows one corpus's original layout and naming. It lists utterances (path,
label, speaker); it never loads audio itself (:mod:`serbench.data.audio` does).
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

import numpy as np
from pydantic import BaseModel

from serbench.data.sources import Source
from serbench.errors import DataError
from serbench.spec import NoOptions
from serbench import env


@dataclass(frozen=True)
class Utterance:
    """One labelled recording. ``id`` is unique within a corpus (its relative path)."""

    id: str
    path: Path
    label: str
    speaker: str


@dataclass
class Clip:
    """An utterance's audio ready for a model: id, 16 kHz mono samples, class index."""

    id: str
    wave: np.ndarray
    label: int


@dataclass(frozen=True)
class BadFile:
    """A file in a corpus folder that cannot be used, and why."""

    path: Path
    reason: str


@dataclass
class Scan:
    """What an adapter found: usable utterances (sorted by id) and files it had to reject
    (a name outside the corpus's naming scheme, a label it does not know)."""

    utterances: list[Utterance]
    bad: list[BadFile] = field(default_factory=list)


class DatasetAdapter(ABC):
    """Base class of every dataset adapter plugin.

    ``name`` is what a job's ``dataset.name`` says; ``corpus_dir`` the folder name under
    ``$SERBENCH_DATA``; ``classes`` the labels as the corpus names them; ``label_map``
    maps each of them into serbench's unified space (:mod:`serbench.data.labels`), ``None``
    dropping it; ``fetch_hint`` tells a user without the corpus how to get it.
    ``label_map = None`` means the labels are used as they are (a user's own corpus).

    Corpus files, for ``serbench data fetch|check``: ``source`` says where the corpus is
    officially distributed (:class:`serbench.data.sources.Source`; ``None``: it cannot be
    fetched), ``manifest`` names the per-file checksum list the adapter ships, a package
    resource relative to the adapter module's package (``"manifests/emodb.tsv"`` beside
    ``serbench/data/adapters/emodb.py``; ``None``: copies are not verified). Lines are
    ``sha256<TAB>bytes<TAB>path``, paths relative to the corpus root. A ``source`` needs
    a ``manifest``: a fetch is only done when every listed file has its listed sha256.
    """

    name: ClassVar[str]
    corpus_dir: ClassVar[str]
    classes: ClassVar[tuple[str, ...]]
    label_map: ClassVar[dict[str, str | None] | None] = None
    fetch_hint: ClassVar[str] = ""
    source: ClassVar[Source | None] = None
    manifest: ClassVar[str | None] = None
    Options: ClassVar[type[BaseModel]] = NoOptions

    def __init__(self, options: BaseModel | None = None):
        self.options = options if options is not None else self.Options()

    @abstractmethod
    def scan(self, root: Path) -> Scan:
        """List the corpus's utterances under ``root``, sorted by id, with their labels
        as the corpus names them, and the files that do not fit the corpus's scheme.

        Raises ``DataError`` when ``root`` does not hold the corpus in its layout at all.
        It does not read audio.
        """


def default_data_home() -> Path:
    """``$SERBENCH_DATA``, else ``$XDG_DATA_HOME/serbench`` (``~/.local/share/serbench``)."""
    if env.get(env.DATA):
        return Path(env.get(env.DATA)).expanduser()
    xdg = os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share"
    return Path(xdg) / "serbench"


def resolve_root(adapter: type[DatasetAdapter], root: Path | None, data_home: Path | None = None) -> Path:
    """The corpus folder: ``root`` if given, else ``<data home>/<corpus_dir>``. A relative
    ``root`` that does not exist from the current folder is looked up in the data home
    (so a job can say ``root: ravdess-mini``).

    Raises ``DataError`` saying how to get the corpus or point at it when it is missing.
    """
    home = data_home or default_data_home()
    if root is None:
        root = home / adapter.corpus_dir
    root = root.expanduser()
    if not root.is_absolute() and not root.is_dir() and (home / root).is_dir():
        root = home / root
    if not root.is_dir():
        hint = f" {adapter.fetch_hint}" if adapter.fetch_hint else ""
        raise DataError(
            f"{adapter.name} corpus not found at {root}: set dataset.root in the job, "
            f"pass --data-root DIR, or set ${env.DATA} to the folder that holds {adapter.corpus_dir}/.{hint}"
        )
    return root
