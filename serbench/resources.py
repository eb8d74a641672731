"""The CPU and memory limits actually in force, and torch's thread count sized from them.

``os.cpu_count()`` ignores container limits (``--cpus`` sets a CFS quota, not a CPU
count), so the available CPUs are the smallest of the process's affinity mask and the
cgroup CPU quota (v2 ``cpu.max`` or v1 ``cpu.cfs_quota_us``/``cpu.cfs_period_us``).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

CGROUP_ROOT = Path("/sys/fs/cgroup")
_NO_LIMIT = 1 << 60  # cgroup v1 reports "no memory limit" as a huge number


@dataclass(frozen=True)
class CpuLimit:
    cpus: float
    source: str  # "cgroup-v2", "cgroup-v1", "affinity" or "cpu_count"


def cpu_limit(root: Path = CGROUP_ROOT) -> CpuLimit:
    """How many CPUs this process may use, and where that figure comes from."""
    try:
        affinity = float(len(os.sched_getaffinity(0)))
        limit = CpuLimit(affinity, "affinity")
    except AttributeError:  # not on Linux
        limit = CpuLimit(float(os.cpu_count() or 1), "cpu_count")
    quota = _cgroup_cpu_quota(root)
    if quota is not None and quota[0] < limit.cpus:
        limit = CpuLimit(quota[0], quota[1])
    return limit


def _cgroup_cpu_quota(root: Path) -> tuple[float, str] | None:
    quotas = []
    for folder in _cgroup_folders(root, "", ""):
        quota, _, period = (_read(folder / "cpu.max") or "").partition(" ")
        if quota and quota != "max" and period:
            quotas.append((int(quota) / int(period), "cgroup-v2"))
    for controller in ("cpu,cpuacct", "cpu"):
        for folder in _cgroup_folders(root, controller, "cpu"):
            quota, period = _read(folder / "cpu.cfs_quota_us"), _read(folder / "cpu.cfs_period_us")
            if quota and period and int(quota) > 0:
                quotas.append((int(quota) / int(period), "cgroup-v1"))
    return min(quotas) if quotas else None


def memory_limit_bytes(root: Path = CGROUP_ROOT) -> int | None:
    """The tightest cgroup memory limit (v2 ``memory.max``, v1 ``memory.limit_in_bytes``)."""
    limits = []
    for folder in _cgroup_folders(root, "", ""):
        limits.append(_read(folder / "memory.max"))
    for folder in _cgroup_folders(root, "memory", "memory"):
        limits.append(_read(folder / "memory.limit_in_bytes"))
    values = [int(v) for v in limits if v and v != "max" and int(v) < _NO_LIMIT]
    return min(values) if values else None


def _cgroup_folders(root: Path, mount: str, controller: str) -> list[Path]:
    """The process's cgroup folder and its ancestors, for one v1 controller (or v2 when
    ``controller`` is empty). Inside a container the process's path is usually ``/``."""
    base = root / mount if mount else root
    own = "/"
    for line in (_read(Path("/proc/self/cgroup")) or "").splitlines():
        _, controllers, path = line.split(":", 2)
        if (controller and controller in controllers.split(",")) or (not controller and controllers == ""):
            own = path
    folders = [base]
    current = base
    for part in [p for p in own.split("/") if p]:
        current = current / part
        folders.append(current)
    return [f for f in folders if f.is_dir()]


def torch_threads_for(requested_cpus: float, available: CpuLimit) -> int:
    """Threads for torch: the spec's CPUs, never more than are available, at least 1."""
    return max(1, math.floor(min(requested_cpus, available.cpus)))


def configure_torch_threads(requested_cpus: float) -> tuple[int, CpuLimit]:
    import torch

    available = cpu_limit()
    threads = torch_threads_for(requested_cpus, available)
    torch.set_num_threads(threads)
    return threads, available


def _read(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except OSError:
        return None
