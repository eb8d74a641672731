"""Reproduction report: the paper's Tables 3-6 from serbench results on the full EmoDB.

Runs (or, with ``--from DIR``, reads) the Ax, Hyperopt, Optuna, random and grid studies of
``jobs/*_emodb_whisper.yaml`` (the paper's 4-D space, 15 trials, offline Whisper
backbone), the leave-one-speaker-out job and the EmoDB -> RAVDESS transfer job, then
writes ``docs/results/emodb.md``: our tables beside the numbers the paper publishes, and
where the protocols differ. The raw results it used (``result.json`` and
``trials.jsonl`` of each job) are copied next to it, under ``docs/results/emodb/``.

    python bench/paper_tables.py                        # run everything (about 40 min on 2 cores)
    python bench/paper_tables.py --from results/paper   # tables from finished results

Runs go to ``--results`` (default ``results/paper``); a job whose result is already there
and complete is not run again unless ``--force``. Prints one JSON summary on stdout.

The jobs run on one Ray instance (``--ray-address``; default: a head started here on
127.0.0.1 with every available CPU, stopped at the end) with one CPU per trial: as many
jobs at a time as the instance has CPUs, longest first, each job ``serbench run
--backend ray`` with one trial in flight (the engines run as the paper ran them, one
trial after another), and the leave-one-speaker-out job with a slot per CPU, so its
folds run side by side on whatever CPUs the other jobs leave free. On small models two
one-CPU trials side by side get far more done than one trial on two CPUs, whose small
matrices keep the second core idle much of the time. The job files actually run are
written to ``<results>/jobs/``; each job's log to ``<results>/logs/<job>.log``. On a
shared machine start it inside a loopback-only network namespace
(``scripts/loopback-netns python bench/paper_tables.py``): Ray advertises the machine's
primary address.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
ENGINE_JOBS = {  # engine -> job, in the paper's order, then the baselines
    "ax": "ax_emodb_whisper",
    "hyperopt": "hyperopt_emodb_whisper",
    "optuna": "optuna_emodb_whisper",
    "random": "random_emodb_whisper",
    "grid": "grid_emodb_whisper",
}
# Minutes each job took on one core of a quiet 2-core machine: jobs start longest first,
# so the short ones fill in around the long ones (a job not listed here starts last).
ONE_CORE_MINUTES = {"ax_emodb_whisper": 19.6, "optuna_emodb_whisper": 16.2, "random_emodb_whisper": 13.8,
                    "grid_emodb_whisper": 12.3, "hyperopt_emodb_whisper": 8.2, "transfer_emodb_ravdess": 1.7,
                    "loso_emodb_whisper": 1.5}
LOSO_JOB = "loso_emodb_whisper"
TRANSFER_JOB = "transfer_emodb_ravdess"
THRESHOLDS = (0.8, 0.9)
PAPER_SOURCE = "https://arxiv.org/abs/2510.07052"
# What the paper states in its abstract (SpeechBrain wav2vec2-base IEMOCAP checkpoint,
# EmoDB, 8 CPU cores, 32 GB). Cells not listed here are "n/a" in our tables.
PAPER = {
    "ax": {"best_bca": 0.96, "minutes_to_best": 11.0},
    "hyperopt": {"best_bca": 0.97, "minutes_to_best": 15.0},
    "grid": {"0.9": {"trials": 143, "minutes": 1680.0}},
    "transfer_gain": {"RAVDESS": 0.26, "CREMA-D": 0.25},
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="the paper's tables from serbench results")
    parser.add_argument("--from", dest="source", type=Path, help="read finished results from this folder")
    parser.add_argument("--results", type=Path, default=REPO / "results" / "paper", help="where runs write")
    parser.add_argument("--output", type=Path, default=REPO / "docs" / "results" / "emodb.md")
    parser.add_argument("--force", action="store_true", help="rerun jobs whose results exist")
    parser.add_argument("--ray-address", default=None,
                        help="run the jobs on this Ray cluster (HOST:PORT; default: a head started here)")
    parser.add_argument("--note", default="", help="a remark printed under the title (e.g. how busy the machine was)")
    args = parser.parse_args(argv)

    from serbench.errors import UserError

    try:
        root = args.source
        if root is None:
            root = args.results
            runs = run_jobs(root, args.force, args.ray_address)
            if runs.seconds:
                runs.save(root)
        else:
            runs = Runs.load(root)
        results = read_results(root)
        raw = args.output.with_suffix("")
        keep_raw(root, results, raw)
        report = render(results, runs, raw.relative_to(args.output.parent), args.note)
    except UserError as exc:
        print(f"paper_tables: {exc}", file=sys.stderr)
        return 2
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(report, encoding="utf-8")
    print(json.dumps(summary(results, runs, args.output), indent=2))
    return 0


def all_jobs() -> list[str]:
    return [*ENGINE_JOBS.values(), LOSO_JOB, TRANSFER_JOB]


@dataclass
class Runs:
    """What this invocation ran: wall seconds per job, the Ray instance and its CPUs, and
    the wall clock of all."""

    seconds: dict[str, float] = field(default_factory=dict)
    ray: str = ""  # "a head started here" or the address given
    cpus: int = 0
    wall_seconds: float = 0.0

    FILE = "paper_tables_run.json"

    def save(self, root: Path) -> None:
        (root / self.FILE).write_text(json.dumps(asdict(self), indent=2), encoding="utf-8")

    @classmethod
    def load(cls, root: Path) -> Runs:
        """The record a run left in ``root``; empty when there is none (results made otherwise).
        Keys of older records (``lanes``) are ignored."""
        path = root / cls.FILE
        if not path.is_file():
            return cls()
        record = json.loads(path.read_text(encoding="utf-8"))
        return cls(**{key: value for key, value in record.items() if key in cls.__dataclass_fields__})


def run_jobs(root: Path, force: bool, ray_address: str | None = None) -> Runs:
    """Run every job not already complete in ``root`` (``serbench run --backend ray``)."""
    from serbench.errors import UserError
    from serbench.execution.limits import GIB, cpu_limit, memory_limit
    from serbench.spec import parse_job
    from serbench.spec.strict_yaml import load_yaml

    specs = {}
    for job in sorted(all_jobs(), key=lambda job: -ONE_CORE_MINUTES.get(job, 0.0)):
        done = root / job / "result.json"
        if done.is_file() and not force and json.loads(done.read_text())["status"] == "completed":
            print(f"paper_tables: {job}: already done, reading {done}", file=sys.stderr)
            continue
        path = REPO / "jobs" / f"{job}.yaml"
        specs[job] = load_yaml(path.read_text(encoding="utf-8"), path)  # strict: duplicate keys are errors
    if not specs:
        return Runs()
    cpus = max(1, int(cpu_limit().cpus))
    memory = memory_limit().bytes
    # one trial per CPU at a time: each gets an equal share of memory, at most what its job asks
    memory_gb = min(max(parse_job(spec).resources.memory_gb for spec in specs.values()),
                    memory / GIB / cpus * 0.6 if memory else 8.0)
    head = None
    environ = {**os.environ, "HF_HUB_OFFLINE": "1"}
    if ray_address is None:
        from ray_head import RayHead

        head = RayHead(root / "ray", cpus)
        head.start()
        ray_address = head.address
        environ.update(head.env)
    runs = Runs(ray=f"a Ray head started here ({cpus} CPUs)" if head else ray_address, cpus=cpus)

    def run(job: str) -> tuple[str, int]:
        began = time.perf_counter()
        parallel = cpus if job == LOSO_JOB else 1
        status = run_one(root, job, specs[job], ray_address, parallel, memory_gb, environ)
        runs.seconds[job] = time.perf_counter() - began
        print(f"paper_tables: {job}: exit {status} after {runs.seconds[job] / 60:.1f} min",
              file=sys.stderr, flush=True)
        return job, status

    began = time.perf_counter()
    try:
        with ThreadPoolExecutor(max_workers=min(cpus, len(specs))) as pool:
            outcomes = list(pool.map(run, specs))
    finally:
        if head is not None:
            head.stop()
    runs.wall_seconds = time.perf_counter() - began
    failed = [f"{job} (exit {status}, log {root / 'logs' / f'{job}.log'})" for job, status in outcomes if status]
    if failed:
        raise UserError(f"serbench run failed for {', '.join(failed)}")
    return runs


def run_one(
    root: Path, job: str, spec: dict, ray_address: str, parallel: int, memory_gb: float, environ: dict[str, str]
) -> int:
    """``serbench run`` of ``job`` (its ``spec`` as read from YAML) on the Ray instance,
    one CPU and ``memory_gb`` per trial, ``parallel`` trials in flight; its output goes to
    ``root/logs/<job>.log`` (stdout here carries only the JSON)."""
    spec = {**spec, "resources": {**spec.get("resources", {}), "cpus": 1, "memory_gb": round(memory_gb, 2)}}
    job_file = root / "jobs" / f"{job}.yaml"
    log = root / "logs" / f"{job}.log"
    for folder in (job_file.parent, log.parent):
        folder.mkdir(parents=True, exist_ok=True)
    job_file.write_text(yaml.safe_dump(spec, sort_keys=False), encoding="utf-8")
    command = [sys.executable, "-m", "serbench.cli", "run", str(job_file), "--out", str(root), "--force",
               "--backend", "ray", "--ray-address", ray_address, "--parallel", str(parallel)]
    print(f"paper_tables: running {job} on Ray ({parallel} in flight)", file=sys.stderr, flush=True)
    with log.open("w", encoding="utf-8") as output:
        return subprocess.run(command, env=environ, stdout=output, stderr=subprocess.STDOUT).returncode


def read_results(root: Path) -> dict:
    """``job -> Result`` for the jobs this report uses that have results (at least one
    engine job); a missing job is named on stderr and shown as not run."""
    from serbench.errors import UserError
    from serbench.leaderboard.board import load_results

    found = {run.result.job: run.result for run in load_results(root).runs}
    engines = [job for job in ENGINE_JOBS.values() if job in found]
    if not engines:
        raise UserError(f"{root}: no result of any engine job ({', '.join(ENGINE_JOBS.values())})")
    missing = [job for job in all_jobs() if job not in found]
    if missing:
        print(f"paper_tables: warning: no result for {', '.join(missing)}; their rows say 'not run'",
              file=sys.stderr)
    return {job: found[job] for job in all_jobs() if job in found}


def keep_raw(root: Path, results: dict, raw: Path) -> None:
    """Copy each job's result.json and trials.jsonl to ``raw/<job>/``."""
    for job in results:
        target = raw / job
        target.mkdir(parents=True, exist_ok=True)
        for name in ("result.json", "trials.jsonl"):
            source = root / job / name
            if source.is_file() and source.resolve() != (target / name).resolve():
                (target / name).write_text(_portable(source.read_text(encoding="utf-8")), encoding="utf-8")


def _portable(text: str) -> str:
    """``text`` with this machine's data and model folders written as ``$SERBENCH_DATA``
    and ``$SERBENCH_MODELS``, so the kept results name no machine path."""
    for variable in ("SERBENCH_DATA", "SERBENCH_MODELS"):
        folder = os.environ.get(variable)
        if folder:
            text = text.replace(json.dumps(str(Path(folder).resolve()))[1:-1], f"${variable}")
    return text


# --- the tables -----------------------------------------------------------------------


def render(results: dict, runs: Runs, raw: Path, note: str = "") -> str:
    engines = {engine: results.get(job) for engine, job in ENGINE_JOBS.items()}
    first = next(result for result in engines.values() if result is not None)
    spec = first.spec
    backbone = first.backbone
    lines = [
        "# serbench on the Berlin EmoDB: the paper's tables, measured",
        "",
        "Written by `python bench/paper_tables.py` "
        f"on {first.finished_at[:10]} with serbench {first.versions.serbench}, torch "
        f"{first.versions.torch}; per job {_count(first.resources.torch_threads, 'torch thread')} "
        f"and {_count(first.resources.cpus_available, 'CPU')} available. Raw results: [`{raw}/`]({raw}/).",
        "Paper: Golbaghi & Zhou, *Enhancing Speech Emotion Recognition via Fine-Tuning "
        f"Pre-Trained Models and Hyper-Parameter Optimisation* ({PAPER_SOURCE}).",
        "",
        *([f"**Note.** {note}", ""] if note else []),
        "## How the protocols differ",
        "",
        "| | the paper | serbench here |",
        "| --- | --- | --- |",
        "| backbone | SpeechBrain wav2vec2-base fine-tuned on IEMOCAP, whole encoder trained after `unfreeze` "
        f"| `{backbone.get('source')}` (offline), options `{json.dumps(backbone.get('options'))}` |",
        "| data | EmoDB, 535 utterances, 7 classes | the same "
        f"({first.data.utterances} utterances, {len(first.data.classes)} classes) |",
        "| selection | tuned on the split it reports | stratified 80/20 test split, never used for "
        f"selection; trials scored on a validation split (20 % of the rest: {first.folds[0].sizes}) |",
        "| search | 4-D space, 15 trials, batch 1, AdamW, cosine LR, CE | the same space and budget "
        f"(`{json.dumps(spec['search_space'])}`), seed {spec['seed']} |",
        "| hardware | 8 CPU cores, 32 GB | "
        f"{_count(first.resources.cpus_available, 'CPU')} and {first.resources.memory_requested_gb:g} GB per job"
        f"{_execution_text(runs)} |",
        "",
        "Times are minutes of search (the trials) since the study started; the final model's "
        "test evaluation is not included. 𝓔 = best validation BCA / minutes to reach it (the "
        "paper's efficiency). Paper cells we could not take from the paper's text are n/a.",
        "",
    ]
    lines += table3(engines) + table4(engines) + table5(engines) + table6(results.get(TRANSFER_JOB))
    lines += loso(results.get(LOSO_JOB))
    lines += run_times(results, runs)
    return "\n".join(lines) + "\n"


def table3(engines: dict) -> list[str]:
    lines = ["## Table 3: time to reach a validation BCA", "",
             "| engine | " + " | ".join(f"≥ {t} (ours)" for t in THRESHOLDS) + " | ≥ 0.9 (paper) |",
             "| --- | " + " | ".join("---" for _ in THRESHOLDS) + " | --- |"]
    for engine, result in engines.items():
        if result is None:
            lines.append(f"| {engine} | " + " | ".join("not run" for _ in THRESHOLDS) + " | |")
            continue
        cells = []
        for threshold in THRESHOLDS:
            hit = next((h for h in result.thresholds if h.threshold == threshold), None)
            cells.append(f"{hit.minutes:.1f} min, trial {hit.trial + 1}" if hit and hit.reached else "not reached")
        paper = PAPER.get(engine, {}).get("0.9")
        cells.append(f"{paper['minutes']:g} min, trial {paper['trials']}" if paper else "n/a")
        lines.append(f"| {engine} | " + " | ".join(cells) + " |")
    return lines + ["", "Trials are counted from 1.", ""]


def table4(engines: dict) -> list[str]:
    names = ["lr", "epochs", "unfreeze", "maxlen"]
    lines = ["## Table 4: best hyperparameters (chosen on validation BCA)", "",
             "| engine | best trial | " + " | ".join(names) + " |",
             "| --- | --- | " + " | ".join("---" for _ in names) + " |"]
    for engine, result in engines.items():
        best = result and result.best
        if best is None:
            lines.append(f"| {engine} | {'none' if result else 'not run'} | " + " | ".join("" for _ in names) + " |")
            continue
        values = [_param(best.params.get(name)) for name in names]
        lines.append(f"| {engine} | {best.trial + 1} | " + " | ".join(values) + " |")
    return lines + ["", "The paper's chosen values: n/a (not in its abstract).", ""]


def table5(engines: dict) -> list[str]:
    lines = ["## Table 5: best BCA, time to best, efficiency", "",
             "| engine | best val BCA | test BCA | minutes to best | 𝓔 (BCA/min) | search minutes "
             "| paper: best BCA | paper: minutes | paper: 𝓔 |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for engine, result in engines.items():
        if result is None:
            lines.append(f"| {engine} | not run | | | | | | | |")
            continue
        best, test = result.best, result.test
        paper = PAPER.get(engine, {})
        paper_cells = ["n/a", "n/a", "n/a"]
        if "best_bca" in paper:
            paper_cells = [f"{paper['best_bca']:.2f}", f"{paper['minutes_to_best']:g}",
                           f"{paper['best_bca'] / paper['minutes_to_best']:.3f}"]
        lines.append(
            f"| {engine} | {_num(best and best.val_bca)} | {_num(test and test.bca)} | "
            f"{_num(best and best.minutes, 1)} | {_num(best and best.efficiency)} | "
            f"{result.search_seconds / 60:.1f} | " + " | ".join(paper_cells) + " |"
        )
    tests = [result.test.n for result in engines.values() if result is not None and result.test is not None]
    return lines + ["", "Our test BCA is the chosen configuration retrained on train + validation and "
                    f"scored once on the held-out test split (n = {tests[0] if tests else 0}).", ""]


def table6(transfer) -> list[str]:
    lines = ["## Table 6: zero-shot transfer from EmoDB", ""]
    if transfer is None:
        return lines + [f"Not run ({TRANSFER_JOB}).", ""]
    lines += [
             "| model | target | n | BCA | accuracy | dropped | paper |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    source = f"{transfer.job} (test BCA on EmoDB {_num(transfer.test and transfer.test.bca)})"
    for name, scores in transfer.transfer.items():
        dropped = ", ".join(f"{label} {count}" for label, count in scores.dropped.items()) or "none"
        gain = PAPER["transfer_gain"].get("RAVDESS" if "ravdess" in name.lower() else "CREMA-D")
        lines.append(f"| {source} | {name} | {scores.n} | {scores.bca:.3f} | {scores.accuracy:.3f} | "
                     f"{dropped} | +{gain} accuracy over the un-tuned checkpoint (full corpus) |")
    return lines + [
        "",
        "The paper compares its tuned model with the IEMOCAP checkpoint's own 4-class head "
        "applied zero-shot. A Whisper encoder has no emotion head, so we report the tuned "
        "model only, on the 32-file RAVDESS sample available here (2 actors; calm mapped to "
        "neutral, surprised dropped), not the full corpus. CREMA-D audio is not available here.",
        "",
    ]


def loso(result) -> list[str]:
    if result is None:
        return ["## Speaker-independent: leave one speaker out", "", f"Not run ({LOSO_JOB}).", ""]
    from serbench.cli.console import fold_score

    summary = result.test_summary
    per_fold = "; ".join(fold_score(fold, result.data.classes) for fold in result.folds)
    return [
        "## Speaker-independent: leave one speaker out", "",
        "| job | folds | test BCA (mean ± sd) | mean accuracy | per fold (test speaker: BCA) |",
        "| --- | --- | --- | --- | --- |",
        f"| {result.job} | {summary.n_folds} | {summary.bca_mean:.3f} ± {summary.bca_sd:.3f} | "
        f"{summary.accuracy_mean:.3f} | {per_fold} |",
        "",
        "Each fold holds out one of EmoDB's 10 speakers for testing and selects on two other "
        "speakers; the paper reports no speaker-independent figure. A fold's BCA is over the "
        "classes its speaker has (a fold whose speaker lacks some says which), so chance differs "
        "between folds.",
        "",
    ]


def run_times(results: dict, runs: Runs) -> list[str]:
    lines = ["## Run times", "", "| job | trials | status | torch threads | wall minutes |",
             "| --- | --- | --- | --- | --- |"]
    for job, result in results.items():
        lines.append(f"| {job} | {len(result.trials)} | {result.status} | {result.resources.torch_threads} "
                     f"| {result.wall_seconds / 60:.1f} |")
    total = sum(result.wall_seconds for result in results.values()) / 60
    lines += ["", f"Total: {total:.1f} minutes of studies."]
    if runs.seconds:
        lines.append(f"This report's own run: {len(runs.seconds)} jobs{_execution_text(runs)}, "
                     f"{runs.wall_seconds / 60:.1f} minutes of wall clock from the first job's start "
                     "to the last one's end.")
    return lines


def _execution_text(runs: Runs) -> str:
    if not runs.cpus:
        return ""
    return (f"; on one Ray instance ({runs.ray}), one CPU per trial, {runs.cpus} trials at a time "
            "(jobs side by side, the LOSO job's folds in parallel)")


def _count(number: float, noun: str) -> str:
    return f"{number:g} {noun}{'' if number == 1 else 's'}"


def summary(results: dict, runs: Runs, output: Path) -> dict:
    engines = {}
    for engine, job in ENGINE_JOBS.items():
        result = results.get(job)
        if result is None:
            engines[engine] = None
            continue
        engines[engine] = {
            "best_val_bca": result.best and round(result.best.val_bca, 4),
            "test_bca": result.test and round(result.test.bca, 4),
            "minutes_to_best": result.best and round(result.best.minutes, 2),
            "efficiency": result.best and result.best.efficiency and round(result.best.efficiency, 4),
            "minutes_to_0.9": next((h.minutes for h in result.thresholds if h.threshold == 0.9 and h.reached), None),
            "wall_minutes": round(result.wall_seconds / 60, 2),
        }
    loso_summary = results[LOSO_JOB].test_summary if LOSO_JOB in results else None
    transfer = results.get(TRANSFER_JOB)
    return {
        "output": str(output),
        "engines": engines,
        "missing": [job for job in all_jobs() if job not in results],
        "loso_test_bca": loso_summary and [round(loso_summary.bca_mean, 4), round(loso_summary.bca_sd, 4)],
        "transfer_bca": transfer and {k: round(v.bca, 4) for k, v in transfer.transfer.items()},
        "studies_minutes": round(sum(r.wall_seconds for r in results.values()) / 60, 1),
        "run_minutes": round(runs.wall_seconds / 60, 1) if runs.seconds else None,
        "run_minutes_per_job": {job: round(seconds / 60, 1) for job, seconds in runs.seconds.items()},
        "ray": runs.ray,
        "cpus": runs.cpus,
    }


def _num(value: float | None, digits: int = 3) -> str:
    return "—" if value is None else f"{value:.{digits}f}"


def _param(value) -> str:
    if isinstance(value, float):
        return f"{value:.2e}"
    return "" if value is None else str(value)


if __name__ == "__main__":
    sys.exit(main())
