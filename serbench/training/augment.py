"""Training-time augmentation (``TrainParams.augment``): perturbed copies of training
clips, added beside the originals.

* ``speed``: each clip resampled so it plays at 0.9x and 1.1x speed (Kaldi's speed
  perturbation: tempo and pitch move together), with libsoxr.
* ``noise``: white Gaussian noise added at 20 dB and 10 dB signal-to-noise ratio, the
  noise drawn from a generator seeded by the clip's id, so a copy is the same in every
  trial and run (a feature cache keyed on the audio then serves it too).

A copy keeps its clip's label; its id is the clip's with ``#speed0.9``-style suffix.
Scored sets are never augmented.
"""

from __future__ import annotations

import hashlib
from dataclasses import replace
from typing import Sequence

import numpy as np

from serbench.data.audio import SAMPLE_RATE, resample
from serbench.data.base import Clip

SPEEDS = (0.9, 1.1)
SNRS_DB = (20.0, 10.0)
KINDS = ("none", "speed", "noise")


def augmented(clips: Sequence[Clip], kind: str) -> list[Clip]:
    """The copies ``kind`` adds for ``clips`` (none for ``none``), two per clip, in the
    order of ``clips``."""
    if kind == "none":
        return []
    if kind == "speed":
        return [copy for clip in clips for copy in (speed_copy(clip, factor) for factor in SPEEDS)]
    if kind == "noise":
        return [copy for clip in clips for copy in (noise_copy(clip, snr) for snr in SNRS_DB)]
    raise ValueError(f"unknown augmentation {kind!r} (one of {', '.join(KINDS)})")


def speed_copy(clip: Clip, factor: float) -> Clip:
    """``clip`` played ``factor`` times as fast: resampled from ``SAMPLE_RATE * factor``
    to ``SAMPLE_RATE`` (``factor`` > 1: shorter and higher)."""
    wave = resample(clip.wave, round(SAMPLE_RATE * factor), SAMPLE_RATE).astype(np.float32)
    return replace(clip, id=f"{clip.id}#speed{factor:g}", wave=wave)


def noise_copy(clip: Clip, snr_db: float) -> Clip:
    """``clip`` with white noise at ``snr_db`` dB below its mean power (a silent clip
    gets none), seeded by the clip's id and the ratio."""
    seed = int.from_bytes(hashlib.blake2b(f"{clip.id}#{snr_db:g}".encode(), digest_size=8).digest(), "little")
    power = float(np.mean(np.square(clip.wave, dtype=np.float64))) if len(clip.wave) else 0.0
    scale = np.sqrt(power / 10 ** (snr_db / 10))
    noise = np.random.default_rng(seed).standard_normal(len(clip.wave)) * scale
    wave = (clip.wave + noise).astype(np.float32)
    return replace(clip, id=f"{clip.id}#noise{snr_db:g}dB", wave=wave)
