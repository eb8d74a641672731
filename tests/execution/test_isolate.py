"""Limits without Docker: ``serbench run --isolate`` holds a real study to its job's CPUs
and memory, records a trial killed by the memory limit as failed (``oom``) and goes on;
a job asking for more than the machine has is refused; signals and worker deaths keep
the exit-code contract and the journal."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from conftest import sigint_as_at_a_terminal

from serbench.execution.isolate import process_tree

REPO = Path(__file__).resolve().parents[2]
OOM_JOB = REPO / "jobs" / "oom_smoke_emodb.yaml"
GIB = 2**30


def serbench(*args, log: Path) -> subprocess.Popen:
    """``serbench`` in a child process, its output in a file (a pipe could fill up)."""
    handle = open(log, "w")
    return subprocess.Popen(
        [sys.executable, "-m", "serbench.cli", *map(str, args)], stdout=handle, stderr=subprocess.STDOUT,
        preexec_fn=sigint_as_at_a_terminal,  # the test interrupts it like Ctrl-C
    )


def journal(path: Path) -> list[dict]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def wait_for_trials(proc: subprocess.Popen, path: Path, count: int, log: Path) -> None:
    deadline = time.monotonic() + 300
    while len(journal(path)) < count:
        assert proc.poll() is None, log.read_text()
        assert time.monotonic() < deadline, "the run made no progress"
        time.sleep(0.05)


def test_isolate_records_the_trial_killed_for_memory_and_goes_on(tmp_path):
    """The OOM job: 2 GB, one CPU. Its unfrozen 10-s batch of 50 clips peaks at ~3.6 GB
    RSS unconstrained, its 1-s one at ~0.9 GB (measured with /usr/bin/time -v)."""
    spec = yaml.safe_load(OOM_JOB.read_text())
    log = tmp_path / "run.log"
    started = time.monotonic()
    proc = serbench("run", OOM_JOB, "--isolate", "--out", tmp_path, log=log)
    assert proc.wait(timeout=900) == 0, log.read_text()
    out = tmp_path / spec["name"]
    result = json.loads((out / "result.json").read_text())
    text = log.read_text()

    assert result["status"] == "completed"
    trials = {t["params"]["maxlen"]: t for t in result["trials"]}
    assert sorted(t["number"] for t in result["trials"]) == [0, 1]
    big, small = trials[160000], trials[16000]
    assert big["status"] == "failed" and big["reason"] == "oom", big
    assert "out of memory" in big["error"] and "2.0 GB" in big["error"]
    assert 0 < big["duration_s"] <= big["cumulative_s"]
    assert small["status"] == "ok" and small["value"] is not None
    assert big["number"] == 0, "the grid runs the big trial first: the study goes on after it"
    assert result["resumed"] == 1  # the worker restarted after the OOM kill and read it back
    assert result["best"]["trial"] == small["number"] and result["test"]["n"] > 0

    lines = journal(out / "trials.jsonl")
    assert sorted((r["fold"], r["number"]) for r in lines) == [(0, 0), (0, 1)]
    assert not (out / "inflight.json").exists()
    assert sum("ran out of memory" in line for line in text.splitlines()) == 1
    assert "Traceback" not in text

    used = result["resources"]
    assert used["isolation"] in ("affinity+rss-guard", "cgroup-v2")
    assert used["cpu_affinity"] is not None and len(used["cpu_affinity"]) == spec["resources"]["cpus"]
    assert used["torch_threads"] == used["cpus_available"] == spec["resources"]["cpus"]
    assert used["memory_limit_bytes"] == spec["resources"]["memory_gb"] * GIB
    assert used["memory_limit_source"] in ("rss-guard", "cgroup-v2")
    assert used["executor"] == "local"
    print(f"oom job under --isolate: {time.monotonic() - started:.0f} s")


@pytest.mark.parametrize(
    "resources, field",
    [({"cpus": 64}, "resources.cpus"), ({"memory_gb": 10000}, "resources.memory_gb")],
    ids=["cpus-64", "memory-10000-gb"],
)
@pytest.mark.parametrize("mode", [[], ["--isolate"]], ids=["plain", "isolate"])
def test_a_job_asking_for_more_than_there_is_is_refused(job_dict, write_job, tmp_path, cli, resources, field, mode):
    job_dict["resources"].update(resources)
    code, out, err = cli("run", write_job(job_dict), "--out", tmp_path, *mode)
    assert code == 2
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert field in err and "available" in err
    assert not (tmp_path / "test_job").exists()


def test_refusal_from_the_real_command_line(job_dict, write_job, tmp_path):
    job_dict["resources"]["cpus"] = 64
    proc = subprocess.run(
        [sys.executable, "-m", "serbench.cli", "run", str(write_job(job_dict)), "--isolate", "--out", str(tmp_path)],
        capture_output=True, text=True,
    )
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.count("\n") == 1 and "resources.cpus: the job asks for 64 CPUs" in proc.stderr


def test_interrupt_and_a_worker_killed_from_outside_keep_the_journal(job_dict, write_job, tmp_path, cli):
    """SIGINT to the supervisor: the worker stops like Ctrl-C (130). SIGKILL to the worker
    (not the memory limit): one line, exit 1. Then --resume finishes: each trial once."""
    job_dict["budget"]["trials"] = 4
    job = write_job(job_dict)
    path = tmp_path / "test_job" / "trials.jsonl"
    log = tmp_path / "first.log"

    proc = serbench("run", job, "--isolate", "--out", tmp_path, log=log)
    wait_for_trials(proc, path, 1, log)
    marker_file = tmp_path / "test_job" / "inflight.json"
    # Between two trials (one journalled, the next not yet asked) nothing is in flight and
    # there is no marker: interrupt once a trial is in flight (its marker is there). On a
    # loaded machine that gap can be long enough to catch a signal sent blindly.
    while not marker_file.exists():
        assert proc.poll() is None, log.read_text()
        time.sleep(0.005)
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=120) == 130, log.read_text()
    assert "interrupted" in log.read_text() and "Traceback" not in log.read_text()
    kept = len(journal(path))
    assert 1 <= kept < 4
    marker = json.loads(marker_file.read_text())
    assert [t["number"] for t in marker["trials"]] == [kept]  # the interrupted trial, asked again on --resume

    log = tmp_path / "second.log"
    proc = serbench("run", job, "--isolate", "--resume", "--out", tmp_path, log=log)
    wait_for_trials(proc, path, kept + 1, log)
    workers = [pid for pid in process_tree(proc.pid) if pid != proc.pid]
    assert workers, "the supervisor has no worker process"
    os.kill(workers[0], signal.SIGKILL)
    assert proc.wait(timeout=120) == 1, log.read_text()
    errors = [line for line in log.read_text().splitlines() if line.startswith("serbench: error")]
    assert len(errors) == 1 and "SIGKILL, not from the memory limit" in errors[0]
    assert "Traceback" not in log.read_text()
    assert not (tmp_path / "test_job" / "result.json").exists()

    code, _, err = cli("run", job, "--out", tmp_path, "--resume")
    assert code == 0, err
    result = json.loads((tmp_path / "test_job" / "result.json").read_text())
    assert [t["number"] for t in result["trials"]] == [0, 1, 2, 3]
    assert all(t["status"] == "ok" for t in result["trials"])
    assert [r["number"] for r in journal(path)] == [0, 1, 2, 3]
