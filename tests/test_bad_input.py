"""Bad specs, paths, corpora and command lines: every one exits 2 with a single line on
stderr that starts with ``serbench: error:`` and names the offending field or file."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest


REPO = Path(__file__).resolve().parents[1]
DELETE = object()


def assert_one_line_error(code: int, err: str, *needles: str) -> str:
    """The CLI's contract for bad input; returns the message for further checks."""
    assert code == 2, err
    line = err.strip()
    assert line, "nothing on stderr"
    assert "\n" not in line, err
    assert line.startswith("serbench: error:"), line
    assert "Traceback" not in err
    for needle in needles:
        assert needle in line, f"{needle!r} not in {line!r}"
    return line


def edit(job: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    """Set (or, with ``DELETE``, remove) the dotted ``path`` in ``job``."""
    *parents, last = path.split(".")
    node = job
    for key in parents:
        node = node.setdefault(key, {})
    if value is DELETE:
        del node[last]
    else:
        node[last] = value
    return job


SPEC_CASES = [
    pytest.param({"colour": "blue"}, ["colour", "unknown key"], id="unknown-top-level-key"),
    pytest.param({"dataset.protocol.foo": 1}, ["dataset.protocol.foo", "unknown key"], id="unknown-protocol-key"),
    pytest.param({"budget.foo": 1}, ["budget.foo", "unknown key"], id="unknown-budget-key"),
    pytest.param({"training.learning_rate": 0.1}, ["training.learning_rate", "unknown key"], id="unknown-training-key"),
    pytest.param({"search_space.lr.step": 0.1}, ["search_space.lr.step", "unknown key"], id="unknown-param-key"),
    pytest.param({"seed": "abc"}, ["seed"], id="seed-not-an-integer"),
    pytest.param({"seed": -1}, ["seed"], id="seed-negative"),
    pytest.param({"budget.trials": "many"}, ["budget.trials"], id="trials-not-an-integer"),
    pytest.param({"budget.trials": 0}, ["budget.trials"], id="trials-zero"),
    pytest.param({"budget.trials": -3}, ["budget.trials"], id="trials-negative"),
    pytest.param({"budget.wall_minutes": 0}, ["budget.wall_minutes"], id="wall-minutes-zero"),
    pytest.param(
        {"search_space.lr": {"type": "float", "low": 1e-2, "high": 1e-3}},
        ["search_space.lr", "less than high"],
        id="float-low-above-high",
    ),
    pytest.param(
        {"search_space.epochs": {"type": "int", "low": 2, "high": 2}},
        ["search_space.epochs", "less than high"],
        id="int-low-equals-high",
    ),
    pytest.param(
        {"search_space.lr": {"type": "float", "low": 0.0, "high": 1e-3, "log": True}},
        ["search_space.lr", "low > 0"],
        id="float-log-low-zero",
    ),
    pytest.param(
        {"search_space.weight_decay": {"type": "float", "low": -0.1, "high": 0.1, "log": True}},
        ["search_space.weight_decay", "low > 0"],
        id="float-log-low-negative",
    ),
    pytest.param(
        {"search_space.unfreeze": {"type": "int", "low": 0, "high": 3, "log": True}},
        ["search_space.unfreeze", "low > 0"],
        id="int-log-low-zero",
    ),
    pytest.param(
        {"search_space.lr": {"type": "float", "low": 1e-4, "high": float("inf")}},
        ["search_space.lr", "finite"],
        id="float-high-infinite",
    ),
    pytest.param(
        {"search_space.maxlen": {"type": "choice", "values": []}},
        ["search_space.maxlen.values", "at least one value"],
        id="empty-choice",
    ),
    pytest.param(
        {"search_space.maxlen": {"type": "choice", "values": [16000, 24000, 16000]}},
        ["search_space.maxlen.values", "distinct"],
        id="duplicate-choice",
    ),
    pytest.param(
        {"search_space.lr": {"type": "uniform", "low": 1e-4, "high": 1e-3}},
        ["search_space.lr"],
        id="unknown-param-type",
    ),
    pytest.param(
        {"search_space.dropout": {"type": "float", "low": 0.0, "high": 0.5}},
        ["search_space", "dropout", "unknown hyperparameter"],
        id="unknown-hyperparameter",
    ),
    pytest.param(
        {"search_space.epochs": {"type": "int", "low": 0, "high": 2}},
        ["search_space", "epochs", "value 0 is not allowed"],
        id="epochs-low-zero",
    ),
    pytest.param(
        {"search_space.maxlen": {"type": "choice", "values": [800, 16000]}},
        ["search_space", "maxlen", "800"],
        id="maxlen-choice-too-short",
    ),
    pytest.param({"training.batch_size": 0}, ["training.batch_size"], id="fixed-batch-size-zero"),
    pytest.param({"name": "a/b"}, ["name"], id="name-with-slash"),
    pytest.param({"name": "a..b"}, ["name", ".."], id="name-with-dotdot"),
    pytest.param({"name": "../escape"}, ["name"], id="name-starting-with-dotdot"),
    pytest.param({"thresholds": [0.8, 1.5]}, ["thresholds", "1.5"], id="threshold-above-one"),
    pytest.param({"thresholds": [0]}, ["thresholds"], id="threshold-zero"),
    pytest.param({"engine": DELETE}, ["engine", "Field required"], id="missing-engine"),
    pytest.param({"budget": DELETE}, ["budget", "Field required"], id="missing-budget"),
    pytest.param({"dataset.subset": {}}, ["dataset.subset", "per_class"], id="empty-subset"),
    pytest.param(
        {"dataset.protocol.test_fraction": 1.0}, ["dataset.protocol.test_fraction"], id="test-fraction-one"
    ),
    pytest.param({"dataset.protocol.name": "kfold"}, ["dataset.protocol"], id="unknown-protocol"),
    pytest.param({"resources.cpus": 0}, ["resources.cpus"], id="zero-cpus"),
]


@pytest.mark.parametrize("edits, needles", SPEC_CASES)
def test_invalid_spec_is_rejected_by_validate(cli, job_dict, write_job, edits, needles):
    """An invalid field fails ``validate`` with one line naming the job file and the field."""
    for path, value in edits.items():
        edit(job_dict, path, value)
    code, out, err = cli("validate", write_job(job_dict))
    assert_one_line_error(code, err, "job.yaml", *needles)
    assert out == ""


def test_invalid_spec_is_rejected_by_run_before_any_output(cli, job_dict, write_job, tmp_path):
    """``run`` validates the spec before creating its results folder."""
    job_dict["budget"]["trials"] = 0
    code, _, err = cli("run", write_job(job_dict), "--out", tmp_path / "res")
    assert_one_line_error(code, err, "job.yaml", "budget.trials")
    assert not (tmp_path / "res").exists()


PLUGIN_CASES = [
    pytest.param({"engine.name": "hyperband"}, ["engine", "hyperband", "random"], id="unknown-engine"),
    pytest.param({"dataset.name": "iemocap"}, ["dataset", "iemocap", "emodb"], id="unknown-dataset"),
    pytest.param({"backbone.name": "wav2vec"}, ["backbone", "wav2vec", "whisper"], id="unknown-backbone"),
    pytest.param(
        {"engine.options": {"population": 8}}, ["engine.options.population", "unknown key"], id="unknown-engine-option"
    ),
    pytest.param(
        {"backbone.options": {"pool": "max"}}, ["backbone.options.pool", "unknown key"], id="unknown-backbone-option"
    ),
    pytest.param({"backbone.options.layers": "bogus"}, ["backbone.options.layers"], id="bad-backbone-option-value"),
]


@pytest.mark.parametrize("edits, needles", PLUGIN_CASES)
def test_bad_plugin_reference_is_rejected_by_validate(cli, job_dict, write_job, edits, needles):
    """An unknown plugin lists the available ones; a bad plugin option names its field."""
    for path, value in edits.items():
        edit(job_dict, path, value)
    code, _, err = cli("validate", write_job(job_dict))
    assert_one_line_error(code, err, *needles)


def test_unknown_engine_is_rejected_by_run_before_any_output(cli, job_dict, write_job, tmp_path):
    """``run`` resolves plugins before creating its results folder."""
    job_dict["engine"]["name"] = "hyperband"
    code, _, err = cli("run", write_job(job_dict), "--out", tmp_path / "res")
    assert_one_line_error(code, err, "hyperband", "random")
    assert not (tmp_path / "res").exists()


FILE_CASES = [
    pytest.param("name: [unclosed\nseed: 0\n", ["job.yaml", "YAML does not parse"], id="yaml-does-not-parse"),
    pytest.param("- name: a\n- name: b\n", ["job.yaml", "mapping", "list"], id="yaml-list"),
    pytest.param("just a string\n", ["job.yaml", "mapping", "str"], id="yaml-scalar"),
    pytest.param("", ["job.yaml", "mapping"], id="empty-file"),
]


@pytest.mark.parametrize("text, needles", FILE_CASES)
def test_unusable_job_file_is_rejected(cli, write_job, text, needles):
    """A job file that is not a YAML mapping fails with one line naming the file."""
    code, _, err = cli("validate", write_job(text))
    assert_one_line_error(code, err, *needles)


def test_missing_job_file_is_rejected(cli, tmp_path):
    """A job path that does not exist is named in the message."""
    code, _, err = cli("validate", tmp_path / "missing.yaml")
    assert_one_line_error(code, err, "missing.yaml", "no such job file")


def test_job_path_that_is_a_directory_is_rejected(cli, tmp_path):
    """A folder given as the job file is named in the message."""
    folder = tmp_path / "jobdir.yaml"
    folder.mkdir()
    code, _, err = cli("validate", folder)
    assert_one_line_error(code, err, "jobdir.yaml", "cannot read")


def test_job_file_not_utf8_is_rejected(cli, tmp_path):
    """A job file that is not UTF-8 text is named in the message."""
    path = tmp_path / "latin1.yaml"
    path.write_bytes("name: caf\xe9\n".encode("latin-1"))
    code, _, err = cli("validate", path)
    assert_one_line_error(code, err, "latin1.yaml", "cannot read")


CLI_CASES = [
    pytest.param(["frobnicate"], ["frobnicate"], id="unknown-subcommand"),
    pytest.param(["validate", "job.yaml", "--bogus"], ["--bogus"], id="unknown-flag"),
    pytest.param(["--bogus"], ["--bogus"], id="unknown-top-level-flag"),
    pytest.param(["validate"], ["job"], id="missing-argument"),
    pytest.param(["schema", "nonsense"], ["nonsense"], id="bad-choice"),
    pytest.param([], ["command"], id="no-command"),
]


@pytest.mark.parametrize("args, needles", CLI_CASES)
def test_bad_command_line_is_one_line(cli, args, needles):
    """argparse usage errors follow the same one-line, exit-2 contract."""
    code, _, err = cli(*args)
    assert_one_line_error(code, err, *needles)


def test_missing_dataset_root_says_how_to_point_at_it(cli, job_dict, write_job, tmp_path):
    """A ``dataset.root`` that does not exist is named, with the ways to set the root."""
    job_dict["dataset"]["root"] = str(tmp_path / "nowhere")
    code, _, err = cli("validate", write_job(job_dict))
    assert_one_line_error(code, err, "nowhere", "dataset.root", "--data-root", "SERBENCH_DATA")


def test_missing_data_root_option_is_rejected(cli, job_dict, write_job, tmp_path):
    """A ``--data-root`` without the corpus folder is named in the message."""
    code, _, err = cli("validate", write_job(job_dict), "--data-root", tmp_path / "nodata")
    assert_one_line_error(code, err, str(tmp_path / "nodata" / "emodb"), "--data-root")


def test_missing_default_data_home_is_rejected(cli, job_dict, write_job, tmp_path, monkeypatch):
    """With ``$SERBENCH_DATA`` pointing at an empty folder, the expected corpus path is named."""
    monkeypatch.setenv("SERBENCH_DATA", str(tmp_path / "home"))
    code, _, err = cli("validate", write_job(job_dict))
    assert_one_line_error(code, err, str(tmp_path / "home" / "emodb"), "SERBENCH_DATA")


@pytest.fixture
def corpus(tmp_path: Path, emodb_root: Path) -> Path:
    """A tmp EmoDB folder with 4 genuine utterances per class (none named 03a01Fa.wav),
    enough for a nested stratified split; tests add their own bad file."""
    root = tmp_path / "corpus"
    wav = root / "wav"
    wav.mkdir(parents=True)
    taken: dict[str, int] = {}
    for path in sorted((emodb_root / "wav").glob("*.wav")):
        emotion = path.name[5]
        if path.name == "03a01Fa.wav" or taken.get(emotion, 0) >= 4:
            continue
        shutil.copy(path, wav / path.name)
        taken[emotion] = taken.get(emotion, 0) + 1
    assert sorted(taken.values()) == [4] * 7
    return root


def corpus_job(job_dict: dict[str, Any], root: Path) -> dict[str, Any]:
    job_dict["dataset"]["root"] = str(root)
    job_dict["dataset"]["subset"] = None
    job_dict["dataset"]["protocol"] = {"name": "holdout", "test_fraction": 0.25, "val_fraction": 0.34}
    return job_dict


def test_run_on_empty_data_root_names_the_folder(cli, job_dict, write_job, tmp_path):
    """A corpus root with nothing in it is named when ``run`` scans it."""
    empty = tmp_path / "empty_corpus"
    empty.mkdir()
    code, _, err = cli("run", write_job(corpus_job(job_dict, empty)), "--out", tmp_path / "res")
    assert_one_line_error(code, err, str(empty), "wav")


def test_run_on_empty_wav_folder_names_the_folder(cli, job_dict, write_job, tmp_path):
    """A corpus whose ``wav/`` holds no recordings is named when ``run`` scans it."""
    root = tmp_path / "hollow"
    (root / "wav").mkdir(parents=True)
    code, _, err = cli("run", write_job(corpus_job(job_dict, root)), "--out", tmp_path / "res")
    assert_one_line_error(code, err, str(root / "wav"), "no EmoDB")


def test_run_on_wav_with_foreign_name_names_the_file(cli, job_dict, write_job, corpus, tmp_path, emodb_root):
    """A ``.wav`` that does not follow EmoDB's naming is named when ``run`` scans it."""
    shutil.copy(emodb_root / "wav" / "03a01Fa.wav", corpus / "wav" / "hello.wav")
    code, _, err = cli("run", write_job(corpus_job(job_dict, corpus)), "--out", tmp_path / "res")
    assert_one_line_error(code, err, "hello.wav", "EmoDB file name")


def test_run_on_text_file_named_like_audio_names_the_file(cli, job_dict, write_job, corpus, tmp_path):
    """A text file named like an EmoDB recording is named when ``run`` loads the audio."""
    (corpus / "wav" / "03a01Fa.wav").write_text("this is not audio\n", encoding="utf-8")
    code, _, err = cli("run", write_job(corpus_job(job_dict, corpus)), "--out", tmp_path / "res")
    assert_one_line_error(code, err, "03a01Fa.wav", "not a readable audio file")
    assert not (tmp_path / "res" / job_dict["name"] / "result.json").exists()


def test_run_on_corpus_too_small_to_split_is_rejected(cli, job_dict, write_job, corpus, tmp_path):
    """A corpus too small for the protocol's stratified split says so instead of crashing."""
    job = corpus_job(job_dict, corpus)
    job["dataset"]["subset"] = {"per_class": 2}
    code, _, err = cli("run", write_job(job), "--out", tmp_path / "res")
    assert_one_line_error(code, err, "stratified", "subset")


def test_run_data_error_is_the_only_line_on_stderr(cli, job_dict, write_job, tmp_path):
    """A bad corpus found by ``run`` leaves exactly one line on stderr."""
    empty = tmp_path / "empty_corpus"
    empty.mkdir()
    code, _, err = cli("run", write_job(corpus_job(job_dict, empty)), "--out", tmp_path / "res")
    assert_one_line_error(code, err, str(empty))


def serbench_subprocess(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "serbench.cli", *args],
        capture_output=True,
        text=True,
        env=dict(os.environ),
        cwd=REPO,
        timeout=120,
    )


def test_subprocess_validate_rejects_unknown_key(job_dict, write_job):
    """The installed command exits 2 with one line for an unknown key, no traceback."""
    job_dict["budget"]["foo"] = 1
    proc = serbench_subprocess("validate", str(write_job(job_dict)))
    assert_one_line_error(proc.returncode, proc.stderr, "job.yaml", "budget.foo")


def test_subprocess_validate_rejects_unknown_dataset(job_dict, write_job):
    """The installed command exits 2 with one line for an unknown dataset, no traceback."""
    job_dict["dataset"]["name"] = "iemocap"
    proc = serbench_subprocess("validate", str(write_job(job_dict)))
    assert_one_line_error(proc.returncode, proc.stderr, "iemocap", "emodb")


def test_subprocess_validate_accepts_the_repo_smoke_job():
    """The repository's own smoke job validates against the real data root."""
    proc = serbench_subprocess("validate", "jobs/smoke_emodb.yaml")
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""
    assert "smoke_emodb.yaml: ok" in proc.stdout
