"""Parallel trials on Ray: prints ONE JSON object of figures.

The same study, run twice on one Ray instance with the CPUs of this machine:

- ``p1``: ``parallel: 1`` with 2 CPUs per trial (one trial at a time, all the cores);
- ``p2``: ``parallel: 2`` with 1 CPU per trial (two trials side by side).

for two studies, both random search (so the same configurations in every run):

- ``frozen``: the encoder stays frozen (``unfreeze`` past the last epoch): the trials
  train a head on cached features, so the run is mostly fixed costs;
- ``train_layers_1``: the paper's 4-D space with whisper-tiny.en and its top layer
  fine-tuned (``jobs/random_emodb_whisper.yaml``).

Figures per run: wall seconds (``serbench run`` end to end, Ray connection included) and
the study's search + final seconds; the speedup p1 / p2 on search + final; per-trial
Ray overhead from the journal (``queued_s``: submitted to started on its slot, for every
trial but each slot's first, whose wait -- the slot's actor starting and loading the
corpus and backbone -- is ``slot_start_s``; ``returned_s``: ended on the slot to
journalled), median and max; the best validation
BCA and test BCA of each run; and the resident memory of the idle Ray processes (the
head started here, before any study). Goal (issue 14): speedup >= 1.6x on
``train_layers_1``, overhead < 50 ms per trial.

    scripts/loopback-netns python bench/parallel.py            # 16 trials, full EmoDB (~25 min on 2 cores)
    scripts/loopback-netns python bench/parallel.py --quick    # 6 trials on 6 clips per class (~3 min)

Ray is started here (``ray start --head`` on 127.0.0.1, stopped by PID at the end); on
a shared machine run it inside a loopback-only network namespace as above, since Ray
advertises the machine's primary address. Data and models: ``$SERBENCH_DATA`` /
``$SERBENCH_MODELS`` (default ``../shared/...`` beside the checkout).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from ray_head import RayHead

REPO = Path(__file__).resolve().parents[1]
BASE_JOB = REPO / "jobs" / "random_emodb_whisper.yaml"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="parallel trials on Ray (prints one JSON object)")
    parser.add_argument("--quick", action="store_true", help="6 trials on a 6-per-class subset")
    parser.add_argument("--trials", type=int, default=None, help="trials per study (16; quick: 6)")
    parser.add_argument("--studies", default="frozen,train_layers_1", help="comma-separated: frozen, train_layers_1")
    args = parser.parse_args(argv)
    trials = args.trials or (6 if args.quick else 16)
    os.environ.setdefault("SERBENCH_DATA", str(REPO.parent / "shared" / "data"))
    os.environ.setdefault("SERBENCH_MODELS", str(REPO.parent / "shared" / "models"))
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    work = Path(tempfile.mkdtemp(prefix="serbench-parallel-"))
    head = RayHead(work / "ray", cpus=2)
    figures: dict = {"trials": trials, "quick": args.quick, "cpus": 2, "load_average_start": os.getloadavg()}
    try:
        head.start()
        figures["ray_idle_rss_mb"] = round(head.rss_bytes() / 2**20, 1)
        for study in args.studies.split(","):
            runs = {}
            for label, parallel, cpus in (("p1", 1, 2), ("p2", 2, 1)):
                job = write_job(work, study, trials, cpus, args.quick)
                runs[label] = run_study(job, work / "results" / label, head, parallel)
            figures[study] = summarize(runs)
    finally:
        head.stop()
    figures["load_average_end"] = os.getloadavg()
    print(json.dumps(figures, indent=2))
    return 0


def write_job(work: Path, study: str, trials: int, cpus: int, quick: bool) -> Path:
    spec = yaml.safe_load(BASE_JOB.read_text())
    spec["name"] = f"parallel_{study}"
    spec["budget"] = {"trials": trials}
    spec["resources"] = {"cpus": cpus, "memory_gb": 4}
    if study == "frozen":  # the encoder never trains: epochs 1..3, unfrozen from epoch 6 (never)
        spec["search_space"]["epochs"] = {"type": "int", "low": 1, "high": 3}
        spec["search_space"].pop("unfreeze")
        spec["training"]["unfreeze"] = 6
    elif study != "train_layers_1":
        raise SystemExit(f"--studies: unknown study {study!r}")
    if quick:
        spec["dataset"]["subset"] = {"per_class": 6}
    path = work / "jobs" / f"{study}_{cpus}cpu.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def run_study(job: Path, out: Path, head: RayHead, parallel: int) -> dict:
    command = [sys.executable, "-m", "serbench.cli", "run", str(job), "--out", str(out), "--force",
               "--backend", "ray", "--ray-address", head.address, "--parallel", str(parallel)]
    started = time.perf_counter()
    proc = subprocess.run(command, capture_output=True, text=True, env=head.env)
    wall = time.perf_counter() - started
    if proc.returncode != 0:
        raise SystemExit(f"serbench run failed ({proc.returncode}): {proc.stderr.strip()[-2000:]}")
    name = yaml.safe_load(job.read_text())["name"]
    result = json.loads((out / name / "result.json").read_text())
    return {"wall_s": wall, "result": result}


def summarize(runs: dict) -> dict:
    out: dict = {}
    for label, run in runs.items():
        result = run["result"]
        trials = result["trials"]
        by_start = sorted(trials, key=lambda t: t["cumulative_s"] - t["duration_s"])
        firsts, seen = set(), set()
        for t in by_start:  # each slot's first trial also waited for the slot to start and load
            if t["slot"] not in seen:
                seen.add(t["slot"])
                firsts.add(t["number"])
        queued = [t["queued_s"] for t in trials if t.get("queued_s") is not None and t["number"] not in firsts]
        slot_start = [t["queued_s"] for t in trials if t["number"] in firsts]
        returned = [t["returned_s"] for t in trials if t.get("returned_s") is not None]
        out[label] = {
            "wall_s": round(run["wall_s"], 1),
            "search_plus_final_s": round(result["search_seconds"] + result["final_seconds"], 1),
            "best_val_bca": result["best"]["val_bca"] if result["best"] else None,
            "test_bca": result["test"]["bca"] if result["test"] else None,
            "trials_per_node": result["execution"]["trials_per_node"],
            "slot_start_s": [round(x, 1) for x in slot_start],
            "overhead_ms": {
                "queued_median": round(1000 * statistics.median(queued), 1) if queued else None,
                "queued_max": round(1000 * max(queued), 1) if queued else None,
                "returned_median": round(1000 * statistics.median(returned), 1) if returned else None,
                "returned_max": round(1000 * max(returned), 1) if returned else None,
            },
            "params": [t["params"] for t in sorted(trials, key=lambda t: t["number"])],
        }
    p1, p2 = out["p1"], out["p2"]
    out["speedup"] = round(p1["search_plus_final_s"] / p2["search_plus_final_s"], 2)
    out["speedup_wall"] = round(p1["wall_s"] / p2["wall_s"], 2)
    out["same_configurations"] = p1["params"] == p2["params"]
    for run in (p1, p2):
        del run["params"]
    return out


if __name__ == "__main__":
    sys.exit(main())
