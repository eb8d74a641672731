"""The CPU and memory limits actually in force, and torch's thread count sized from them.

``os.cpu_count()`` ignores container limits (``--cpus`` sets a CFS quota, not a CPU
count), so the available CPUs are the smallest of the process's affinity mask and the
cgroup CPU quota (v2 ``cpu.max`` or v1 ``cpu.cfs_quota_us``/``cpu.cfs_period_us``).
The available memory is the smallest of the cgroup memory limit (v2 ``memory.max``, v1
``memory.limit_in_bytes``), physical RAM, and, in a worker started by ``serbench run
--isolate``, the RSS guard's limit (see :mod:`serbench.execution.supervisor`).

A job whose ``resources`` ask for more than is available is refused before it starts
(:func:`check_fits`).
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from serbench.errors import UserError
from serbench import env

CGROUP_ROOT = Path("/sys/fs/cgroup")
_NO_LIMIT = 1 << 60  # cgroup v1 reports "no memory limit" as a huge number


@dataclass(frozen=True)
class CpuLimit:
    cpus: float
    source: str  # "cgroup-v2", "cgroup-v1", "affinity" or "cpu_count"


def cpu_limit(root: Path = CGROUP_ROOT) -> CpuLimit:
    """How many CPUs this process may use, and where that figure comes from."""
    affinity = cpu_affinity()
    if affinity is not None:
        limit = CpuLimit(float(len(affinity)), "affinity")
    else:  # not on Linux
        limit = CpuLimit(float(os.cpu_count() or 1), "cpu_count")
    quota = _cgroup_cpu_quota(root)
    if quota is not None and quota[0] < limit.cpus:
        limit = CpuLimit(quota[0], quota[1])
    return limit


def _cgroup_cpu_quota(root: Path) -> tuple[float, str] | None:
    quotas = []
    for folder in cgroup_folders(root):
        quota, _, period = (read_kernel_file(folder / "cpu.max") or "").partition(" ")
        if quota and quota != "max" and period:
            quotas.append((int(quota) / int(period), "cgroup-v2"))
    for controller in ("cpu,cpuacct", "cpu"):
        for folder in cgroup_folders(root, controller, "cpu"):
            quota, period = read_kernel_file(folder / "cpu.cfs_quota_us"), read_kernel_file(folder / "cpu.cfs_period_us")
            if quota and period and int(quota) > 0:
                quotas.append((int(quota) / int(period), "cgroup-v1"))
    return min(quotas) if quotas else None


def memory_limit_bytes(root: Path = CGROUP_ROOT) -> int | None:
    """The tightest cgroup memory limit (v2 ``memory.max``, v1 ``memory.limit_in_bytes``)."""
    limit = cgroup_memory_limit(root)
    return limit[0] if limit else None


def cgroup_memory_limit(root: Path = CGROUP_ROOT) -> tuple[int, str] | None:
    """The tightest cgroup memory limit over the process's cgroup and its ancestors, in
    bytes, with its source (``cgroup-v2`` or ``cgroup-v1``); None when there is none."""
    limits = []
    for folder in cgroup_folders(root):
        limits.append((read_kernel_file(folder / "memory.max"), "cgroup-v2"))
    for folder in cgroup_folders(root, "memory", "memory"):
        limits.append((read_kernel_file(folder / "memory.limit_in_bytes"), "cgroup-v1"))
    values = [(int(v), source) for v, source in limits if v and v.isdigit() and int(v) < _NO_LIMIT]
    return min(values) if values else None


def physical_memory_bytes() -> int | None:
    """Physical RAM (``SC_PHYS_PAGES`` x page size); None where the OS does not say."""
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


@dataclass(frozen=True)
class MemoryLimit:
    bytes: int | None
    source: str  # "cgroup-v2", "cgroup-v1", "rss-guard", "physical" or "unknown"


def memory_limit(root: Path = CGROUP_ROOT) -> MemoryLimit:
    """The memory this process may use: the smallest of the cgroup limit, the RSS guard
    of an isolated worker (``$SERBENCH_WORKER``) and physical RAM, with its source."""
    candidates = []
    cgroup = cgroup_memory_limit(root)
    if cgroup:
        candidates.append(cgroup)
    guard = worker_context().get("rss_guard_bytes")
    if guard:
        candidates.append((int(guard), "rss-guard"))
    physical = physical_memory_bytes()
    if physical:
        candidates.append((physical, "physical"))
    if not candidates:
        return MemoryLimit(None, "unknown")
    return MemoryLimit(*min(candidates))


def cpu_affinity() -> list[int] | None:
    """The CPUs this process may run on (None where the OS cannot say)."""
    try:
        return sorted(os.sched_getaffinity(0))
    except AttributeError:
        return None


GIB = 2**30


def check_fits(cpus: float, memory_gb: float, root: Path = CGROUP_ROOT) -> None:
    """Refuse a job that asks for more than this process can have.

    ``cpus`` must not exceed the available CPUs (affinity and cgroup quota, see
    :func:`cpu_limit`); ``memory_gb`` (GiB) must not exceed the available memory (see
    :func:`memory_limit`). Raises ``UserError`` naming the field, what was asked, what is
    available and where that figure comes from.
    """
    available = cpu_limit(root)
    if cpus > available.cpus + 1e-9:
        raise UserError(
            f"resources.cpus: the job asks for {cpus:g} CPUs but {available.cpus:g} are available "
            f"(from {available.source}); lower resources.cpus or run it where more CPUs are available"
        )
    memory = memory_limit(root)
    if memory.bytes is not None and memory_gb * GIB > memory.bytes:
        raise UserError(
            f"resources.memory_gb: the job asks for {memory_gb:g} GB but {memory.bytes / GIB:.1f} GB "
            f"are available (from {memory.source}); lower resources.memory_gb or run it where more memory is available"
        )


def worker_context() -> dict[str, Any]:
    """What the supervisor told a worker process about its isolation (``$SERBENCH_WORKER``,
    JSON: ``executor``, ``isolation``, ``rss_guard_bytes``); ``{}`` outside a worker."""
    text = env.get(env.WORKER)
    if not text:
        return {}
    try:
        value = json.loads(text)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def limits_in_force(requested_cpus: float, requested_memory_gb: float, threads: int, available: CpuLimit) -> dict[str, Any]:
    """The fields of ``results.ResourcesUsed``: what the job asked for and what it got."""
    memory = memory_limit()
    context = worker_context()
    limit = memory.bytes if memory.source != "physical" else None
    return {
        "cpus_requested": requested_cpus,
        "cpus_available": available.cpus,
        "cpu_source": available.source,
        "cpu_affinity": cpu_affinity(),
        "torch_threads": threads,
        "memory_requested_gb": requested_memory_gb,
        "memory_limit_bytes": limit,
        "memory_limit_source": memory.source if limit is not None else None,
        "physical_memory_bytes": physical_memory_bytes(),
        "executor": context.get("executor", env.get(env.EXECUTOR)),
        "isolation": context.get("isolation", "none"),
    }


def cgroup_folders(root: Path = CGROUP_ROOT, mount: str = "", controller: str = "") -> list[Path]:
    """The folders of this process's cgroup and its ancestors under ``root``, those that
    exist, from the hierarchy's root down to the process's own.

    For cgroup v2 leave ``mount`` and ``controller`` empty; for v1 give the hierarchy's
    mount folder under ``root`` and the controller ``/proc/self/cgroup`` lists its path
    under (``"memory", "memory"`` or ``"cpu,cpuacct", "cpu"``). Inside a container the
    process's path is usually ``/``, so the list is the hierarchy's root alone.
    """
    base = root / mount if mount else root
    own = own_cgroup_path(controller)
    folders = [base]
    current = base
    for part in [p for p in own.split("/") if p]:
        current = current / part
        folders.append(current)
    return [f for f in folders if f.is_dir()]


def memory_cgroup_folders(source: str, root: Path = CGROUP_ROOT) -> list[Path]:
    """:func:`cgroup_folders` of the hierarchy a memory limit comes from: ``source``
    ``cgroup-v2`` (the unified hierarchy) or ``cgroup-v1`` (the v1 ``memory`` controller),
    as :func:`cgroup_memory_limit` names it."""
    if source == "cgroup-v2":
        return cgroup_folders(root)
    if source == "cgroup-v1":
        return cgroup_folders(root, "memory", "memory")
    raise ValueError(f"not a cgroup source: {source!r} (cgroup-v2 or cgroup-v1)")


def own_cgroup_path(controller: str = "") -> str:
    """This process's cgroup path for a v1 ``controller`` (v2 when empty), from
    ``/proc/self/cgroup``; ``/`` when it is not listed."""
    for line in (read_kernel_file(Path("/proc/self/cgroup")) or "").splitlines():
        _, controllers, path = line.split(":", 2)
        if (controller and controller in controllers.split(",")) or (not controller and controllers == ""):
            return path
    return "/"


def torch_threads_for(requested_cpus: float, available: CpuLimit) -> int:
    """Threads for torch: the spec's CPUs, never more than are available, at least 1."""
    return max(1, math.floor(min(requested_cpus, available.cpus)))


def configure_torch_threads(requested_cpus: float) -> tuple[int, CpuLimit]:
    import torch

    available = cpu_limit()
    threads = torch_threads_for(requested_cpus, available)
    torch.set_num_threads(threads)
    return threads, available


def read_kernel_file(path: Path) -> str | None:
    """The text of a small kernel file (a cgroup setting or counter, ``/proc/<pid>/stat``),
    stripped of surrounding whitespace; None when it cannot be read (absent, not
    permitted, or its process gone)."""
    try:
        return path.read_text().strip()
    except OSError:
        return None
