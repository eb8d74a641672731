"""``serbench doctor --backend ray`` against a real Ray cluster: a head and a second node
started with ``ray start --block`` in a loopback-only network namespace of their own (Ray
rewrites 127.0.0.1 to the machine's address, so nothing of this cluster is on the host's
network), the doctor run as a driver in that namespace.

The second node runs in a mount namespace of its own where a tmpfs hides one folder of
the driver's: that node, and only that one, lacks ``$SERBENCH_CACHE`` -- a real missing
folder on one node. Every process started here is killed by PID (the nodes' process
trees, then whatever is left in the namespace), and the namespace is deleted; never
``ray stop`` or a kill by name. Needs root (``ip netns``, ``unshare``); fails, never skips.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from conftest import assert_one_line_error

from serbench.execution.isolate import process_tree

RAY = Path(sys.executable).with_name("ray")
PORT = 6379  # free in a fresh namespace
START_TIMEOUT_S = 90
RAY_ENV = {"RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0", "PYTHONUNBUFFERED": "1"}


class Namespace:
    """A loopback-only network namespace and the processes started in it."""

    def __init__(self, tag: str):
        self.name = f"serbench-doctor-{tag}-{os.getpid()}"
        self.procs: list[subprocess.Popen] = []
        made = subprocess.run(["ip", "netns", "add", self.name], capture_output=True, text=True)
        assert made.returncode == 0, f"ip netns add failed (these tests need root): {made.stderr.strip()}"
        subprocess.run(["ip", "netns", "exec", self.name, "ip", "link", "set", "lo", "up"], check=True)

    def env(self, **extra: str) -> dict[str, str]:
        environ = {k: v for k, v in os.environ.items() if not k.startswith("RAY_") and k != "SERBENCH_RAY_ADDRESS"}
        environ.update(RAY_ENV)
        environ.update(extra)
        return environ

    def start(self, command: list[str], log: Path, **env: str) -> subprocess.Popen:
        with open(log, "w") as handle:
            proc = subprocess.Popen(
                ["ip", "netns", "exec", self.name, *command],
                stdout=handle, stderr=subprocess.STDOUT, env=self.env(**env), start_new_session=True,
            )
        self.procs.append(proc)
        return proc

    def doctor(self, *args: str, timeout: float = 120, **env: str) -> subprocess.CompletedProcess:
        proc = subprocess.Popen(
            ["ip", "netns", "exec", self.name, sys.executable, "-m", "serbench.cli", "doctor", "--backend", "ray", *args],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=self.env(**env),
        )
        self.procs.append(proc)
        try:
            out, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self._kill(process_tree(proc.pid))
            out, err = proc.communicate()
            pytest.fail(f"serbench doctor did not end within {timeout} s:\n{out}\n{err}")
        return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)

    def stop(self) -> None:
        """Kill, by PID, the trees of the processes started here and anything left in the
        namespace, until none is left; then delete the namespace."""
        for _ in range(50):
            pids = set(self._netns_pids())
            for proc in self.procs:
                if proc.poll() is None:
                    pids.update(process_tree(proc.pid))
            if not pids:
                break
            self._kill(pids)
            time.sleep(0.1)
        for proc in self.procs:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pass
        subprocess.run(["ip", "netns", "delete", self.name], capture_output=True)

    def _netns_pids(self) -> list[int]:
        listed = subprocess.run(["ip", "netns", "pids", self.name], capture_output=True, text=True)
        return [int(p) for p in listed.stdout.split() if p.isdigit()]

    @staticmethod
    def _kill(pids) -> None:
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


def wait_started(proc: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while "Ray runtime started" not in log.read_text(errors="replace"):
        assert proc.poll() is None and time.monotonic() < deadline, f"ray start failed; its log:\n{log.read_text()[-3000:]}"
        time.sleep(0.1)


@pytest.fixture(scope="module")
def cluster():
    """Two nodes in one namespace: ``(namespace, folders)``; on the second node a tmpfs is
    mounted over ``folders["hidden"]``, so what the driver has below it is missing there."""
    root = Path(tempfile.mkdtemp(prefix="sbdoc-"))  # short: Ray's unix sockets live below
    folders = {"hidden": root / "hidden", "cache": root / "hidden" / "cache", "shared_cache": root / "cache"}
    for path in folders.values():
        path.mkdir(parents=True, exist_ok=True)
    ns = Namespace("cluster")
    try:
        common = ["--block", "--disable-usage-stats", "--num-cpus=1", f"--memory={2 * 2**30}",
                  f"--object-store-memory={100 * 2**20}"]
        head_log = root / "head.log"
        head = ns.start([str(RAY), "start", "--head", f"--port={PORT}", "--include-dashboard=false",
                         f"--temp-dir={root / 'ray'}", *common], head_log)
        wait_started(head, head_log)
        worker_log = root / "worker.log"
        hide = f"mount -t tmpfs -o size=1m serbench-doctor-test {folders['hidden']} && exec \"$@\""
        worker = ns.start(["unshare", "--mount", "--propagation", "private", "sh", "-c", hide, "sh",
                           str(RAY), "start", f"--address=127.0.0.1:{PORT}", *common], worker_log)
        wait_started(worker, worker_log)
        yield ns, folders
    finally:
        ns.stop()
        shutil.rmtree(root, ignore_errors=True)


def node_lines(out: str) -> list[str]:
    return [line for line in out.splitlines() if line.startswith("node ")]


def test_every_node_ok_at_the_address_of_serbench_ray_address(cluster):
    ns, folders = cluster
    done = ns.doctor(SERBENCH_CACHE=str(folders["shared_cache"]), SERBENCH_RAY_ADDRESS=f"127.0.0.1:{PORT}")
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stderr == "", done.stderr  # Ray's own output stays out of the command's
    assert "torchaudio: ok" in done.stdout  # the plain checks come first, unchanged
    assert "2 nodes alive" in done.stdout, done.stdout
    lines = node_lines(done.stdout)
    assert len(lines) == 2, done.stdout
    assert " (head): " in lines[0] and "(head)" not in lines[1], lines
    for line in lines:
        assert re.fullmatch(r"node 127\.0\.0\.1/[0-9a-f]{8}( \(head\))?: 1 CPU, 2\.0 GiB memory: OK", line), line
    assert str(folders["shared_cache"]) in done.stdout  # what each node needs is said
    assert done.stdout.rstrip().endswith("ray: every node has what a slot needs")


def test_a_missing_folder_is_named_with_its_node(cluster):
    """$SERBENCH_MODELS missing everywhere; $SERBENCH_CACHE present here and on the head,
    hidden on the second node. ``--ray-address auto`` finds the cluster through RAY_ADDRESS."""
    ns, folders = cluster
    missing = folders["shared_cache"] / "no-such-models"
    done = ns.doctor("--ray-address", "auto", SERBENCH_MODELS=str(missing), SERBENCH_CACHE=str(folders["cache"]),
                     RAY_ADDRESS=f"127.0.0.1:{PORT}")
    assert done.returncode == 1, done.stdout + done.stderr
    assert done.stderr == "", done.stderr
    head, second = node_lines(done.stdout)
    assert head.endswith(f"MISSING $SERBENCH_MODELS {missing} (no such folder)"), head
    assert "$SERBENCH_CACHE" not in head, head
    assert f"$SERBENCH_MODELS {missing} (no such folder)" in second, second
    assert f"$SERBENCH_CACHE {folders['cache']} (no such folder)" in second, second
    assert re.match(r"node 127\.0\.0\.1/[0-9a-f]{8}: 1 CPU, 2\.0 GiB memory: MISSING ", second), second
    assert "ray: 2 of 2 nodes lack what a slot needs" in done.stdout


def test_local_starts_a_private_instance_of_one_node():
    """No --ray-address, no $SERBENCH_RAY_ADDRESS: a private Ray instance on this machine,
    stopped when the doctor ends; and an address nothing answers at is one line, exit 2."""
    ns = Namespace("local")
    try:
        done = ns.doctor()
        assert done.returncode == 0, done.stdout + done.stderr
        assert "ray: connecting to local" in done.stdout
        (line,) = node_lines(done.stdout)
        assert " (head): " in line and line.endswith(": OK"), line
        assert done.stderr == "", done.stderr

        refused = ns.doctor("--ray-address", "127.0.0.1:6390", timeout=60)
        assert_one_line_error(refused.returncode, refused.stderr, "cannot reach a Ray cluster at 127.0.0.1:6390")
    finally:
        ns.stop()


@pytest.mark.parametrize(
    "args, env, needles",
    [
        (["--ray-address", "nowhere"], {}, ["--ray-address", "'nowhere'", "HOST:PORT"]),
        ([], {"SERBENCH_RAY_ADDRESS": "host:99999"}, ["$SERBENCH_RAY_ADDRESS", "host:99999"]),
    ],
    ids=["bad-flag", "bad-env"],
)
def test_a_bad_address_is_one_line_before_any_check(cli, monkeypatch, args, env, needles):
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    code, out, err = cli("doctor", "--backend", "ray", *args)
    assert out == ""
    assert_one_line_error(code, err, *needles)


def test_ray_address_needs_the_ray_backend(cli):
    code, out, err = cli("doctor", "--ray-address", "auto")
    assert_one_line_error(code, err, "--ray-address", "--backend ray")
    code, out, err = cli("doctor", "--backend", "dask")
    assert_one_line_error(code, err, "'dask'", "local", "ray")
