"""A Ray head node on 127.0.0.1 for the benchmarks (``bench/parallel.py``,
``bench/paper_tables.py``): ``ray start --head --block`` as a child process, its address,
the resident memory of its processes, and a stop that kills exactly the processes it
started, by PID (never ``ray stop``, which stops every Ray instance of the user).

Ray advertises the machine's primary address even when told 127.0.0.1: on a shared
machine run the benchmark inside a loopback-only network namespace
(``scripts/loopback-netns python bench/...``).
"""

from __future__ import annotations

import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path


class RayHead:
    """A Ray head on 127.0.0.1 started with ``ray start --block``; stopped by PID.

    It requires a token of its own (Ray's token authentication): drivers run with
    :attr:`env`, which carries it."""

    def __init__(self, temp_dir: Path, cpus: int):
        self.temp_dir = temp_dir
        self.cpus = cpus
        self.port = free_port()
        self.proc: subprocess.Popen | None = None
        self.env = {**os.environ, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(32),
                    "RAY_USAGE_STATS_ENABLED": "0"}

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self, timeout: float = 60) -> None:
        ray = Path(sys.executable).with_name("ray")
        self.temp_dir.mkdir(parents=True, exist_ok=True)
        self.proc = subprocess.Popen(
            [str(ray), "start", "--head", "--block", "--port", str(self.port), "--num-cpus", str(self.cpus),
             "--node-ip-address", "127.0.0.1", "--include-dashboard", "false", "--temp-dir", str(self.temp_dir),
             "--disable-usage-stats"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True, env=self.env,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise SystemExit("ray start --head exited; is ray installed?")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                time.sleep(2)  # the GCS listens before the raylet has registered
                return
            except OSError:
                time.sleep(0.2)
        raise SystemExit(f"the Ray head did not listen on {self.address} within {timeout:.0f} s")

    def rss_bytes(self) -> int:
        from serbench.execution.isolate import tree_rss_bytes

        return tree_rss_bytes(self.proc.pid) if self.proc else 0

    def stop(self) -> None:
        if self.proc is None:
            return
        from serbench.execution.isolate import process_tree

        pids = process_tree(self.proc.pid)
        for pid in reversed(pids):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.proc.wait()
        self.proc = None


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


