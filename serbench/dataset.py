"""Corpora: utterances, the dataset adapter contract, where corpora live, audio loading.

An adapter knows one corpus's original layout and naming. It lists utterances (path,
label, speaker); it never loads audio itself. Audio is read with soundfile, downmixed to
mono and resampled to 16 kHz with libsoxr (python-soxr, "HQ") by :func:`load_audio`, the
one loader of studies, transfer targets and ``serbench data check``. Files at a sample
rate outside 1 kHz..384 kHz are refused.
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

import numpy as np
from pydantic import BaseModel

from serbench.errors import DataError
from serbench.spec import NoOptions

SAMPLE_RATE = 16_000
# The sample rates load_audio reads. Outside them a header is likelier damaged than a
# recording, and libsoxr's time is no longer bounded (2 s for one file at 2**31 Hz).
MIN_RATE = 1_000
MAX_RATE = 384_000
DATA_ENV = "SERBENCH_DATA"


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
    maps each of them into serbench's unified space (:mod:`serbench.labels`), ``None``
    dropping it; ``fetch_hint`` tells a user without the corpus how to get it.
    ``label_map = None`` means the labels are used as they are (a user's own corpus).
    """

    name: ClassVar[str]
    corpus_dir: ClassVar[str]
    classes: ClassVar[tuple[str, ...]]
    label_map: ClassVar[dict[str, str | None] | None] = None
    fetch_hint: ClassVar[str] = ""
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
    if os.environ.get(DATA_ENV):
        return Path(os.environ[DATA_ENV]).expanduser()
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
            f"pass --data-root DIR, or set ${DATA_ENV} to the folder that holds {adapter.corpus_dir}/.{hint}"
        )
    return root


def load_audio(path: Path, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """Mono float32 samples of ``path`` at ``sample_rate`` (C-contiguous): the mean of its
    channels, resampled by :func:`resample` when its rate differs.

    Raises a one-line ``DataError`` naming ``path`` when the file is not readable audio,
    holds no samples, has a sample rate outside ``MIN_RATE..MAX_RATE`` (1 kHz..384 kHz),
    or is too short to give one sample at ``sample_rate``.
    """
    import soundfile as sf

    try:
        samples, rate = sf.read(str(path), dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, OSError) as exc:
        detail = str(exc).splitlines()[0] if str(exc) else exc.__class__.__name__
        raise DataError(f"{path}: not a readable audio file ({detail})") from None
    if samples.shape[0] == 0:
        raise DataError(f"{path}: audio file holds no samples")
    if not MIN_RATE <= rate <= MAX_RATE:
        limits = f"{MIN_RATE}..{MAX_RATE} Hz"
        raise DataError(f"{path}: sample rate {rate} Hz is outside the {limits} serbench reads (a damaged header?)")
    mono = samples.mean(axis=1, dtype=np.float32) if samples.shape[1] > 1 else samples[:, 0]
    if rate != sample_rate:
        mono = resample(mono, rate, sample_rate)
        if mono.shape[0] == 0:
            count = f"{samples.shape[0]} sample{'s' if samples.shape[0] > 1 else ''}"
            raise DataError(f"{path}: too short: {count} at {rate} Hz is under one sample at {sample_rate} Hz")
    return np.ascontiguousarray(mono, dtype=np.float32)


def resample(samples: np.ndarray, orig_rate: int, new_rate: int) -> np.ndarray:
    """``samples`` (1-D) resampled from ``orig_rate`` to ``new_rate`` with libsoxr, as
    float32; ``round(len(samples) * new_rate / orig_rate)`` samples long.

    Quality "HQ" (libsoxr's 20-bit recipe, python-soxr's and librosa's default): flat
    passband to 7.4 kHz at a 16 kHz output (-3 dB near 7.6 kHz) and, measured, 130 dB or
    more of attenuation from 8 kHz up, so nothing above 8 kHz aliases into speech. That
    is already below the noise floor of 16-bit PCM (about 96 dB), which most corpora
    are; "VHQ" (28-bit) only lowers a floor the input cannot reach and is about a third
    slower. libsoxr designs its filter per rate pair in well under a millisecond, so an
    unusual pair (24,414 Hz to 16 kHz) costs what a common one does: under a millisecond
    per second of audio.
    """
    import soxr

    mono = np.ascontiguousarray(samples, dtype=np.float32)
    return soxr.resample(mono, orig_rate, new_rate, quality="HQ")
