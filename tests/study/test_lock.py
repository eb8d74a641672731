"""One writer per job folder, with real ``serbench run`` processes: two drivers started
together on the same ``--out`` (one runs, one is refused at once), a second driver of
every kind refused while a plain or ``--isolate`` run holds the folder (its worker is
not), and a SIGKILLed run whose left-over lock file blocks neither ``--resume`` nor a
fresh study."""

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time

import pytest
import yaml
from conftest import SMOKE_JOB, assert_one_line_error, run_serbench, sigint_as_at_a_terminal

from serbench.errors import FolderInUse
from serbench.execution.isolate import process_tree
from serbench.results.lock import LOCK_FILE, FolderLock

SINCE = r"since \d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ"


def write(tmp_path, trials, slow=False, name="job.yaml"):
    job = json.loads(json.dumps(SMOKE_JOB))
    job["budget"]["trials"] = trials
    if slow:  # trials that train the encoder, so a run lasts while the test looks at it
        job["search_space"]["unfreeze"] = {"type": "int", "low": 0, "high": 1}
        job["search_space"]["maxlen"] = {"type": "choice", "values": [16000, 20000]}
    path = tmp_path / name
    path.write_text(yaml.safe_dump(job))
    return path


def start(job, out, *args, log, sigint=sigint_as_at_a_terminal):
    """``serbench run`` in a child process, stdout and stderr in files (a pipe could fill up);
    ``sigint`` sets the child's SIGINT disposition (default: as at a terminal)."""
    return subprocess.Popen(
        [sys.executable, "-m", "serbench.cli", "run", str(job), "--out", str(out), *args],
        stdout=open(f"{log}.out", "w"), stderr=open(f"{log}.err", "w"), env=dict(os.environ),
        preexec_fn=sigint,
    )


def numbers(folder):
    path = folder / "trials.jsonl"
    if not path.exists():
        return []
    return [json.loads(line)["number"] for line in path.read_text().splitlines() if line.strip()]


def wait_for_trials(proc, folder, count, log):
    deadline = time.monotonic() + 300
    while len(numbers(folder)) < count:
        assert proc.poll() is None, open(f"{log}.err").read()
        assert time.monotonic() < deadline, "the run made no progress"
        time.sleep(0.05)


def in_use(folder, pid):
    return f"{folder} is in use by serbench run (pid {pid} on host {socket.gethostname()}, "


def test_two_runs_started_together_one_runs_the_other_is_refused(tmp_path):
    job = write(tmp_path, 3)
    procs = [start(job, tmp_path, log=tmp_path / f"run{i}") for i in range(2)]
    codes = [proc.wait(timeout=600) for proc in procs]
    assert sorted(codes) == [0, 2], [open(tmp_path / f"run{i}.err").read() for i in range(2)]
    winner, loser = (0, 1) if codes[0] == 0 else (1, 0)
    err = open(tmp_path / f"run{loser}.err").read()
    line = assert_one_line_error(
        2, err, in_use(tmp_path / "test_job", procs[winner].pid), "wait for it to finish or use another --out"
    )
    assert re.search(SINCE + r"\); wait", line), line
    folder = tmp_path / "test_job"
    assert numbers(folder) == [0, 1, 2]  # each trial once: the loser journalled nothing
    assert [t["number"] for t in json.loads((folder / "result.json").read_text())["trials"]] == [0, 1, 2]
    assert not (folder / LOCK_FILE).exists()  # released (and removed) at the end


@pytest.mark.parametrize("mode", [[], ["--isolate"]], ids=["plain", "isolate"])
def test_a_second_driver_of_any_kind_is_refused_while_a_run_holds_the_folder(tmp_path, mode):
    """The holder is the outermost driver (under ``--isolate``, the supervisor: its worker
    runs the trials unrefused); plain, ``--force``, ``--resume``, ``--isolate`` and
    ``--executor docker`` drivers are refused at once, naming it."""
    job = write(tmp_path, 50, slow=True)
    folder = tmp_path / "test_job"
    holder = start(job, tmp_path, *mode, log=tmp_path / "holder")
    wait_for_trials(holder, folder, 1, tmp_path / "holder")
    if mode:
        workers = [pid for pid in process_tree(holder.pid) if pid != holder.pid]
        assert workers, "the supervisor has no worker process"
    lock = json.loads((folder / LOCK_FILE).read_text())
    assert lock["pid"] == holder.pid and lock["host"] == socket.gethostname()

    for args in ([], ["--force"], ["--resume"], ["--isolate"]):
        proc = run_serbench("run", job, "--out", tmp_path, *args)
        assert_one_line_error(proc.returncode, proc.stderr, in_use(folder, holder.pid), "use another --out")
    proc = run_serbench(
        "run", job, "--out", tmp_path, "--executor", "docker", DOCKER_HOST=f"unix://{tmp_path}/no-docker.sock"
    )  # refused before the daemon is asked (none runs here)
    assert_one_line_error(proc.returncode, proc.stderr, in_use(folder.resolve(), holder.pid))
    assert holder.poll() is None, "the holder ended before the test was done with it"

    holder.send_signal(signal.SIGINT)
    assert holder.wait(timeout=120) == 130, open(tmp_path / "holder.err").read()
    assert "in use" not in open(tmp_path / "holder.err").read()
    kept = numbers(folder)
    assert kept == list(range(len(kept))) and kept  # each trial once, none lost
    assert not (folder / LOCK_FILE).exists()


def ignore_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)


@pytest.mark.parametrize("mode", [[], ["--isolate"]], ids=["plain", "isolate"])
def test_a_run_started_with_sigint_ignored_ignores_it_and_stops_on_sigterm(tmp_path, mode):
    """As under ``nohup`` or ``&`` in a script: SIGINT does not stop the run (nor, under
    ``--isolate``, its worker), which goes on journalling trials; SIGTERM stops it (130),
    each finished trial kept once and the folder unlocked."""
    job = write(tmp_path, 50, slow=True)
    folder = tmp_path / "test_job"
    log = tmp_path / "holder"
    holder = start(job, tmp_path, *mode, log=log, sigint=ignore_sigint)
    wait_for_trials(holder, folder, 1, log)
    holder.send_signal(signal.SIGINT)
    if mode:
        for worker in (pid for pid in process_tree(holder.pid) if pid != holder.pid):
            os.kill(worker, signal.SIGINT)
    seen = len(numbers(folder))
    wait_for_trials(holder, folder, seen + 2, log)  # trials go on after the SIGINT
    holder.send_signal(signal.SIGTERM)
    assert holder.wait(timeout=120) == 130, open(f"{log}.err").read()
    assert "interrupted" in open(f"{log}.err").read()
    kept = numbers(folder)
    assert kept == list(range(len(kept))) and len(kept) < 50
    assert not (folder / LOCK_FILE).exists()


def test_a_sigkilled_run_does_not_block_resume(tmp_path):
    job = write(tmp_path, 2, slow=True)
    folder = tmp_path / "test_job"
    holder = start(job, tmp_path, log=tmp_path / "holder")
    wait_for_trials(holder, folder, 1, tmp_path / "holder")
    holder.send_signal(signal.SIGKILL)
    assert holder.wait() == -signal.SIGKILL
    assert json.loads((folder / LOCK_FILE).read_text())["pid"] == holder.pid  # the file outlived it; the lock did not

    started = time.monotonic()
    proc = run_serbench("run", job, "--out", tmp_path, "--resume")
    assert proc.returncode == 0, proc.stderr
    assert "in use" not in proc.stderr
    assert numbers(folder) == [0, 1]
    assert json.loads((folder / "result.json").read_text())["resumed"] >= 1
    assert not (folder / LOCK_FILE).exists()
    print(f"resume after SIGKILL: {time.monotonic() - started:.0f} s")


def leave_a_lock_file(folder):
    """Lock ``folder`` in a process, then SIGKILL it: its lock file stays, unlocked."""
    code = (
        "import time; from pathlib import Path; from serbench.results.lock import FolderLock\n"
        f"FolderLock(Path({str(folder)!r})).acquire(); print('locked', flush=True); time.sleep(120)"
    )
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline() == "locked\n"
    proc.kill()
    proc.wait()
    assert os.listdir(folder) == [LOCK_FILE]


def test_a_left_over_lock_file_is_not_an_earlier_study(tmp_path, job_dict, write_job, cli):
    """Only the lock file of a killed run in the folder: a fresh study is not refused as
    "already holds results", and ``--resume`` has nothing to resume."""
    from serbench.spec import parse_job
    from serbench.study.output import StudyOutput

    folder = tmp_path / "test_job"
    leave_a_lock_file(folder)
    output = StudyOutput(folder, parse_job(job_dict))
    assert output.check(force=False, resume=False) == []
    assert json.loads((folder / LOCK_FILE).read_text())["pid"] == os.getpid()
    with pytest.raises(FolderInUse, match=re.escape(in_use(folder, os.getpid()))):
        FolderLock(folder).acquire()  # a second driver, even in the same process
    output.close()
    assert os.listdir(folder) == []  # the lock file goes with its release

    leave_a_lock_file(folder)
    code, _, err = cli("run", write_job(job_dict), "--out", tmp_path, "--resume")
    assert_one_line_error(code, err, "nothing to resume")
    assert os.listdir(folder) == []
