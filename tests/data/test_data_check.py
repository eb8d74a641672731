"""``serbench data check`` on the shared copies of EmoDB and ravdess-mini (found through
``SERBENCH_DATA``), and on copies spoiled in tmp folders."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from serbench.data.check import check_corpus
from serbench.data.manifest import parse, shipped
from serbench.data.adapters.cremad import CremaD
from serbench.data.adapters.emodb import EmoDB
from serbench.data.adapters.ravdess import RAVDESS
from conftest import REPO, assert_one_line_error


def data_root(name: str) -> Path:
    return Path(os.environ["SERBENCH_DATA"]) / name


def test_check_emodb_summary(cli):
    code, out, err = cli("data", "check", "emodb", "--root", data_root("emodb"))
    assert code == 0, err
    assert err == ""
    assert "535 utterances, 7 classes, 10 speakers" in out
    assert "535 ok, 0 mismatch, 0 unlisted" in out
    assert "bad files: 0" in out


def test_check_emodb_json(cli):
    code, out, _ = cli("data", "check", "emodb", "--root", data_root("emodb"), "--json")
    assert code == 0
    report = json.loads(out)
    assert report["clean"] is True
    assert report["utterances"] == 535
    assert report["classes"] == {
        "anger": 127, "boredom": 81, "disgust": 46, "fear": 69, "happiness": 71, "neutral": 79, "sadness": 62,
    }
    assert len(report["speakers"]) == 10 and report["speakers"]["16"] == 71
    assert report["sample_rates"] == {"16000": 535} and report["channels"] == {"1": 535}
    assert report["duration_seconds"] == pytest.approx(1487.092, abs=0.01)  # PROVENANCE.md
    assert report["checksums"] == {
        "manifest": "serbench/data/adapters/manifests/emodb.tsv", "ok": 535, "mismatch": [], "unlisted": 0, "absent": 0,
    }
    assert report["bad"] == []


def test_check_emodb_default_root_is_under_serbench_data(cli):
    code, out, err = cli("data", "check", "emodb")
    assert code == 0, err
    assert "535 utterances" in out


def test_check_ravdess_mini(cli):
    code, out, err = cli("data", "check", "ravdess", "--root", data_root("ravdess-mini"), "--json")
    assert code == 0, err
    report = json.loads(out)
    assert report["utterances"] == 32
    assert report["classes"] == {n: 4 for n in RAVDESS.classes}
    assert report["speakers"] == {"08": 16, "13": 16}
    assert report["sample_rates"] == {"48000": 32}
    assert report["mapped"] == {"anger": 4, "disgust": 4, "fear": 4, "happiness": 4, "neutral": 8, "sadness": 4}
    assert report["dropped"] == {"surprised": 4}
    assert report["checksums"]["ok"] == 32 and report["checksums"]["absent"] == 1440 - 32


def test_check_ravdess_mini_text_names_the_mapping(cli):
    code, out, _ = cli("data", "check", "ravdess", "--root", data_root("ravdess-mini"))
    assert code == 0
    assert "32 utterances, 8 classes, 2 speakers" in out
    assert "after the label map: 28 utterances in 6 classes" in out
    assert "dropped by the label map: surprised (4)" in out


def test_shipped_manifests_are_the_shared_ones():
    """Each built-in adapter ships its manifest beside its module, and it is the record
    rebuilt independently from the corpora's public Git LFS pointers."""
    for adapter, count in ((EmoDB, 535), (RAVDESS, 1440), (CremaD, 7442)):
        ours = shipped(adapter)
        location = f"serbench/data/adapters/manifests/{adapter.name}.tsv"
        assert adapter.manifest == f"manifests/{adapter.name}.tsv"
        assert ours.source == location and (REPO / location).is_file()
        assert len(ours) == count
        theirs = parse(data_root("manifests").joinpath(f"{adapter.name}.tsv").read_text(), adapter.name)
        assert ours.entries == theirs.entries
    assert not (REPO / "serbench" / "manifests").exists()  # the core ships no corpus's checksums


@pytest.fixture
def spoiled(tmp_path, emodb_root) -> Path:
    """A copy of 10 genuine EmoDB files, then: a text file and a header with no samples
    under listed names, a recording under a name outside the scheme, and a genuine
    recording under another listed name (readable, but its checksum is wrong)."""
    wav = tmp_path / "emodb" / "wav"
    wav.mkdir(parents=True)
    for path in sorted((emodb_root / "wav").glob("*.wav"))[:10]:
        shutil.copy(path, wav / path.name)
    (wav / "08a01Ab.wav").write_text("this is not audio\n")
    shutil.copy(emodb_root / "wav" / "03a01Fa.wav", wav / "recording 1.wav")
    (wav / "12a01Fb.wav").write_bytes((emodb_root / "wav" / "03a01Fa.wav").read_bytes()[:44])
    shutil.copy(emodb_root / "wav" / "03a01Fa.wav", wav / "16b10Wb.wav")
    return tmp_path / "emodb"


def test_check_fails_on_bad_files_with_a_list(cli, spoiled):
    code, out, err = cli("data", "check", "emodb", "--root", spoiled)
    line = assert_one_line_error(code, err, "3 bad files", "3 checksum mismatches")
    assert str(spoiled) in line
    wav = spoiled / "wav"
    assert f"bad: {wav / '08a01Ab.wav'}: not a readable audio file" in out
    assert f"bad: {wav / '12a01Fb.wav'}: audio file holds no samples" in out
    assert f"bad: {wav / 'recording 1.wav'}: not an EmoDB file name" in out
    assert f"checksum mismatch: {wav / '16b10Wb.wav'}" in out
    assert "11 utterances" in out  # the 10 copies and the readable impostor


def test_check_json_lists_the_same_problems(cli, spoiled):
    code, out, err = cli("data", "check", "emodb", "--root", spoiled, "--json")
    assert_one_line_error(code, err, "3 bad files")
    report = json.loads(out)
    assert report["clean"] is False
    assert sorted(Path(b["path"]).name for b in report["bad"]) == ["08a01Ab.wav", "12a01Fb.wav", "recording 1.wav"]
    assert [Path(p).name for p in report["checksums"]["mismatch"]] == ["08a01Ab.wav", "12a01Fb.wav", "16b10Wb.wav"]
    assert report["checksums"]["unlisted"] == 1  # recording 1.wav


def test_check_a_label_the_map_does_not_know(ravdess_mini_root):
    """A label map without ``surprised`` (a job's override) makes those files bad, by path."""
    partial = {k: v for k, v in RAVDESS.label_map.items() if k != "surprised"}
    report = check_corpus(RAVDESS(), ravdess_mini_root, label_map=partial)
    assert not report.clean
    assert len(report.bad) == 4
    assert all("08-" in b.path.name[6:9] and "'surprised' is not in the label map" in b.reason for b in report.bad)
    assert report.utterances == 28


def test_check_with_a_manifest_file(cli, tmp_path):
    entries = shipped(EmoDB).entries
    manifest = tmp_path / "m.tsv"
    manifest.write_text("".join(f"{e.sha256}\t{e.size}\t{e.path}\n" for e in list(entries.values())[:5]))
    code, out, err = cli("data", "check", "emodb", "--root", data_root("emodb"), "--manifest", manifest)
    assert code == 0, err
    assert "5 ok, 0 mismatch, 530 unlisted, 0 listed but absent" in out


def test_check_a_user_folder(cli, tmp_path, emodb_root):
    for letter, label in (("W", "angry"), ("T", "sad")):
        (tmp_path / label).mkdir()
        for path in [p for p in sorted((emodb_root / "wav").glob("*.wav")) if p.name[5] == letter][:3]:
            shutil.copy(path, tmp_path / label / path.name)
    code, out, err = cli("data", "check", "folder", "--root", tmp_path, "--json")
    assert code == 0, err
    report = json.loads(out)
    assert report["classes"] == {"angry": 3, "sad": 3}
    assert report["speakers"] == {"unknown": 6}
    assert report["checksums"]["manifest"] is None


@pytest.mark.parametrize(
    "args, needles",
    [
        (["data", "check", "iemocap"], ["iemocap", "emodb", "ravdess", "cremad", "folder"]),
        (["data", "check"], ["name"]),
        (["data"], ["fetch, check"]),
        (["data", "check", "emodb", "--bogus"], ["--bogus"]),
    ],
)
def test_check_bad_command_lines(cli, args, needles):
    code, _, err = cli(*args)
    assert_one_line_error(code, err, *needles)


def test_check_missing_root(cli, tmp_path):
    code, _, err = cli("data", "check", "ravdess", "--root", tmp_path / "nowhere")
    assert_one_line_error(code, err, "nowhere", "ravdess corpus not found")


def test_check_root_that_is_not_the_corpus(cli, tmp_path):
    code, _, err = cli("data", "check", "cremad", "--root", tmp_path)
    assert_one_line_error(code, err, str(tmp_path), "no AudioWAV/")
