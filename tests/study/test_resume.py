"""Kill a real run with SIGKILL, resume it, and get the study an uninterrupted run gets."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import yaml


def journal_lines(path):
    if not path.exists():
        return []
    return [line for line in path.read_text().splitlines() if line.strip()]


def start(job, out):
    """``serbench run`` in a child process; its output goes to a file, never a pipe that
    could fill up and stall it."""
    log = open(out / "run.log", "w")
    return subprocess.Popen(
        [sys.executable, "-m", "serbench.cli", "run", str(job), "--out", str(out)],
        stdout=log,
        stderr=subprocess.STDOUT,
        env=dict(os.environ),
    )


def kill_after(proc, journal, lines, delay):
    deadline = time.monotonic() + 300
    while len(journal_lines(journal)) < lines:
        assert proc.poll() is None, (journal.parents[1] / "run.log").read_text()
        assert time.monotonic() < deadline, "run made no progress"
        time.sleep(0.05)
    time.sleep(delay)
    proc.send_signal(signal.SIGKILL)
    proc.wait()


@pytest.fixture(scope="module")
def resumable_job(tmp_path_factory):
    """Four short trials, some training the encoder (so a trial takes a moment)."""
    from conftest import SMOKE_JOB

    job = json.loads(json.dumps(SMOKE_JOB))
    job["budget"]["trials"] = 4
    job["search_space"]["unfreeze"] = {"type": "int", "low": 0, "high": 1}
    job["search_space"]["epochs"] = {"type": "int", "low": 1, "high": 2}
    job["search_space"]["maxlen"] = {"type": "choice", "values": [16000, 20000]}
    path = tmp_path_factory.mktemp("job") / "job.yaml"
    path.write_text(yaml.safe_dump(job))
    return path


@pytest.fixture(scope="module")
def uninterrupted(resumable_job, tmp_path_factory):
    out = tmp_path_factory.mktemp("uninterrupted")
    proc = start(resumable_job, out)
    assert proc.wait() == 0, (out / "run.log").read_text()
    return json.loads((out / "test_job" / "result.json").read_text())


@pytest.fixture
def resumable_copy(resumable_job, tmp_path):
    """The job file in this test's folder (a test may edit it)."""
    path = tmp_path / "job.yaml"
    path.write_text(resumable_job.read_text())
    return path


@pytest.mark.parametrize("where, delay", [("between trials", 0.0), ("mid-trial", 0.3)])
def test_resume_after_sigkill_equals_an_uninterrupted_run(resumable_job, uninterrupted, tmp_path, cli, where, delay):
    journal = tmp_path / "test_job" / "trials.jsonl"
    proc = start(resumable_job, tmp_path)
    kill_after(proc, journal, 2, delay)
    assert proc.returncode == -signal.SIGKILL
    assert not (tmp_path / "test_job" / "result.json").exists()
    kept = len(journal_lines(journal))
    assert 2 <= kept < 4, f"killed too late ({where})"

    code, _, err = cli("run", resumable_job, "--out", tmp_path, "--resume")
    assert code == 0, err
    result = json.loads((tmp_path / "test_job" / "result.json").read_text())
    assert result["resumed"] == kept
    numbers = [t["number"] for t in result["trials"]]
    assert numbers == [0, 1, 2, 3]
    assert len(journal_lines(journal)) == 4
    assert [t["params"] for t in result["trials"]] == [t["params"] for t in uninterrupted["trials"]]
    assert [t["value"] for t in result["trials"]] == [t["value"] for t in uninterrupted["trials"]]
    assert result["best"]["trial"] == uninterrupted["best"]["trial"]
    assert result["test"]["bca"] == uninterrupted["test"]["bca"]


def test_a_line_cut_short_by_a_crash_is_dropped_on_resume(resumable_job, tmp_path, cli):
    proc = start(resumable_job, tmp_path)
    journal = tmp_path / "test_job" / "trials.jsonl"
    kill_after(proc, journal, 1, 0.0)
    with journal.open("a") as handle:
        handle.write('{"fold": 0, "number": 1, "par')  # a write interrupted by the crash
    code, _, err = cli("run", resumable_job, "--out", tmp_path, "--resume")
    assert code == 0, err
    records = [json.loads(line) for line in journal_lines(journal)]
    assert [r["number"] for r in records] == [0, 1, 2, 3]


def test_resume_refuses_a_changed_spec_and_a_missing_study(resumable_copy, tmp_path, cli):
    resumable_job = resumable_copy
    code, _, err = cli("run", resumable_job, "--out", tmp_path, "--resume")
    assert code == 2 and "nothing to resume" in err
    proc = start(resumable_job, tmp_path)
    kill_after(proc, tmp_path / "test_job" / "trials.jsonl", 1, 0.0)
    changed = yaml.safe_load(resumable_job.read_text())
    changed["seed"] = 5
    resumable_job.write_text(yaml.safe_dump(changed))
    code, _, err = cli("run", resumable_job, "--out", tmp_path, "--resume")
    assert code == 2 and "spec changed" in err


@pytest.fixture(scope="module")
def pruned_job(tmp_path_factory):
    """Six trials under successive halving (rungs at 1 and 2 epochs, the top half goes
    on), some training the encoder: a study in which the pruner stops trials."""
    from conftest import SMOKE_JOB

    job = json.loads(json.dumps(SMOKE_JOB))
    job["budget"]["trials"] = 6
    job["search_space"]["lr"] = {"type": "choice", "values": [1e-7, 2e-3]}  # hopeless or good
    job["search_space"]["unfreeze"] = {"type": "int", "low": 0, "high": 3}
    job["search_space"]["epochs"] = {"type": "int", "low": 2, "high": 3}
    job["search_space"]["maxlen"] = {"type": "choice", "values": [16000, 20000]}
    job["pruner"] = {"name": "successive-halving", "options": {"min_resource": 1, "reduction_factor": 2}}
    path = tmp_path_factory.mktemp("pruned-job") / "job.yaml"
    path.write_text(yaml.safe_dump(job))
    return path


def test_a_resumed_pruned_study_prunes_the_same_trials(pruned_job, tmp_path_factory, tmp_path, cli):
    whole = tmp_path_factory.mktemp("pruned-uninterrupted")
    proc = start(pruned_job, whole)
    assert proc.wait() == 0, (whole / "run.log").read_text()
    uninterrupted = json.loads((whole / "test_job" / "result.json").read_text())
    statuses = [t["status"] for t in uninterrupted["trials"]]
    assert "pruned" in statuses[3:], statuses  # a trial after the kill point is pruned

    journal = tmp_path / "test_job" / "trials.jsonl"
    proc = start(pruned_job, tmp_path)
    kill_after(proc, journal, 3, 0.3)
    kept = len(journal_lines(journal))
    assert 3 <= kept < 6, "killed too late"
    code, _, err = cli("run", pruned_job, "--out", tmp_path, "--resume")
    assert code == 0, err
    result = json.loads((tmp_path / "test_job" / "result.json").read_text())
    assert result["resumed"] == kept
    for field in ("number", "params", "status", "value", "curve", "pruned_at", "epochs_trained"):
        assert [t[field] for t in result["trials"]] == [t[field] for t in uninterrupted["trials"]], field
    assert result["pruning"]["epochs_spent"] == uninterrupted["pruning"]["epochs_spent"]
    assert result["best"]["trial"] == uninterrupted["best"]["trial"]
