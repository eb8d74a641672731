"""Studies on a real two-node Ray cluster (a head and one worker node, one CPU each, in a
loopback-only network namespace: ``tests/ray_cluster.py``), and the faults a cluster
has: a slot's worker process SIGKILLed mid-trial, the worker node's raylet SIGKILLed,
the driver SIGKILLed and the study resumed on a fresh cluster. Each time the study
completes its budget, every trial is once in ``trials.jsonl`` and ``result.json``, and a
trial lost with its slot is run again once (``reruns: 1``) with its configuration.

The node-killing test runs last in the module: it leaves the cluster with one node.
"""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import yaml

from conftest import SMOKE_JOB
from ray_cluster import RayCluster
from serbench.execution.isolate import process_tree

TRIALS = 5


def job_file(tmp_path: Path, name: str = "ray_job", **changes) -> Path:
    """A fast job for one-CPU slots: frozen-encoder trials on 35 EmoDB clips, with epochs
    long enough that a fault can land mid-trial."""
    spec = json.loads(json.dumps(SMOKE_JOB))
    spec["name"] = name
    spec["budget"] = {"trials": TRIALS}
    spec["resources"] = {"cpus": 1, "memory_gb": 2}
    spec["training"]["batch_size"] = 1
    spec["search_space"]["epochs"] = {"type": "int", "low": 3, "high": 4}
    spec.update(changes)
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def start_study(cluster: RayCluster, job: Path, out: Path, *extra: str, parallel: int = 2):
    return cluster.driver(
        "-m", "serbench.cli", "run", job, "--out", out, "--backend", "ray", "--ray-address", cluster.address,
        "--parallel", str(parallel), *extra,
    )


def finish(proc, timeout: float = 600) -> tuple[int, str]:
    try:
        _, err = proc.communicate(timeout=timeout)
    except Exception:
        for pid in process_tree(proc.pid):
            os.kill(pid, signal.SIGKILL)
        raise
    return proc.returncode, err


def in_flight(folder: Path) -> list[dict]:
    try:
        return json.loads((folder / "inflight.json").read_text())["trials"]
    except (OSError, ValueError, KeyError):
        return []


def journal(folder: Path) -> list[dict]:
    path = folder / "trials.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.exists() else []


def wait_until(condition, what: str, proc=None, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"the study ended ({proc.returncode}) before {what}: {proc.stderr.read()[-3000:]}")
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def slot_workers(cluster: RayCluster) -> dict[int, list[int]]:
    """node index -> PIDs of the Ray worker processes running a slot actor there."""
    found: dict[int, list[int]] = {}
    for node in cluster.nodes:
        for pid in node.pids():
            try:
                cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
            except OSError:
                continue
            if b"_SlotActor" in cmdline:
                found.setdefault(node.index, []).append(pid)
    return found


def assert_complete(folder: Path, trials: int = TRIALS) -> list[dict]:
    result = json.loads((folder / "result.json").read_text())
    records = journal(folder)
    assert result["status"] == "completed"
    assert sorted(r["number"] for r in records) == list(range(trials)), "each trial once in trials.jsonl"
    assert sorted(t["number"] for t in result["trials"]) == list(range(trials)), "each trial once in result.json"
    assert result["execution"]["backend"] == "ray"
    return records


def test_a_study_runs_two_trials_in_flight_across_both_nodes(ray_cluster, tmp_path):
    proc = start_study(ray_cluster, job_file(tmp_path), tmp_path / "out")
    code, err = finish(proc)
    assert code == 0, err
    records = assert_complete(tmp_path / "out" / "ray_job")
    assert {r["slot"] for r in records} == {0, 1}
    assert len({r["node"] for r in records}) == 2  # a one-CPU slot per one-CPU node
    assert any(r["asked_after"] < i for i, r in enumerate(records)), "never more than one trial in flight"
    assert all(r["reruns"] == 0 and r["status"] == "ok" for r in records)
    result = json.loads((tmp_path / "out" / "ray_job" / "result.json").read_text())
    assert result["execution"]["slot_cpus"] == 1 and result["execution"]["parallel"] == 2


def test_a_pruned_study_on_two_nodes_stops_trials_from_their_remote_reports(ray_cluster, tmp_path):
    """Epoch reports travel from the slots to the driver's pruner and its decisions back:
    successive halving (rungs at 1 and 2 epochs) with two trials in flight."""
    job = job_file(
        tmp_path, "ray_pruned", budget={"trials": 8},
        pruner={"name": "successive-halving", "options": {"min_resource": 1, "reduction_factor": 2}},
    )
    spec = yaml.safe_load(job.read_text())
    spec["search_space"]["lr"] = {"type": "float", "low": 1e-6, "high": 3e-3, "log": True}
    job.write_text(yaml.safe_dump(spec))
    code, err = finish(start_study(ray_cluster, job, tmp_path / "out"))
    assert code == 0, err
    records = assert_complete(tmp_path / "out" / "ray_pruned", trials=8)
    pruned = [r for r in records if r["status"] == "pruned"]
    assert pruned, [r["curve"] for r in records]
    for record in pruned:
        assert record["epochs_trained"] == record["pruned_at"] < record["params"]["epochs"]
        assert [p["epoch"] for p in record["curve"]] == list(range(1, record["pruned_at"] + 1))
    assert len({r["node"] for r in records}) == 2


def test_a_slot_larger_than_every_node_is_refused_before_the_study_starts(ray_cluster, tmp_path):
    for resources, needle in (({"cpus": 4, "memory_gb": 1}, "CPU"), ({"cpus": 1, "memory_gb": 64}, "GB")):
        job = job_file(tmp_path, resources=resources)
        code, err = finish(start_study(ray_cluster, job, tmp_path / "big"), timeout=120)
        lines = [line for line in err.splitlines() if line.startswith("serbench:")]
        assert code == 2 and len(lines) == 1, err
        assert "the largest" in lines[0] and needle in lines[0] and "Traceback" not in err
        assert not (tmp_path / "big" / "ray_job" / "trials.jsonl").exists()


def test_a_slot_worker_killed_mid_trial_runs_its_trial_again_once(ray_cluster, tmp_path):
    folder = tmp_path / "out" / "ray_job"
    proc = start_study(ray_cluster, job_file(tmp_path), tmp_path / "out")
    wait_until(lambda: len(in_flight(folder)) == 2 and len(journal(folder)) >= 1, "two trials in flight", proc)
    workers = slot_workers(ray_cluster)
    victim = sorted(pid for pids in workers.values() for pid in pids)[0]
    os.kill(victim, signal.SIGKILL)
    code, err = finish(proc)
    assert code == 0, err
    records = assert_complete(folder)
    rerun = [r for r in records if r["reruns"] == 1]
    assert len(rerun) == 1 and rerun[0]["status"] == "ok", records
    assert all(r["status"] == "ok" for r in records)


def test_a_killed_driver_resumes_on_a_fresh_cluster_with_each_trial_once(tmp_path):
    """parallel 1, a deterministic engine: after the driver is SIGKILLed mid-trial and the
    study resumed on a new cluster, the configurations equal an uninterrupted run's."""
    job = job_file(tmp_path)
    with RayCluster(nodes=2, cpus=1, memory_gb=3) as cluster:
        whole = start_study(cluster, job, tmp_path / "whole", parallel=1)
        code, err = finish(whole)
        assert code == 0, err
        proc = start_study(cluster, job, tmp_path / "out", parallel=2)
        folder = tmp_path / "out" / "ray_job"
        wait_until(lambda: len(journal(folder)) >= 2 and len(in_flight(folder)) == 2, "two journalled, two in flight",
                   proc)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        assert not (folder / "result.json").exists()
    lost = {t["number"] for t in in_flight(folder)}
    assert lost, "the marker should name the trials in flight"
    with RayCluster(nodes=2, cpus=1, memory_gb=3) as fresh:
        code, err = finish(start_study(fresh, job, tmp_path / "out", "--resume", parallel=2))
    assert code == 0, err
    records = assert_complete(folder)
    uninterrupted = {r["number"]: r["params"] for r in journal(tmp_path / "whole" / "ray_job")}
    assert {r["number"]: r["params"] for r in records} == uninterrupted  # random: configurations by number
    result = json.loads((folder / "result.json").read_text())
    assert result["resumed"] >= 2


def test_the_worker_nodes_raylet_killed_mid_trial_and_the_study_finishes_on_the_head(ray_cluster, tmp_path):
    folder = tmp_path / "out" / "ray_job"
    proc = start_study(ray_cluster, job_file(tmp_path), tmp_path / "out")
    worker_node = {pid for pid in slot_workers(ray_cluster).get(1, [])}

    def node_one_at_work() -> bool:  # it finished a trial and took the next: two in flight, one there
        nodes = {r["node"] for r in journal(folder)}
        return len(nodes) == 2 and len(in_flight(folder)) == 2

    wait_until(node_one_at_work, "a trial journalled from each node, two in flight", proc)
    assert worker_node or slot_workers(ray_cluster).get(1), "no slot actor on the worker node"
    os.kill(ray_cluster.nodes[1].raylet_pid(), signal.SIGKILL)
    code, err = finish(proc)
    assert code == 0, err
    records = assert_complete(folder)
    assert [r for r in records if r["reruns"] == 1], f"the trial on the dead node should have run again: {records}"
    assert all(r["status"] == "ok" for r in records)
    head = records[-1]["node"]
    assert all(r["node"] == head for r in records if r["reruns"] == 1)
