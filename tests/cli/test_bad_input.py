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
from conftest import assert_one_line_error

REPO = Path(__file__).resolve().parents[2]

DELETE = object()


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
        {"search_space.momentum": {"type": "float", "low": 0.0, "high": 0.5}},
        ["search_space", "momentum", "unknown hyperparameter"],
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
    pytest.param({"execution": {"backend": "slurm"}}, ["execution.backend", "slurm", "local, ray"], id="unknown-backend"),
    pytest.param(
        {"execution": {"backend": "ray", "options": {"adress": "auto"}}},
        ["execution.options.adress", "unknown key"], id="unknown-backend-option",
    ),
    pytest.param(
        {"execution": {"backend": "ray", "options": {"address": "nowhere"}}},
        ["execution.options.address", "local, auto or HOST:PORT"], id="bad-ray-address",
    ),
    pytest.param(
        {"execution": {"backend": "local", "parallel": 2}}, ["execution.parallel", "at most 1", "ray"],
        id="local-backend-in-parallel",
    ),
]


@pytest.mark.parametrize("edits, needles", PLUGIN_CASES)
def test_bad_plugin_reference_is_rejected_by_validate(cli, job_dict, write_job, edits, needles):
    """An unknown plugin lists the available ones; a bad plugin option names its field."""
    for path, value in edits.items():
        edit(job_dict, path, value)
    code, _, err = cli("validate", write_job(job_dict))
    assert_one_line_error(code, err, *needles)


def test_run_overrides_of_the_execution_are_checked_before_any_output(cli, job_dict, write_job, tmp_path):
    """--ray-address belongs to the ray backend; --backend local with --parallel 2 is refused."""
    job = write_job(job_dict)
    code, _, err = cli("run", job, "--out", tmp_path / "res", "--ray-address", "auto")
    assert_one_line_error(code, err, "--ray-address", "only with the ray backend", "--backend ray")
    code, _, err = cli("run", job, "--out", tmp_path / "res", "--parallel", "2")
    assert_one_line_error(code, err, "execution.parallel: 2", "local backend")
    code, _, err = cli("run", job, "--out", tmp_path / "res", "--backend", "ray", "--isolate")
    assert_one_line_error(code, err, "--isolate", "ray backend")
    code, _, err = cli("run", job, "--out", tmp_path / "res", "--backend", "ray", "--executor", "docker")
    assert_one_line_error(code, err, "--executor docker", "ray")
    assert not (tmp_path / "res").exists()


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
    """A job file that is not UTF-8 text is named in the message, with the bad byte's line."""
    path = tmp_path / "latin1.yaml"
    path.write_bytes("name: caf\xe9\n".encode("latin-1"))
    code, _, err = cli("validate", path)
    assert_one_line_error(code, err, "latin1.yaml", "cannot read", "byte 0xe9 at line 1 (offset 9)", "UTF-8")


# --- strict YAML: duplicate keys, tabs, bytes that are not UTF-8 -----------------------

# A valid job, written by hand so that the tests can name its lines.
JOB_TEXT = """\
name: test_job
seed: 0
dataset:
  name: emodb
  subset: {per_class: 5}
backbone:
  name: whisper
  source: openai/whisper-tiny.en
search_space:
  lr: {type: float, low: 1.0e-4, high: 3.0e-3, log: true}
  epochs: {type: int, low: 1, high: 2}
engine: {name: random}
budget: {trials: 2}
"""


def job_text(old: str, new: str) -> str:
    assert old in JOB_TEXT
    return JOB_TEXT.replace(old, new, 1)


def test_the_hand_written_job_is_valid(cli, write_job):
    code, out, err = cli("validate", write_job(JOB_TEXT))
    assert code == 0, err
    assert "job.yaml: ok" in out


YAML_CASES = [
    pytest.param(
        job_text("budget: {trials: 2}\n", "budget: {trials: 2}\nseed: 1\n"),
        ["job.yaml: duplicate key 'seed' at line 14 (first at line 2)"],
        id="duplicate-top-level-key",
    ),
    pytest.param(
        job_text("engine:", "  lr: {type: float, low: 1.0e-3, high: 1.0e-2}\nengine:"),
        ["job.yaml: duplicate key 'search_space.lr' at line 12 (first at line 10)"],
        id="duplicate-nested-key",
    ),
    pytest.param(
        job_text("budget: {trials: 2}", "budget: {trials: 2, trials: 3}"),
        ["job.yaml: duplicate key 'budget.trials' at line 13, column 21 (first at line 13, column 10)"],
        id="duplicate-key-in-flow-mapping",
    ),
    pytest.param(
        JOB_TEXT + "transfer:\n  - name: ravdess\n    subset: {per_class: 2}\n    name: emodb\n",
        ["job.yaml: duplicate key 'transfer.0.name' at line 17 (first at line 15)"],
        id="duplicate-key-in-list-item",
    ),
    pytest.param(
        job_text("  subset: {per_class: 5}\n", "  subset: {per_class: 5}\n  name: emodb\n"),
        ["job.yaml: duplicate key 'dataset.name' at line 6 (first at line 4)"],
        id="duplicate-key-same-value",
    ),
    pytest.param(
        job_text("  source:", "\tsource:"),
        ["job.yaml: YAML does not parse at line 8: tabs are not allowed for indentation; indent with spaces"],
        id="tab-indentation",
    ),
    pytest.param(
        job_text("seed: 0", "seed:\t0"),
        ["job.yaml: YAML does not parse at line 2: a tab at column 6", "use spaces"],
        id="tab-after-colon",
    ),
    pytest.param(
        job_text("seed: 0", "seed: 0\x00"),
        ["job.yaml: YAML does not parse at line 2: character U+0000 is not allowed"],
        id="nul-character",
    ),
]


@pytest.mark.parametrize("text, needles", YAML_CASES)
def test_strict_yaml_is_rejected_by_validate(cli, write_job, text, needles):
    """A duplicated key (anywhere: top level, nested, in a flow mapping, in a list item),
    a tab in the indentation or a forbidden character fails with one line and its lines."""
    code, out, err = cli("validate", write_job(text))
    assert_one_line_error(code, err, *needles)
    assert out == ""


def test_a_byte_that_is_not_utf8_names_its_line(cli, tmp_path):
    """A stray byte (here in a comment) names its line and offset and says files are UTF-8."""
    path = tmp_path / "job.yaml"
    path.write_bytes(JOB_TEXT.encode().replace(b"dataset:\n", b"dataset:  # caf\xff\n"))
    offset = path.read_bytes().index(b"\xff")
    code, _, err = cli("validate", path)
    assert_one_line_error(code, err, "job.yaml", f"byte 0xff at line 3 (offset {offset})", "must be UTF-8")


def test_merge_keys_still_work(cli, write_job, tmp_path):
    """``<<`` merges an anchored mapping; a key of the mapping itself overrides a merged one."""
    from serbench.spec import load_job

    text = job_text("  lr: {", "  lr: &lr {")
    text = text.replace("  epochs:", "  weight_decay:\n    <<: *lr\n    low: 1.0e-3\n    high: 1.0e-1\n  epochs:")
    code, _, err = cli("validate", write_job(text))
    assert code == 0, err
    space = load_job(tmp_path / "job.yaml").search_space
    assert (space["weight_decay"].low, space["weight_decay"].high, space["weight_decay"].log) == (1e-3, 1e-1, True)


def test_run_rejects_a_duplicate_key_before_any_output(cli, write_job, tmp_path):
    code, _, err = cli("run", write_job(job_text("seed: 0", "seed: 0\nseed: 1")), "--out", tmp_path / "res")
    assert_one_line_error(code, err, "duplicate key 'seed' at line 3 (first at line 2)")
    assert not (tmp_path / "res").exists()


# --- backbone.source: checked by validate, without loading weights or the network ------


def model_folder(tmp_path: Path, *files: str) -> Path:
    folder = tmp_path / "model"
    folder.mkdir()
    for name in files:
        (folder / name).write_text("{}", encoding="utf-8")
    return folder


SOURCE_CASES = [
    pytest.param(lambda tmp: str(tmp / "nowhere"), ["backbone.source: no such model folder", "nowhere"], id="missing-absolute-folder"),
    pytest.param(lambda tmp: "./no-such-model", ["backbone.source: no such model folder", "no-such-model"], id="missing-relative-folder"),
    pytest.param(
        lambda tmp: "~/no-such-serbench-model",
        ["backbone.source: no such model folder", str(Path.home() / "no-such-serbench-model")],
        id="missing-home-folder",
    ),
    pytest.param(
        lambda tmp: str(model_folder(tmp)),
        ["backbone.source:", "holds no whisper model: no config.json, no preprocessor_config.json, no *.safetensors or *.bin"],
        id="empty-folder",
    ),
    pytest.param(
        lambda tmp: str(model_folder(tmp, "config.json", "preprocessor_config.json")),
        ["backbone.source:", "holds no whisper model: no *.safetensors or *.bin"],
        id="folder-without-weights",
    ),
    pytest.param(
        lambda tmp: str(model_folder(tmp, "config.json") / "config.json"),
        ["backbone.source:", "config.json is a file"],
        id="file-not-folder",
    ),
    pytest.param(
        lambda tmp: "not a hub id!",
        ["backbone.source: 'not a hub id!' is neither a model folder", "SERBENCH_MODELS", "nor a hub id (owner/name"],
        id="malformed-hub-id",
    ),
    pytest.param(lambda tmp: "a/b/c", ["backbone.source: 'a/b/c' is neither a model folder", "hub id"], id="three-part-id"),
    pytest.param(lambda tmp: "openai/-whisper", ["'openai/-whisper' is neither", "hub id"], id="hub-name-starts-with-dash"),
    pytest.param(lambda tmp: "open--ai/whisper", ["'open--ai/whisper' is neither", "hub id"], id="hub-id-with-double-dash"),
    pytest.param(
        lambda tmp: "whisper-tiny",
        ["'whisper-tiny' is neither a model folder (none here or under $SERBENCH_MODELS", "hub id"],
        id="name-not-under-models",
    ),
    pytest.param(
        lambda tmp: "someone/unknown-model",
        ["backbone.source: hub id 'someone/unknown-model' cannot be loaded offline: HF_HUB_OFFLINE is set",
         "neither in the local cache nor at", "unknown-model"],
        id="hub-id-offline-not-cached",
    ),
]


@pytest.mark.parametrize("source, needles", SOURCE_CASES)
def test_unusable_backbone_source_is_rejected_by_validate(cli, job_dict, write_job, tmp_path, monkeypatch, source, needles):
    """A source that cannot be loaded fails ``validate`` with one line naming it."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    job_dict["backbone"]["source"] = source(tmp_path)
    code, out, err = cli("validate", write_job(job_dict))
    assert_one_line_error(code, err, "job.yaml", *needles)
    assert out == ""


@pytest.mark.parametrize(
    "source",
    [
        pytest.param(lambda models: "whisper-tiny.en", id="name-under-serbench-models"),
        pytest.param(lambda models: str(models / "whisper-tiny.en"), id="absolute-path"),
        pytest.param(lambda models: "openai/whisper-tiny.en", id="hub-id-found-under-serbench-models"),
    ],
)
def test_backbone_source_that_resolves_is_accepted(cli, job_dict, write_job, tiny_whisper, source):
    job_dict["backbone"]["source"] = source(tiny_whisper.parent)
    code, out, err = cli("validate", write_job(job_dict))
    assert code == 0, err
    assert err == ""
    assert f"backbone whisper from {tiny_whisper}," in out


def test_hub_id_not_cached_is_accepted_online_with_a_note(cli, job_dict, write_job, monkeypatch):
    """Online, a well-formed hub id not present here is accepted: ``run`` downloads it
    (``validate`` itself never touches the network)."""
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    job_dict["backbone"]["source"] = "someone/unknown-model"
    code, out, err = cli("validate", write_job(job_dict))
    assert code == 0, err
    assert "someone/unknown-model (hub id, not in the local cache: downloaded at run time)" in out


def test_hub_id_in_the_hugging_face_cache_is_accepted_offline(job_dict, write_job, tmp_path, tiny_whisper):
    """A hub id whose ``main`` revision is in the Hugging Face cache (the layout
    ``snapshot_download`` leaves: refs/main -> snapshots/<commit>/ -> ../../blobs) is
    accepted offline, and its snapshot must hold the model files."""
    repo = tmp_path / "hub" / "models--acme--whisper-copy"
    snapshot = repo / "snapshots" / "0123abcd"
    snapshot.mkdir(parents=True)
    (repo / "blobs").mkdir()
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("0123abcd")
    for name in ("config.json", "preprocessor_config.json"):
        shutil.copy(tiny_whisper / name, repo / "blobs" / name)
        (snapshot / name).symlink_to(Path("..", "..", "blobs", name))
    job_dict["backbone"]["source"] = "acme/whisper-copy"
    job = str(write_job(job_dict))
    env = {"HF_HUB_CACHE": str(tmp_path / "hub"), "HF_HUB_OFFLINE": "1"}
    proc = serbench_subprocess("validate", job, env=env)
    assert_one_line_error(proc.returncode, proc.stderr, "'acme/whisper-copy' cannot be loaded offline")

    (repo / "blobs" / "model.safetensors").symlink_to(tiny_whisper / "model.safetensors")
    (snapshot / "model.safetensors").symlink_to(Path("..", "..", "blobs", "model.safetensors"))
    proc = serbench_subprocess("validate", job, env=env)
    assert proc.returncode == 0, proc.stderr
    assert "backbone whisper from acme/whisper-copy (hub id, in the local cache)" in proc.stdout


SPEECHBRAIN_CASES = [
    pytest.param(
        lambda tmp: str(model_folder(tmp, "wav2vec2.ckpt")),
        ["holds no speechbrain-wav2vec2 model: no hyperparams.yaml"],
        id="folder-without-hyperparams",
    ),
    pytest.param(lambda tmp: str(tmp / "gone"), ["no such model folder", "gone"], id="missing-folder"),
    pytest.param(lambda tmp: "speechbrain/bad name", ["'speechbrain/bad name' is neither", "hub id"], id="malformed-hub-id"),
    pytest.param(
        lambda tmp: "speechbrain/emotion-recognition-wav2vec2-IEMOCAP",
        ["'speechbrain/emotion-recognition-wav2vec2-IEMOCAP' cannot be loaded offline"],
        id="hub-id-offline-not-collected",
    ),
]


@pytest.mark.parametrize("source, needles", SPEECHBRAIN_CASES)
def test_unusable_speechbrain_source_is_rejected_by_validate(
    cli, job_dict, write_job, tmp_path, monkeypatch, source, needles
):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    job_dict["backbone"] = {
        "name": "speechbrain-wav2vec2",
        "source": source(tmp_path),
        "options": {"savedir": str(tmp_path / "collected")},
    }
    code, _, err = cli("validate", write_job(job_dict))
    assert_one_line_error(code, err, "job.yaml", "backbone.source", *needles)


def test_speechbrain_hub_id_collected_in_savedir_is_accepted_offline(cli, job_dict, write_job, tmp_path, monkeypatch):
    """A hub id whose files were collected into ``savedir`` before is read from there."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    collected = tmp_path / "collected" / "speechbrain--emotion-recognition-wav2vec2-IEMOCAP"
    collected.mkdir(parents=True)
    (collected / "hyperparams.yaml").write_text("encoder_dim: 768\n", encoding="utf-8")
    job_dict["backbone"] = {
        "name": "speechbrain-wav2vec2",
        "source": "speechbrain/emotion-recognition-wav2vec2-IEMOCAP",
        "options": {"savedir": str(tmp_path / "collected")},
    }
    code, out, err = cli("validate", write_job(job_dict))
    assert code == 0, err
    assert "(hub id, in the local cache)" in out


def test_run_rejects_a_missing_model_folder(cli, job_dict, write_job, tmp_path):
    """``run`` gives the same one line as ``validate`` and writes no result."""
    job_dict["backbone"]["source"] = str(tmp_path / "nowhere")
    code, _, err = cli("run", write_job(job_dict), "--out", tmp_path / "res")
    assert_one_line_error(code, err, "job.yaml", "backbone.source: no such model folder", "nowhere")
    assert not (tmp_path / "res" / job_dict["name"] / "result.json").exists()


CLI_CASES = [
    pytest.param(["frobnicate"], ["frobnicate"], id="unknown-subcommand"),
    pytest.param(["validate", "job.yaml", "--bogus"], ["--bogus"], id="unknown-flag"),
    pytest.param(["--bogus"], ["--bogus"], id="unknown-top-level-flag"),
    pytest.param(["validate"], ["job"], id="missing-argument"),
    pytest.param(["schema", "nonsense"], ["nonsense"], id="bad-choice"),
    pytest.param([], ["command"], id="no-command"),
    pytest.param(["run", "job.yaml", "--parallel", "0"], ["--parallel", "0 is not 1 or more"], id="parallel-zero"),
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


def serbench_subprocess(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "serbench.cli", *args],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
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


def test_subprocess_validate_rejects_a_duplicate_key(write_job):
    """The installed command exits 2 with one line for a duplicated key, no traceback."""
    proc = serbench_subprocess("validate", str(write_job(job_text("seed: 0", "seed: 0\nseed: 1"))))
    assert_one_line_error(proc.returncode, proc.stderr, "job.yaml", "duplicate key 'seed' at line 3 (first at line 2)")


def test_subprocess_validate_accepts_the_repo_smoke_job():
    """The repository's own smoke job validates against the real data root."""
    proc = serbench_subprocess("validate", "jobs/smoke_emodb.yaml")
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""
    assert "smoke_emodb.yaml: ok" in proc.stdout
