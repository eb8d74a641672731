"""A real Ray cluster for tests, in a network namespace of its own.

Ray rewrites ``127.0.0.1`` to the machine's primary address, so a cluster started on the
host's network would be reachable from it (and would collide with other Ray instances on
the machine). Here every process of the cluster -- the head, the worker nodes and the
drivers of the tests -- runs inside a loopback-only network namespace (``ip netns add``,
``lo`` up) made for this cluster: nothing outside can reach it, and it reaches nothing.

:class:`RayCluster` starts ``nodes`` nodes (``ray start --block``, one CPU and
``memory_gb`` of Ray's ``memory`` resource each; the first is the head), and gives:

- ``address``: ``127.0.0.1:PORT``, for ``ray.init`` or the ray backend's ``address``;
- ``nodes[i].pids()``, ``nodes[i].raylet_pid()``: the processes of a node;
- ``driver(script, *args)`` / ``run(code)``: Python (a script or ``-c`` code) as a driver
  inside the namespace, with the cluster's environment;
- ``node_of(pid)``: which node a Ray worker process (an actor's ``os.getpid()``) runs on.

``stop()`` kills, by PID, every process it started and every process left in the
namespace (``ip netns pids``), then deletes the namespace; it never uses ``ray stop`` or a
kill by name, so other Ray instances on the machine are left alone. Ray's health checks
are shortened (a node is declared dead after about two seconds without answering) so
node-failure tests stay short. Token authentication is off (``RAY_AUTH_MODE=disabled``):
the namespace admits no connection from outside it.

Requires root (``ip netns``); without it :meth:`RayCluster.start` raises, and the tests
that need a cluster fail rather than skip.
"""

from __future__ import annotations

import itertools
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from serbench.execution.isolate import process_tree

GIB = 2**30
HEAD_PORT = 6379  # free in a fresh namespace
RAY = Path(sys.executable).with_name("ray")
START_TIMEOUT = 90.0

# Ray's settings for every process of the cluster (environment variables, RAY_<name>).
CLUSTER_ENV = {
    "RAY_AUTH_MODE": "disabled",
    "RAY_USAGE_STATS_ENABLED": "0",
    # A node that stops answering is declared dead after ~2 s (defaults: 3 s x 5).
    "RAY_health_check_initial_delay_ms": "1000",
    "RAY_health_check_period_ms": "500",
    "RAY_health_check_timeout_ms": "1000",
    "RAY_health_check_failure_threshold": "3",
}

_names = itertools.count()


@dataclass
class Node:
    """One node: its ``ray start --block`` process and what that started."""

    index: int
    head: bool
    proc: subprocess.Popen
    log: Path
    _raylet: int | None = field(default=None, repr=False)

    def pids(self) -> list[int]:
        """The node's processes alive now: ``ray start`` and its descendants (raylet,
        GCS, agents, Ray worker processes)."""
        return process_tree(self.proc.pid) if self.proc.poll() is None else []

    def raylet_pid(self) -> int:
        """The PID of the node's raylet."""
        if self._raylet is None:
            for pid in self.pids():
                if _comm(pid) == "raylet":
                    self._raylet = pid
                    break
            else:
                raise RuntimeError(f"node {self.index} has no raylet; its log:\n{self.log.read_text()[-3000:]}")
        return self._raylet


class RayCluster:
    """A Ray cluster of ``nodes`` nodes in a network namespace (see the module docstring)."""

    def __init__(self, nodes: int = 2, cpus: int = 1, memory_gb: float = 3.0):
        self.count, self.cpus, self.memory_gb = nodes, cpus, memory_gb
        self.netns = f"serbench-ray-{os.getpid()}-{next(_names)}"
        self.root = Path(tempfile.mkdtemp(prefix="sbray-"))  # short: Ray's unix sockets live below
        self.address = f"127.0.0.1:{HEAD_PORT}"
        self.nodes: list[Node] = []
        self.drivers: list[subprocess.Popen] = []
        self._netns_made = False

    # -- lifecycle -----------------------------------------------------------------------

    def start(self) -> "RayCluster":
        try:
            self._make_netns()
            for index in range(self.count):
                node = self._start_node(index)
                self.nodes.append(node)
                self._wait_started(node)
            if self.count:
                self.wait_for_nodes(self.count)
        except BaseException:
            self.stop()
            raise
        return self

    def __enter__(self) -> "RayCluster":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def add_node(self) -> Node:
        """Start one more worker node and wait until the GCS counts it alive."""
        node = self._start_node(len(self.nodes))
        self.nodes.append(node)
        self._wait_started(node)
        self.wait_for_nodes(len(self.alive_nodes()))
        return node

    def kill_node(self, index: int) -> None:
        """SIGKILL every process of node ``index`` (by PID) and wait for its ``ray start``."""
        node = self.nodes[index]
        for pid in node.pids():
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        node.proc.wait(timeout=30)

    def alive_nodes(self) -> list[Node]:
        """The nodes whose ``ray start`` and raylet still run (as this machine sees them)."""
        alive = []
        for node in self.nodes:
            try:
                if node.proc.poll() is None and _state(node.raylet_pid()) not in ("", "Z"):
                    alive.append(node)
            except RuntimeError:
                continue
        return alive

    def stop(self) -> None:
        """Kill every process started here (the nodes' trees, drivers, anything still in
        the namespace), by PID, and delete the namespace and the temporary folder."""
        killed: set[int] = set()
        for _ in range(50):
            pids = set(self._netns_pids())
            for proc in [n.proc for n in self.nodes] + self.drivers:
                if proc.poll() is None:
                    pids.update(process_tree(proc.pid))
            pids = {pid for pid in pids if _state(pid) not in ("Z", "")}
            if not pids:
                break
            for pid in pids:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            killed |= pids
            time.sleep(0.1)
        deadline = time.monotonic() + 10  # until init has reaped what it inherited
        while any(_state(pid) for pid in killed) and time.monotonic() < deadline:
            time.sleep(0.05)
        for proc in [n.proc for n in self.nodes] + self.drivers:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pass
        if self._netns_made:
            subprocess.run(["ip", "netns", "delete", self.netns], capture_output=True)
            self._netns_made = False
        shutil.rmtree(self.root, ignore_errors=True)

    # -- drivers -------------------------------------------------------------------------

    def env(self, **extra: str) -> dict[str, str]:
        """The environment of the cluster's processes and drivers."""
        environ = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
        environ.update(CLUSTER_ENV)
        environ["RAY_ADDRESS"] = self.address
        environ["PYTHONUNBUFFERED"] = "1"
        environ.update(extra)
        return environ

    def in_netns(self, *command: str) -> list[str]:
        return ["ip", "netns", "exec", self.netns, *command]

    def driver(self, *args: str | Path, env: dict[str, str] | None = None, **popen) -> subprocess.Popen:
        """``python ARGS...`` as a driver in the namespace (a script and its arguments, or
        ``-c CODE``), its output piped; the caller reads or waits on it."""
        popen.setdefault("stdout", subprocess.PIPE)
        popen.setdefault("stderr", subprocess.PIPE)
        proc = subprocess.Popen(
            self.in_netns(sys.executable, *map(str, args)), env=self.env(**(env or {})), text=True, **popen
        )
        self.drivers.append(proc)
        return proc

    def run(self, *args: str | Path, timeout: float = 120, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
        """Run a driver to its end; its output is returned, and a driver still running after
        ``timeout`` seconds is killed (``subprocess.TimeoutExpired``)."""
        proc = self.driver(*args, env=env)
        try:
            out, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            for pid in process_tree(proc.pid):
                os.kill(pid, signal.SIGKILL)
            proc.communicate()
            raise
        return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)

    def run_code(self, code: str, timeout: float = 120) -> subprocess.CompletedProcess:
        return self.run("-c", code, timeout=timeout)

    # -- where processes are ---------------------------------------------------------------

    def node_of(self, pid: int) -> int | None:
        """The index of the node whose raylet started ``pid`` (a Ray worker process), or
        None when it is no descendant of any node's raylet."""
        for node in self.nodes:
            try:
                if pid in process_tree(node.raylet_pid()):
                    return node.index
            except RuntimeError:
                continue
        return None

    def wait_for_nodes(self, alive: int, timeout: float = START_TIMEOUT) -> list[dict]:
        """Wait until exactly ``alive`` nodes are alive (as Ray's GCS sees them); their
        ``ray.nodes()`` entries."""
        code = (
            "import json, time, ray\n"
            f"ray.init(address={self.address!r}, log_to_driver=False, logging_level='ERROR')\n"
            f"deadline = time.monotonic() + {timeout}\n"
            "while True:\n"
            "    nodes = [n for n in ray.nodes() if n['Alive']]\n"
            f"    if len(nodes) == {alive} or time.monotonic() > deadline:\n"
            "        break\n"
            "    time.sleep(0.1)\n"
            "print(json.dumps([{'id': n['NodeID'], 'resources': n['Resources']} for n in nodes]))\n"
        )
        done = self.run_code(code, timeout=timeout + 30)
        if done.returncode != 0:
            raise RuntimeError(f"the cluster does not answer: {done.stderr[-3000:]}")
        nodes = json.loads(done.stdout.strip().splitlines()[-1])
        if len(nodes) != alive:
            raise RuntimeError(f"{len(nodes)} nodes alive after {timeout:g} s, not {alive}")
        return nodes

    # -- internals -------------------------------------------------------------------------

    def _make_netns(self) -> None:
        made = subprocess.run(["ip", "netns", "add", self.netns], capture_output=True, text=True)
        if made.returncode != 0:
            raise RuntimeError(
                f"`ip netns add {self.netns}` failed ({made.stderr.strip() or made.returncode}): the Ray tests "
                "need root and iproute2 to run Ray in a network namespace"
            )
        self._netns_made = True
        subprocess.run(self.in_netns("ip", "link", "set", "lo", "up"), check=True, capture_output=True)

    def _start_node(self, index: int) -> Node:
        head = index == 0
        command = [
            str(RAY), "start", "--block", "--disable-usage-stats",
            f"--num-cpus={self.cpus}", f"--memory={int(self.memory_gb * GIB)}",
            f"--temp-dir={self.root / 'ray'}",
        ]
        if head:
            command += ["--head", f"--port={HEAD_PORT}", "--include-dashboard=false"]
        else:
            command += [f"--address={self.address}"]
        log = self.root / f"node{index}.log"
        with open(log, "w") as handle:
            proc = subprocess.Popen(
                self.in_netns(*command), stdout=handle, stderr=subprocess.STDOUT, env=self.env(),
                start_new_session=True,
            )
        return Node(index, head, proc, log)

    def _wait_started(self, node: Node) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        while "Ray runtime started" not in node.log.read_text(errors="replace"):
            if node.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"ray node {node.index} did not start; its log:\n{node.log.read_text()[-3000:]}")
            time.sleep(0.05)

    def _netns_pids(self) -> list[int]:
        if not self._netns_made:
            return []
        listed = subprocess.run(["ip", "netns", "pids", self.netns], capture_output=True, text=True)
        return [int(p) for p in listed.stdout.split() if p.isdigit()]


def _state(pid: int) -> str:
    """A process's state letter (``R``, ``S``, ``Z``...); empty when it is gone."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except (OSError, IndexError):
        return ""


def _comm(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""
