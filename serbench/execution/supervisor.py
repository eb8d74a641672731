"""The supervisor: runs a study in a worker process and keeps the study going when the
memory limit kills a trial.

``serbench run`` supervises under ``--isolate`` and whenever a cgroup memory limit is in
force (in a container), so a kernel OOM kill takes the worker, never the study. The
supervisor imports no torch and holds no data; it:

0. locks the job folder for the whole run, across worker restarts
   (:mod:`serbench.results.lock`; a folder in use is refused at once, exit 2), and tells
   the worker through ``$SERBENCH_LOCK_HELD`` that it need not (and could not) lock it;
1. starts the worker: ``python -m serbench.cli run JOB ...`` with ``$SERBENCH_WORKER``
   saying how it is isolated, in its own process group, under the
   :class:`~serbench.execution.isolate.Isolation`'s CPUs and cgroups;
2. waits for it, polling the RSS of its process tree when the isolation has an RSS
   guard, and killing the tree with SIGKILL above the limit;
3. when the worker dies from SIGKILL because of memory (the guard fired, or a cgroup's
   OOM-kill counter grew) while a trial was in flight (``inflight.json``), journals that
   trial as failed with reason ``oom`` and restarts the worker with ``--resume``: the
   finished trials are replayed (the failed one told to the engine as a failure) and the
   study goes on with the next trial;
4. returns the worker's exit code: 0, 1, 2 or 130. SIGINT and SIGTERM are forwarded to
   the worker, which stops like an interrupted run (130); a signal the supervisor was
   started ignoring (SIGINT under ``nohup`` or ``&`` in a script) stays ignored, by it and
   by the worker, as in a plain run. A worker killed for memory
   outside a trial, or killed or crashed for any other reason, ends the run with one line
   on stderr and exit code 1; what was journalled stays in ``trials.jsonl``.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Callable, Sequence

from serbench.results.inflight import journal_lost_trial
from serbench.results.lock import FolderLock
from serbench.execution.isolate import Isolation, tree_rss_bytes
from serbench.execution.limits import GIB
from serbench.execution.worker import worker_command
from serbench import env

POLL_SECONDS = 0.1
FORWARDED = (signal.SIGINT, signal.SIGTERM)


class Supervisor:
    """One supervised study: ``run()`` returns the exit code ``serbench run`` returns."""

    def __init__(
        self,
        job: Path,
        out: Path,
        out_dir: Path,
        isolation: Isolation,
        executor: str = "local",
        data_root: Path | None = None,
        again: str | None = None,
        say: Callable[[str], None] | None = None,
        extra: Sequence[str] = (),
    ):
        self.job, self.out, self.out_dir = job, out, out_dir
        self.extra = list(extra)  # more `serbench run` options for the worker (--backend ...)
        self.isolation = isolation
        self.data_root = data_root
        self.again = again
        self.say = say or (lambda message: print(f"serbench: {message}", file=sys.stderr, flush=True))
        self.env = dict(os.environ)
        self.env["PYTHONUNBUFFERED"] = "1"  # what the worker printed survives a SIGKILL
        self.env[env.WORKER.name] = json.dumps(
            {"executor": executor, "isolation": isolation.mechanism, "rss_guard_bytes": isolation.rss_guard_bytes}
        )
        self.lock = FolderLock(out_dir)  # a no-op when whoever started us holds it (a docker host)
        self.env[env.LOCK_HELD.name] = "1"
        self.worker: subprocess.Popen | None = None
        self.interrupted: int | None = None

    def run(self) -> int:
        # An ignored signal is left ignored: the worker inherits that through exec.
        handled = [sig for sig in FORWARDED if signal.getsignal(sig) != signal.SIG_IGN]
        previous = {sig: signal.signal(sig, self._forward) for sig in handled}
        try:
            self.lock.acquire()  # FolderInUse: exit 2, before any worker starts
            again = self.again
            while True:
                code = self._run_worker(again)
                if code is not None:
                    return code
                again = "--resume"
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            self.isolation.close()
            self.lock.release()  # the worker and its group are gone by now

    def _forward(self, signum: int, frame) -> None:
        self.interrupted = signum
        if self.worker is not None and self.worker.poll() is None:
            try:
                os.killpg(self.worker.pid, signum)
            except ProcessLookupError:
                pass

    def _run_worker(self, again: str | None) -> int | None:
        """Run the worker once; its exit code, or None to run it again with --resume."""
        if self.interrupted is not None:
            return 130
        oom_before = self.isolation.oom_kills()
        command = worker_command(self.job, self.out, self.data_root, again, self.extra)
        try:
            self.worker = subprocess.Popen(command, env=self.env, preexec_fn=self.isolation.preexec)
        except (OSError, subprocess.SubprocessError) as exc:
            self.say(f"error: cannot start the study's worker process under {self.isolation.mechanism}: {exc}")
            return 1
        worker = self.worker
        guard = self.isolation.rss_guard_bytes
        guard_rss = None
        while True:
            try:
                code = worker.wait(timeout=POLL_SECONDS)
                break
            except subprocess.TimeoutExpired:
                pass
            if guard and guard_rss is None:
                rss = tree_rss_bytes(worker.pid)
                if rss > guard:
                    guard_rss = rss
                    _kill_group(worker.pid)
        _kill_group(worker.pid)  # anything the worker left behind in its group
        self.worker = None
        if code >= 0:
            return code
        if self.interrupted is not None:
            return 130
        died = signal.Signals(-code).name
        journal = self.out_dir / "trials.jsonl"
        if -code == signal.SIGKILL and (guard_rss is not None or self.isolation.oom_kills() > oom_before):
            if guard_rss is not None:
                how = f"{guard_rss / GIB:.2f} GB resident, killed by {self.isolation.describe_limit()}"
            else:
                how = f"killed by the kernel's OOM killer under {self.isolation.describe_limit()}"
            record = journal_lost_trial(self.out_dir, "oom", f"out of memory: {how}")
            if record is None:
                self.say(
                    f"error: the study's worker ran out of memory outside a trial ({how}), while loading or "
                    f"training the final model; finished trials are kept in {journal}; give the job more memory "
                    "(resources.memory_gb and the container's limit) and continue with --resume"
                )
                return 1
            fold = f" of fold {record.fold}" if record.fold else ""
            self.say(f"trial {record.number}{fold} ran out of memory ({how}); recorded as failed (oom); resuming the study")
            return None
        self.say(
            f"error: the study's worker died from {died}, not from the memory limit; finished trials are kept "
            f"in {journal}; continue with --resume"
        )
        return 1


def _kill_group(pgid: int) -> None:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
