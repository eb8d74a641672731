"""Limits for a study's worker process, without Docker (``serbench run --isolate``).

Three ways to hold a worker to a job's ``resources`` (``cpus``, ``memory_gb`` in GiB):

- ``cgroup-v2``: a child cgroup of serbench's own (``serbench-<pid>``) with ``memory.max``
  (and ``memory.swap.max`` 0) and ``cpu.max``. It needs a cgroup v2 hierarchy where
  serbench may create a child group with the memory controller (a delegated subtree).
- ``cgroup-v1``: the same with the v1 ``memory`` and ``cpu`` controllers. Only on
  request (``--isolate-with cgroup``): v1 hierarchies belong to the host, and a group
  left behind by a supervisor that was killed would keep its parent from being removed.
- ``affinity+rss-guard``: anywhere else. The worker is pinned to the first ``ceil(cpus)``
  CPUs it may use (torch's threads are sized from that), and the supervisor polls the
  resident memory of the worker's process tree and kills the tree with SIGKILL when it
  exceeds ``memory_gb``.

With a cgroup, the worker is pinned the same way, so the recorded affinity and thread
count follow the spec's ``cpus`` in every mechanism.

:class:`Isolation` also says how to tell that a dead worker was killed for memory: the
guard fired, or a cgroup's ``oom_kill`` counter (v2 ``memory.events``, v1
``memory.oom_control``; v1 ``memory.failcnt`` where the kernel has no such counter) grew
while it ran. :func:`inherited` covers limits set by whoever started serbench (a
container): nothing is created, only the counters are watched.
"""

from __future__ import annotations

import ctypes
import math
import os
import signal
from dataclasses import dataclass, field
from pathlib import Path

from serbench.errors import UserError
from serbench.execution.limits import (
    CGROUP_ROOT,
    GIB,
    cgroup_memory_limit,
    memory_cgroup_folders,
    own_cgroup_path,
    read_kernel_file,
)

CPU_PERIOD_US = 100_000
WORKER_OOM_SCORE_ADJ = 500  # the kernel's OOM killer takes the worker before its supervisor


@dataclass
class Isolation:
    """How one worker is held to its limits; ``close()`` removes what was created."""

    mechanism: str  # see the module docstring; "inherited-cgroup-v1/v2" for inherited()
    cpus: list[int] | None = None  # the worker's CPU affinity (None: left as it is)
    rss_guard_bytes: int | None = None  # the supervisor kills the worker's tree above this
    memory_bytes: int | None = None  # the memory limit in force, whoever enforces it
    groups: list[Path] = field(default_factory=list)  # cgroups created; the worker joins each
    oom_folders: list[Path] = field(default_factory=list)  # where OOM kills are counted

    def describe_limit(self) -> str:
        """E.g. "the RSS guard at 2.0 GB" or "the cgroup-v2 memory limit of 2.0 GB"."""
        size = f"{self.memory_bytes / GIB:.1f} GB" if self.memory_bytes else "an unknown size"
        if self.mechanism == "affinity+rss-guard":
            return f"the RSS guard at {size}"
        return f"the {self.mechanism.replace('inherited-', '')} memory limit of {size}"

    def preexec(self) -> None:
        """Run in the worker between fork and exec: its own process group (so signals and
        the guard reach its whole tree), death with its supervisor, its CPUs, a higher OOM
        score, and its cgroups. Raises OSError when joining a cgroup fails."""
        parent = os.getppid()
        os.setpgid(0, 0)
        _die_with_parent()
        if os.getppid() != parent:  # the supervisor died before the line above
            os._exit(1)
        if self.cpus:
            os.sched_setaffinity(0, self.cpus)
        try:
            Path("/proc/self/oom_score_adj").write_text(str(WORKER_OOM_SCORE_ADJ))
        except OSError:
            pass
        for group in self.groups:
            (group / "cgroup.procs").write_text(str(os.getpid()))

    def oom_kills(self) -> int:
        """A counter that grows when the kernel kills a process for memory in these cgroups."""
        return sum(oom_kill_count(folder) for folder in self.oom_folders)

    def close(self) -> None:
        """Remove the cgroups created for the worker (it must have exited)."""
        for group in self.groups:
            try:
                group.rmdir()
            except OSError:
                pass
        self.groups = []


def first_cpus(cpus: float) -> list[int]:
    """The first ``ceil(cpus)`` CPUs of this process's affinity (all of them if fewer)."""
    allowed = sorted(os.sched_getaffinity(0))
    return allowed[: max(1, math.ceil(cpus))]


def choose(cpus: float, memory_gb: float, how: str = "auto", root: Path = CGROUP_ROOT) -> Isolation:
    """The isolation for ``--isolate``: ``how`` is ``auto`` (a cgroup v2 group where one can
    be made, else the guard), ``cgroup`` (v2, else v1; ``UserError`` if neither can be
    made) or ``guard`` (affinity + RSS guard)."""
    memory = int(memory_gb * GIB)
    pinned = first_cpus(cpus)
    if how in ("auto", "cgroup"):
        group = make_cgroup_v2(root, memory, cpus)
        if group is not None:
            return Isolation("cgroup-v2", pinned, None, memory, [group], [group])
        if how == "cgroup":
            groups = make_cgroup_v1(root, memory, cpus)
            if groups is not None:
                return Isolation("cgroup-v1", pinned, None, memory, groups, groups[:1])
            raise UserError(
                "--isolate-with cgroup: no cgroup (v2 or v1) where serbench may create a group with a memory "
                "limit; use --isolate-with guard"
            )
    return Isolation("affinity+rss-guard", pinned, memory, memory)


def inherited(root: Path = CGROUP_ROOT) -> Isolation:
    """Limits set from outside (a container's cgroup): watch their OOM counters only."""
    limit = cgroup_memory_limit(root)
    source = limit[1] if limit else "cgroup-v2"
    folders = memory_cgroup_folders(source, root)
    return Isolation(f"inherited-{source}", None, None, limit[0] if limit else None, [], folders)


def oom_kill_count(folder: Path) -> int:
    """OOM kills counted in one cgroup folder: v2 ``memory.events`` ``oom_kill``, v1
    ``memory.oom_control`` ``oom_kill``, else v1 ``memory.failcnt`` (hits of the limit;
    a weaker sign, for kernels without the counter); 0 when none can be read."""
    for name in ("memory.events", "memory.oom_control"):
        for line in (read_kernel_file(folder / name) or "").splitlines():
            key, _, value = line.partition(" ")
            if key == "oom_kill" and value.strip().isdigit():
                return int(value)
    failcnt = read_kernel_file(folder / "memory.failcnt")
    return int(failcnt) if failcnt and failcnt.isdigit() else 0


def make_cgroup_v2(root: Path, memory_bytes: int, cpus: float, own: str | None = None) -> Path | None:
    """Create ``<own cgroup>/serbench-<pid>`` with ``memory.max`` (and ``memory.swap.max``
    0, ``cpu.max``) in the cgroup v2 hierarchy at ``root``; None (and nothing left
    behind) when that is not possible: no v2 hierarchy, no memory controller, not
    writable, or the parent holds processes and cannot enable controllers for children."""
    if not (root / "cgroup.controllers").is_file():
        return None
    parent = root / (own if own is not None else own_cgroup_path()).strip("/")
    available = (read_kernel_file(parent / "cgroup.controllers") or "").split()
    if "memory" not in available or not os.access(parent, os.W_OK):
        return None
    wanted = [c for c in ("memory", "cpu") if c in available]
    enabled = (read_kernel_file(parent / "cgroup.subtree_control") or "").split()
    added = [c for c in wanted if c not in enabled]
    group = parent / f"serbench-{os.getpid()}"
    try:
        if added:
            (parent / "cgroup.subtree_control").write_text(" ".join(f"+{c}" for c in added))
        group.mkdir()
        (group / "memory.max").write_text(str(memory_bytes))
        if (group / "memory.swap.max").exists():
            (group / "memory.swap.max").write_text("0")
        if "cpu" in wanted:
            (group / "cpu.max").write_text(f"{int(cpus * CPU_PERIOD_US)} {CPU_PERIOD_US}")
    except OSError:
        _remove(group)
        if added:
            try:
                (parent / "cgroup.subtree_control").write_text(" ".join(f"-{c}" for c in added))
            except OSError:
                pass
        return None
    return group


def make_cgroup_v1(root: Path, memory_bytes: int, cpus: float, own: dict[str, str] | None = None) -> list[Path] | None:
    """Create ``serbench-<pid>`` under this process's v1 ``memory`` cgroup (limit, and
    swap limit where accounted) and, where possible, its ``cpu`` cgroup (CFS quota).
    Returns the groups, memory first; None (nothing left behind) without a writable
    v1 memory hierarchy."""
    own = own or {}
    name = f"serbench-{os.getpid()}"
    memory_root = root / "memory"
    if not (memory_root / "memory.limit_in_bytes").is_file():
        return None
    memory_group = memory_root / own.get("memory", own_cgroup_path("memory")).strip("/") / name
    try:
        memory_group.mkdir()
        (memory_group / "memory.limit_in_bytes").write_text(str(memory_bytes))
        if (memory_group / "memory.memsw.limit_in_bytes").exists():
            (memory_group / "memory.memsw.limit_in_bytes").write_text(str(memory_bytes))
    except OSError:
        _remove(memory_group)
        return None
    groups = [memory_group]
    for mount in ("cpu,cpuacct", "cpu"):
        if (root / mount / "cpu.cfs_quota_us").is_file():
            cpu_group = root / mount / own.get("cpu", own_cgroup_path("cpu")).strip("/") / name
            try:
                cpu_group.mkdir()
                (cpu_group / "cpu.cfs_period_us").write_text(str(CPU_PERIOD_US))
                (cpu_group / "cpu.cfs_quota_us").write_text(str(int(cpus * CPU_PERIOD_US)))
                groups.append(cpu_group)
            except OSError:
                _remove(cpu_group)
            break
    return groups


def _remove(group: Path) -> None:
    """Remove a cgroup folder, or (on a plain file system, as in tests) a folder of files."""
    try:
        group.rmdir()
        return
    except FileNotFoundError:
        return
    except OSError:
        pass
    if group.is_dir():
        for child in group.iterdir():
            try:
                child.unlink()
            except OSError:
                pass
        try:
            group.rmdir()
        except OSError:
            pass


def _die_with_parent() -> None:
    """``prctl(PR_SET_PDEATHSIG, SIGKILL)``: the worker dies when its supervisor does."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, int(signal.SIGKILL), 0, 0, 0)  # 1 = PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


# -- the RSS guard ---------------------------------------------------------------------


def process_tree(root_pid: int) -> list[int]:
    """``root_pid`` and all its descendants alive now (from ``/proc/*/stat``)."""
    children: dict[int, list[int]] = {}
    try:
        entries = os.listdir("/proc")
    except OSError:
        return [root_pid]
    for entry in entries:
        if not entry.isdigit():
            continue
        stat = read_kernel_file(Path("/proc", entry, "stat"))
        if not stat:
            continue
        fields = stat.rpartition(")")[2].split()
        if len(fields) > 1 and fields[1].isdigit():
            children.setdefault(int(fields[1]), []).append(int(entry))
    tree, todo = [], [root_pid]
    while todo:
        pid = todo.pop()
        tree.append(pid)
        todo.extend(children.get(pid, []))
    return tree


PAGE_SIZE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def tree_rss_bytes(root_pid: int) -> int:
    """Resident memory of ``root_pid``'s process tree (the sum of each process's RSS, as
    ``/proc/<pid>/statm`` reports it); 0 for processes that are gone."""
    total = 0
    for pid in process_tree(root_pid):
        statm = (read_kernel_file(Path("/proc", str(pid), "statm")) or "").split()
        if len(statm) > 1 and statm[1].isdigit():
            total += int(statm[1]) * PAGE_SIZE
    return total
