"""Audio loading: read with soundfile, downmixed to mono and resampled to 16 kHz with
libsoxr (python-soxr, "HQ") by :func:`load_audio`, the one loader of studies, transfer
targets and ``serbench data check``. Files at a sample rate outside 1 kHz..384 kHz are
refused.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from serbench.errors import DataError

SAMPLE_RATE = 16_000
MIN_SAMPLES = 1600  # 0.1 s at 16 kHz: the shortest usable utterance
# The sample rates load_audio reads. Outside them a header is likelier damaged than a
# recording, and libsoxr's time is no longer bounded (2 s for one file at 2**31 Hz).
MIN_RATE = 1_000
MAX_RATE = 384_000


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
