"""The pieces of limit enforcement, fast: the limits read from cgroup files, the refusal
of jobs that ask for more, cgroups made for a worker (on a folder laid out like cgroupfs:
this machine's own cgroups belong to whoever runs it), the in-flight marker and the
journal record of a trial lost to memory."""

import ast
import os
from pathlib import Path

import pytest

from serbench.engines.base import Outcome
from serbench.errors import UserError
from serbench.results.inflight import INFLIGHT_FILE, InflightMarker, journal_lost_trial
from serbench.execution import limits
from serbench.execution.isolate import (
    first_cpus,
    inherited,
    make_cgroup_v1,
    make_cgroup_v2,
    oom_kill_count,
    tree_rss_bytes,
)
from serbench.plugin.registry import registry
from serbench.execution.limits import (
    GIB,
    cgroup_folders,
    cgroup_memory_limit,
    check_fits,
    memory_cgroup_folders,
    memory_limit,
    read_kernel_file,
)
from serbench.results.schema import TrialRecord
from serbench.results.journal import TrialJournal
from serbench.study.search import FoldSearch
from conftest import run_search
from serbench.spec import Budget, ChoiceParam


def test_memory_limit_names_its_source(tmp_path):
    (tmp_path / "memory.max").write_text(str(GIB))
    assert cgroup_memory_limit(tmp_path) == (GIB, "cgroup-v2")
    assert memory_limit(tmp_path).bytes == GIB and memory_limit(tmp_path).source == "cgroup-v2"
    (tmp_path / "memory.max").write_text("max\n")
    physical = memory_limit(tmp_path)
    assert physical.source == "physical" and physical.bytes > GIB


def test_check_fits_against_a_cgroup_quota_and_memory_limit(tmp_path):
    (tmp_path / "cpu.max").write_text("100000 100000\n")
    (tmp_path / "memory.max").write_text(str(2 * GIB))
    check_fits(1, 2, tmp_path)
    check_fits(0.5, 1.5, tmp_path)
    with pytest.raises(UserError, match=r"resources.cpus: the job asks for 2 CPUs but 1 are available \(from cgroup-v2\)"):
        check_fits(2, 1, tmp_path)
    with pytest.raises(UserError, match=r"resources.memory_gb: the job asks for 3 GB but 2.0 GB are available \(from cgroup-v2\)"):
        check_fits(1, 3, tmp_path)


def test_a_job_of_two_cpus_fits_a_bigger_quota(tmp_path):
    """Compose's default container: 8 CPUs and 32 GB; a job asking 2 CPUs and 8 GB runs."""
    (tmp_path / "cpu.max").write_text("800000 100000\n")
    (tmp_path / "memory.max").write_text(str(32 * GIB))
    check_fits(min(2, len(os.sched_getaffinity(0))), 1, tmp_path)


def test_cgroup_v2_group_for_a_worker(tmp_path):
    (tmp_path / "cgroup.controllers").write_text("cpuset cpu io memory pids\n")
    (tmp_path / "cgroup.subtree_control").write_text("\n")
    group = make_cgroup_v2(tmp_path, 2 * GIB, 1.5, own="/")
    assert group == tmp_path / f"serbench-{os.getpid()}"
    assert (group / "memory.max").read_text() == str(2 * GIB)
    assert (group / "cpu.max").read_text() == "150000 100000"
    assert (tmp_path / "cgroup.subtree_control").read_text() == "+memory +cpu"


def test_no_cgroup_v2_group_without_the_memory_controller(tmp_path):
    (tmp_path / "cgroup.controllers").write_text("cpu pids\n")
    assert make_cgroup_v2(tmp_path, GIB, 1, own="/") is None
    assert make_cgroup_v2(tmp_path / "absent", GIB, 1, own="/") is None
    assert list(tmp_path.iterdir()) == [tmp_path / "cgroup.controllers"]


def test_cgroup_v1_groups_for_a_worker(tmp_path):
    (tmp_path / "memory").mkdir()
    (tmp_path / "memory" / "memory.limit_in_bytes").write_text("9223372036854771712\n")
    (tmp_path / "cpu").mkdir()
    (tmp_path / "cpu" / "cpu.cfs_quota_us").write_text("-1\n")
    groups = make_cgroup_v1(tmp_path, GIB, 2, own={"memory": "/", "cpu": "/"})
    name = f"serbench-{os.getpid()}"
    assert groups == [tmp_path / "memory" / name, tmp_path / "cpu" / name]
    assert (groups[0] / "memory.limit_in_bytes").read_text() == str(GIB)
    assert (groups[1] / "cpu.cfs_quota_us").read_text() == "200000"
    assert (groups[1] / "cpu.cfs_period_us").read_text() == "100000"


def test_oom_kill_counters(tmp_path):
    (tmp_path / "memory.events").write_text("low 0\nhigh 0\nmax 12\noom 2\noom_kill 2\n")
    assert oom_kill_count(tmp_path) == 2
    v1 = tmp_path / "v1"
    v1.mkdir()
    (v1 / "memory.oom_control").write_text("oom_kill_disable 0\nunder_oom 0\noom_kill 5\n")
    assert oom_kill_count(v1) == 5
    assert oom_kill_count(tmp_path / "absent") == 0


def test_inherited_limits_watch_the_hierarchy_their_limit_comes_from(tmp_path, monkeypatch):
    """``cgroup_folders`` walks from a hierarchy's root down to the process's own group;
    ``inherited`` watches the OOM counters of the hierarchy whose limit is in force."""
    monkeypatch.setattr(limits, "own_cgroup_path", lambda controller="": "/job/step")
    v2 = tmp_path / "v2"
    (v2 / "job" / "step").mkdir(parents=True)
    (v2 / "memory.max").write_text("max\n")
    (v2 / "job" / "memory.max").write_text(f"{GIB}\n")
    assert cgroup_folders(v2) == [v2, v2 / "job", v2 / "job" / "step"]
    isolation = inherited(v2)
    assert isolation.mechanism == "inherited-cgroup-v2" and isolation.memory_bytes == GIB
    assert isolation.oom_folders == memory_cgroup_folders("cgroup-v2", v2) == cgroup_folders(v2)
    v1 = tmp_path / "v1"
    (v1 / "memory" / "job").mkdir(parents=True)  # no "step" folder: skipped
    (v1 / "memory" / "job" / "memory.limit_in_bytes").write_text(f"{2 * GIB}\n")
    assert cgroup_folders(v1, "memory", "memory") == [v1 / "memory", v1 / "memory" / "job"]
    isolation = inherited(v1)
    assert isolation.mechanism == "inherited-cgroup-v1" and isolation.memory_bytes == 2 * GIB
    assert isolation.oom_folders == [v1 / "memory", v1 / "memory" / "job"]
    with pytest.raises(ValueError, match="cgroup-v3"):
        memory_cgroup_folders("cgroup-v3", v1)


def test_read_kernel_file(tmp_path):
    (tmp_path / "cpu.max").write_text("150000 100000\n")
    assert read_kernel_file(tmp_path / "cpu.max") == "150000 100000"
    assert read_kernel_file(tmp_path / "absent") is None
    assert read_kernel_file(tmp_path) is None  # a folder: unreadable, not an error


def test_no_module_imports_another_modules_private_names():
    """Modules share what they document: no ``from serbench.x import _name`` anywhere."""
    package = Path(limits.__file__).resolve().parents[1]
    private = []
    for path in sorted(package.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("serbench"):
                private += [
                    f"{path.relative_to(package.parent)}:{node.lineno} {node.module}.{alias.name}"
                    for alias in node.names
                    if alias.name.startswith("_") and not alias.name.startswith("__")
                ]
    assert not private, private


def test_first_cpus_and_tree_rss():
    allowed = sorted(os.sched_getaffinity(0))
    assert first_cpus(1) == allowed[:1]
    assert first_cpus(0.5) == allowed[:1]
    assert first_cpus(1000) == allowed
    assert tree_rss_bytes(os.getpid()) > 10 * 2**20


def record(number, status="ok", **fields):
    values = {"value": 0.5} if status == "ok" else {"reason": "error"}
    values.update(fields)
    return TrialRecord(fold=0, number=number, params={"maxlen": 16000}, status=status,
                       duration_s=1.0, cumulative_s=number + 1.0, **values)


def test_a_trial_lost_to_memory_is_journalled_once(tmp_path):
    journal = TrialJournal(tmp_path / "trials.jsonl")
    journal.append(record(0))
    with journal.path.open("a") as handle:
        handle.write('{"fold": 0, "number": 1, "par')  # cut short by the kill
    marker = InflightMarker(tmp_path / INFLIGHT_FILE)
    marker.start(0, 1, {"maxlen": 160000}, cumulative_s=1.0)
    started = marker.read()[0]["started_epoch"]

    lost = journal_lost_trial(tmp_path, "oom", "out of memory: the test", now=started + 4.0)
    assert lost.status == "failed" and lost.reason == "oom" and lost.params == {"maxlen": 160000}
    assert lost.duration_s == pytest.approx(4.0) and lost.cumulative_s == pytest.approx(5.0)
    assert [(r.number, r.status) for r in journal.read()] == [(0, "ok"), (1, "failed")]
    assert not marker.path.exists()

    marker.start(0, 1, {"maxlen": 160000}, cumulative_s=1.0)  # already journalled
    assert journal_lost_trial(tmp_path, "oom", "again") is None
    assert len(journal.read()) == 2 and not marker.path.exists()
    assert journal_lost_trial(tmp_path, "oom", "no marker") is None

    marker.start(0, 2, {"maxlen": 16000}, cumulative_s=2.0)  # two in flight: which one took the memory?
    marker.start(0, 3, {"maxlen": 32000}, cumulative_s=2.0, asked_after=2)
    assert journal_lost_trial(tmp_path, "oom", "two in flight") is None
    assert len(journal.read()) == 2 and not marker.path.exists()


def test_the_search_marks_each_trial_in_flight_until_it_is_journalled(tmp_path):
    marker = InflightMarker(tmp_path / INFLIGHT_FILE)
    seen = []

    def run_trial(number, params):
        seen.append(marker.read())
        if number == 1:
            raise RuntimeError("a crashing trial")
        return {"status": "ok", "value": 0.5}

    engine = registry().get("engine", "random").cls({"maxlen": ChoiceParam(type="choice", values=[16000, 32000])}, 0)
    search = FoldSearch(0, engine, Budget(trials=3), TrialJournal(tmp_path / "trials.jsonl"), inflight=marker)
    trials, _ = run_search(search, run_trial)
    assert [[(t["fold"], t["number"], t["asked_after"]) for t in s] for s in seen] == [[(0, 0, 0)], [(0, 1, 1)], [(0, 2, 2)]]
    assert [s[0]["params"] for s in seen] == [t.params for t in trials]
    assert not marker.path.exists()

    def interrupted(number, params):
        raise KeyboardInterrupt

    search = FoldSearch(0, engine, Budget(trials=4), TrialJournal(tmp_path / "other.jsonl"), inflight=marker)
    with pytest.raises(KeyboardInterrupt):
        run_search(search, interrupted)
    assert [t["number"] for t in marker.read()] == [0]  # still in flight: --resume asks for it again


def test_outcome_of_an_oom_record_is_a_failure():
    from serbench.study.search import outcome_of

    outcome = outcome_of(record(0, "failed", reason="oom"))
    assert outcome == Outcome.failed("oom")
