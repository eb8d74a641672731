"""``TunedModel``: a saved model labelling audio.

A recording (any rate or channel count: read mono at the model's rate as studies read
it) is cut into windows of the model's ``maxlen`` unless told otherwise
(:mod:`serbench.deploy.windows`), each window gets class probabilities, and the file's
probabilities are their mean; its label is the class of the largest. ``cut=True``
instead scores only the first ``maxlen`` samples, exactly as a study scored its test
split.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Protocol, Sequence

import numpy as np

from serbench.data.audio import MIN_SAMPLES, load_audio, resample
from serbench.deploy.format import ModelInfo
from serbench.deploy.windows import windows
from serbench.errors import DataError, UserError

FILES_PER_CHUNK = 64  # files read, cut and scored together (bounds the audio held in memory)


class Scorer(Protocol):
    """A runtime: class probabilities of 16 kHz mono inputs of at most ``maxlen`` samples,
    with the speaker rule of :class:`~serbench.deploy.speakers.SpeakerRule`."""

    name: str
    speaker_norm: bool

    def probabilities(self, waves: Sequence[np.ndarray], speaker: str | None = None) -> np.ndarray: ...

    def check_speaker(self, speaker: str) -> None: ...


@dataclass(frozen=True)
class WindowPrediction:
    start_s: float
    end_s: float
    label: str
    probabilities: dict[str, float]


@dataclass
class FilePrediction:
    """One file's label and probabilities (the mean over its windows), or why it failed."""

    path: Path
    label: str | None = None
    probabilities: dict[str, float] = field(default_factory=dict)
    duration_s: float | None = None
    windows: list[WindowPrediction] = field(default_factory=list)
    error: str | None = None


class TunedModel:
    """A saved model ready to predict (see :func:`serbench.deploy.load_model`).

    ``classes`` are its output classes, ``info`` its ``model.json``; ``window`` and
    ``hop`` (seconds) both default to ``maxlen``: windows side by side, the last one
    ending at the recording's end.
    """

    def __init__(self, folder: Path, info: ModelInfo, scorer: Scorer):
        self.folder = folder
        self.info = info
        self.scorer = scorer
        self.classes = list(info.classes)
        self.sample_rate = info.sample_rate
        self.maxlen = info.maxlen

    @property
    def runtime(self) -> str:
        return self.scorer.name

    def predict(self, samples: np.ndarray, sample_rate: int, **how) -> dict[str, float]:
        """Class probabilities of one recording (1-D mono, or ``(frames, channels)``)."""
        self._check_speaker(how.get("speaker"))
        wave = self._prepare(np.asarray(samples, dtype=np.float32), sample_rate)
        return self._predict_waves([wave], **how)[0].probabilities

    def predict_files(
        self,
        paths: Sequence[Path | str],
        window: float | None = None,
        hop: float | None = None,
        cut: bool = False,
        progress: Callable[[int], None] | None = None,
        speaker: str | None = None,
    ) -> list[FilePrediction]:
        """One :class:`FilePrediction` per path, in order; a file that cannot be read, is
        empty or shorter than 0.1 s gets its ``error`` and the others are still
        predicted. ``progress(files_done)`` is called after each chunk of files. A model
        trained with ``speaker_norm`` reads all ``paths`` as one chunk: they are taken to be
        one speaker's recordings and standardised together -- unless ``speaker`` names a
        speaker it enrolled (``speaker_enrolment``), whose training statistics then
        standardise every recording."""
        self._check_speaker(speaker)
        results: list[tuple[int, FilePrediction]] = []
        together = self.scorer.speaker_norm and speaker is None
        chunk = max(len(paths), 1) if together else FILES_PER_CHUNK
        for start in range(0, len(paths), chunk):
            waves, readable = [], []
            for index in range(start, min(start + chunk, len(paths))):
                path = Path(paths[index])
                try:
                    waves.append(self._check_length(load_audio(path, self.sample_rate), path))
                    readable.append((index, path))
                except DataError as exc:
                    results.append((index, FilePrediction(path, error=str(exc).removeprefix(f"{path}: "))))
            for (index, path), prediction in zip(readable, self._predict_waves(waves, window, hop, cut, speaker)):
                prediction.path = path
                results.append((index, prediction))
            if progress is not None:
                progress(min(start + chunk, len(paths)))
        return [prediction for _, prediction in sorted(results, key=lambda pair: pair[0])]

    # -- the steps ----------------------------------------------------------------------

    def _check_speaker(self, speaker: str | None) -> None:
        if speaker is not None:
            self.scorer.check_speaker(speaker)

    def _prepare(self, samples: np.ndarray, sample_rate: int) -> np.ndarray:
        if samples.ndim == 2:
            samples = samples.mean(axis=1, dtype=np.float32)
        if samples.ndim != 1:
            raise DataError(f"samples: expected 1-D mono or (frames, channels) audio, got shape {samples.shape}")
        if sample_rate != self.sample_rate:
            samples = resample(samples, sample_rate, self.sample_rate)
        return self._check_length(np.ascontiguousarray(samples, dtype=np.float32), "samples")

    def _check_length(self, wave: np.ndarray, what) -> np.ndarray:
        if len(wave) < MIN_SAMPLES:
            seconds = MIN_SAMPLES / self.sample_rate
            raise DataError(f"{what}: {len(wave) / self.sample_rate:.3f} s of audio, shorter than the {seconds:g} s needed")
        return wave

    def _spans(self, samples: int, window: float | None, hop: float | None, cut: bool) -> list[tuple[int, int]]:
        if cut:
            return [(0, min(samples, self.maxlen))]
        size = self.maxlen if window is None else round(window * self.sample_rate)
        if size > self.maxlen or size < MIN_SAMPLES:
            limit = f"{MIN_SAMPLES / self.sample_rate:g}..{self.maxlen / self.sample_rate:g} s"
            raise UserError(f"--window: {size / self.sample_rate:g} s is outside the model's {limit}")
        step = size if hop is None else round(hop * self.sample_rate)
        if step < 1:
            raise UserError(f"--hop: {hop} s is under one sample")
        return windows(samples, size, step)

    def _predict_waves(self, waves: list[np.ndarray], window=None, hop=None, cut=False, speaker=None) -> list[FilePrediction]:
        """``speaker``: checked by the caller (:meth:`_check_speaker`)."""
        spans = [self._spans(len(w), window, hop, cut) for w in waves]
        pieces = [w[a:b] for w, file_spans in zip(waves, spans) for a, b in file_spans]
        if not pieces:
            probabilities = np.zeros((0, len(self.classes)))
        else:
            probabilities = self.scorer.probabilities(pieces, speaker)
        out, row = [], 0
        rate = self.sample_rate
        for wave, file_spans in zip(waves, spans):
            rows = probabilities[row : row + len(file_spans)]
            row += len(file_spans)
            mean = rows.mean(axis=0)
            parts = [
                WindowPrediction(a / rate, b / rate, self.classes[int(r.argmax())], self._named(r))
                for (a, b), r in zip(file_spans, rows)
            ]
            out.append(
                FilePrediction(
                    Path("samples"),
                    label=self.classes[int(mean.argmax())],
                    probabilities=self._named(mean),
                    duration_s=len(wave) / rate,
                    windows=parts,
                )
            )
        return out

    def _named(self, row: np.ndarray) -> dict[str, float]:
        return {c: float(p) for c, p in zip(self.classes, row)}
