"""What a slot needs on every node of a Ray cluster, checked there: ``serbench doctor
--backend ray``.

A ray slot imports serbench and torch on its node and reads the driver's ``SERBENCH_*``
folders at the same paths (:data:`serbench.env.TO_SLOTS`). :func:`check_cluster`
connects to a cluster (``local``, ``auto`` or ``HOST:PORT``, as the ray backend's
``address``) and runs one small Ray task on every alive node, pinned to it
(``NodeAffinitySchedulingStrategy(node_id, soft=False)``, no CPU asked, so a busy node
answers too). The task checks that serbench imports at the driver's version, that torch
is the driver's version, and that the driver's data home, ``$SERBENCH_MODELS`` and
``$SERBENCH_CACHE`` are folders there (the cache writable). The task's function is
shipped by value and imports nothing but the standard library before its checks, so a
node without serbench still answers and says so.

``ray`` is imported only inside the functions. Ray's own output (its C++ components log
on stderr) goes to a file for the length of the check, so the command's output is its
own lines; a failure to connect is one :class:`~serbench.errors.UserError`.
"""

from __future__ import annotations

import os
import re
import sys
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

from serbench import env
from serbench.execution.ray_connect import connect, first_line, shutdown_quietly

GIB = 2**30
CONNECT_TIMEOUT_S = 10.0  # a HOST:PORT that accepts no TCP connection in this long is unreachable
ANSWER_TIMEOUT_S = 120.0  # a node whose check has not come back by then is reported as not answering
ADDRESS_PATTERN = re.compile(r"^(?P<host>\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?):(?P<port>[0-9]{1,5})$")


@dataclass(frozen=True)
class Wanted:
    """What the driver has, that every node must have too."""

    serbench: str
    torch: str
    folders: dict[str, str | None]  # label -> path (None: the node's own default, for the data home)
    writable: tuple[str, ...] = ()  # the labels of folders a slot writes into


@dataclass
class NodeReport:
    """One alive node and what it lacks (``problems`` empty: it can run a slot)."""

    ip: str
    node_id: str
    head: bool
    cpus: float
    memory_bytes: float
    problems: list[str] = field(default_factory=list)
    folders: dict[str, str] = field(default_factory=dict)  # label -> the path checked there

    @property
    def ok(self) -> bool:
        return not self.problems

    def name(self) -> str:
        """As the ray backend names a slot's node (``Slot.node``, a trial's ``node``): the
        address and the start of the Ray node id, which tells apart nodes of one address."""
        return f"{self.ip}/{self.node_id[:8]}{' (head)' if self.head else ''}"

    def line(self) -> str:
        cpus = f"{self.cpus:g} CPU{'' if self.cpus == 1 else 's'}"
        memory = f"{self.memory_bytes / GIB:.1f} GiB memory"
        verdict = "OK" if self.ok else "MISSING " + "; ".join(self.problems)
        return f"node {self.name()}: {cpus}, {memory}: {verdict}"


@dataclass
class ClusterReport:
    """Where the check connected, and every alive node."""

    address: str
    where: str
    nodes: list[NodeReport]

    @property
    def ok(self) -> bool:
        return bool(self.nodes) and all(node.ok for node in self.nodes)


def wanted_here() -> Wanted:
    """What this process (the driver) has: versions and the ``SERBENCH_*`` folders."""
    import serbench
    import torch

    folders: dict[str, str | None] = {f"${env.DATA}": env.get(env.DATA)}
    writable = []
    for variable in (env.MODELS, env.CACHE):
        if env.get(variable):
            folders[f"${variable}"] = env.get(variable)
    if env.get(env.CACHE):
        writable.append(f"${env.CACHE}")
    return Wanted(serbench.__version__, torch.__version__, folders, tuple(writable))


def check_cluster(address: str, wanted: Wanted, timeout: float = ANSWER_TIMEOUT_S) -> ClusterReport:
    """Connect to ``address`` and check every alive node (see the module docstring)."""
    with _ray_output_to_a_file():
        connect(address)
        try:
            return _check_nodes(address, wanted, timeout)
        finally:
            shutdown_quietly()


# --- the driver's side ------------------------------------------------------------------


def _check_nodes(address: str, wanted: Wanted, timeout: float) -> ClusterReport:
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    try:
        where = ray.get_runtime_context().gcs_address
    except Exception:
        where = address
    probe = ray.remote(num_cpus=0, max_retries=0)(_probe_function())
    reports, pending = [], {}
    for node in sorted(ray.nodes(), key=lambda n: (not _is_head(n), n.get("NodeManagerAddress", ""), n["NodeID"])):
        if not node.get("Alive"):
            continue
        resources = node.get("Resources", {})
        report = NodeReport(
            ip=node.get("NodeManagerAddress", "?"), node_id=node["NodeID"], head=_is_head(node),
            cpus=float(resources.get("CPU", 0.0)), memory_bytes=float(resources.get("memory", 0.0)),
        )
        reports.append(report)
        strategy = NodeAffinitySchedulingStrategy(node["NodeID"], soft=False)
        ref = probe.options(scheduling_strategy=strategy).remote(
            wanted.serbench, wanted.torch, wanted.folders, list(wanted.writable)
        )
        pending[ref] = report
    if not pending:
        return ClusterReport(address, where, reports)
    ready, late = ray.wait(list(pending), num_returns=len(pending), timeout=timeout)
    for ref in ready:
        report = pending[ref]
        try:
            found = ray.get(ref)
        except Exception as exc:  # the task could not run there (its worker died, the node went away)
            report.problems.append(f"the check could not run there: {first_line(exc)}")
            continue
        report.problems.extend(found["problems"])
        report.folders = found["folders"]
    for ref in late:
        pending[ref].problems.append(f"the check did not answer within {timeout:g} s (is the node's Python environment broken?)")
        try:
            ray.cancel(ref, force=True)
        except Exception:
            pass
    return ClusterReport(address, where, reports)


def _is_head(node: dict) -> bool:
    return "node:__internal_head__" in node.get("Resources", {})


@contextmanager
def _ray_output_to_a_file() -> Iterator[Path]:
    """Ray's C++ components write their warnings to file descriptor 2: send it to a file
    while Ray is in use here, so stderr keeps to serbench's own one-line messages."""
    handle, name = tempfile.mkstemp(prefix="serbench-doctor-ray-", suffix=".log")
    sys.stderr.flush()
    saved = os.dup(2)
    os.dup2(handle, 2)
    try:
        yield Path(name)
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)
        os.close(handle)
        try:
            os.unlink(name)
        except OSError:
            pass


# --- the node's side ----------------------------------------------------------------------

# Compiled into a module of its own that is not importable anywhere (so Ray's cloudpickle
# ships the function by value): a node without serbench can still run it.
_PROBE_SOURCE = '''
def probe(serbench_version, torch_version, folders, writable):
    """On one node: what it lacks of what the driver has."""
    import importlib
    import os
    import tempfile

    problems = []
    for module, wanted in (("serbench", serbench_version), ("torch", torch_version)):
        try:
            found = importlib.import_module(module).__version__
            if found != wanted:
                problems.append(f"{module} {wanted} (this node has {module} {found})")
        except Exception as exc:
            problems.append(f"{module} {wanted} (import {module} fails: {exc.__class__.__name__}: {exc})")
    checked = {}
    for label, path in folders.items():
        if path is None:  # the data home's default, as a slot computes it on this node
            base = os.environ.get("XDG_DATA_HOME") or os.path.join(os.path.expanduser("~"), ".local", "share")
            path = os.path.join(base, "serbench")
            label = label + " (unset: the default)"
        path = os.path.expanduser(path)
        checked[label] = path
        if not os.path.isdir(path):
            problems.append(f"{label} {path} (no such folder)" if not os.path.exists(path) else f"{label} {path} (not a folder)")
            continue
        if label in writable:
            try:
                handle, name = tempfile.mkstemp(prefix=".serbench-doctor-", dir=path)
                os.close(handle)
                os.unlink(name)
            except OSError as exc:
                problems.append(f"{label} {path} (not writable: {exc.strerror or exc})")
    return {"problems": problems, "folders": checked}
'''


def _probe_function():
    namespace: dict = {"__name__": "serbench_doctor_node_probe"}
    exec(compile(_PROBE_SOURCE, "<serbench doctor: node probe>", "exec"), namespace)
    return namespace["probe"]
