"""What pruning buys: prints ONE JSON object of figures and a markdown table.

The paper's 4-D space on the full Berlin EmoDB (``jobs/optuna_emodb_whisper.yaml``:
whisper-tiny.en, its top layer fine-tuned from the unfreeze epoch, holdout protocol),
for each engine (``--engines``, default optuna and random), each pruner setting
(``--pruners``) and each seed (``--seeds``):

- ``none``: every trial trains all its epochs;
- ``median``: Optuna's median rule (``n_startup_trials: 5``);
- ``asha``: asynchronous successive halving, rungs at 1, 3, 9 epochs, the top third goes on;
- ``asha-probe``: ``asha`` with the frozen probe (``pruner.frozen_rung``): each trial's
  configuration is first trained with its encoder frozen on cached features, and that
  score is a rung before any encoder training.

Figures per setting, mean and population sd over seeds: study minutes (search wall
clock, pruned trials' time included) to the first completed trial with validation
BCA >= 0.8 and >= 0.9 (median over the seeds that reached it, and how many did), the
same in training epochs (every trial's epochs up to and including that trial: a time
the machine's load cannot change), best
validation BCA, test BCA (the final model, scored once), epochs trained, trials pruned,
and the search's minutes in all. The goal (issue 15): the best pruned setting reaches
0.9 in at most half the median time of ``none``, with a test BCA within the seeds' spread.

Every study runs with the same warm frozen-feature cache (``$SERBENCH_CACHE`` in the
bench's folder, filled first by a one-epoch grid over ``maxlen``), so no setting pays
for encoding the corpus; ``--concurrent`` studies run at once, each with
``--cpus`` CPUs (by default two studies of one CPU each on a 2-core machine: every
setting runs under the same conditions).

    python bench/pruning.py                              # 5 seeds x 2 engines x 4 settings, 15 trials (hours)
    python bench/pruning.py --seeds 3 --trials 10 --skip random/asha-probe   # fewer
    python bench/pruning.py --quick                      # 4 trials on 6 clips per class (minutes)

Data and models: ``$SERBENCH_DATA`` / ``$SERBENCH_MODELS`` (default ``../shared/...``
beside the checkout).
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
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
BASE_JOB = REPO / "jobs" / "optuna_emodb_whisper.yaml"
PRUNERS = {
    "none": {"name": "none"},
    "median": {"name": "median", "options": {"n_startup_trials": 5}},
    "asha": {"name": "successive-halving", "options": {"min_resource": 1, "reduction_factor": 3}},
    "asha-probe": {
        "name": "successive-halving",
        "options": {"min_resource": 1, "reduction_factor": 3},
        "frozen_rung": True,
    },
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="what pruning buys (prints one JSON object and a table)")
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--trials", type=int, default=15)
    parser.add_argument("--engines", default="optuna,random")
    parser.add_argument("--pruners", default=",".join(PRUNERS), help=f"comma-separated: {', '.join(PRUNERS)}")
    parser.add_argument("--skip", default="", help="comma-separated engine/setting pairs not to run, e.g. random/asha-probe")
    parser.add_argument("--startup", type=int, default=5, help="optuna's n_startup_trials (TPE after that many)")
    parser.add_argument("--concurrent", type=int, default=2, help="studies at once")
    parser.add_argument("--cpus", type=float, default=1, help="CPUs per study")
    parser.add_argument("--quick", action="store_true", help="4 trials on 6 clips per class, 1 seed")
    parser.add_argument("--out", type=Path, default=None, help="keep the studies here (default: a temporary folder)")
    parser.add_argument(
        "--reuse", action="store_true",
        help="keep the studies already finished in --out (same job file) instead of running them again",
    )
    parser.add_argument(
        "--report-only", action="store_true",
        help="run nothing: aggregate the studies already in --out (only seeds every setting finished)",
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.seeds, args.trials = 1, 4
    unknown = set(args.pruners.split(",")) - set(PRUNERS)
    if unknown:
        raise SystemExit(f"--pruners: unknown {', '.join(sorted(unknown))}; known: {', '.join(PRUNERS)}")
    os.environ.setdefault("SERBENCH_DATA", str(REPO.parent / "shared" / "data"))
    os.environ.setdefault("SERBENCH_MODELS", str(REPO.parent / "shared" / "models"))
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    if args.report_only:
        if args.out is None:
            raise SystemExit("--report-only needs --out")
        return report(args, finished_studies(args))
    work = args.out or Path(tempfile.mkdtemp(prefix="serbench-pruning-"))
    env = dict(os.environ, SERBENCH_CACHE=str(work / "feature-cache"))
    started = time.perf_counter()
    figures: dict = {
        "seeds": args.seeds, "trials": args.trials, "quick": args.quick, "concurrent": args.concurrent,
        "cpus_per_study": args.cpus, "optuna_n_startup_trials": args.startup, "load_average_start": os.getloadavg(),
    }
    warm = run_study(write_job(work, args, "warm", "none", 0), work / "results", env, args.reuse)
    figures["warm_cache_s"] = round(warm["wall_seconds"], 1)
    studies = [
        (engine, pruner, seed)
        for seed in range(args.seeds)
        for engine in args.engines.split(",")
        for pruner in args.pruners.split(",")
        if f"{engine}/{pruner}" not in args.skip.split(",")
    ]
    with ThreadPoolExecutor(args.concurrent) as pool:
        results = list(pool.map(
            lambda study: run_study(write_job(work, args, *study), work / "results", env, args.reuse), studies
        ))
    figures["wall_minutes"] = round((time.perf_counter() - started) / 60, 1)
    figures["load_average_end"] = os.getloadavg()
    figures["folder"] = str(work)
    return report(args, list(zip(studies, results)), figures)


def report(args, finished: list, figures: dict | None = None) -> int:
    """Print the figures of ``finished`` studies (``((engine, setting, seed), result)``)."""
    seeds: dict = {}
    for (engine, _, seed), _ in finished:
        seeds.setdefault(engine, set()).add(seed)
    figures = dict(figures or {"folder": str(args.out)})
    figures["seeds_per_engine"] = {engine: sorted(found) for engine, found in seeds.items()}
    settings: dict = {}
    for (engine, pruner, _), result in finished:
        settings.setdefault(f"{engine}/{pruner}", []).append(per_study(result))
    figures["settings"] = {key: aggregate(runs) for key, runs in settings.items()}
    figures["goal"] = goal(figures["settings"], args.engines.split(","))
    print(json.dumps(figures, indent=2))
    print(table(figures["settings"]))
    return 0


def finished_studies(args) -> list:
    """The studies in ``--out`` with a result of ``--trials`` trials, per engine for the
    seeds in which every setting of that engine finished (so an engine's settings are
    averaged over the same seeds)."""
    finished = []
    for engine in args.engines.split(","):
        settings = [p for p in args.pruners.split(",") if f"{engine}/{p}" not in args.skip.split(",")]
        for seed in range(args.seeds):
            found = []
            for pruner in settings:
                path = args.out / "results" / f"pruning_{engine}_{pruner}_s{seed}" / "result.json"
                result = json.loads(path.read_text()) if path.exists() else None
                if result is None or result["spec"]["budget"]["trials"] != args.trials:
                    break
                found.append(((engine, pruner, seed), result))
            else:
                finished += found
    return finished


def write_job(work: Path, args, engine: str, pruner: str, seed: int) -> Path:
    spec = yaml.safe_load(BASE_JOB.read_text())
    spec["name"] = f"pruning_{engine}_{pruner}_s{seed}"
    spec["seed"] = seed
    spec["resources"] = {"cpus": args.cpus, "memory_gb": 6}
    if engine == "warm":  # one epoch per maxlen, frozen then unfrozen: fills the cache every setting uses
        maxlens = spec["search_space"]["maxlen"]["values"]
        spec["engine"] = {"name": "grid"}
        spec["search_space"] = {"maxlen": {"type": "choice", "values": maxlens}}
        spec["training"].update(lr=1e-4, epochs=1, unfreeze=0)
        spec["budget"] = {"trials": len(maxlens)}
        spec["pruner"] = {"name": "none", "frozen_rung": False}
    else:
        spec["engine"] = {"name": engine}
        if engine == "optuna":
            spec["engine"]["options"] = {"sampler": "tpe", "n_startup_trials": args.startup}
        spec["budget"] = {"trials": args.trials}
        spec["pruner"] = PRUNERS[pruner]
    if args.quick:
        spec["dataset"]["subset"] = {"per_class": 6}
    path = work / "jobs" / f"{spec['name']}.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def run_study(job: Path, out: Path, env: dict, reuse: bool = False) -> dict:
    """``serbench run`` of ``job`` (``reuse``: the result already there, if it is this study's)."""
    name = yaml.safe_load(job.read_text())["name"]
    done = out / name / "result.json"
    if reuse and done.exists():
        result = json.loads(done.read_text())
        spec = yaml.safe_load(job.read_text())
        if identity(result["spec"]) == identity(spec):
            return result
    command = [sys.executable, "-m", "serbench.cli", "run", str(job), "--out", str(out), "--force"]
    proc = subprocess.run(command, capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        raise SystemExit(f"serbench run {job.name} failed ({proc.returncode}): {proc.stderr.strip()[-2000:]}")
    return json.loads(done.read_text())


def epochs_to(trials: list[dict], threshold: float) -> int | None:
    """Training epochs spent (journal order) until the first completed trial whose
    validation BCA reached ``threshold``, that trial included: time to a threshold in
    compute, which the machine's load does not change."""
    spent = 0
    for trial in trials:
        spent += trial.get("epochs_trained") or 0
        if trial["status"] == "ok" and trial["value"] is not None and trial["value"] >= threshold:
            return spent
    return None


def identity(spec: dict) -> tuple:
    """What tells this bench's studies apart (a finished study is reused when it matches)."""
    pruner = spec.get("pruner") or {}
    return (spec["seed"], spec["engine"]["name"], spec["budget"]["trials"], pruner.get("name", "none"),
            bool(pruner.get("frozen_rung")), spec.get("dataset", {}).get("subset"))


def per_study(result: dict) -> dict:
    hits = {hit["threshold"]: hit["minutes"] for hit in result["thresholds"] if hit["reached"]}
    return {
        "to_0.8": hits.get(0.8),
        "to_0.9": hits.get(0.9),
        "epochs_to_0.8": epochs_to(result["trials"], 0.8),
        "epochs_to_0.9": epochs_to(result["trials"], 0.9),
        "best_val": result["best"]["val_bca"] if result["best"] else None,
        "test": result["test"]["bca"] if result["test"] else None,
        "epochs": result["pruning"]["epochs_spent"],
        "pruned": result["pruning"]["pruned"],
        "search_minutes": result["search_seconds"] / 60,
    }


def aggregate(runs: list[dict]) -> dict:
    def stat(key: str) -> dict | None:
        values = [run[key] for run in runs if run[key] is not None]
        if not values:
            return None
        return {"mean": round(statistics.fmean(values), 3), "sd": round(statistics.pstdev(values), 3)}

    out = {key: stat(key) for key in ("best_val", "test", "epochs", "pruned", "search_minutes")}
    for key in ("to_0.8", "to_0.9", "epochs_to_0.8", "epochs_to_0.9"):
        reached = [run[key] for run in runs if run[key] is not None]
        out[key] = {
            "median": round(statistics.median(reached), 2) if reached else None,
            "reached": f"{len(reached)}/{len(runs)}",
        }
    out["runs"] = runs
    return out


def goal(settings: dict, engines: list[str]) -> dict:
    """Per engine: the pruned setting with the smallest median time to 0.9, against none."""
    verdicts = {}
    for engine in engines:
        base = settings.get(f"{engine}/none")
        pruned = {k: v for k, v in settings.items() if k.startswith(f"{engine}/") and k != f"{engine}/none"}
        timed = {k: v["to_0.9"]["median"] for k, v in pruned.items() if v["to_0.9"]["median"]}
        if base is None or not timed or base["to_0.9"]["median"] is None:
            verdicts[engine] = {"met": None, "why": "a setting never reached 0.9"}
            continue
        best = min(timed, key=timed.get)
        ratio = timed[best] / base["to_0.9"]["median"]
        spread = base["test"]["sd"] if base["test"] else 0.0
        within = abs(pruned[best]["test"]["mean"] - base["test"]["mean"]) <= max(spread, pruned[best]["test"]["sd"])
        epochs_base = base["epochs_to_0.9"]["median"]
        epochs_best = pruned[best]["epochs_to_0.9"]["median"]
        verdicts[engine] = {
            "best_pruned": best, "time_ratio": round(ratio, 2),
            "epochs_ratio": round(epochs_best / epochs_base, 2) if epochs_base and epochs_best else None,
            "test_within_spread": within, "met": ratio <= 0.5 and within,
        }
    return verdicts


def table(settings: dict) -> str:
    def cell(stat: dict | None, digits: int = 3) -> str:
        return "—" if stat is None else f"{stat['mean']:.{digits}f} ± {stat['sd']:.{digits}f}"

    def median_cell(entry: dict, digits: int = 1) -> str:
        return "—" if entry["median"] is None else f"{entry['median']:.{digits}f} ({entry['reached']})"

    lines = [
        "| setting | min to 0.8 | min to 0.9 | epochs to 0.8 | epochs to 0.9 | best val BCA | test BCA | epochs "
        "| pruned | search min |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for key, row in settings.items():
        lines.append(
            f"| {key} | {median_cell(row['to_0.8'])} | {median_cell(row['to_0.9'])} | "
            f"{median_cell(row['epochs_to_0.8'], 0)} | {median_cell(row['epochs_to_0.9'], 0)} | {cell(row['best_val'])} | "
            f"{cell(row['test'])} | {cell(row['epochs'], 0)} | {cell(row['pruned'], 1)} | {cell(row['search_minutes'], 1)} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
