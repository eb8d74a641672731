"""Corpora: utterances, the dataset adapter contract, where corpora live, audio loading.

An adapter knows one corpus's original layout and naming. It lists utterances (path,
label, speaker); it never loads audio itself. Audio is read with soundfile, downmixed to
mono and resampled with torchaudio to 16 kHz by :func:`load_audio`.
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np
from pydantic import BaseModel

from serbench.errors import DataError
from serbench.spec import NoOptions

SAMPLE_RATE = 16_000
DATA_ENV = "SERBENCH_DATA"


@dataclass(frozen=True)
class Utterance:
    """One labelled recording. ``id`` is unique within a corpus (its relative path)."""

    id: str
    path: Path
    label: str
    speaker: str


class DatasetAdapter(ABC):
    """Base class of every dataset adapter plugin.

    ``name`` is what a job's ``dataset.name`` says; ``corpus_dir`` the folder name under
    ``$SERBENCH_DATA``; ``classes`` the labels in a fixed order (the model's outputs);
    ``fetch_hint`` tells a user without the corpus how to get it.
    """

    name: ClassVar[str]
    corpus_dir: ClassVar[str]
    classes: ClassVar[tuple[str, ...]]
    fetch_hint: ClassVar[str] = ""
    Options: ClassVar[type[BaseModel]] = NoOptions

    @abstractmethod
    def scan(self, root: Path) -> list[Utterance]:
        """List the corpus's utterances under ``root``, sorted by id.

        Raises ``DataError`` when ``root`` does not hold the corpus in its layout.
        """


def default_data_home() -> Path:
    """``$SERBENCH_DATA``, else ``$XDG_DATA_HOME/serbench`` (``~/.local/share/serbench``)."""
    if os.environ.get(DATA_ENV):
        return Path(os.environ[DATA_ENV]).expanduser()
    xdg = os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share"
    return Path(xdg) / "serbench"


def resolve_root(adapter: type[DatasetAdapter], root: Path | None, data_home: Path | None = None) -> Path:
    """The corpus folder: ``root`` if given, else ``<data home>/<corpus_dir>``.

    Raises ``DataError`` saying how to get the corpus or point at it when it is missing.
    """
    if root is None:
        root = (data_home or default_data_home()) / adapter.corpus_dir
    root = root.expanduser()
    if not root.is_dir():
        hint = f" {adapter.fetch_hint}" if adapter.fetch_hint else ""
        raise DataError(
            f"{adapter.name} corpus not found at {root}: set dataset.root in the job, "
            f"pass --data-root DIR, or set ${DATA_ENV} to the folder that holds {adapter.corpus_dir}/.{hint}"
        )
    return root


def load_audio(path: Path, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """Mono float32 samples of ``path`` at ``sample_rate``; ``DataError`` if not audio."""
    import soundfile as sf

    try:
        samples, rate = sf.read(str(path), dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, OSError) as exc:
        detail = str(exc).splitlines()[0] if str(exc) else exc.__class__.__name__
        raise DataError(f"{path}: not a readable audio file ({detail})") from None
    if samples.shape[0] == 0:
        raise DataError(f"{path}: audio file holds no samples")
    mono = samples.mean(axis=1)
    if rate != sample_rate:
        mono = resample(mono, rate, sample_rate)
    return np.ascontiguousarray(mono, dtype=np.float32)


def resample(samples: np.ndarray, orig_rate: int, new_rate: int) -> np.ndarray:
    import torch
    import torchaudio.functional as F

    tensor = torch.from_numpy(np.ascontiguousarray(samples, dtype=np.float32))
    return F.resample(tensor, orig_rate, new_rate).numpy()
