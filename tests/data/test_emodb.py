"""The EmoDB adapter on the genuine corpus, and audio loading."""

from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from serbench.data.audio import SAMPLE_RATE, load_audio
from serbench.errors import DataError
from serbench.data.adapters.emodb import EmoDB

# Class sizes of the genuine corpus (Burkhardt et al., 2005).
EMODB_COUNTS = {"anger": 127, "boredom": 81, "disgust": 46, "fear": 69, "happiness": 71, "neutral": 79, "sadness": 62}


def test_scan_reads_the_whole_corpus(emodb_root):
    utterances = EmoDB().scan(emodb_root).utterances
    assert len(utterances) == 535
    assert len({u.speaker for u in utterances}) == 10
    assert Counter(u.label for u in utterances) == EMODB_COUNTS
    assert len({u.id for u in utterances}) == 535


def test_labels_and_speakers_come_from_the_file_name(emodb_root):
    by_id = {u.id: u for u in EmoDB().scan(emodb_root).utterances}
    assert by_id["wav/03a01Fa.wav"].label == "happiness"
    assert by_id["wav/03a01Fa.wav"].speaker == "03"
    assert by_id["wav/16b10Wb.wav"].label == "anger"
    assert by_id["wav/08b03Tc.wav"].label == "sadness"


def test_emodb_audio_is_16k_mono_with_original_duration(emodb_root):
    path = emodb_root / "wav" / "03a01Fa.wav"
    wave = load_audio(path)
    info = sf.info(str(path))
    assert info.samplerate == SAMPLE_RATE
    assert wave.dtype == np.float32 and wave.ndim == 1
    assert len(wave) == info.frames
    assert 0 < np.abs(wave).max() <= 1


def test_48k_audio_is_resampled_to_16k(ravdess_mini_root):
    path = sorted(ravdess_mini_root.rglob("*.wav"))[0]
    info = sf.info(str(path))
    assert info.samplerate == 48_000
    wave = load_audio(path)
    assert abs(len(wave) - info.frames / 3) <= 1
    original = sf.read(str(path), dtype="float32", always_2d=True)[0].mean(axis=1)
    # Resampling keeps the signal's energy (no silence, no clipping by the resampler).
    assert np.sqrt(np.mean(wave**2)) == pytest.approx(np.sqrt(np.mean(original**2)), rel=0.05)


def test_stereo_is_downmixed(tmp_path):
    left = np.sin(np.linspace(0, 200, 8000)).astype(np.float32) * 0.5
    sf.write(tmp_path / "stereo.wav", np.stack([left, np.zeros_like(left)], axis=1), 16000)
    wave = load_audio(tmp_path / "stereo.wav")
    assert np.allclose(wave, left / 2, atol=1e-4)


def test_a_file_that_is_not_audio_is_named(tmp_path: Path):
    fake = tmp_path / "03a01Fa.wav"
    fake.write_text("not audio at all")
    with pytest.raises(DataError, match="03a01Fa.wav"):
        load_audio(fake)


def test_folder_without_wav_subfolder_is_rejected(tmp_path):
    with pytest.raises(DataError, match="no wav/"):
        EmoDB().scan(tmp_path)


def test_names_outside_the_scheme_are_reported_not_read(tmp_path, emodb_root):
    (tmp_path / "wav").mkdir()
    real = emodb_root / "wav" / "03a01Fa.wav"
    (tmp_path / "wav" / "03a01Fa.wav").write_bytes(real.read_bytes())
    (tmp_path / "wav" / "recording-1.wav").write_bytes(real.read_bytes())
    (tmp_path / "wav" / "notes.txt").write_text("ignored: not a wav")
    scan = EmoDB().scan(tmp_path)
    assert [u.id for u in scan.utterances] == ["wav/03a01Fa.wav"]
    assert [b.path.name for b in scan.bad] == ["recording-1.wav"]
    assert "SSTTTEV" in scan.bad[0].reason
