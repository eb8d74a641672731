"""The leaderboard: every ``result.json`` below a folder, aggregated and ranked.

Contract:

- :func:`load_results` validates each ``result.json`` with ``Result.model_validate``; a
  file that cannot be read or does not validate is returned in ``skipped`` with a one-line
  reason, never raised. No readable result at all is a ``UserError``.
- :func:`build_rows` groups runs whose specs differ only in ``seed`` (and ``name``) into
  one :class:`Row` and computes its columns. Spec sections added after results were first
  written (``pruner``, ``objective``, ``budget.epochs``) count only when they differ from
  their defaults, so a result from before them shares a row with its unpruned rerun;
  pruner settings otherwise tell rows apart. A run's *searches* are its folds (one for
  the holdout protocols). Best validation BCA, ALC and epochs spent are means over all
  searches of the row's runs (epochs spent over the runs that record them: none from
  before pruners).
- Study-level time, never a mean of per-fold figures: a run's *minutes to best* is the
  search minutes summed over its folds up to each fold's best trial (a fold's own clock;
  for one fold, the best's minutes), and its 𝓔 = its best validation BCA (mean over
  folds) / those minutes; a row shows their means over its runs (seeds). A run reaches a
  threshold when every fold does, after the search minutes summed over its folds up to
  each fold's first trial at or above it, with 𝓔 = threshold / those minutes. A row of
  one run shows that run's time (with the trial number for one fold; ``not reached
  (1/2 folds)`` when some folds missed it); a row of several runs (seeds) shows the
  **median** over the seeds that reached it and how many did (``12.30 (3/5)``). The
  per-fold minutes and 𝓔 are in ``searches`` of the JSON row.
- Test BCA is a run's ``test_summary.bca_mean``; its ``sd`` is the spread over seeds when a
  row has several runs, else over folds when the run has several, else ``None``. Standard
  deviations are population ones, as in ``test_summary``. Rows of several seeds also have
  ``test_ci``, the 95% percentile bootstrap interval of the mean over seeds
  (:func:`serbench.leaderboard.stats.bootstrap_ci`: 10000 resamples, seeded); one seed has
  none.
- ALC (:func:`serbench.leaderboard.stats.alc`): ``∫ s(t) d(log(1 + t/t0)) / log(1 + T/t0)``
  with ``t0`` = 60 s, ``s`` a search's best-so-far validation BCA of completed trials (0
  before the first), ``T`` = ``budget.wall_minutes`` × 60 when set, else the search's own
  time (``search_seconds``: an improvement at its very end adds nothing).
- :func:`compare_engines`: rows whose specs differ only in the engine (and seed, name)
  are compared on test BCA paired by seed (:func:`serbench.leaderboard.stats.paired_test`:
  Wilcoxon for two engines, Friedman with average ranks for more), over the seeds they
  share; fewer than two shared seeds say "not enough paired seeds".
- A row whose searches record a finite search space (a grid: ``search_space_size``)
  says how much of it they ran (``space covered``: mean trials per search / its size).
- :func:`rank` orders rows by test BCA (descending, missing last), then best validation
  BCA, then job label; :func:`group_rows` splits them under a heading per ``--by`` key.
  Rows of ``select_on: test`` results (the paper's optimistic protocol) are marked
  ``[optimistic: selected on test]`` and ranked only among themselves, after the honest
  rows, under their own heading.
"""

from __future__ import annotations

import copy
import json
import math
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from serbench.errors import UserError
from serbench.leaderboard.stats import Interval, PairedTest, alc, alc_budget_s, bootstrap_ci, median, paired_test
from serbench.results.schema import Result
from serbench.spec.job import drop_later_defaults

OPTIMISTIC_MARK = " [optimistic: selected on test]"
OPTIMISTIC_HEADING = "optimistic: selected on their own test split (select_on: test), not ranked with the rows above"
GROUP_KEYS = ("engine", "pruner", "dataset", "backbone", "protocol")
NO_PRUNER = "—"


@dataclass
class Run:
    """One valid ``result.json`` and where it was found (relative to the board's root)."""

    path: Path
    result: Result

    @property
    def label(self) -> str:
        return self.result.job


@dataclass
class Skipped:
    path: Path
    reason: str


@dataclass
class Loaded:
    root: Path
    runs: list[Run]
    skipped: list[Skipped]


def load_results(root: Path) -> Loaded:
    """Every ``result.json`` below ``root`` (sorted by path), validated."""
    root = Path(root)
    if not root.is_dir():
        raise UserError(f"{root}: no such results folder")
    runs, skipped = [], []
    for path in sorted(root.rglob("result.json")):
        if not path.is_file():
            continue
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            runs.append(Run(path.relative_to(root), Result.model_validate(data)))
        except (OSError, UnicodeDecodeError) as exc:
            skipped.append(Skipped(path, f"cannot read ({exc.__class__.__name__})"))
        except json.JSONDecodeError as exc:
            skipped.append(Skipped(path, f"not JSON (line {exc.lineno}: {exc.msg})"))
        except ValidationError as exc:
            skipped.append(Skipped(path, f"not a valid result ({_first_error(exc)})"))
    if not runs and skipped:
        first = skipped[0]
        raise UserError(f"{root}: no valid result.json found below this folder ({len(skipped)} invalid; "
                        f"first: {first.path}: {first.reason})")
    if not runs:
        raise UserError(f"{root}: no result.json found below this folder")
    return Loaded(root, runs, skipped)


def _first_error(exc: ValidationError) -> str:
    errors = exc.errors()
    first = errors[0]
    where = ".".join(str(part) for part in first["loc"]) or "top level"
    more = f"; and {len(errors) - 1} more" if len(errors) > 1 else ""
    return " ".join(f"{where}: {first['msg']}{more}".split())


# --- aggregation ----------------------------------------------------------------------


@dataclass
class Stat:
    """A mean over ``n`` values, with the population sd when there are several."""

    mean: float
    sd: float | None
    n: int

    @classmethod
    def of(cls, values: list[float]) -> "Stat | None":
        if not values:
            return None
        sd = statistics.pstdev(values) if len(values) > 1 else None
        return cls(statistics.fmean(values), sd, len(values))


@dataclass
class ThresholdCell:
    """Time to one threshold over a row's runs (module docstring: study-level minutes)."""

    threshold: float
    reached: int  # runs (seeds) that reached it: every fold of the run did
    runs: int
    searches: int  # folds of those runs
    searches_reached: int
    minutes: float | None  # one run: its minutes; several: the median over those that reached it
    trial: float | None  # one-fold runs: the trial number (several: the median)
    efficiency: float | None  # threshold / minutes

    @property
    def rule(self) -> str:
        return "one run" if self.runs == 1 else "median over the seeds that reached it"


@dataclass
class Search:
    """One fold of one run, for the JSON's per-fold figures."""

    job: str
    seed: int
    fold: int
    best_val: float | None
    minutes_to_best: float | None
    efficiency: float | None
    alc: float | None
    alc_budget_s: float
    search_seconds: float
    thresholds: list[dict[str, Any]]

    def as_json(self) -> dict[str, Any]:
        return {"job": self.job, "seed": self.seed, "fold": self.fold, "best_val_bca": self.best_val,
                "minutes_to_best": self.minutes_to_best, "efficiency": self.efficiency, "alc": self.alc,
                "alc_budget_s": self.alc_budget_s, "search_seconds": self.search_seconds,
                "thresholds": self.thresholds}


@dataclass
class Row:
    label: str
    jobs: list[str]
    paths: list[str]
    seeds: list[int]
    engine: str
    pruner: str
    dataset: str
    backbone: str
    protocol: str
    status: str
    trials: float
    pruned: float
    epochs_spent: Stat | None
    folds: int
    best_val: Stat | None
    best_pruned: int  # searches whose best trial was pruned (none of their trials completed)
    test: Stat | None
    minutes_to_best: Stat | None
    efficiency: Stat | None
    thresholds: dict[float, ThresholdCell]
    test_ci: Interval | None = None
    alc: Stat | None = None
    transfer: dict[str, Stat] = field(default_factory=dict)
    searches: list[Search] = field(default_factory=list, repr=False)
    runs: list[Run] = field(default_factory=list, repr=False)
    optimistic: bool = False  # select_on: test, the paper's protocol: ranked apart (see group_rows)
    space_size: int | None = None  # configurations of a finite search space (a grid), when recorded
    space_trials: float | None = None  # with space_size: mean trials per search

    @property
    def space_covered(self) -> float | None:
        """The share of a finite search space a search ran (mean over searches)."""
        return None if self.space_size is None or self.space_trials is None else self.space_trials / self.space_size

    def key(self, by: str) -> str:
        return getattr(self, by)

    def as_json(self) -> dict[str, Any]:
        """Plain data for ``--format json`` (numbers unrounded)."""

        def stat(value: Stat | None) -> dict[str, Any] | None:
            return None if value is None else {"mean": value.mean, "sd": value.sd, "n": value.n}

        return {
            "job": self.label,
            "jobs": self.jobs,
            "paths": self.paths,
            "seeds": self.seeds,
            "n_seeds": len(set(self.seeds)),
            "engine": self.engine,
            "pruner": None if self.pruner == NO_PRUNER else self.pruner,
            "dataset": self.dataset,
            "backbone": self.backbone,
            "protocol": self.protocol,
            "status": self.status,
            "trials": self.trials,
            "pruned": self.pruned,
            "epochs_spent": stat(self.epochs_spent),
            "folds": self.folds,
            "best_val_bca": stat(self.best_val),
            "best_val_pruned": self.best_pruned,
            "test_bca": stat(self.test),
            "test_bca_ci": None if self.test_ci is None else self.test_ci.as_json(),
            "minutes_to_best": stat(self.minutes_to_best),
            "efficiency": stat(self.efficiency),
            "alc": stat(self.alc),
            "thresholds": [
                {
                    "threshold": cell.threshold,
                    "reached": cell.reached,
                    "runs": cell.runs,
                    "searches": cell.searches,
                    "searches_reached": cell.searches_reached,
                    "minutes": cell.minutes,
                    "trial": cell.trial,
                    "efficiency": cell.efficiency,
                    "rule": cell.rule,
                }
                for cell in self.thresholds.values()
            ],
            "transfer_bca": {target: stat(value) for target, value in self.transfer.items()},
            "searches": [search.as_json() for search in self.searches],
            "select_on": "test" if self.optimistic else "validation",
            "space_size": self.space_size,
            "space_trials": self.space_trials,
            "space_covered": self.space_covered,
        }


# Settings of a job that change neither what its trials compute nor their minutes, and
# differ between reruns of one job: the memory cap (a share of the machine's memory that
# day: it decides whether a trial can run) and the address of the Ray cluster it ran on.
NOT_GROUPING = (("resources", "memory_gb"), ("execution", "options", "address"))


def seed_group_key(result: Result, ignore: tuple[str, ...] = ("name", "seed")) -> str:
    """Runs with equal keys differ only in seed and name (the spec sections ``ignore``).
    Sections added after results were first written are left out while at their defaults
    (as the study's fingerprint does), so older results group with their reruns. The
    settings of :data:`NOT_GROUPING` are left out too; CPUs stay (they change the minutes)."""
    spec = copy.deepcopy(drop_later_defaults({k: v for k, v in result.spec.items() if k not in ignore}))
    for *sections, key in NOT_GROUPING:
        part = spec
        for section in sections:
            part = part.get(section) if isinstance(part, dict) else None
        if isinstance(part, dict):
            part.pop(key, None)
    return json.dumps(spec, sort_keys=True, default=str)


def pruner_label(result: Result) -> str:
    """The pruner as the board names it: ``median``, ``engine:median`` when the engine's
    library decided, ``—`` for none (or a result from before pruners)."""
    if result.pruning is not None:
        name, by = result.pruning.pruner, result.pruning.by
    else:
        spec = result.spec.get("pruner") or {}
        name, by = str(spec.get("name", "none")), str(spec.get("by", "serbench"))
    if name == "none":
        return NO_PRUNER
    return f"engine:{name}" if by == "engine" else name


def backbone_label(result: Result) -> str:
    source = result.backbone.get("source") or result.spec.get("backbone", {}).get("source")
    name = result.backbone.get("name", "?")
    return f"{name}:{source}" if source else str(name)


def build_rows(runs: list[Run]) -> list[Row]:
    """One row per seed group, in order of first appearance."""
    groups: dict[str, list[Run]] = {}
    for run in runs:
        groups.setdefault(seed_group_key(run.result), []).append(run)
    return [_row(members) for members in groups.values()]


def _row(runs: list[Run]) -> Row:
    first = runs[0].result
    bests = [fold.best for run in runs for fold in run.result.folds if fold.best is not None]
    tests = [run.result.test_summary for run in runs if run.result.test_summary is not None]
    test_ci = None
    if len(runs) > 1:
        test = Stat.of([summary.bca_mean for summary in tests])
        test_ci = bootstrap_ci([summary.bca_mean for summary in tests])
    elif tests:
        summary = tests[0]
        test = Stat(summary.bca_mean, summary.bca_sd if summary.n_folds > 1 else None, summary.n_folds)
    else:
        test = None
    to_best = [study for study in map(_to_best, runs) if study is not None]
    searches = [_search(run, fold) for run in runs for fold in run.result.folds]
    statuses = sorted({run.result.status for run in runs})
    return Row(
        label=", ".join(run.result.job for run in runs) + (OPTIMISTIC_MARK if first.select_on == "test" else ""),
        optimistic=first.select_on == "test",
        jobs=[run.result.job for run in runs],
        paths=[str(run.path.parent) for run in runs],
        seeds=[_seed(run) for run in runs],
        engine=str(first.spec.get("engine", {}).get("name", "?")),
        pruner=pruner_label(first),
        dataset=first.data.dataset,
        backbone=backbone_label(first),
        protocol=str(first.data.protocol.get("name", "?")),
        status="/".join(statuses),
        trials=statistics.fmean(len(run.result.trials) for run in runs),
        pruned=statistics.fmean(sum(t.status == "pruned" for t in run.result.trials) for run in runs),
        epochs_spent=Stat.of([float(fold.epochs_spent) for run in runs if run.result.pruning is not None
                              for fold in run.result.folds]),
        folds=len(first.folds),
        best_val=Stat.of([best.val_bca for best in bests]),
        best_pruned=sum(best.pruned for best in bests),
        test=test,
        minutes_to_best=Stat.of([minutes for minutes, _ in to_best]),
        efficiency=Stat.of([efficiency for _, efficiency in to_best if efficiency is not None]),
        thresholds=_thresholds(runs),
        test_ci=test_ci,
        alc=Stat.of([search.alc for search in searches if search.alc is not None]),
        transfer=_transfer(runs),
        searches=searches,
        runs=runs,
        **_space(runs),
    )


def _space(runs: list[Run]) -> dict[str, Any]:
    """``space_size`` and ``space_trials`` when every search of the row records a finite
    space of one size (a grid's: the seed only reorders it); else nothing."""
    folds = [fold for run in runs for fold in run.result.folds]
    sizes = {fold.search_space_size for fold in folds}
    if len(sizes) != 1 or None in sizes or any(fold.trials_run is None for fold in folds):
        return {}
    return {"space_size": sizes.pop(), "space_trials": statistics.fmean(fold.trials_run for fold in folds)}


def _seed(run: Run) -> int:
    return int(run.result.spec.get("seed", 0))


def _to_best(run: Run) -> tuple[float, float | None] | None:
    """A run's study minutes to best (summed over its folds) and its 𝓔: the mean best
    validation BCA over folds / those minutes. None when a fold has no best."""
    bests = [fold.best for fold in run.result.folds]
    if not bests or any(best is None for best in bests):
        return None
    minutes = math.fsum(best.minutes for best in bests)
    value = statistics.fmean(best.val_bca for best in bests)
    return minutes, (value / minutes if minutes > 0 else None)


def _search(run: Run, fold) -> Search:
    budget = alc_budget_s(run.result, fold)
    trials = [trial for trial in run.result.trials if trial.fold == fold.fold]
    best = fold.best
    return Search(
        job=run.result.job,
        seed=_seed(run),
        fold=fold.fold,
        best_val=best.val_bca if best else None,
        minutes_to_best=best.minutes if best else None,
        efficiency=best.efficiency if best else None,
        alc=alc(trials, budget),
        alc_budget_s=budget,
        search_seconds=fold.search_seconds,
        thresholds=[hit.model_dump(mode="json") for hit in fold.thresholds],
    )


def _run_threshold(run: Run, threshold: float) -> tuple[int, int, float | None, int | None] | None:
    """(folds, folds reached, study minutes, trial) of one run, or None when the run has
    no such threshold. Minutes: summed over the folds, only when every fold reached it;
    trial: the one fold's trial number."""
    hits = [next((hit for hit in fold.thresholds if hit.threshold == threshold), None) for fold in run.result.folds]
    if not hits or any(hit is None for hit in hits):
        return None
    reached = [hit for hit in hits if hit.reached and hit.minutes is not None]
    if len(reached) < len(hits):
        return len(hits), len(reached), None, None
    trial = hits[0].trial if len(hits) == 1 else None
    return len(hits), len(reached), math.fsum(hit.minutes for hit in hits), trial


def _thresholds(runs: list[Run]) -> dict[float, ThresholdCell]:
    cells: dict[float, ThresholdCell] = {}
    values = sorted({hit.threshold for run in runs for fold in run.result.folds for hit in fold.thresholds})
    for threshold in values:
        per_run = [cell for cell in (_run_threshold(run, threshold) for run in runs) if cell is not None]
        reached = [(minutes, trial) for _, _, minutes, trial in per_run if minutes is not None]
        if len(per_run) == 1:
            minutes = reached[0][0] if reached else None
            trial = reached[0][1] if reached else None
        else:
            minutes = median([m for m, _ in reached])
            trial = median([t for _, t in reached if t is not None])
        cells[threshold] = ThresholdCell(
            threshold=threshold,
            reached=len(reached),
            runs=len(per_run),
            searches=sum(folds for folds, _, _, _ in per_run),
            searches_reached=sum(done for _, done, _, _ in per_run),
            minutes=minutes,
            trial=trial,
            efficiency=threshold / minutes if minutes else None,
        )
    return cells


def _transfer(runs: list[Run]) -> dict[str, Stat]:
    targets = sorted({target for run in runs for target in run.result.transfer})
    out = {}
    for target in targets:
        scores = [run.result.transfer[target] for run in runs if target in run.result.transfer]
        if len(scores) == 1 and len(scores[0].bca_per_fold) > 1:
            out[target] = Stat(scores[0].bca, scores[0].bca_sd, len(scores[0].bca_per_fold))
        else:
            out[target] = Stat.of([score.bca for score in scores])
    return out


def rank(rows: list[Row]) -> list[Row]:
    """Best first: test BCA, then best validation BCA (missing values last), then label."""

    def key(row: Row) -> tuple:
        test = row.test.mean if row.test is not None else -math.inf
        val = row.best_val.mean if row.best_val is not None else -math.inf
        return (-test, -val, row.label)

    return sorted(rows, key=key)


def group_rows(rows: list[Row], by: str | None) -> list[tuple[str | None, list[Row]]]:
    """``[(heading, ranked rows)]``: one group per distinct ``by`` value (sorted), or a
    single group with heading ``None``. Optimistic rows (``select_on: test``: their test
    score was selected on itself) never rank with honest ones: they follow in groups of
    their own, headed ``optimistic: ...``, and their job label says so."""
    if by is not None and by not in GROUP_KEYS:
        raise UserError(f"--by {by}: choose one of {', '.join(GROUP_KEYS)}")
    honest = [row for row in rows if not row.optimistic]
    optimistic = [row for row in rows if row.optimistic]
    groups: list[tuple[str | None, list[Row]]] = []
    if by is None:
        groups = [(None, rank(honest))] if honest or not optimistic else []
        if optimistic:
            groups.append((OPTIMISTIC_HEADING, rank(optimistic)))
        return groups
    for prefix, members in (("", honest), ("optimistic, ", optimistic)):
        keys = sorted({row.key(by) for row in members})
        groups += [(f"{prefix}{by}: {key}", rank([row for row in members if row.key(by) == key])) for key in keys]
    return groups


# --- engines compared across seeds ----------------------------------------------------


@dataclass
class Comparison:
    """Rows whose specs differ only in the engine, on test BCA paired by seed."""

    dataset: str
    protocol: str
    backbone: str
    pruner: str
    engines: list[str]
    rows: list[Row]
    values: dict[str, dict[int, float]]  # engine -> seed -> test BCA (mean of that seed's runs)
    test: PairedTest

    def means(self) -> dict[str, float | None]:
        """Each engine's mean test BCA over the paired seeds."""
        seeds = self.test.seeds
        return {engine: statistics.fmean(self.values[engine][seed] for seed in seeds) if seeds else None
                for engine in self.engines}

    def as_json(self) -> dict[str, Any]:
        test = self.test
        return {
            "dataset": self.dataset,
            "protocol": self.protocol,
            "backbone": self.backbone,
            "pruner": None if self.pruner == NO_PRUNER else self.pruner,
            "engines": self.engines,
            "jobs": {engine: row.jobs for engine, row in zip(self.engines, self.rows)},
            "seeds": test.seeds,
            "n_seeds": len(test.seeds),
            "test": test.test,
            "statistic": test.statistic,
            "p_value": test.p_value,
            "exact": test.exact,
            "p_floor": test.p_floor,
            "n_pairs": test.n_pairs,
            "note": test.note,
            "mean_test_bca": self.means(),
            "average_ranks": test.average_ranks or None,
            "pairs": [{"seed": seed, "test_bca": {engine: self.values[engine][seed] for engine in self.engines}}
                      for seed in test.seeds],
        }


def compare_engines(rows: list[Row]) -> list[Comparison]:
    """One comparison per set of two or more rows whose specs differ only in the engine
    (same dataset, protocol, backbone, search space, budget, pruner, ...), in order of
    first appearance, engines sorted by name; a seed's test BCA is the mean of that
    seed's runs in the row."""
    sets: dict[str, list[Row]] = {}
    for row in rows:
        sets.setdefault(seed_group_key(row.runs[0].result, ("name", "seed", "engine")), []).append(row)
    out = []
    for members in sets.values():
        if len(members) < 2:
            continue
        labelled = sorted(zip(_engine_labels(members), members), key=lambda pair: pair[0])
        engines, members = [label for label, _ in labelled], [row for _, row in labelled]
        values = {}
        for engine, row in zip(engines, members):
            by_seed: dict[int, list[float]] = {}
            for run in row.runs:
                if run.result.test_summary is not None:
                    by_seed.setdefault(_seed(run), []).append(run.result.test_summary.bca_mean)
            values[engine] = {seed: statistics.fmean(scores) for seed, scores in by_seed.items()}
        first = members[0]
        out.append(Comparison(first.dataset, first.protocol, first.backbone, first.pruner, engines, members, values,
                              paired_test(values)))
    return out


def _engine_labels(rows: list[Row]) -> list[str]:
    """The engine's name, with its options where two rows share a name."""
    names = [row.engine for row in rows]
    labels = []
    for row in rows:
        label = row.engine
        options = row.runs[0].result.spec.get("engine", {}).get("options") or {}
        if names.count(row.engine) > 1 and options:
            label += "(" + ", ".join(f"{k}={v}" for k, v in sorted(options.items())) + ")"
        labels.append(label)
    return labels


@dataclass
class Board:
    """What every output format renders."""

    loaded: Loaded
    by: str | None
    groups: list[tuple[str | None, list[Row]]]
    thresholds: list[float]
    targets: list[str]
    comparisons: list[Comparison] = field(default_factory=list)

    @property
    def rows(self) -> list[Row]:
        return [row for _, rows in self.groups for row in rows]


def make_board(root: Path, by: str | None = None) -> Board:
    loaded = load_results(root)
    rows = build_rows(loaded.runs)
    return Board(
        loaded=loaded,
        by=by,
        groups=group_rows(rows, by),
        thresholds=sorted({t for row in rows for t in row.thresholds}),
        targets=sorted({t for row in rows for t in row.transfer}),
        comparisons=compare_engines(rows),
    )


# --- cells ----------------------------------------------------------------------------


def columns(board: Board) -> list[str]:
    """Column headings, in order (shared by every format)."""
    head = ["rank", "job", "engine", "pruner", "dataset", "backbone", "protocol", "seeds", "trials",
            "space covered", "pruned", "epochs spent", "best val BCA", "test BCA", "test BCA 95% CI", "min to best",
            "𝓔 (BCA/min)", "alc"]
    head += [f"≥{t:g} min (trial)" for t in board.thresholds]
    head += [f"{target} BCA" for target in board.targets]
    return head


def cells(board: Board, position: int, row: Row) -> list[str]:
    """Display strings for one row (3 decimals for BCA and ALC, 2 for minutes)."""
    out = [str(position), row.label, row.engine, row.pruner, row.dataset, row.backbone, row.protocol,
           str(len(set(row.seeds))), _number(row.trials, 1), fmt_space(row), fmt_pruned(row),
           _number(row.epochs_spent.mean if row.epochs_spent else None, 1), fmt_best(row), fmt_stat(row.test),
           fmt_ci(row.test_ci), fmt_stat(row.minutes_to_best, 2, sd=False), fmt_stat(row.efficiency, 2, sd=False),
           fmt_stat(row.alc, sd=False)]
    for threshold in board.thresholds:
        out.append(fmt_threshold(row.thresholds.get(threshold)))
    for target in board.targets:
        out.append(fmt_stat(row.transfer.get(target)))
    return out


def comparison_columns() -> list[str]:
    return ["dataset", "protocol", "backbone", "pruner", "engines: mean test BCA (average rank)", "paired seeds",
            "test", "statistic", "p", "note"]


def comparison_cells(comparison: Comparison) -> list[str]:
    """Display strings for one paired comparison."""
    test, means = comparison.test, comparison.means()
    engines = "; ".join(
        f"{engine} {means[engine]:.3f}" + (f" ({test.average_ranks[engine]:.2f})" if test.average_ranks else "")
        if means[engine] is not None else f"{engine} —"
        for engine in comparison.engines
    )
    symbol = {"wilcoxon": "W", "friedman": "χ²"}.get(test.test or "", "")
    statistic = "—" if test.statistic is None else f"{symbol} = {test.statistic:.3g}"
    p = test.note if test.test is None else ("—" if test.p_value is None else f"{test.p_value:.4g}")
    return [comparison.dataset, comparison.protocol, comparison.backbone, comparison.pruner, engines,
            str(len(test.seeds)), test.test or "—", statistic, p, test.note if test.test else "—"]


def fmt_ci(interval: Interval | None, digits: int = 3) -> str:
    if interval is None:
        return "—"
    return f"[{interval.low:.{digits}f}, {interval.high:.{digits}f}]"


def fmt_stat(value: Stat | None, digits: int = 3, sd: bool = True) -> str:
    if value is None:
        return "—"
    text = f"{value.mean:.{digits}f}"
    if sd and value.sd is not None:
        text += f" ± {value.sd:.{digits}f}"
    return text


def fmt_best(row: Row) -> str:
    """Best validation BCA; marked when it is a pruned trial's partial score in some of the
    row's searches (those where no trial completed)."""
    text = fmt_stat(row.best_val)
    if row.best_pruned and row.best_val is not None:
        share = "" if row.best_pruned == row.best_val.n else f"{row.best_pruned}/{row.best_val.n} "
        text += f" ({share}pruned)"
    return text


def fmt_space(row: Row) -> str:
    """How much of a finite search space (a grid) a search ran: ``15/108 (14%)`` (mean
    trials per search / configurations); ``—`` for sampled spaces."""
    if row.space_covered is None:
        return "—"
    percent = 100 * row.space_covered
    share = f"{math.floor(percent + 0.5)}%" if percent >= 1 or percent == 0 else f"{percent:.2g}%"
    return f"{_number(row.space_trials, 1)}/{row.space_size} ({share})"


def fmt_pruned(row: Row) -> str:
    """Trials pruned / trials (means over the row's runs); ``—`` without a pruner."""
    if row.pruner == NO_PRUNER and not row.pruned:
        return "—"
    return f"{_number(row.pruned, 1)}/{_number(row.trials, 1)}"


def fmt_threshold(cell: ThresholdCell | None) -> str:
    """One run: its minutes (``(#trial)`` for one fold, ``(Σ n folds)`` for several);
    several runs: the median minutes and the seeds that reached it (``12.30 (3/5)``)."""
    if cell is None:
        return "—"
    if cell.runs > 1:
        if not cell.reached:
            return f"not reached (0/{cell.runs})"
        return f"{cell.minutes:.2f} ({cell.reached}/{cell.runs})"
    if not cell.reached:
        if cell.searches > 1 and cell.searches_reached:
            return f"not reached ({cell.searches_reached}/{cell.searches} folds)"
        return "not reached"
    if cell.searches > 1:
        return f"{cell.minutes:.2f} (Σ {cell.searches} folds)"
    return f"{cell.minutes:.2f} (#{_number(cell.trial, 1)})"


def _number(value: float | None, digits: int) -> str:
    if value is None:
        return "—"
    return str(int(value)) if float(value).is_integer() else f"{value:.{digits}f}"
