"""``serbench predict`` on models real studies saved: the smoke job's and a small LOSO
job's. A saved model predicts its study's test utterances exactly as the study scored
them; bad input is named and refused; long recordings are cut into windows."""

from __future__ import annotations

import csv
import io
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from conftest import REPO, assert_one_line_error
from recorded import assert_predicts_as_recorded, run_study
from serbench.data.audio import SAMPLE_RATE, resample
from serbench.deploy.windows import windows

LOSO_SPEAKERS = ["13", "14", "15"]  # every class of EmoDB is there for each as the training speaker
LOSO_JOB = {
    "name": "loso_small",
    "seed": 0,
    "dataset": {
        "name": "emodb",
        "protocol": {"name": "loso", "val_speakers": 1, "folds": LOSO_SPEAKERS[:2]},
        "subset": {"speakers": LOSO_SPEAKERS, "per_class": 10},
    },
    "backbone": {"name": "whisper", "source": "openai/whisper-tiny.en", "options": {"layers": "mean"}},
    "training": {"batch_size": 4, "epochs": 2, "unfreeze": 2, "maxlen": 32000},
    "search_space": {"lr": {"type": "float", "low": 1e-3, "high": 3e-3, "log": True}},
    "engine": {"name": "random"},
    "budget": {"trials": 1},
    "resources": {"cpus": 2, "memory_gb": 4},
}


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    """``serbench run jobs/smoke_emodb.yaml``: (its result folder, result.json)."""
    return run_study(REPO / "jobs" / "smoke_emodb.yaml", tmp_path_factory.mktemp("smoke"))


@pytest.fixture(scope="module")
def smoke_maxlen(smoke) -> int:
    folder, _ = smoke
    return json.loads((folder / "model" / "model.json").read_text())["maxlen"]


@pytest.fixture(scope="module")
def loso(tmp_path_factory):
    """A LOSO study of three speakers, two folds (test speakers 13 and 14), one model each."""
    return run_study(LOSO_JOB, tmp_path_factory.mktemp("loso"))


@pytest.fixture(scope="module")
def long_recording(tmp_path_factory, emodb_root) -> Path:
    """Five real EmoDB clips end to end (about 14.5 s), written at 44.1 kHz in stereo."""
    names = ["03a01Wa.wav", "08a02Tb.wav", "10b03Tb.wav", "13a05Nb.wav", "16a04Lc.wav"]
    clips = []
    for name in names:
        samples, rate = sf.read(emodb_root / "wav" / name, dtype="float32")
        assert rate == SAMPLE_RATE
        clips.append(samples)
    wave = resample(np.concatenate(clips), SAMPLE_RATE, 44_100)
    stereo = np.stack([wave, 0.6 * wave], axis=1)  # two different channels: the reader takes their mean
    path = tmp_path_factory.mktemp("long") / "long-44k-stereo.wav"
    sf.write(path, stereo, 44_100, subtype="FLOAT")
    return path


# -- faithful: the saved model predicts what the study recorded ------------------------------


def test_the_smoke_model_predicts_its_test_split_exactly_as_the_study_scored_it(smoke, cli):
    folder, result = smoke
    assert result["model"] == "model" and result["folds"][0]["model"] == "model"
    assert result["test"]["labels"] == result["data"]["classes"]
    assert_predicts_as_recorded(cli, folder, result["test"], Path(result["data"]["root"]))


def test_the_smoke_model_labels_every_emodb_clip(smoke, cli, emodb_root):
    """The issue's done-when: every one of EmoDB's 535 clips gets a label, as csv."""
    folder, result = smoke
    code, out, err = cli("predict", folder, emodb_root / "wav", "--format", "csv")
    assert code == 0, err
    rows = list(csv.DictReader(io.StringIO(out)))
    files = [row for row in rows if row["window"] == ""]
    assert len(files) == 535
    assert {row["path"] for row in files} == {str(p) for p in (emodb_root / "wav").glob("*.wav")}
    classes = result["data"]["classes"]
    for row in files:
        assert row["label"] in classes
        probabilities = [float(row[c]) for c in classes]
        assert sum(probabilities) == pytest.approx(1, abs=1e-4)
        assert row["label"] == classes[int(np.argmax(probabilities))]


@pytest.mark.parametrize("index", [0, 1])
def test_a_loso_fold_model_predicts_its_test_speaker_exactly_as_recorded(loso, cli, index):
    folder, result = loso
    fold = result["folds"][index]
    assert fold["test_speakers"] == [LOSO_SPEAKERS[index]]
    assert fold["model"] == f"model/fold-{index:02d}-{LOSO_SPEAKERS[index]}"
    assert {Path(clip["id"]).name[:2] for clip in fold["test"]["predictions"]} == {LOSO_SPEAKERS[index]}
    assert_predicts_as_recorded(cli, folder / fold["model"], fold["test"], Path(result["data"]["root"]))


def test_a_loso_fold_model_names_its_test_and_training_speakers(loso):
    folder, result = loso
    assert result["model"] is None  # several folds: each names its own
    infos = [json.loads((folder / f["model"] / "model.json").read_text()) for f in result["folds"]]
    for fold, info in zip(result["folds"], infos):
        training = info["training"]
        assert training["fold"] == fold["fold"]
        assert training["test_speakers"] == fold["test_speakers"]
        assert training["train_speakers"] == sorted(set(LOSO_SPEAKERS) - set(fold["test_speakers"]))
        assert not set(training["train_speakers"]) & set(training["test_speakers"])
        assert training["utterances"] == fold["sizes"]["train"] + fold["sizes"]["val"]
        assert info["scores"]["test"]["bca"] == fold["test"]["bca"]
    assert infos[0]["training"]["audio_fingerprint"] != infos[1]["training"]["audio_fingerprint"]


def test_a_result_with_a_model_per_fold_must_be_narrowed_to_one(loso, cli, emodb_root):
    folder, _ = loso
    code, _, err = cli("predict", folder, emodb_root / "wav" / "03a01Fa.wav")
    assert_one_line_error(code, err, "one model per fold", str(folder / "model" / "fold-00-13"))


# -- bad input to predict ---------------------------------------------------------------------


def test_bad_files_are_named_while_the_good_ones_are_still_predicted(smoke, cli, emodb_root, tmp_path):
    folder, _ = smoke
    recordings = tmp_path / "recordings"
    recordings.mkdir()
    good = ["03a01Fa.wav", "16b10Td.wav"]
    for name in good:
        shutil.copy(emodb_root / "wav" / name, recordings / name)
    (recordings / "garbage.wav").write_text("this is text, not audio\n")
    (recordings / "empty.wav").write_bytes(b"")
    sf.write(recordings / "short.wav", np.full(SAMPLE_RATE // 20, 0.01, dtype=np.float32), SAMPLE_RATE)  # 0.05 s
    (recordings / "notes.txt").write_text("not an audio extension: never read\n")
    text = tmp_path / "transcript.txt"
    text.write_text("named on the command line: read, and refused\n")

    code, out, err = cli("predict", folder, recordings, text, "--format", "json")
    assert code == 2
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    bad = {
        recordings / "empty.wav": "not a readable audio file",
        recordings / "garbage.wav": "not a readable audio file",
        recordings / "short.wav": "0.050 s of audio, shorter than the 0.1 s needed",
        text: "not a readable audio file",
    }
    for path, why in bad.items():
        named = [line for line in lines if line.startswith(f"serbench: error: {path}: ")]
        assert len(named) == 1, (path, lines)
        assert why in named[0], named[0]
    assert lines[-1] == "serbench: error: 4 of 6 files could not be predicted"
    assert len(lines) == len(bad) + 1
    assert "notes.txt" not in err
    assert [Path(f["path"]) for f in json.loads(out)["files"]] == [recordings / name for name in good]


def test_a_folder_without_audio_is_refused(smoke, cli, tmp_path):
    folder, _ = smoke
    (tmp_path / "notes.txt").write_text("no audio here\n")
    code, out, err = cli("predict", folder, tmp_path)
    assert_one_line_error(code, err, str(tmp_path), "no audio files")
    assert out == ""


def test_a_window_longer_than_the_models_maxlen_is_refused(smoke, smoke_maxlen, cli, emodb_root):
    folder, _ = smoke
    too_long = smoke_maxlen / SAMPLE_RATE + 0.5
    code, out, err = cli("predict", folder, emodb_root / "wav" / "03a01Fa.wav", "--window", too_long)
    assert_one_line_error(code, err, "--window", f"{too_long:g} s")
    assert out == ""


# -- windows ----------------------------------------------------------------------------------


def _spans(samples: int, window: int, hop: int) -> list[list[float]]:
    return [[a / SAMPLE_RATE, b / SAMPLE_RATE] for a, b in windows(samples, window, hop)]


def test_a_long_recording_is_cut_into_windows_that_cover_it(smoke, smoke_maxlen, cli, long_recording):
    folder, result = smoke
    code, out, err = cli("predict", folder, long_recording, "--format", "json")
    assert code == 0, err
    (predicted,) = json.loads(out)["files"]
    frames = sf.info(long_recording).frames
    samples = round(predicted["duration_s"] * SAMPLE_RATE)
    assert samples == round(frames * SAMPLE_RATE / 44_100)  # read at 16 kHz
    parts = predicted["windows"]
    assert len(parts) > 1 and samples > smoke_maxlen
    assert parts[0]["start_s"] == 0
    assert parts[-1]["end_s"] == predicted["duration_s"]
    for before, after in zip(parts, parts[1:]):
        assert after["start_s"] <= before["end_s"]  # no gap
    for part in parts:
        assert part["end_s"] - part["start_s"] == pytest.approx(smoke_maxlen / SAMPLE_RATE)
    assert [[w["start_s"], w["end_s"]] for w in parts] == _spans(samples, smoke_maxlen, smoke_maxlen)
    classes = result["data"]["classes"]
    mean = np.mean([[w["probabilities"][c] for c in classes] for w in parts], axis=0)
    file_probabilities = np.array([predicted["probabilities"][c] for c in classes])
    assert np.abs(file_probabilities - mean).max() <= 1e-6
    assert predicted["label"] == classes[int(np.argmax(mean))]
    for part in parts:
        assert part["label"] == max(part["probabilities"], key=part["probabilities"].get)


def test_csv_holds_a_row_for_the_file_and_one_per_window(smoke, smoke_maxlen, cli, long_recording, tmp_path):
    folder, result = smoke
    output = tmp_path / "predictions" / "long.csv"
    code, out, err = cli("predict", folder, long_recording, "--format", "csv", "--output", output)
    assert code == 0, err
    assert str(output) in out and "1 file(s)" in out
    rows = list(csv.DictReader(io.StringIO(output.read_text())))
    assert {row["path"] for row in rows} == {str(long_recording)}
    file_row, window_rows = rows[0], rows[1:]
    assert file_row["window"] == "" and float(file_row["start_s"]) == 0
    samples = round(float(file_row["end_s"]) * SAMPLE_RATE)
    assert [int(row["window"]) for row in window_rows] == list(range(len(window_rows)))
    expected = _spans(samples, smoke_maxlen, smoke_maxlen)
    assert len(window_rows) == len(expected) > 1
    # Times exact to the sample, as in the json, however long the file.
    assert [[float(row["start_s"]), float(row["end_s"])] for row in window_rows] == expected
    assert window_rows[0]["start_s"] == "0" and window_rows[-1]["end_s"] == file_row["end_s"]
    classes = result["data"]["classes"]
    mean = np.mean([[float(row[c]) for c in classes] for row in window_rows], axis=0)
    assert np.abs(np.array([float(file_row[c]) for c in classes]) - mean).max() <= 1e-5


@pytest.mark.parametrize("window, hop", [(1.0, 0.5), (1.5, None), (1.0, 1.7)])
def test_window_and_hop_set_the_windows(smoke, smoke_maxlen, cli, long_recording, window, hop):
    folder, _ = smoke
    flags = ["--window", window] + (["--hop", hop] if hop is not None else [])
    code, out, err = cli("predict", folder, long_recording, "--format", "json", *flags)
    assert code == 0, err
    (predicted,) = json.loads(out)["files"]
    samples = round(predicted["duration_s"] * SAMPLE_RATE)
    size = round(window * SAMPLE_RATE)
    step = size if hop is None else round(hop * SAMPLE_RATE)
    expected = _spans(samples, size, step)
    assert [[w["start_s"], w["end_s"]] for w in predicted["windows"]] == expected
    assert len(expected) != len(windows(samples, smoke_maxlen, smoke_maxlen))
    assert expected[-1][1] == predicted["duration_s"]


def test_windows_edge_cases():
    # No longer than a window: one window, the whole recording (however short).
    assert windows(1, 100, 100) == [(0, 1)]
    assert windows(99, 100, 50) == [(0, 99)]
    assert windows(100, 100, 50) == [(0, 100)]
    # An exact multiple: windows side by side, nothing added.
    assert windows(300, 100, 100) == [(0, 100), (100, 200), (200, 300)]
    assert windows(200, 100, 50) == [(0, 100), (50, 150), (100, 200)]
    # A remainder: one more full window, ending exactly at the end.
    assert windows(250, 100, 100) == [(0, 100), (100, 200), (150, 250)]
    assert windows(101, 100, 100) == [(0, 100), (1, 101)]
    assert windows(230, 100, 60) == [(0, 100), (60, 160), (120, 220), (130, 230)]
    # A hop longer than the window leaves gaps, but the end is still scored.
    assert windows(350, 100, 150) == [(0, 100), (150, 250), (250, 350)]
    for samples, window, hop in [(250, 100, 100), (230, 100, 60), (12345, 1000, 333), (1000, 1000, 1)]:
        spans = windows(samples, window, hop)
        assert spans[0][0] == 0 and spans[-1][1] == samples
        assert all(b - a == min(window, samples) for a, b in spans)
    for bad in [(100, 0, 10), (100, 10, 0)]:
        with pytest.raises(ValueError):
            windows(*bad)
