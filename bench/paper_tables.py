"""Reproduction report: the paper's Tables 3-6 from serbench results on the full EmoDB,
over seeds, with intervals, and no cell chosen on its own test data.

Runs (or, with ``--from DIR``, reads) these studies, each once per seed of ``--seeds``
(default 0,1,2,3,4), then writes ``docs/results/emodb.md``:

- the five engines of ``jobs/{ax,hyperopt,optuna,random,grid}_emodb_whisper.yaml`` (the
  paper's 4-D space, 15 trials, offline Whisper backbone; holdout, selected on validation);
- the library-default variants ``jobs/{hyperopt,optuna}_default_emodb_whisper.yaml``, as
  rows of their own;
- each engine job again with ``select_on: test`` (the paper's optimistic protocol: trials
  scored on the test split they are reported on), in a table of its own, never ranked
  with the honest rows;
- ``jobs/speaker_holdout_emodb_whisper.yaml`` (test and validation speakers held out),
  ``jobs/loso_emodb_whisper.yaml`` (nested leave-one-speaker-out, a search per fold), and
  the transfer jobs ``jobs/transfer_emodb_ravdess.yaml`` (tuned, adapt none/corpus/speaker)
  and ``jobs/transfer_untuned_emodb_ravdess.yaml`` (default hyperparameters, no search).

Every statistic comes from the leaderboard (``serbench.leaderboard.board``: rows over
seeds, medians of time to threshold, 𝓔 and ALC, ``compare_engines``; ``stats``: the
bootstrap interval). The raw ``result.json`` and ``trials.jsonl`` of each job and the job
files as run are copied next to the report, under ``docs/results/emodb/``.

    python bench/paper_tables.py --plan                 # the jobs, their estimated minutes, the wall clock
    python bench/paper_tables.py                        # run everything (--plan: about 9 h on 2 cores)
    python bench/paper_tables.py --other-seeds 0        # engines x 5 seeds, the other studies once (--plan: about 4.7 h on 2 cores)
    python bench/paper_tables.py --from results/paper   # tables from finished results
    python bench/paper_tables.py --quick --results /tmp/paper-quick   # every table end to end, minutes

Job ``<job>`` with seed ``k`` runs as ``<job>_seed<k>`` (``<job>_optimistic_seed<k>`` for
the ``select_on: test`` copy): a copy of the committed job file with only ``name`` and
``seed`` changed (and ``select_on``; and ``resources``, one CPU per trial), written to
``<results>/jobs/``; its log goes to ``<results>/logs/``. Runs go to ``--results``
(default ``results/paper``); a job whose result is there and complete is not run again
unless ``--force``. Prints one JSON summary on stdout.

The jobs run on one Ray instance (``--ray-address``; default: a head started here on
127.0.0.1 with ``--cpus`` CPUs, default every available one, stopped at the end), one CPU
per trial, as many jobs at a time as there are CPUs, longest first: each job ``serbench
run --backend ray`` with one trial in flight (the engines run as the paper ran them, one
trial after another), except the LOSO jobs (:data:`WIDE_JOBS`): each runs alone with a
slot per CPU, once the jobs before it have ended. All of them share one persistent
feature cache, ``SERBENCH_CACHE=<results>/feature-cache``: an entry is keyed on the clip's
audio, the backbone's options and the cut length (``serbench/training/features.py``), so
seeds and protocols reuse each other's frozen-prefix states without changing a score.

``--quick`` runs every table end to end in minutes: seeds 0 and 1, at most 3 trials per
search, a stratified subset of EmoDB (``dataset.subset: {per_class: 8}``; the LOSO job
with 12 per class and 2 folds); results and report under ``--results`` (default
``results/paper-quick``), never ``docs/``. Its numbers say nothing about the engines.

On a shared machine start it inside a loopback-only network namespace
(``scripts/loopback-netns python bench/paper_tables.py``): Ray advertises the machine's
primary address.
"""

from __future__ import annotations

import argparse
import copy
import heapq
import itertools
import json
import math
import os
import re
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
SEEDS = (0, 1, 2, 3, 4)
ENGINE_JOBS = {  # engine -> job, in the paper's order, then the baselines
    "ax": "ax_emodb_whisper",
    "hyperopt": "hyperopt_emodb_whisper",
    "optuna": "optuna_emodb_whisper",
    "random": "random_emodb_whisper",
    "grid": "grid_emodb_whisper",
}
DEFAULT_JOBS = {  # library-default variant -> the tuned-start-up job it is compared with
    "hyperopt_default_emodb_whisper": "hyperopt_emodb_whisper",
    "optuna_default_emodb_whisper": "optuna_emodb_whisper",
}
LEVERS_JOB = "levers_emodb_whisper"  # beyond the paper's space: frozen whisper-base + the levers
SPEAKER_JOB = "speaker_holdout_emodb_whisper"
LOSO_JOB = "loso_emodb_whisper"
LOSO_CV_JOB = "loso_cv_emodb_whisper"  # the same with three validation folds per trial
# Jobs that run their folds side by side, one per CPU: each runs alone, on every CPU (beside
# another job, the folds' trials would hold the memory that job's trials wait for).
WIDE_JOBS = (LOSO_JOB, LOSO_CV_JOB)
TRANSFER_JOB = "transfer_emodb_ravdess"
UNTUNED_JOB = "transfer_untuned_emodb_ravdess"
TRANSFER_LEVERS_JOB = "transfer_levers_emodb_ravdess"  # the levers' frozen whisper-base and head search
OPTIMISTIC = "_optimistic"  # a group's suffix for the select_on: test copy of an engine job
NAME = re.compile(r"^(?P<group>.+)_seed(?P<seed>\d+)$")  # a job as run: <group>_seed<k>

# Minutes each job took on one core of a quiet 2-core machine (cold cache, 15 trials, full
# EmoDB; serbench run one trial at a time); jobs start longest first.
MEASURED_MINUTES = {"ax_emodb_whisper": 19.6, "optuna_emodb_whisper": 16.2, "random_emodb_whisper": 13.8,
                    "grid_emodb_whisper": 12.3, "hyperopt_emodb_whisper": 8.2,
                    # 10 folds x 20 head-only trials on cached whisper-base features (four
                    # backbone configurations, augmented copies included), folds two at a
                    # time on 2 CPUs: 26.1 minutes of wall clock, for about 9 of them beside
                    # two levers jobs (2026-12-03, seed 0); alone, warm, 7.4, 7.0, 12.1 and
                    # 12.8 (2026-12-04, seeds 1-4); the mean of the five, in one-core minutes
                    "loso_emodb_whisper": 26.2,
                    # the same with three validation folds per trial: 35.0 minutes, alone
                    # (2026-12-03); 22.1 alone, cold, on a faster day (2026-12-04); the mean
                    LOSO_CV_JOB: 57.1,
                    # 20 head-only trials on cached whisper-base features (four backbone
                    # configurations, augmented copies included): 3.9 minutes cold, 1.8-2.6 warm
                    # (2026-12-02); with speaker_enrolment searched too, two at a time on 2
                    # CPUs, 7.2-8.8 for the first three, 2.5-5.5 for the last two (2026-12-03)
                    LEVERS_JOB: 7.3,
                    # the levers' search without speaker_norm, three transfer scorings: 2.8
                    # minutes warm, alone; seeds 1-4 two at a time on 2 CPUs 1.7-7.7 (2026-12-03)
                    TRANSFER_LEVERS_JOB: 4.6,
                    # seeds 1-4, two at a time on 2 CPUs (2026-12-03): 7.8-14.5 and 10.3-14.9
                    "hyperopt_default_emodb_whisper": 11.6, "optuna_default_emodb_whisper": 12.8,
                    # seeds 1-4, two at a time on 2 CPUs (2026-12-03): 10.6-12.4, 8.5-16.3, 1.1-1.4
                    SPEAKER_JOB: 11.5, TRANSFER_JOB: 11.4, UNTUNED_JOB: 1.3}
# Not measured at full size: estimates, printed as such by --plan (a new job's row goes
# here until it has run).
GUESSED_MINUTES: dict[str, float] = {}
# A select_on: test trial trains on train + validation (428 clips) instead of train (342).
OPTIMISTIC_FACTOR = 428 / 342
# One-core minutes a job saves when another job with its backbone already filled the shared
# feature cache: the encoding of every clip's frozen prefix at the six maxlen values, which
# a 15-trial search nearly always visits all of. Measured: the six-trial grid over maxlen
# alone (1 epoch, unfreeze 0) took 221 s of CPU cold and 131 s warm, same scores; the
# frozen whisper-base of the levers job: 2.3 minutes cold, 0.9-1.4 warm. Other backbones:
# no saving assumed.
WARM_SAVING_MINUTES = {"openai/whisper-tiny.en": 1.5, "openai/whisper-base": 1.0}
QUICK_SEEDS = (0, 1)
QUICK_TRIALS = 3
QUICK_SUBSET = {"per_class": 8}
QUICK_LOSO = {"folds": ["03", "08"], "subset": {"per_class": 12}}  # 7 training speakers: every class
QUICK_MINUTES = 1.0  # one-core minutes of a --quick job (startup dominates)
THRESHOLDS = (0.8, 0.9)
PARAMS = ("lr", "epochs", "unfreeze", "maxlen")
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
    args = parse_args(argv)
    from serbench.errors import UserError

    try:
        cpus = args.cpus or available_cpus()
        plan = [job for job in plan_jobs(args.seeds, args.quick, args.other_seeds)
                if args.only is None or job.group in args.only]
        if args.plan:
            print(plan_text(plan, cpus, args.quick, done_jobs(args.results, args), cache_filled(args.results)))
            return 0
        root = args.source
        if root is None:
            root = args.results
            runs = run_jobs(root, plan, args, cpus)
        else:
            runs = Runs.load(root)
        report = read_report(root)
        raw = args.output.with_suffix("")
        keep_raw(root, report, raw)
        text = render(report, runs, raw.relative_to(args.output.parent), args.note)
    except UserError as exc:
        print(f"paper_tables: {exc}", file=sys.stderr)
        return 2
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(text, encoding="utf-8")
    print(json.dumps(summary(report, runs, args.output), indent=2))
    return 0


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """The command line; ``--quick`` changes the defaults of ``--seeds``, ``--results`` and
    ``--output`` (the report goes to ``<results>/emodb.md``, never to ``docs/``)."""
    parser = argparse.ArgumentParser(description="the paper's tables from serbench results")
    parser.add_argument("--from", dest="source", type=Path, help="read finished results from this folder")
    parser.add_argument("--results", type=Path, help="where runs write (default results/paper)")
    parser.add_argument("--output", type=Path, help="the report (default docs/results/emodb.md)")
    parser.add_argument("--seeds", type=parse_seeds, help="comma-separated seeds (default 0,1,2,3,4)")
    parser.add_argument("--other-seeds", type=parse_seeds, default=None,
                        help="seeds of the studies other than the honest engine jobs and their library "
                        "defaults: optimistic copies, speaker-holdout, LOSO, transfer (default: --seeds)")
    parser.add_argument("--quick", action="store_true",
                        help="seeds 0,1, 3 trials, a stratified EmoDB subset: every table in minutes")
    parser.add_argument("--plan", action="store_true", help="print the jobs and their estimated minutes; run nothing")
    parser.add_argument("--cpus", type=int, default=None,
                        help="CPUs of the Ray head started here and of --plan's estimate (default: all available)")
    parser.add_argument("--only", type=parse_groups, default=None,
                        help="comma-separated report rows to run (e.g. ax_emodb_whisper,loso_emodb_whisper); "
                        "the report is still built from every result in --results, so a long plan can run in parts")
    parser.add_argument("--force", action="store_true", help="rerun jobs whose results exist")
    parser.add_argument("--ray-address", default=None,
                        help="run the jobs on this Ray cluster (HOST:PORT; default: a head started here)")
    parser.add_argument("--note", default="", help="a remark printed under the title (e.g. how busy the machine was)")
    args = parser.parse_args(argv)
    args.seeds = args.seeds or (QUICK_SEEDS if args.quick else SEEDS)
    args.results = args.results or REPO / "results" / ("paper-quick" if args.quick else "paper")
    if args.output is None:
        args.output = (args.source or args.results) / "emodb.md" if args.quick else REPO / "docs/results/emodb.md"
    return args


def parse_seeds(text: str) -> tuple[int, ...]:
    """``"0,1,2"`` -> ``(0, 1, 2)``: distinct non-negative integers, in the order given."""
    try:
        seeds = tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: seeds are comma-separated integers") from None
    if not seeds or len(set(seeds)) != len(seeds) or min(seeds) < 0:
        raise argparse.ArgumentTypeError(f"{text!r}: give distinct non-negative seeds")
    return seeds


def parse_groups(text: str) -> frozenset[str]:
    """``"ax_emodb_whisper,loso_emodb_whisper"`` -> those report rows; each must be one of
    :func:`groups`."""
    chosen = frozenset(part.strip() for part in text.split(",") if part.strip())
    unknown = sorted(chosen - set(groups()))
    if not chosen or unknown:
        raise argparse.ArgumentTypeError(f"{', '.join(unknown) or repr(text)}: not a row of the report "
                                         f"(one of {', '.join(groups())})")
    return chosen


def available_cpus() -> int:
    from serbench.execution.limits import cpu_limit

    return max(1, int(cpu_limit().cpus))


# --- what runs ------------------------------------------------------------------------


def base_jobs() -> list[str]:
    """Every committed job the report uses, in the report's order."""
    return [*ENGINE_JOBS.values(), *DEFAULT_JOBS, LEVERS_JOB, SPEAKER_JOB, LOSO_JOB, LOSO_CV_JOB, TRANSFER_JOB, UNTUNED_JOB,
            TRANSFER_LEVERS_JOB]


def groups() -> list[str]:
    """Every row of the report: the base jobs, and each engine job's optimistic copy."""
    return [*base_jobs(), *(job + OPTIMISTIC for job in ENGINE_JOBS.values())]


@dataclass
class Planned:
    """One job to run: the committed ``base`` job with ``seed`` (and ``select_on: test``
    when ``optimistic``); ``minutes``: its estimated one-core minutes with a cold cache."""

    base: str
    seed: int
    optimistic: bool
    minutes: float
    quick: bool = False

    @property
    def group(self) -> str:
        return self.base + (OPTIMISTIC if self.optimistic else "")

    @property
    def name(self) -> str:
        return f"{self.group}_seed{self.seed}"

    @property
    def guessed(self) -> bool:
        return not self.quick and self.base not in MEASURED_MINUTES


def plan_jobs(seeds: tuple[int, ...], quick: bool = False, other_seeds: tuple[int, ...] | None = None) -> list[Planned]:
    """Every group x seed, longest (estimated) first, seeds in the order given: the honest
    engine jobs, their library-default variants and the levers job once per seed of
    ``seeds``, the other groups (optimistic copies, speaker-holdout, LOSO, transfer) once per seed of
    ``other_seeds`` (default: all of ``seeds``)."""
    plan = []
    seeded = {*ENGINE_JOBS.values(), *DEFAULT_JOBS, LEVERS_JOB}
    for group in groups():
        for seed in seeds if group in seeded or other_seeds is None else other_seeds:
            optimistic = group.endswith(OPTIMISTIC)
            base = group.removesuffix(OPTIMISTIC)
            minutes = QUICK_MINUTES if quick else MEASURED_MINUTES.get(base) or GUESSED_MINUTES[base]
            plan.append(Planned(base, seed, optimistic, minutes * (OPTIMISTIC_FACTOR if optimistic else 1), quick))
    return sorted(plan, key=lambda job: -job.minutes)


def job_spec(job: Planned) -> dict:
    """The committed job file of ``job.base`` (strict YAML) with ``name`` and ``seed`` set
    (``select_on: test`` when optimistic); ``--quick`` also cuts trials and data."""
    from serbench.spec.strict_yaml import load_yaml

    path = REPO / "jobs" / f"{job.base}.yaml"
    spec = load_yaml(path.read_text(encoding="utf-8"), path)  # strict: duplicate keys are errors
    spec = {**spec, "name": job.name, "seed": job.seed}
    if job.optimistic:
        spec["select_on"] = "test"
    return quick_spec(spec) if job.quick else spec


def quick_spec(spec: dict) -> dict:
    """``spec`` cut for ``--quick``: at most :data:`QUICK_TRIALS` trials, a stratified
    subset (:data:`QUICK_SUBSET`; LOSO: :data:`QUICK_LOSO`, 12 per class and 2 folds)."""
    spec = copy.deepcopy(spec)
    spec["budget"] = {**spec["budget"], "trials": min(spec["budget"]["trials"], QUICK_TRIALS)}
    dataset = spec["dataset"]
    if dataset.get("protocol", {}).get("name") == "loso":
        dataset["protocol"] = {**dataset["protocol"], "folds": QUICK_LOSO["folds"]}
        dataset["subset"] = QUICK_LOSO["subset"]
    else:
        dataset["subset"] = QUICK_SUBSET
    return spec


def backbone_key(job: Planned) -> str:
    """Jobs with equal keys share feature-cache entries (same backbone and options)."""
    from serbench.spec.strict_yaml import load_yaml

    path = REPO / "jobs" / f"{job.base}.yaml"
    return json.dumps(load_yaml(path.read_text(encoding="utf-8"), path)["backbone"], sort_keys=True)


@dataclass
class Slot:
    """A job's place in the estimated schedule (minutes from the start)."""

    job: Planned
    start: float
    end: float
    warm: bool
    cpus: int = 1  # CPUs the job holds from start to end

    @property
    def core_minutes(self) -> float:
        return (self.end - self.start) * self.cpus


def job_cpus(job: Planned, cpus: int) -> int:
    """The CPUs ``job`` runs on: all ``cpus`` for a job of :data:`WIDE_JOBS`, else one."""
    return max(1, cpus) if job.base in WIDE_JOBS else 1


def schedule(plan: list[Planned], cpus: int, done: Sequence[Planned] = ()) -> list[Slot]:
    """The order :func:`run_jobs` follows, simulated: ``cpus`` jobs at a time, the next job
    in ``plan`` starting when one ends; a job of :data:`WIDE_JOBS` starts when every job
    before it has ended and holds every CPU (its one-core minutes spread over them). A job
    whose backbone some job finished before it started (or a job already ``done``, which
    filled the shared cache) runs with a warm cache (:data:`WARM_SAVING_MINUTES` fewer
    minutes, at most half)."""
    keys = {job.base: backbone_key(job) for job in [*plan, *done]}
    lanes = [0.0] * max(1, cpus)
    finished: dict[str, float] = {keys[job.base]: 0.0 for job in done}  # backbone -> first end
    slots = []
    for job in plan:
        width = job_cpus(job, cpus)
        start = max(lanes) if width > 1 else heapq.heappop(lanes)
        warm = finished.get(keys[job.base], math.inf) <= start
        saving = 0.0 if job.quick or not warm else WARM_SAVING_MINUTES.get(json.loads(keys[job.base])["source"], 0.0)
        end = start + max(job.minutes - saving, job.minutes / 2) / width
        finished[keys[job.base]] = min(finished.get(keys[job.base], math.inf), end)
        if width > 1:
            lanes = [end] * len(lanes)
        else:
            heapq.heappush(lanes, end)
        slots.append(Slot(job, start, end, warm, width))
    return slots


def done_jobs(root: Path, args: argparse.Namespace) -> list[Planned]:
    """The jobs of the whole plan of ``args`` (every row, ``--only`` or not) whose study in
    ``root`` completed: a run skips them, and their backbones' features are in the shared
    cache. None with ``--force``."""
    if args.force:
        return []
    done = []
    for job in plan_jobs(args.seeds, args.quick, args.other_seeds):
        result = root / job.name / "result.json"
        if result.is_file() and json.loads(result.read_text(encoding="utf-8"))["status"] == "completed":
            done.append(job)
    return done


def cache_filled(root: Path) -> bool:
    """Whether ``root``'s shared feature cache holds entries. Raw results kept without it
    (``docs/results/emodb/``, copied to a new machine) have done jobs but a cold cache."""
    cache = root / "feature-cache"
    return cache.is_dir() and any(cache.iterdir())


def plan_text(plan: list[Planned], cpus: int, quick: bool, done: Sequence[Planned] = (),
              warm: bool = True) -> str:
    """What ``--plan`` prints: each job of ``plan`` still to run with its estimate, the
    totals, and the jobs of ``plan`` already ``done`` (a run would only read their results).
    The done jobs warm the estimate of the rest only when their features are still there
    (``warm``: see :func:`cache_filled`)."""
    names = {job.name for job in done}
    slots = schedule([job for job in plan if job.name not in names], cpus, done if warm else ())
    lines = [f"{'job':<46} {'min':>6} {'start':>7} {'end':>7}  cache  estimate"]
    for slot in slots:
        minutes = slot.core_minutes
        source = "quick" if quick else ("guessed" if slot.job.guessed else "measured")
        lines.append(f"{slot.job.name:<46} {minutes:6.1f} {slot.start:7.1f} {slot.end:7.1f}  "
                     f"{'warm' if slot.warm else 'cold':<5}  {source}")
    core = sum(slot.core_minutes for slot in slots)
    wall = max((slot.end for slot in slots), default=0.0)
    guessed = sum(slot.core_minutes for slot in slots if slot.job.guessed)
    lines += [f"{job.name:<46} {'done':>6}" for job in plan if job.name in names]
    lines += ["", f"{len(slots)} job{'' if len(slots) == 1 else 's'} to run, {core:.0f} one-core minutes ({guessed:.0f} of them guessed, not measured); "
              f"on {cpus} CPUs about {wall:.0f} minutes ({wall / 60:.1f} h) of wall clock, longest first."]
    return "\n".join(lines)


@dataclass
class Runs:
    """What was run into a results folder: wall seconds per job, the Ray instance and its
    CPUs, the wall clock of all, and the wall clock :func:`schedule` estimated. A plan run in
    parts (``--only``, or again after an interruption) adds to the record: ``parts`` counts
    the invocations that ran something, and the wall clocks are their sums."""

    seconds: dict[str, float] = field(default_factory=dict)
    ray: str = ""  # "a head started here" or the address given
    cpus: int = 0
    wall_seconds: float = 0.0
    estimated_minutes: float = 0.0
    cache: str = ""
    parts: int = 1

    FILE = "paper_tables_run.json"

    def save(self, root: Path) -> None:
        """Write the record to ``root``, added to the one an earlier part left there."""
        earlier = Runs.load(root)
        merged = self
        if earlier.seconds:
            merged = Runs(seconds={**earlier.seconds, **self.seconds}, ray=self.ray, cpus=self.cpus,
                          wall_seconds=earlier.wall_seconds + self.wall_seconds,
                          estimated_minutes=earlier.estimated_minutes + self.estimated_minutes,
                          cache=self.cache, parts=earlier.parts + self.parts)
        (root / self.FILE).write_text(json.dumps(asdict(merged), indent=2), encoding="utf-8")

    @classmethod
    def load(cls, root: Path) -> Runs:
        """The record a run left in ``root``; empty when there is none (results made otherwise).
        Keys of older records (``lanes``) are ignored."""
        path = root / cls.FILE
        if not path.is_file():
            return cls()
        record = json.loads(path.read_text(encoding="utf-8"))
        return cls(**{key: value for key, value in record.items() if key in cls.__dataclass_fields__})


def run_jobs(root: Path, plan: list[Planned], args: argparse.Namespace, cpus: int) -> Runs:
    """Run every job of ``plan`` not already complete in ``root`` (``serbench run
    --backend ray``), in plan order, ``cpus`` at a time, sharing one feature cache; the
    record of what ran is added to ``root``'s and returned (the earlier record alone when
    nothing had to run)."""
    from serbench.errors import UserError
    from serbench.execution.limits import GIB, memory_limit
    from serbench.spec import parse_job

    done = done_jobs(root, args)
    warm = cache_filled(root)
    names = {job.name for job in done}
    for job in plan:
        if job.name in names:
            print(f"paper_tables: {job.name}: already done, reading {root / job.name / 'result.json'}", file=sys.stderr)
    todo = {job.name: (job, job_spec(job)) for job in plan if job.name not in names}
    if not todo:
        return Runs.load(root)
    memory = memory_limit().bytes
    # one trial per CPU at a time: each gets an equal share of memory, at most what its job asks
    memory_gb = min(max(parse_job(spec).resources.memory_gb for _, spec in todo.values()),
                    memory / GIB / cpus * 0.6 if memory else 8.0)
    cache = root / "feature-cache"
    cache.mkdir(parents=True, exist_ok=True)
    environ = {**os.environ, "HF_HUB_OFFLINE": "1", "SERBENCH_CACHE": str(cache)}
    head, ray_address = None, args.ray_address
    if ray_address is None:
        from ray_head import RayHead

        head = RayHead(root / "ray", cpus)
        head.start()
        ray_address = head.address
        environ.update(head.env)
    estimate = max(slot.end for slot in schedule([job for job, _ in todo.values()], cpus, done if warm else ()))
    runs = Runs(ray=f"a Ray head started here ({cpus} CPUs)" if head else ray_address, cpus=cpus,
                estimated_minutes=estimate, cache=str(cache))
    print(f"paper_tables: {len(todo)} jobs, estimated {estimate:.0f} minutes of wall clock on {cpus} CPUs "
          "(--plan shows each)", file=sys.stderr, flush=True)

    def run(name: str) -> tuple[str, int]:
        job, spec = todo[name]
        began = time.perf_counter()
        status = run_one(root, name, spec, ray_address, job_cpus(job, cpus), memory_gb, environ)
        runs.seconds[name] = time.perf_counter() - began
        print(f"paper_tables: {name}: exit {status} after {runs.seconds[name] / 60:.1f} min",
              file=sys.stderr, flush=True)
        return name, status

    began = time.perf_counter()
    outcomes: list[tuple[str, int]] = []
    try:  # as schedule() simulates: a wide job alone, the jobs between wide ones side by side
        for wide, group in itertools.groupby(todo, key=lambda name: job_cpus(todo[name][0], cpus) > 1):
            names = list(group)
            with ThreadPoolExecutor(max_workers=1 if wide else min(cpus, len(names))) as pool:
                outcomes += pool.map(run, names)
    finally:
        if head is not None:
            head.stop()
    runs.wall_seconds = time.perf_counter() - began
    runs.save(root)  # also when a job failed: the record of what did run
    runs = Runs.load(root)  # with the earlier parts'
    failed = [f"{name} (exit {status}, log {root / 'logs' / f'{name}.log'})" for name, status in outcomes if status]
    if failed:
        raise UserError(f"serbench run failed for {', '.join(failed)}")
    return runs


def run_one(
    root: Path, name: str, spec: dict, ray_address: str, parallel: int, memory_gb: float, environ: dict[str, str]
) -> int:
    """``serbench run`` of job ``name`` (its ``spec``) on the Ray instance, one CPU and
    ``memory_gb`` per trial, ``parallel`` trials in flight; the job file as run goes to
    ``root/jobs/<name>.yaml``, its output to ``root/logs/<name>.log`` (stdout here carries
    only the JSON)."""
    spec = {**spec, "resources": {**spec.get("resources", {}), "cpus": 1, "memory_gb": round(memory_gb, 2)}}
    job_file = root / "jobs" / f"{name}.yaml"
    log = root / "logs" / f"{name}.log"
    for folder in (job_file.parent, log.parent):
        folder.mkdir(parents=True, exist_ok=True)
    job_file.write_text(yaml.safe_dump(spec, sort_keys=False), encoding="utf-8")
    command = [sys.executable, "-m", "serbench.cli", "run", str(job_file), "--out", str(root), "--force",
               "--backend", "ray", "--ray-address", ray_address, "--parallel", str(parallel)]
    print(f"paper_tables: running {name} on Ray ({parallel} in flight)", file=sys.stderr, flush=True)
    with log.open("w", encoding="utf-8") as output:
        return subprocess.run(command, env=environ, stdout=output, stderr=subprocess.STDOUT).returncode


# --- what was run ---------------------------------------------------------------------


@dataclass
class Report:
    """The results the report is built from: one leaderboard row per group (its runs are
    the group's seeds), and the folder they were read from."""

    root: Path
    rows: dict  # group -> serbench.leaderboard.board.Row

    def row(self, group: str):
        return self.rows.get(group)

    def runs(self) -> list:
        return [run for row in self.rows.values() for run in row.runs]


def read_report(root: Path) -> Report:
    """The runs of ``root/<group>_seed<k>/result.json`` (direct children only, so a copy
    kept below ``root`` is not read twice), one leaderboard row per group. A group whose
    seeds do not share a spec (other than seed and name) is an error; no engine result at
    all is an error; a missing group is named on stderr and its rows say 'not run'."""
    from serbench.errors import UserError
    from serbench.leaderboard.board import build_rows, load_results

    by_group: dict[str, list] = {}
    for run in load_results(root).runs:
        match = NAME.match(run.result.job)
        if len(run.path.parts) == 2 and match and match["group"] in groups():
            by_group.setdefault(match["group"], []).append(run)
    rows = {}
    for group in groups():
        if group in by_group:
            built = build_rows(sorted(by_group[group], key=lambda run: int(run.result.spec.get("seed", 0))))
            if len(built) > 1:
                raise UserError(f"{root}: the seeds of {group} differ in more than seed and name "
                                f"({', '.join(row.label for row in built)})")
            rows[group] = built[0]
    if not any(job in rows for job in ENGINE_JOBS.values()):
        raise UserError(f"{root}: no result of any engine job (<job>_seed<k> of {', '.join(ENGINE_JOBS.values())})")
    missing = [group for group in groups() if group not in rows]
    if missing:
        print(f"paper_tables: warning: no result for {', '.join(missing)}; their rows say 'not run'", file=sys.stderr)
    return Report(root, rows)


def keep_raw(root: Path, report: Report, raw: Path) -> None:
    """Copy each run's result.json and trials.jsonl to ``raw/<job>/``, the job files as run
    to ``raw/jobs/`` and the record of the run (:class:`Runs`) to ``raw/``; earlier copies in
    ``raw`` of jobs not in ``report`` are removed. Nothing is copied when ``raw`` is ``root``
    itself. Copying ``raw`` back into a results folder resumes the plan where it stopped."""
    if raw.resolve() == root.resolve():
        return
    names = {run.result.job for run in report.runs()}
    if raw.is_dir():
        for stale in raw.glob("*/result.json"):
            if stale.parent.name not in names and stale.parent.parent.resolve() != root.resolve():
                shutil.rmtree(stale.parent)
    for name in names:
        target = raw / name
        target.mkdir(parents=True, exist_ok=True)
        for file in ("result.json", "trials.jsonl"):
            source = root / name / file
            if source.is_file():
                (target / file).write_text(_portable(source.read_text(encoding="utf-8")), encoding="utf-8")
        job_file = root / "jobs" / f"{name}.yaml"
        if job_file.is_file():
            (raw / "jobs").mkdir(exist_ok=True)
            (raw / "jobs" / job_file.name).write_text(_portable(job_file.read_text(encoding="utf-8")),
                                                      encoding="utf-8")
    record = root / Runs.FILE
    if record.is_file():  # its cache folder is the results folder's: named relative to it
        text = _portable(record.read_text(encoding="utf-8")).replace(json.dumps(str(root.resolve()))[1:-1], "<results>")
        (raw / Runs.FILE).write_text(text, encoding="utf-8")


def _portable(text: str) -> str:
    """``text`` with this machine's data and model folders written as ``$SERBENCH_DATA``
    and ``$SERBENCH_MODELS``, so the kept results name no machine path."""
    for variable in ("SERBENCH_DATA", "SERBENCH_MODELS"):
        folder = os.environ.get(variable)
        if folder:
            text = text.replace(json.dumps(str(Path(folder).resolve()))[1:-1], f"${variable}")
    return text


# --- the tables -----------------------------------------------------------------------


def render(report: Report, runs: Runs, raw: Path, note: str = "") -> str:
    """The whole report (Markdown)."""
    lines = header(report, runs, raw, note)
    lines += table3(report) + table4(report) + table5(report) + engines_compared(report)
    lines += optimistic(report) + levers(report) + speaker_holdout(report) + loso(report)
    lines += loso(report, LOSO_CV_JOB) + table6(report)
    lines += run_times(report, runs)
    return "\n".join(lines) + "\n"


def label(report: Report, group: str) -> str:
    """A row's name in the tables: the engine, with the library default's start-up trials
    or the protocol spelled out."""
    row = report.row(group)
    engines = {job: engine for engine, job in ENGINE_JOBS.items()}
    engine = row.engine if row else engines.get(DEFAULT_JOBS.get(group, group), group)
    if group in DEFAULT_JOBS:
        options = row.runs[0].result.spec.get("engine", {}).get("options") or {} if row else {}
        startup = options.get("n_startup_jobs", options.get("n_startup_trials"))
        return f"{engine} (library default" + (f": {startup} random start-up trials)" if startup else ")")
    return engine


def seeds_text(row) -> str:
    return ",".join(str(seed) for seed in sorted(set(row.seeds)))


def study_seeds_text(report: Report) -> str:
    """Which seeds the studies ran: ``seeds 0, 1 of every study``, or per set of seeds the
    rows that ran it when the rows differ (``seeds 0, 1, 2: ax_emodb_whisper, ...; seed 0:
    ...``)."""
    by_seeds: dict[tuple[int, ...], list[str]] = {}
    for group, row in report.rows.items():
        by_seeds.setdefault(tuple(sorted(set(row.seeds))), []).append(group)

    def named(seeds: tuple[int, ...]) -> str:
        return f"seed{'s' if len(seeds) > 1 else ''} {', '.join(map(str, seeds))}"

    if len(by_seeds) == 1:
        return f"{named(next(iter(by_seeds)))} of every study"
    return "; ".join(f"{named(seeds)}: {', '.join(f'`{group}`' for group in rows)}"
                     for seeds, rows in sorted(by_seeds.items(), key=lambda item: (-len(item[0]), item[0])))


def memory_text(report: Report) -> str:
    """The memory cap per trial, in GB: ``7.08``, or its range over the runs (each run's
    share of the machine's memory that day)."""
    caps = sorted({run.result.resources.memory_requested_gb for run in report.runs()})
    return f"{caps[0]:g}" if len(caps) == 1 else f"{caps[0]:g}–{caps[-1]:g}"


def header(report: Report, runs: Runs, raw: Path, note: str) -> list[str]:
    """Title, provenance and how our protocols differ from the paper's."""
    first_row = next(report.row(job) for job in ENGINE_JOBS.values() if report.row(job))
    first = first_row.runs[0].result
    spec, backbone = first.spec, first.backbone
    return [
        "# serbench on the Berlin EmoDB: the paper's tables, measured over seeds",
        "",
        "Written by `python bench/paper_tables.py` "
        f"on {first.finished_at[:10]} with serbench {first.versions.serbench}, torch "
        f"{first.versions.torch}; {_count(first.resources.torch_threads, 'torch thread')} per trial. "
        f"Raw results and the job files as run: [`{raw}/`]({raw}/).",
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
        "| data | EmoDB, 535 utterances, 7 classes | "
        f"{first.data.utterances} utterances, {len(first.data.classes)} classes"
        f"{' (a subset: --quick)' if spec['dataset'].get('subset') else ''} |",
        "| selection | tuned on the split it reports | stratified 80/20 test split, never used for "
        f"selection; trials scored on a validation split (20 % of the rest: {first.folds[0].sizes}); "
        "the paper's way only in the table of optimistic rows |",
        "| search | 4-D space, 15 trials, batch 1, AdamW, cosine LR, CE | the same space "
        f"(`{json.dumps(spec['search_space'])}`), {spec['budget']['trials']} trials |",
        f"| seeds | one run | {study_seeds_text(report)} (the seed fixes the split, "
        "the engine's draws, initialisation and data order) |",
        f"| hardware | 8 CPU cores, 32 GB | one CPU and {memory_text(report)} GB per trial{_execution_text(runs)} |",
        "",
        "Every cell over seeds is the mean ± population sd over the seeds; 95% CI is the "
        "percentile bootstrap interval of that mean (10000 resamples, seeded; "
        "`serbench/leaderboard/stats.py`). Times are minutes of search (the trials) since the study "
        "started; the final model's test evaluation is not included. 𝓔 = best validation BCA / minutes "
        "to reach it (the paper's efficiency), a mean over seeds of each seed's figure; ALC is the area "
        "under the best-so-far validation curve on a log time axis (AutoSpeech 2020). The rules are the "
        "leaderboard's (`serbench/leaderboard/board.py`). Paper cells we could not take from the paper's "
        "text are n/a.",
        "",
    ]


def holdout_groups() -> list[str]:
    """The honest holdout rows of Tables 3-5: the engines, then the library defaults."""
    return [*ENGINE_JOBS.values(), *DEFAULT_JOBS]


def table3(report: Report) -> list[str]:
    """Time to each threshold of validation BCA: median over the seeds that reached it."""
    from serbench.leaderboard.board import fmt_threshold

    lines = ["## Table 3: time to reach a validation BCA", "",
             "| engine | seeds | " + " | ".join(f"≥ {t} (ours)" for t in THRESHOLDS) + " | ≥ 0.9 (paper) |",
             "| --- | --- | " + " | ".join("---" for _ in THRESHOLDS) + " | --- |"]
    for group in holdout_groups():
        row = report.row(group)
        paper = PAPER.get(group.removesuffix("_emodb_whisper"), {}).get("0.9") if group not in DEFAULT_JOBS else None
        paper_cell = f"{paper['minutes']:g} min, trial {paper['trials']}" if paper else "n/a"
        if row is None:
            lines.append(f"| {label(report, group)} | not run | " + " | ".join("" for _ in THRESHOLDS)
                         + f" | {paper_cell} |")
            continue
        cells = [fmt_threshold(row.thresholds.get(threshold)) for threshold in THRESHOLDS]
        lines.append(f"| {label(report, group)} | {seeds_text(row)} | " + " | ".join(cells) + f" | {paper_cell} |")
    return lines + ["", "Minutes: the median over the seeds that reached the threshold, and how many of them "
                    "did (`5.02 (4/5)`). The paper's 143 grid trials and 1680 minutes are its own grid's.", ""]


def table4(report: Report) -> list[str]:
    """The configuration each seed's search chose (on validation BCA)."""
    lines = ["## Table 4: chosen hyperparameters per seed (chosen on validation BCA)", "",
             "| engine | seed | best trial | " + " | ".join(PARAMS) + " | val BCA | test BCA |",
             "| --- | --- | --- | " + " | ".join("---" for _ in PARAMS) + " | --- | --- |"]
    for group in holdout_groups():
        row = report.row(group)
        if row is None:
            lines.append(f"| {label(report, group)} | not run | | " + " | ".join("" for _ in PARAMS) + " | | |")
            continue
        for run in row.runs:
            best, test = run.result.best, run.result.test
            values = [_param(best.params.get(name)) for name in PARAMS] if best else ["" for _ in PARAMS]
            lines.append(f"| {label(report, group)} | {run.result.spec['seed']} | "
                         f"{best.trial + 1 if best else 'none'} | " + " | ".join(values)
                         + f" | {_num(best and best.val_bca)} | {_num(test and test.bca)} |")
    return lines + ["", "Trials are counted from 1. The test BCA is that configuration retrained on train + "
                    "validation and scored once on the held-out test split. The paper's chosen values: n/a "
                    "(not in its abstract).", ""]


def table5(report: Report) -> list[str]:
    """Best BCA, test BCA with its interval, time to best, 𝓔 and ALC; ranked as the board
    ranks (test BCA, then validation BCA) among the rows run on the widest set of seeds.
    Rows run on fewer seeds follow unranked (``—``): a mean over other seeds is not a
    comparable figure (the paired comparison below sets them beside their twin)."""
    from serbench.leaderboard.board import fmt_best, fmt_ci, fmt_space, fmt_stat, rank

    present = {id(report.row(group)): group for group in holdout_groups() if report.row(group)}
    rows = [report.row(group) for group in holdout_groups() if report.row(group)]
    widest = max((frozenset(row.seeds) for row in rows), key=len, default=frozenset())
    ranked = rank([row for row in rows if frozenset(row.seeds) == widest])
    unranked = rank([row for row in rows if frozenset(row.seeds) != widest])
    lines = ["## Table 5: best BCA, time to best, efficiency", "",
             "| rank | engine | seeds | trials (grid covered) | best val BCA | test BCA | test BCA 95% CI "
             "| minutes to best | 𝓔 (BCA/min) | ALC | search minutes | paper: best BCA | paper: minutes | paper: 𝓔 |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    positions = [str(position) for position in range(1, len(ranked) + 1)] + ["—"] * len(unranked)
    for position, row in zip(positions, [*ranked, *unranked]):
        group = present[id(row)]
        paper = PAPER.get(group.removesuffix("_emodb_whisper"), {}) if group not in DEFAULT_JOBS else {}
        paper_cells = ["n/a", "n/a", "n/a"]
        if "best_bca" in paper:
            paper_cells = [f"{paper['best_bca']:.2f}", f"{paper['minutes_to_best']:g}",
                           f"{paper['best_bca'] / paper['minutes_to_best']:.3f}"]
        trials = _number(row.trials) + (f" ({fmt_space(row)})" if row.space_size else "")
        lines.append(
            f"| {position} | {label(report, group)} | {seeds_text(row)} | {trials} | {fmt_best(row)} | "
            f"{fmt_stat(row.test)} | {fmt_ci(row.test_ci)} | {fmt_stat(row.minutes_to_best, 2)} | "
            f"{fmt_stat(row.efficiency, 3)} | {fmt_stat(row.alc)} | {_search_minutes(row)} | "
            + " | ".join(paper_cells) + " |")
    lines += [f"| | {label(report, group)} | not run | | | | | | | | | | | |"
              for group in holdout_groups() if report.row(group) is None]
    tests = {run.result.test.n for row in rows for run in row.runs if run.result.test}
    return lines + ["", "Test n = " + "/".join(map(str, sorted(tests))) + " utterances per seed. A grid row's "
                    "trials say how much of the grid its searches ran (trials / configurations). Ranked: "
                    "the rows run on seeds " + ", ".join(map(str, sorted(widest))) + "; a row run on fewer "
                    "seeds is listed after them unranked (—), since its mean is over other seeds: the "
                    "engines' comparison below pairs it with its twin seed by seed. The paper "
                    "reports one run selected on the split it reports (see the optimistic table below).", ""]


def engines_compared(report: Report) -> list[str]:
    """``compare_engines`` on test BCA paired by seed: the five engines together
    (Friedman), each engine against random search, each library default against its
    tuned-start-up variant (Wilcoxon)."""
    from serbench.leaderboard.board import compare_engines, comparison_cells, comparison_columns

    sets = [("the five engines", list(ENGINE_JOBS.values()))]
    sets += [(f"{engine} vs random", [job, ENGINE_JOBS["random"]]) for engine, job in ENGINE_JOBS.items()
             if engine != "random"]
    sets += [(f"{label(report, default)} vs {tuned.split('_')[0]}", [default, tuned])
             for default, tuned in DEFAULT_JOBS.items()]
    heads = ["compared", *comparison_columns()[4:]]
    lines = ["## Engines compared across seeds (test BCA, paired by seed)", "",
             "| " + " | ".join(heads) + " |", "| " + " | ".join("---" for _ in heads) + " |"]
    for name, members in sets:
        rows = [report.row(group) for group in members]
        if any(row is None for row in rows):
            lines.append(f"| {name} | not run | | | | | |")
            continue
        comparisons = compare_engines(rows)
        if not comparisons:
            lines.append(f"| {name} | not comparable: the specs differ beyond the engine | | | | | |")
        for comparison in comparisons:
            lines.append(f"| {name} | " + " | ".join(comparison_cells(comparison)[4:]) + " |")
    return lines + ["", "Two rows: the Wilcoxon signed-rank test (two-sided; exact with untied differences, "
                    "whose p cannot go below 2/2ⁿ: 0.0625 for 5 seeds). More: the Friedman test and each "
                    "engine's average rank over the seeds (1 = best). Engines named with their options where "
                    "two share a name. The p-values are not corrected for the several comparisons.", ""]


def optimistic(report: Report) -> list[str]:
    """The select_on: test rows, apart: each beside the honest row of the same engine."""
    from serbench.leaderboard.board import OPTIMISTIC_MARK, fmt_ci, fmt_stat, rank

    lines = ["## Optimistic rows: selected on their own test split (the paper's protocol)", "",
             "Not an estimate of anything: every trial trained on train + validation and was scored on "
             "the test split, and the reported test BCA is the best of those scores (`select_on: test`). "
             "They are here so the leak can be seen beside the honest figure of the same engine and seeds; "
             "they are ranked only among themselves, never with the rows above.", "",
             "| rank | job | seeds | test BCA (selected on it) | 95% CI | honest test BCA (same engine, same seeds) | difference |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    present = {id(report.row(job + OPTIMISTIC)): job for job in ENGINE_JOBS.values() if report.row(job + OPTIMISTIC)}
    ranked = rank([report.row(job + OPTIMISTIC) for job in ENGINE_JOBS.values() if report.row(job + OPTIMISTIC)])
    for position, row in enumerate(ranked, 1):
        honest = report.row(present[id(row)])
        twin = _shared_seed_mean(honest, row) if honest is not None else "not run"
        difference = _paired_difference(row, honest) if honest is not None else "—"
        lines.append(f"| {position} | {row.engine}{OPTIMISTIC_MARK} | {seeds_text(row)} | {fmt_stat(row.test)} | "
                     f"{fmt_ci(row.test_ci)} | {twin} | {difference} |")
    lines += [f"| | {engine}{OPTIMISTIC_MARK} | not run | | | | |" for engine, job in ENGINE_JOBS.items()
              if report.row(job + OPTIMISTIC) is None]
    return lines + ["", "The honest figure is the mean test BCA of the same engine's honest job over the seeds "
                    "the optimistic row ran (its mean over all its seeds is in Table 5). Difference: the mean "
                    "over those seeds of (optimistic − honest) test BCA, and how many seeds that is.", ""]


def _test_by_seed(row) -> dict[int, float]:
    """Each run's test BCA (``test_summary``) by its seed."""
    return {int(run.result.spec["seed"]): run.result.test_summary.bca_mean
            for run in row.runs if run.result.test_summary is not None}


def _shared_seed_mean(row, other) -> str:
    """``0.960 (seed 0)``: the mean test BCA of ``row`` over the seeds ``other`` ran too;
    ``—`` without a shared seed."""
    mine, shared = _test_by_seed(row), set(_test_by_seed(other))
    seeds = sorted(set(mine) & shared)
    if not seeds:
        return "—"
    return (f"{statistics.fmean(mine[seed] for seed in seeds):.3f} "
            f"(seed{'s' if len(seeds) > 1 else ''} {', '.join(map(str, seeds))})")


def _paired_difference(row, other) -> str:
    """``+0.042 (5 seeds)``: the mean over shared seeds of ``row``'s minus ``other``'s test
    BCA (each run's ``test_summary``; e.g. optimistic minus honest); ``—`` without a shared
    seed."""
    leaked, honest = _test_by_seed(row), _test_by_seed(other)
    shared = sorted(set(leaked) & set(honest))
    if not shared:
        return "—"
    mean = statistics.fmean(leaked[seed] - honest[seed] for seed in shared)
    return f"{mean:+.3f} ({_count(len(shared), 'seed')})"


def summary_table(row) -> list[str]:
    """A row over its seeds as a one-line table: best validation and test BCA (with the
    test's 95% CI), minutes to best, 𝓔, ALC and the time to each threshold."""
    from serbench.leaderboard.board import fmt_ci, fmt_stat, fmt_threshold

    return ["| seeds | best val BCA | test BCA | 95% CI | minutes to best | 𝓔 | ALC | "
            + " | ".join(f"≥ {t}" for t in THRESHOLDS) + " |",
            "| --- | --- | --- | --- | --- | --- | --- | " + " | ".join("---" for _ in THRESHOLDS) + " |",
            f"| {seeds_text(row)} | {fmt_stat(row.best_val)} | {fmt_stat(row.test)} | {fmt_ci(row.test_ci)} | "
            f"{fmt_stat(row.minutes_to_best, 2)} | {fmt_stat(row.efficiency)} | {fmt_stat(row.alc)} | "
            + " | ".join(fmt_threshold(row.thresholds.get(t)) for t in THRESHOLDS) + " |"]


def levers(report: Report) -> list[str]:
    """The frozen whisper-base head search with the accuracy levers, on the paper twins'
    protocol: its row over seeds, what each seed chose on validation, and the test BCA
    paired by seed with Table 5's first row."""
    from serbench.leaderboard.board import rank
    from serbench.leaderboard.stats import paired_test

    lines = ["## Beyond the paper's space: a frozen encoder and the accuracy levers", ""]
    row = report.row(LEVERS_JOB)
    if row is None:
        return lines + [f"Not run ({LEVERS_JOB}).", ""]
    first = row.runs[0].result
    names = list(first.spec["search_space"])
    lines += [f"`{LEVERS_JOB}`: {row.engine}, {first.spec['budget']['trials']} trials on the paper twins' protocol "
              f"and splits (each seed's test split is theirs), `{first.spec['backbone']['source']}` frozen (its "
              "features cached once per clip), a linear head searched with the accuracy levers; chosen on "
              "validation, the test split scored once.", "",
              *summary_table(row), "",
              "| seed | trial | " + " | ".join(names) + " | val BCA | test BCA |",
              "| --- | --- | " + " | ".join("---" for _ in names) + " | --- | --- |"]
    for run in row.runs:
        best, test = run.result.best, run.result.test
        values = [_param(best.params.get(name)) for name in names] if best else ["" for _ in names]
        marked = f"{_num(test and test.bca)}{' (transductive)' if test and test.transductive else ''}"
        lines.append(f"| {run.result.spec['seed']} | {best.trial + 1 if best else 'none'} | " + " | ".join(values)
                     + f" | {_num(best and best.val_bca)} | {marked} |")
    engines = [report.row(group) for group in ENGINE_JOBS.values() if report.row(group)]
    if engines:
        top = rank(engines)[0]
        paired = paired_test({LEVERS_JOB: _test_by_seed(row), top.engine: _test_by_seed(top)})
        verdict = (f"Wilcoxon signed-rank p = {paired.p_value:.4g}" if paired.p_value is not None
                   else paired.note)
        lines += ["", f"Paired by seed with Table 5's first row ({top.engine}, the paper's space): "
                  f"{_paired_difference(row, top)} in test BCA; {verdict}."]
    return lines + ["", "A test BCA marked transductive was scored with `speaker_norm`: the test speakers' "
                    "unlabelled audio set their own standardisation before they were predicted. With "
                    "`speaker_enrolment` as well, each test speaker (every one also trains here) was "
                    "standardised with its training utterances' statistics instead: no test audio read.", ""]


def speaker_holdout(report: Report) -> list[str]:
    """The speaker-independent holdout study: its row, and per seed who was held out and
    what was chosen."""

    lines = ["## Speaker-independent holdout", ""]
    row = report.row(SPEAKER_JOB)
    if row is None:
        return lines + [f"Not run ({SPEAKER_JOB}).", ""]
    lines += [f"`{SPEAKER_JOB}`: {row.engine}, the paper twins' backbone and space; test and validation "
              "speakers never train, and the test speakers are scored once.", "",
              *summary_table(row), "",
              "| seed | test speakers | sizes | " + " | ".join(PARAMS) + " | val BCA | test BCA |",
              "| --- | --- | --- | " + " | ".join("---" for _ in PARAMS) + " | --- | --- |"]
    for run in row.runs:
        fold, best = run.result.folds[0], run.result.folds[0].best
        values = [_param(best.params.get(name)) for name in PARAMS] if best else ["" for _ in PARAMS]
        sizes = ", ".join(f"{split} {count}" for split, count in fold.sizes.items())
        lines.append(f"| {run.result.spec['seed']} | {', '.join(fold.test_speakers)} | {sizes} | "
                     + " | ".join(values) + f" | {_num(best and best.val_bca)} | {_num(fold.test and fold.test.bca)} |")
    return lines + [""]


def loso(report: Report, group: str = LOSO_JOB) -> list[str]:
    """Nested leave-one-speaker-out (``group``: the LOSO job or its validation-folds
    twin): the study figures per seed (test BCA mean ± sd over folds, study minutes and
    study 𝓔, never a mean of fold 𝓔), the row over seeds, per fold what was chosen and
    how it scored, and for the twin its test BCA paired fold by fold with the LOSO job's."""
    from serbench.cli.console import fold_score
    from serbench.leaderboard.board import fmt_ci, fmt_stat
    from serbench.leaderboard.stats import bootstrap_ci

    row = report.row(group)
    folds = row.runs[0].result.spec["dataset"]["protocol"].get("val_folds", 1) if row else 1
    heading = "nested leave one speaker out" + (f", {folds} validation folds per trial" if folds > 1 else "")
    lines = [f"## Speaker-independent: {heading}", ""]
    if row is None:
        return lines + [f"Not run ({group}).", ""]
    first = row.runs[0].result
    names = list(first.spec["search_space"])
    lines += [f"`{group}`: one complete {row.engine} search of {first.spec['budget']['trials']} trials per fold "
              f"(`{first.spec['backbone']['source']}`, {json.dumps(first.spec['dataset']['protocol'])}); each fold "
              "selects on validation speakers drawn from its training speakers and scores its held-out speaker "
              "once.", "",
              "| seed | folds | test BCA (mean ± sd over folds) | 95% CI over folds | study search minutes "
              "| study minutes to best | study 𝓔 |", "| --- | --- | --- | --- | --- | --- | --- |"]
    for run in row.runs:
        result, summary = run.result, run.result.test_summary
        search = math.fsum(fold.search_seconds for fold in result.folds) / 60
        to_best, efficiency = _study_to_best(run)
        lines.append(f"| {result.spec['seed']} | {len(result.folds)} | "
                     f"{_num(summary and summary.bca_mean)} ± {_num(summary and summary.bca_sd)} | "
                     f"{fmt_ci(bootstrap_ci([fold.test.bca for fold in result.folds if fold.test]))} | {search:.2f} | "
                     f"{_num(to_best, 2)} | {_num(efficiency)} |")
    lines += ["", f"Over seeds {seeds_text(row)}: test BCA {fmt_stat(row.test)} (95% CI {fmt_ci(row.test_ci)}), "
              f"study minutes to best {fmt_stat(row.minutes_to_best, 2)}, study 𝓔 {fmt_stat(row.efficiency)}.", "",
              "The interval over folds is the percentile bootstrap of the mean over that seed's test "
              "speakers (it treats the speakers as a sample of speakers, the seeds' interval a sample of "
              "seeds). Study minutes are summed over the folds (each fold's own search clock); study 𝓔 = the mean "
              "best validation BCA over the folds / the study minutes to best. A fold's BCA is over the "
              "classes its speaker has (a fold whose speaker lacks some says which), so chance differs "
              "between folds.", "",
              "What each fold chose (on its validation speakers) and how it scored on its test speaker:", "",
              "| seed | test speaker: BCA | sizes | " + " | ".join(names) + " | val BCA | search minutes |",
              "| --- | --- | --- | " + " | ".join("---" for _ in names) + " | --- | --- |"]
    for run in row.runs:
        for fold in run.result.folds:
            best = fold.best
            values = [_param(best.params.get(name)) for name in names] if best else ["" for _ in names]
            sizes = ", ".join(f"{split} {count}" for split, count in fold.sizes.items())
            lines.append(f"| {run.result.spec['seed']} | {fold_score(fold, run.result.data.classes)} | {sizes} | "
                         + " | ".join(values) + f" | {_num(best and best.val_bca)} | {fold.search_seconds / 60:.2f} |")
    twin = report.row(LOSO_JOB) if group != LOSO_JOB else None
    if twin is not None:
        lines += ["", _paired_by_fold(row, twin)]
    return lines + [""]


def _paired_by_fold(row, other) -> str:
    """The test BCA of ``row`` against ``other``'s, paired by seed and test speaker over
    the seeds both ran: mean difference and the Wilcoxon signed-rank test."""
    from serbench.leaderboard.stats import paired_test

    def by_seed_and_speaker(of) -> dict[tuple[int, int], float]:
        return {(int(run.result.spec["seed"]), int(fold.test_speakers[0])): fold.test.bca
                for run in of.runs for fold in run.result.folds if fold.test}

    mine, theirs = by_seed_and_speaker(row), by_seed_and_speaker(other)
    shared = sorted(set(mine) & set(theirs))
    if not shared:
        return f"No seed shared with `{LOSO_JOB}`: nothing to pair."
    seeds = sorted({seed for seed, _ in shared})
    difference = statistics.fmean(mine[key] - theirs[key] for key in shared)
    test = paired_test({"twin": {key: mine[key] for key in shared}, "one pair": {key: theirs[key] for key in shared}})
    verdict = f"Wilcoxon signed-rank p = {test.p_value:.4g}" if test.p_value is not None else test.note
    return (f"Paired by seed and test speaker with `{LOSO_JOB}` (seed{'s' if len(seeds) > 1 else ''} "
            f"{', '.join(map(str, seeds))}; {len(shared)} pairs): {difference:+.3f} in test BCA on average; {verdict}.")


def _study_to_best(run) -> tuple[float | None, float | None]:
    """One LOSO seed's study minutes to best and 𝓔, exactly as the board computes them:
    the ``minutes_to_best`` and ``efficiency`` of a row built from that run alone."""
    from serbench.leaderboard.board import build_rows

    alone = build_rows([run])[0]
    return (alone.minutes_to_best and alone.minutes_to_best.mean, alone.efficiency and alone.efficiency.mean)


def table6(report: Report) -> list[str]:
    """Transfer from EmoDB to each target key: the untuned row (defaults, no search), the
    tuned row and the levers' row (frozen whisper-base, head search), each with its
    adapted modes; BCA over the target's classes, with the counts per class it was
    averaged over, and n and dropped on the same population."""
    from serbench.leaderboard.board import fmt_ci, fmt_stat
    from serbench.leaderboard.stats import bootstrap_ci

    lines = ["## Table 6: transfer from EmoDB", ""]
    tuned, levers_row = report.row(TRANSFER_JOB), report.row(TRANSFER_LEVERS_JOB)
    rows = [("untuned (defaults, no search)", report.row(UNTUNED_JOB)), (f"tuned ({_search(tuned)})", tuned)]
    if levers_row is not None:
        source = levers_row.runs[0].result.spec["backbone"]["source"]
        rows.append((f"levers ({_search(levers_row)}, `{source}` frozen)", levers_row))
    if all(row is None for _, row in rows):
        return lines + [f"Not run ({UNTUNED_JOB}, {TRANSFER_JOB}).", ""]
    lines += ["| model | target | adapt | seeds | n | scored per class | dropped | BCA | 95% CI | accuracy "
              "| EmoDB test BCA | paper |",
              "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for name, row in rows:
        if row is None:
            lines.append(f"| {name} | not run | | | | | | | | | | |")
            continue
        for key in sorted(row.transfer, key=lambda key: (key.split("+")[0], "+" in key, key)):
            scores = [run.result.transfer[key] for run in row.runs if key in run.result.transfer]
            first = scores[0]
            gain = PAPER["transfer_gain"].get("RAVDESS" if "ravdess" in key.lower() else "CREMA-D")
            paper = f"+{gain} accuracy, tuned over un-tuned (full corpus)" if first.adapt == "none" else "n/a"
            lines.append(
                f"| {name} | {key} | {first.adapt}{' (transductive)' if first.uses_target_audio else ''} | "
                f"{seeds_text(row)} | {_same(s.n for s in scores)} | {_same(_class_counts(s) for s in scores)} | "
                f"{_same(_dropped(s) for s in scores)} | {fmt_stat(row.transfer[key])} | "
                f"{fmt_ci(bootstrap_ci([s.bca for s in scores]))} | "
                f"{fmt_stat(_stat([s.accuracy for s in scores]))} | {fmt_stat(row.test)} | {paper} |")
    return lines + [
        "",
        "BCA is the mean recall over the target classes present (the classes counted in 'scored per class', "
        "after the label map: calm → neutral), n the utterances scored, dropped those the map drops, all on "
        "the same population. `corpus` and `speaker` re-fit the feature standardisation on the target's "
        "unlabelled audio before predicting it (transductive, not zero-shot). The paper compares its tuned "
        "model with the IEMOCAP checkpoint's own head; our untuned row is the same backbone trained once "
        "with the default hyperparameters. The levers row is the head search of the levers table above "
        f"(`{TRANSFER_LEVERS_JOB}`) without the per-speaker standardisation, which would read the target's "
        "audio even zero-shot. The target is the 32-file RAVDESS sample available here "
        "(2 actors), not the full corpus; CREMA-D audio is not available here.",
        "",
    ]


def _search(row) -> str:
    """``15-trial random search``: a transfer row's search, as its model column names it."""
    return f"{_number(row.trials)}-trial {row.engine} search" if row else "search"


def _class_counts(score) -> str:
    """``angry 4, neutral 8, ...``: utterances scored per model class (confusion-matrix rows)."""
    counts = [(label, sum(row)) for label, row in zip(score.labels, score.confusion_matrix)]
    return ", ".join(f"{label} {count}" for label, count in counts if count)


def _dropped(score) -> str:
    return ", ".join(f"{label} {count}" for label, count in score.dropped.items()) or "none"


def _same(values) -> str:
    """The value every seed shares, or each distinct one joined by ' / '."""
    distinct = list(dict.fromkeys(str(value) for value in values))
    return " / ".join(distinct)


def _stat(values: list[float]):
    from serbench.leaderboard.board import Stat

    return Stat.of(values)


def run_times(report: Report, runs: Runs) -> list[str]:
    """Wall minutes of each group's studies, and of this report's own run."""
    lines = ["## Run times", "", "| job | seeds | trials per study | status | wall minutes per study (mean) |",
             "| --- | --- | --- | --- | --- |"]
    for group, row in report.rows.items():
        walls = [run.result.wall_seconds / 60 for run in row.runs]
        lines.append(f"| {group} | {seeds_text(row)} | {_number(row.trials)} | {row.status} | "
                     f"{statistics.fmean(walls):.1f} |")
    total = sum(run.result.wall_seconds for run in report.runs()) / 60
    lines += ["", f"Total: {total:.1f} minutes of studies ({len(report.runs())} studies)."]
    if runs.seconds:
        parts = f" in {runs.parts} parts (summed)" if runs.parts > 1 else ""
        lines.append(f"This report's own run: {len(runs.seconds)} jobs{_execution_text(runs)}; "
                     f"{runs.wall_seconds / 60:.1f} minutes of wall clock from the first job's start to the last "
                     f"one's end{parts} (estimated beforehand: {runs.estimated_minutes:.0f}).")
    return lines


def _execution_text(runs: Runs) -> str:
    if not runs.cpus:
        return ""
    return (f"; on one Ray instance ({runs.ray}), one CPU per trial, {runs.cpus} trials at a time "
            "(jobs side by side, longest first, a LOSO job's folds in parallel), one shared feature cache")


def _search_minutes(row) -> str:
    return f"{statistics.fmean(run.result.search_seconds for run in row.runs) / 60:.1f}"


def _count(number: float, noun: str) -> str:
    return f"{number:g} {noun}{'' if number == 1 else 's'}"


def summary(report: Report, runs: Runs, output: Path) -> dict:
    """The JSON printed on stdout: each row's test BCA over seeds, the comparisons' p-values,
    what is missing, and the run's wall clock against its estimate."""
    from serbench.leaderboard.board import compare_engines

    rows = {}
    for group, row in report.rows.items():
        rows[group] = {
            "seeds": sorted(set(row.seeds)),
            "test_bca": row.test and {"mean": round(row.test.mean, 4), "sd": row.test.sd and round(row.test.sd, 4)},
            "test_bca_ci": row.test_ci and [round(row.test_ci.low, 4), round(row.test_ci.high, 4)],
            "transfer_bca": {key: round(stat.mean, 4) for key, stat in row.transfer.items()},
        }
    engines = [report.row(job) for job in ENGINE_JOBS.values() if report.row(job)]
    compared = compare_engines(engines) if len(engines) > 1 else []
    return {
        "output": str(output),
        "rows": rows,
        "engines_compared": [{"engines": c.engines, "test": c.test.test, "p_value": c.test.p_value,
                              "seeds": c.test.seeds} for c in compared],
        "missing": [group for group in groups() if group not in report.rows],
        "studies_minutes": round(sum(run.result.wall_seconds for run in report.runs()) / 60, 1),
        "run_minutes": round(runs.wall_seconds / 60, 1) if runs.seconds else None,
        "estimated_minutes": round(runs.estimated_minutes, 1) if runs.seconds else None,
        "run_minutes_per_job": {job: round(seconds / 60, 1) for job, seconds in runs.seconds.items()},
        "ray": runs.ray,
        "cpus": runs.cpus,
    }


def _num(value: float | None, digits: int = 3) -> str:
    return "—" if value is None else f"{value:.{digits}f}"


def _number(value: float | None) -> str:
    if value is None:
        return "—"
    return str(int(value)) if float(value).is_integer() else f"{value:.1f}"


def _param(value) -> str:
    if isinstance(value, float):
        return f"{value:.2e}"
    return "" if value is None else str(value)


if __name__ == "__main__":
    sys.exit(main())
