"""CPU and memory limits read from cgroup files (v1 and v2 layouts)."""

import os

from serbench.execution.limits import CpuLimit, cpu_limit, memory_limit_bytes, torch_threads_for


def test_cgroup_v2_quota_and_memory(tmp_path):
    (tmp_path / "cpu.max").write_text("150000 100000\n")
    (tmp_path / "memory.max").write_text(str(2 * 2**30))
    assert cpu_limit(tmp_path).cpus == min(1.5, len(os.sched_getaffinity(0)))
    assert memory_limit_bytes(tmp_path) == 2 * 2**30


def test_cgroup_v2_without_limits(tmp_path):
    (tmp_path / "cpu.max").write_text("max 100000\n")
    (tmp_path / "memory.max").write_text("max\n")
    assert cpu_limit(tmp_path).source == "affinity"
    assert memory_limit_bytes(tmp_path) is None


def test_cgroup_v1_quota_and_memory(tmp_path):
    (tmp_path / "cpu").mkdir()
    (tmp_path / "cpu" / "cpu.cfs_quota_us").write_text("100000\n")
    (tmp_path / "cpu" / "cpu.cfs_period_us").write_text("100000\n")
    (tmp_path / "memory").mkdir()
    (tmp_path / "memory" / "memory.limit_in_bytes").write_text(str(3 * 2**30))
    assert cpu_limit(tmp_path) == CpuLimit(1.0, "cgroup-v1")
    assert memory_limit_bytes(tmp_path) == 3 * 2**30


def test_cgroup_v1_unlimited(tmp_path):
    (tmp_path / "cpu").mkdir()
    (tmp_path / "cpu" / "cpu.cfs_quota_us").write_text("-1\n")
    (tmp_path / "cpu" / "cpu.cfs_period_us").write_text("100000\n")
    (tmp_path / "memory").mkdir()
    (tmp_path / "memory" / "memory.limit_in_bytes").write_text("9223372036854771712\n")
    assert cpu_limit(tmp_path).source == "affinity"
    assert memory_limit_bytes(tmp_path) is None


def test_threads_never_exceed_what_is_available():
    assert torch_threads_for(8, CpuLimit(2, "cgroup-v1")) == 2
    assert torch_threads_for(1, CpuLimit(2, "affinity")) == 1
    assert torch_threads_for(1.5, CpuLimit(0.5, "cgroup-v2")) == 1
