"""Bad and unusual audio, one test each: what ``load_audio`` converts and what it refuses
(naming the file), and how ``data check`` lists refused files.

Converted: stereo and multi-channel (mean of the channels), any sample rate from 1 kHz to
384 kHz (resampled to 16 kHz with soxr: length, pitch and level kept, nothing above 8 kHz
aliased), a file cut short inside its samples (read up to the cut: only a checksum can
tell; ``data check`` does, for corpora with a manifest). Refused with the path: empty
file, truncated or corrupt header, not audio, a valid header with zero samples, a sample
rate outside 1 kHz..384 kHz, a file too short to make one sample at 16 kHz.
Names outside a corpus's scheme and labels a map does not know are tested with the
adapters (test_corpus_adapters.py) and ``data check`` (test_data_check.py).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import soxr

from serbench.data.audio import MAX_RATE, MIN_RATE, SAMPLE_RATE, load_audio
from serbench.errors import DataError
from conftest import assert_one_line_error


def sine(freq: float, seconds: float, rate: int) -> np.ndarray:
    t = np.arange(int(round(seconds * rate))) / rate
    return (0.5 * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def peak_hz(wave: np.ndarray, rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(wave * np.hanning(len(wave))))
    return float(np.fft.rfftfreq(len(wave), 1 / rate)[spectrum.argmax()])


def rms(wave: np.ndarray, edge: int) -> float:
    """Root mean square away from the first and last ``edge`` samples."""
    return float(np.sqrt(np.mean(wave[edge:-edge].astype(np.float64) ** 2)))


RATES = [8_000, 22_050, 24_414, 44_100, 48_000, 96_000]  # 24,414 Hz: issue 12's unusual pair with 16 kHz


@pytest.fixture
def genuine(emodb_root) -> bytes:
    return (emodb_root / "wav" / "03a01Fa.wav").read_bytes()


# --- refused, with the path -------------------------------------------------------------


def test_empty_file(tmp_path):
    path = tmp_path / "empty.wav"
    path.write_bytes(b"")
    with pytest.raises(DataError, match=r"empty\.wav: not a readable audio file"):
        load_audio(path)


def test_truncated_header(tmp_path, genuine):
    path = tmp_path / "cut.wav"
    path.write_bytes(genuine[:20])  # inside the fmt chunk
    with pytest.raises(DataError, match=r"cut\.wav: not a readable audio file"):
        load_audio(path)


def test_corrupt_header(tmp_path, genuine):
    data = bytearray(genuine)
    data[20:36] = b"\xff" * 16  # the fmt chunk's format, channels, rate, block size
    path = tmp_path / "corrupt.wav"
    path.write_bytes(bytes(data))
    with pytest.raises(DataError, match=r"corrupt\.wav: not a readable audio file"):
        load_audio(path)


def test_not_audio_at_all(tmp_path):
    path = tmp_path / "notes.wav"
    path.write_text("Dear diary, today I recorded nothing.\n")
    with pytest.raises(DataError, match=r"notes\.wav: not a readable audio file"):
        load_audio(path)


def test_random_bytes(tmp_path):
    path = tmp_path / "noise.wav"
    path.write_bytes(np.random.default_rng(0).bytes(4096))
    with pytest.raises(DataError, match=r"noise\.wav: not a readable audio file"):
        load_audio(path)


def test_zero_length_audio(tmp_path):
    path = tmp_path / "silent.wav"
    sf.write(path, np.zeros((0, 1), dtype=np.float32), 16_000)
    assert sf.info(str(path)).frames == 0  # a valid header
    with pytest.raises(DataError, match=r"silent\.wav: audio file holds no samples"):
        load_audio(path)


# --- converted ----------------------------------------------------------------------------


def test_stereo_genuine_speech_is_downmixed(tmp_path, emodb_root):
    speech, rate = sf.read(str(emodb_root / "wav" / "03a01Fa.wav"), dtype="float32")
    path = tmp_path / "stereo.wav"
    sf.write(path, np.stack([speech, 0.5 * speech], axis=1), rate, subtype="FLOAT")
    wave = load_audio(path)
    assert wave.shape == speech.shape
    assert np.allclose(wave, 0.75 * speech, atol=1e-6)


def test_four_channels_are_averaged(tmp_path):
    tone = sine(440, 0.5, 16_000)
    path = tmp_path / "quad.wav"
    sf.write(path, np.stack([tone, tone, -tone, tone], axis=1), 16_000, subtype="FLOAT")
    assert np.allclose(load_audio(path), tone / 2, atol=1e-6)


@pytest.mark.parametrize("freq", [440, 3_000])
@pytest.mark.parametrize("rate", RATES)
def test_sample_rate_is_converted_to_16k(tmp_path, rate, freq):
    path = tmp_path / f"tone_{rate}.wav"
    sf.write(path, sine(freq, 1.5, rate), rate, subtype="PCM_16")
    written, _ = sf.read(str(path), dtype="float32")
    wave = load_audio(path)
    assert wave.dtype == np.float32 and wave.ndim == 1 and wave.flags.c_contiguous
    assert abs(len(wave) - round(len(written) * SAMPLE_RATE / rate)) <= 1
    assert peak_hz(wave, SAMPLE_RATE) == pytest.approx(freq, abs=1)  # pitch kept
    assert rms(wave, 1600) == pytest.approx(rms(written, rate // 10), rel=0.01)  # level kept


@pytest.mark.parametrize("rate", [r for r in RATES if r > SAMPLE_RATE])
def test_no_aliasing_from_above_8k(tmp_path, rate):
    """A tone above the 16 kHz output's Nyquist frequency would fold back into the speech
    band (10 kHz to 6 kHz); it must come out at least 60 dB under a passband tone."""
    passband = tmp_path / "passband.wav"
    sf.write(passband, sine(3_000, 1.5, rate), rate, subtype="PCM_16")
    reference = rms(load_audio(passband), 1600)
    for freq in (8_500, min(10_000, 0.45 * rate)):
        path = tmp_path / f"above_{freq:.0f}.wav"
        sf.write(path, sine(freq, 1.5, rate), rate, subtype="PCM_16")
        wave = load_audio(path)
        assert 20 * np.log10(rms(wave, 1600) / reference) <= -60, f"{freq} Hz aliased"


@pytest.mark.parametrize("rate", [r for r in RATES if r > SAMPLE_RATE])
def test_genuine_speech_resampled_up_comes_back(tmp_path, emodb_root, rate):
    """An EmoDB clip resampled up to ``rate`` (soxr VHQ) loads back as the clip: same
    length, no delay, the band below 7 kHz at 50 dB SNR or better (the filter's transition
    band, 7.4..8 kHz, is what the round trip loses)."""
    speech, _ = sf.read(str(emodb_root / "wav" / "03a01Fa.wav"), dtype="float32")
    path = tmp_path / f"speech_{rate}.wav"
    sf.write(path, soxr.resample(speech, SAMPLE_RATE, rate, quality="VHQ"), rate, subtype="PCM_16")
    wave = load_audio(path)
    assert abs(len(wave) - len(speech)) <= 1
    n = min(len(wave), len(speech))
    original, back = np.fft.rfft(speech[:n]), np.fft.rfft(wave[:n])
    band = np.fft.rfftfreq(n, 1 / SAMPLE_RATE) < 7_000
    error = np.sum(np.abs(original[band] - back[band]) ** 2)
    assert 10 * np.log10(np.sum(np.abs(original[band]) ** 2) / error) >= 50


@pytest.mark.parametrize("rate", [MIN_RATE, 1_001, 7_919, 24_414, 176_400, 383_999, MAX_RATE])
def test_every_rate_from_1k_to_384k_loads(tmp_path, rate):
    path = tmp_path / f"tone_{rate}.wav"
    tone = sine(min(300, rate / 4), 0.5, rate)
    sf.write(path, tone, rate, subtype="PCM_16")
    wave = load_audio(path)
    assert wave.dtype == np.float32 and abs(len(wave) - round(len(tone) * SAMPLE_RATE / rate)) <= 1


@pytest.mark.parametrize("rate", [1, 999, 384_001, 2_822_400])
def test_rate_outside_1k_to_384k_is_refused(tmp_path, rate):
    path = tmp_path / f"odd_{rate}.wav"
    sf.write(path, np.zeros(max(1, rate // 100), dtype=np.float32), rate)
    with pytest.raises(DataError) as refused:
        load_audio(path)
    message = str(refused.value)
    assert message.startswith(f"{path}: sample rate {rate} Hz is outside the 1000..384000 Hz")
    assert "\n" not in message


def test_one_sample_at_1k_makes_16(tmp_path):
    path = tmp_path / "one.wav"
    sf.write(path, np.full(1, 0.5, dtype=np.float32), MIN_RATE, subtype="FLOAT")
    assert len(load_audio(path)) == 16


def test_too_short_for_one_sample_at_16k(tmp_path):
    path = tmp_path / "blip.wav"
    sf.write(path, np.full(1, 0.5, dtype=np.float32), MAX_RATE, subtype="FLOAT")
    with pytest.raises(DataError, match=r"blip\.wav: too short: 1 sample at 384000 Hz is under one sample at 16000 Hz"):
        load_audio(path)


def test_stereo_48k_like_ravdess_outliers(tmp_path):
    tone = sine(300, 1.0, 48_000)
    path = tmp_path / "03-01-05-01-01-01-01.wav"
    sf.write(path, np.stack([tone, tone], axis=1), 48_000, subtype="PCM_16")
    wave = load_audio(path)
    assert len(wave) == 16_000
    assert peak_hz(wave, SAMPLE_RATE) == pytest.approx(300, abs=1)


def test_cut_inside_the_samples_is_read_up_to_the_cut(tmp_path, genuine):
    path = tmp_path / "half.wav"
    path.write_bytes(genuine[: 44 + 2 * 5000 + 1])  # 5000 whole 16-bit frames and a stray byte
    wave = load_audio(path)
    full = load_audio_bytes(tmp_path, genuine)
    assert len(wave) == 5000
    assert np.array_equal(wave, full[:5000])


def load_audio_bytes(tmp_path: Path, data: bytes) -> np.ndarray:
    path = tmp_path / "whole.wav"
    path.write_bytes(data)
    return load_audio(path)


# --- data check lists refused files, reports converted ones ---------------------------------


def test_data_check_lists_every_refused_file(cli, tmp_path, genuine):
    corpus = tmp_path / "mine"
    (corpus / "happy").mkdir(parents=True)
    (corpus / "sad").mkdir()
    (corpus / "happy" / "ok.wav").write_bytes(genuine)
    sf.write(corpus / "happy" / "stereo.wav", np.stack([sine(200, 1, 16_000)] * 2, axis=1), 16_000)
    for rate in (8_000, 22_050, 44_100, 48_000, 96_000):
        sf.write(corpus / "sad" / f"{rate}.wav", sine(200, 1, rate), rate)
    refused = {
        "happy/empty.wav": b"",
        "happy/cut.wav": genuine[:20],
        "sad/text.wav": b"not audio\n",
    }
    for rel, data in refused.items():
        (corpus / rel).write_bytes(data)
    sf.write(corpus / "sad" / "zero.wav", np.zeros((0, 1), dtype=np.float32), 16_000)

    code, out, err = cli("data", "check", "folder", "--root", corpus, "--json")
    assert_one_line_error(code, err, "4 bad files")
    report = json.loads(out)
    bad = {str(Path(b["path"]).relative_to(corpus)): b["reason"] for b in report["bad"]}
    assert set(bad) == {*refused, "sad/zero.wav"}
    assert bad["sad/zero.wav"] == "audio file holds no samples"
    assert all(reason.startswith("not a readable audio file") for rel, reason in bad.items() if rel != "sad/zero.wav")
    assert report["utterances"] == 7
    assert report["sample_rates"] == {"8000": 1, "16000": 2, "22050": 1, "44100": 1, "48000": 1, "96000": 1}
    assert report["channels"] == {"1": 6, "2": 1}

    code, out, err = cli("data", "check", "folder", "--root", corpus)
    assert_one_line_error(code, err, "4 bad files")
    for rel in (*refused, "sad/zero.wav"):
        assert f"bad: {corpus / rel}: " in out


def test_data_check_refuses_what_a_study_refuses(cli, tmp_path):
    """A clip too short for a study (under 0.1 s) is a bad file for ``data check`` too."""
    (tmp_path / "a").mkdir()
    sf.write(tmp_path / "a" / "blip.wav", sine(440, 0.05, 16_000), 16_000)
    sf.write(tmp_path / "a" / "fine.wav", sine(440, 0.5, 16_000), 16_000)
    code, out, err = cli("data", "check", "folder", "--root", tmp_path, "--json")
    assert_one_line_error(code, err, "1 bad file", "blip.wav")
    assert [Path(b["path"]).name for b in json.loads(out)["bad"]] == ["blip.wav"]


def test_data_check_reports_a_rate_it_refuses(cli, tmp_path):
    (tmp_path / "a").mkdir()
    sf.write(tmp_path / "a" / "tdt.wav", sine(440, 0.5, 24_414), 24_414)
    sf.write(tmp_path / "a" / "slow.wav", sine(100, 0.5, 500), 500)
    code, out, err = cli("data", "check", "folder", "--root", tmp_path, "--json")
    assert_one_line_error(code, err, "1 bad file", "slow.wav", "sample rate 500 Hz")
    report = json.loads(out)
    assert report["utterances"] == 1 and report["sample_rates"] == {"24414": 1}
