"""The RAVDESS, CREMA-D and folder adapters: real RAVDESS files (ravdess-mini), CREMA-D
files generated in its layout (no CREMA-D audio exists here), a user's own folder in
both layouts, and every name in the shipped manifests of the full corpora."""

from __future__ import annotations

import shutil
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from serbench.data.audio import SAMPLE_RATE, load_audio
from serbench.errors import DataError
from serbench.data.labels import UNIFIED, map_labels
from serbench.data.manifest import shipped
from serbench.data.adapters.cremad import CremaD
from serbench.data.adapters.folder import Folder, FolderOptions
from serbench.data.adapters.ravdess import RAVDESS

RAVDESS_NAMES = ("neutral", "calm", "happy", "sad", "angry", "fearful", "disgust", "surprised")


# --- RAVDESS ---------------------------------------------------------------------------


def test_ravdess_mini_scan(ravdess_mini_root):
    scan = RAVDESS().scan(ravdess_mini_root)
    assert scan.bad == []
    assert len(scan.utterances) == 32
    assert Counter(u.label for u in scan.utterances) == {name: 4 for name in RAVDESS_NAMES}
    assert Counter(u.speaker for u in scan.utterances) == {"08": 16, "13": 16}
    assert [u.id for u in scan.utterances] == sorted(u.id for u in scan.utterances)
    by_id = {u.id: u for u in scan.utterances}
    assert by_id["Actor_08/03-01-05-01-02-01-08.wav"].label == "angry"
    assert by_id["Actor_13/03-01-02-01-02-02-13.wav"].label == "calm"
    assert by_id["Actor_13/03-01-08-02-02-02-13.wav"].label == "surprised"


def test_ravdess_default_map_folds_calm_and_drops_surprised(ravdess_mini_root):
    assert RAVDESS.classes == RAVDESS_NAMES
    assert set(RAVDESS.label_map) == set(RAVDESS.classes)
    assert {v for v in RAVDESS.label_map.values() if v} <= set(UNIFIED)
    mapped = map_labels(RAVDESS().scan(ravdess_mini_root).utterances, RAVDESS.label_map)
    assert mapped.dropped == {"surprised": 4}
    assert mapped.unknown == []
    assert Counter(u.label for u in mapped.utterances) == {
        "neutral": 8,  # 4 neutral + 4 calm
        "happiness": 4,
        "sadness": 4,
        "anger": 4,
        "fear": 4,
        "disgust": 4,
    }


def test_ravdess_audio_is_48k_and_loads_at_16k(ravdess_mini_root):
    for utt in RAVDESS().scan(ravdess_mini_root).utterances[:4]:
        info = sf.info(str(utt.path))
        assert info.samplerate == 48_000
        assert abs(len(load_audio(utt.path)) - info.frames / 3) <= 1


@pytest.mark.parametrize(
    "name, reason",
    [
        ("03-02-05-01-01-01-01.wav", "song"),
        ("01-01-05-01-01-01-01.wav", "modality 01"),
        ("03-01-09-01-01-01-01.wav", "emotion code 09"),
        ("03-01-01-02-01-01-01.wav", "intensity 02"),
        ("03-01-05-03-01-01-01.wav", "intensity 03"),
        ("03-01-05-01-03-01-01.wav", "statement 03"),
        ("03-01-05-01-01-01-02.wav", "Actor_01"),
        ("speech.wav", "not a RAVDESS file name"),
        ("03-01-05-01-01-01.wav", "not a RAVDESS file name"),
    ],
)
def test_ravdess_names_outside_the_scheme_are_bad_files(tmp_path, ravdess_mini_root, name, reason):
    actor = tmp_path / "Actor_01"
    actor.mkdir()
    real = sorted(ravdess_mini_root.rglob("*.wav"))[0]
    shutil.copy(real, actor / "03-01-05-01-01-01-01.wav")
    shutil.copy(real, actor / name)
    (actor / "notes.txt").write_text("not a wav: ignored")
    scan = RAVDESS().scan(tmp_path)
    assert [u.id for u in scan.utterances] == ["Actor_01/03-01-05-01-01-01-01.wav"]
    assert [b.path for b in scan.bad] == [actor / name]
    assert reason in scan.bad[0].reason


def test_ravdess_folder_without_actor_folders_is_rejected(tmp_path):
    (tmp_path / "Audio_Speech_Actors_01-24").mkdir()
    with pytest.raises(DataError, match="no Actor_XX"):
        RAVDESS().scan(tmp_path)


def test_every_name_of_the_full_ravdess_is_read(tmp_path):
    """All 1440 names of the shipped manifest scan (as empty placeholders: scanning does
    not read audio) to the corpus's published counts."""
    for path in shipped(RAVDESS).entries:
        (tmp_path / path).parent.mkdir(exist_ok=True)
        (tmp_path / path).touch()
    scan = RAVDESS().scan(tmp_path)
    assert scan.bad == [] and len(scan.utterances) == 1440
    assert len({u.speaker for u in scan.utterances}) == 24
    assert Counter(u.label for u in scan.utterances) == {n: 96 if n == "neutral" else 192 for n in RAVDESS_NAMES}


# --- CREMA-D ---------------------------------------------------------------------------

CREMAD_CODES = ("ANG", "DIS", "FEA", "HAP", "NEU", "SAD")


def tone(seconds: float, rate: int, freq: float = 220.0, channels: int = 1) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    wave = (0.3 * np.sin(2 * np.pi * freq * t)).astype(np.float32)
    return wave if channels == 1 else np.stack([wave] * channels, axis=1)


@pytest.fixture
def cremad_root(tmp_path) -> Path:
    """CREMA-D's layout with real 16-kHz mono WAV files: 2 actors x 6 emotions, a
    graded (IEO) and an unspecified-level (DFA) sentence."""
    wav = tmp_path / "cremad" / "AudioWAV"
    wav.mkdir(parents=True)
    for actor in ("1001", "1091"):
        for i, code in enumerate(CREMAD_CODES):
            level = "XX" if code == "NEU" else "HI"
            sf.write(wav / f"{actor}_IEO_{code}_{level}.wav", tone(1.0 + i / 10, 16_000, 200 + 20 * i), 16_000, subtype="PCM_16")
            sf.write(wav / f"{actor}_DFA_{code}_XX.wav", tone(0.8, 16_000, 300), 16_000, subtype="PCM_16")
    return tmp_path / "cremad"


def test_cremad_scan_of_generated_corpus(cremad_root):
    scan = CremaD().scan(cremad_root)
    assert scan.bad == []
    assert len(scan.utterances) == 24
    assert Counter(u.label for u in scan.utterances) == {code: 4 for code in CREMAD_CODES}
    assert Counter(u.speaker for u in scan.utterances) == {"1001": 12, "1091": 12}
    assert scan.utterances[0].id == "AudioWAV/1001_DFA_ANG_XX.wav"
    utt = next(u for u in scan.utterances if u.id == "AudioWAV/1091_IEO_SAD_HI.wav")
    assert (utt.label, utt.speaker) == ("SAD", "1091")
    assert len(load_audio(utt.path)) == int(1.5 * SAMPLE_RATE)


def test_cremad_map_into_the_unified_space(cremad_root):
    assert CremaD.classes == CREMAD_CODES
    mapped = map_labels(CremaD().scan(cremad_root).utterances, CremaD.label_map)
    assert mapped.dropped == {} and mapped.unknown == []
    assert Counter(u.label for u in mapped.utterances) == {
        "anger": 4, "disgust": 4, "fear": 4, "happiness": 4, "neutral": 4, "sadness": 4,
    }


@pytest.mark.parametrize(
    "name, reason",
    [
        ("1040_ITH_SAD_X.wav", "not a CREMA-D file name"),  # an upstream misnaming, since fixed
        ("0999_DFA_ANG_XX.wav", "actor 0999"),
        ("1092_DFA_ANG_XX.wav", "actor 1092"),
        ("1001_ABC_ANG_XX.wav", "sentence code ABC"),
        ("1001_DFA_CAL_XX.wav", "emotion code CAL"),
        ("1001_DFA_ANG_ZZ.wav", "level ZZ"),
        ("1001-DFA-ANG-XX.wav", "not a CREMA-D file name"),
    ],
)
def test_cremad_names_outside_the_scheme_are_bad_files(cremad_root, name, reason):
    path = cremad_root / "AudioWAV" / name
    sf.write(path, tone(0.5, 16_000), 16_000)
    scan = CremaD().scan(cremad_root)
    assert len(scan.utterances) == 24
    assert [b.path for b in scan.bad] == [path]
    assert reason in scan.bad[0].reason


def test_cremad_folder_without_audiowav_is_rejected(tmp_path):
    with pytest.raises(DataError, match="no AudioWAV/"):
        CremaD().scan(tmp_path)


def test_every_name_of_the_full_cremad_is_read(tmp_path):
    for path in shipped(CremaD).entries:
        (tmp_path / path).parent.mkdir(exist_ok=True)
        (tmp_path / path).touch()
    scan = CremaD().scan(tmp_path)
    assert scan.bad == [] and len(scan.utterances) == 7442
    assert len({u.speaker for u in scan.utterances}) == 91
    assert Counter(u.label for u in scan.utterances) == {c: 1087 if c == "NEU" else 1271 for c in CREMAD_CODES}


# --- folder ----------------------------------------------------------------------------


def copy_emodb(emodb_root: Path, dest: Path, letter: str, count: int) -> list[Path]:
    dest.mkdir(parents=True, exist_ok=True)
    sources = [p for p in sorted((emodb_root / "wav").glob("*.wav")) if p.name[5] == letter][:count]
    return [Path(shutil.copy(p, dest / p.name)) for p in sources]


def test_folder_with_one_subfolder_per_label(tmp_path, emodb_root):
    copy_emodb(emodb_root, tmp_path / "angry", "W", 3)
    copy_emodb(emodb_root, tmp_path / "calm" / "session2", "N", 2)  # nested: still "calm"
    (tmp_path / "angry" / "notes.txt").write_text("not audio: ignored")
    (tmp_path / ".cache").mkdir()
    shutil.copy(emodb_root / "wav" / "03a01Fa.wav", tmp_path / ".cache" / "x.wav")  # hidden: ignored
    scan = Folder().scan(tmp_path)
    assert scan.bad == []
    assert Counter(u.label for u in scan.utterances) == {"angry": 3, "calm": 2}
    assert {u.speaker for u in scan.utterances} == {"unknown"}
    assert all(u.id.startswith(("angry/", "calm/session2/")) for u in scan.utterances)
    assert Folder.label_map is None


def test_folder_audio_file_outside_a_label_folder_is_a_bad_file(tmp_path, emodb_root):
    copy_emodb(emodb_root, tmp_path / "angry", "W", 1)
    copy_emodb(emodb_root, tmp_path / "sad", "T", 1)
    shutil.copy(emodb_root / "wav" / "03a01Fa.wav", tmp_path / "stray.wav")
    scan = Folder().scan(tmp_path)
    assert len(scan.utterances) == 2
    assert [b.path.name for b in scan.bad] == ["stray.wav"]
    assert "label sub-folder" in scan.bad[0].reason


def test_folder_extensions_option(tmp_path):
    (tmp_path / "a").mkdir()
    sf.write(tmp_path / "a" / "x.flac", tone(0.5, 16_000), 16_000)
    sf.write(tmp_path / "a" / "y.wav", tone(0.5, 16_000), 16_000)
    assert [u.id for u in Folder(FolderOptions(extensions=["flac"])).scan(tmp_path).utterances] == ["a/x.flac"]
    assert len(Folder().scan(tmp_path).utterances) == 2
    assert len(load_audio(tmp_path / "a" / "x.flac")) == 8000


def test_folder_with_labels_csv(tmp_path, emodb_root):
    clips = copy_emodb(emodb_root, tmp_path / "clips", "F", 3)
    (tmp_path / "labels.csv").write_text(
        "path,label,speaker\n"
        f"clips/{clips[0].name},joy,s1\n"
        f"clips/{clips[1].name},joy,s2\n"
        f"clips/{clips[2].name},calm\n"
        "\n"
        "clips/missing.wav,joy,s1\n"
        f"clips/{clips[0].name},joy,s1\n"
        "just-one-cell\n",
        encoding="utf-8",
    )
    scan = Folder().scan(tmp_path)
    assert [(u.id, u.label, u.speaker) for u in scan.utterances] == [
        (f"clips/{clips[0].name}", "joy", "s1"),
        (f"clips/{clips[1].name}", "joy", "s2"),
        (f"clips/{clips[2].name}", "calm", "unknown"),
    ]
    reasons = {(b.path.name, b.reason) for b in scan.bad}
    assert ("missing.wav", "listed in labels.csv line 6 but not found") in reasons
    assert (clips[0].name, "listed twice (again in labels.csv line 7)") in reasons
    assert any(path == "labels.csv" and "line 8" in reason for path, reason in reasons)


def test_folder_csv_without_header_and_named_by_option(tmp_path, emodb_root):
    clips = copy_emodb(emodb_root, tmp_path / "a", "L", 2)
    (tmp_path / "meta.csv").write_text(f"a/{clips[0].name},bored,03\na/{clips[1].name},bored,08\n")
    scan = Folder(FolderOptions(csv="meta.csv")).scan(tmp_path)
    assert [(u.label, u.speaker) for u in scan.utterances] == [("bored", "03"), ("bored", "08")]
    with pytest.raises(DataError, match="nope.csv"):
        Folder(FolderOptions(csv="nope.csv")).scan(tmp_path)


def test_folder_options_reject_unknown_keys():
    with pytest.raises(ValueError):
        FolderOptions.model_validate({"csv": "x.csv", "speaker_regex": ".*"})


def test_empty_folder_is_rejected(tmp_path):
    with pytest.raises(DataError, match="labels.csv"):
        Folder().scan(tmp_path)
