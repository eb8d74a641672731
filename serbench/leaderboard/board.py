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
  the holdout protocols); best validation BCA, minutes to best, 𝓔, time to each
  threshold and epochs spent are means over all searches of the row's runs (epochs spent
  over the runs that record them: none from before pruners). Test BCA is a run's
  ``test_summary.bca_mean``; its ``sd`` is the spread over seeds when a row has several
  runs, else over folds when the run has several, else ``None``. Standard deviations are
  population ones, as in ``test_summary``. A row whose searches record a finite search
  space (a grid: ``search_space_size``) says how much of it they ran (``space covered``:
  mean trials per search / its size).
- :func:`rank` orders rows by test BCA (descending, missing last), then best validation
  BCA, then job label; :func:`group_rows` splits them under a heading per ``--by`` key.
"""

from __future__ import annotations

import json
import math
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from serbench.errors import UserError
from serbench.results.schema import Result
from serbench.spec.job import LATER_DEFAULTS

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
    """Time to one threshold over a row's searches: means over those that reached it."""

    threshold: float
    reached: int
    searches: int
    minutes: float | None
    trial: float | None


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
    transfer: dict[str, Stat] = field(default_factory=dict)
    runs: list[Run] = field(default_factory=list, repr=False)
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
            "minutes_to_best": stat(self.minutes_to_best),
            "efficiency": stat(self.efficiency),
            "thresholds": [
                {
                    "threshold": cell.threshold,
                    "reached": cell.reached,
                    "searches": cell.searches,
                    "minutes": cell.minutes,
                    "trial": cell.trial,
                }
                for cell in self.thresholds.values()
            ],
            "transfer_bca": {target: stat(value) for target, value in self.transfer.items()},
            "space_size": self.space_size,
            "space_trials": self.space_trials,
            "space_covered": self.space_covered,
        }


def seed_group_key(result: Result) -> str:
    """Runs with equal keys differ only in seed and name. Sections added after results
    were first written are left out while at their defaults (as the study's fingerprint
    does), so older results group with their reruns."""
    spec = {k: v for k, v in result.spec.items() if k not in ("name", "seed")}
    for key, default in LATER_DEFAULTS.items():
        if spec.get(key) == default:
            spec.pop(key)
    budget = spec.get("budget")
    if isinstance(budget, dict) and budget.get("epochs") is None:
        spec["budget"] = {k: v for k, v in budget.items() if k != "epochs"}
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
    searches = [(fold.best, fold.thresholds) for run in runs for fold in run.result.folds]
    bests = [best for best, _ in searches if best is not None]
    tests = [run.result.test_summary for run in runs if run.result.test_summary is not None]
    if len(runs) > 1:
        test = Stat.of([summary.bca_mean for summary in tests])
    elif tests:
        summary = tests[0]
        test = Stat(summary.bca_mean, summary.bca_sd if summary.n_folds > 1 else None, summary.n_folds)
    else:
        test = None
    statuses = sorted({run.result.status for run in runs})
    return Row(
        label=", ".join(run.result.job for run in runs),
        jobs=[run.result.job for run in runs],
        paths=[str(run.path.parent) for run in runs],
        seeds=[int(run.result.spec.get("seed", 0)) for run in runs],
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
        minutes_to_best=Stat.of([best.minutes for best in bests]),
        efficiency=Stat.of([best.efficiency for best in bests if best.efficiency is not None]),
        thresholds=_thresholds(searches),
        transfer=_transfer(runs),
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


def _thresholds(searches: list) -> dict[float, ThresholdCell]:
    cells: dict[float, ThresholdCell] = {}
    for threshold in sorted({hit.threshold for _, hits in searches for hit in hits}):
        hits = [hit for _, hits in searches for hit in hits if hit.threshold == threshold]
        reached = [hit for hit in hits if hit.reached and hit.minutes is not None]
        cells[threshold] = ThresholdCell(
            threshold=threshold,
            reached=len(reached),
            searches=len(hits),
            minutes=statistics.fmean(hit.minutes for hit in reached) if reached else None,
            trial=statistics.fmean(hit.trial for hit in reached if hit.trial is not None) if reached else None,
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
    single group with heading ``None``."""
    if by is None:
        return [(None, rank(rows))]
    if by not in GROUP_KEYS:
        raise UserError(f"--by {by}: choose one of {', '.join(GROUP_KEYS)}")
    keys = sorted({row.key(by) for row in rows})
    return [(f"{by}: {key}", rank([row for row in rows if row.key(by) == key])) for key in keys]


@dataclass
class Board:
    """What every output format renders."""

    loaded: Loaded
    by: str | None
    groups: list[tuple[str | None, list[Row]]]
    thresholds: list[float]
    targets: list[str]

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
    )


# --- cells ----------------------------------------------------------------------------


def columns(board: Board) -> list[str]:
    """Column headings, in order (shared by every format)."""
    head = ["rank", "job", "engine", "pruner", "dataset", "backbone", "protocol", "seeds", "trials",
            "space covered", "pruned", "epochs spent", "best val BCA", "test BCA", "min to best", "𝓔 (BCA/min)"]
    head += [f"≥{t:g} min (trial)" for t in board.thresholds]
    head += [f"{target} BCA" for target in board.targets]
    return head


def cells(board: Board, position: int, row: Row) -> list[str]:
    """Display strings for one row (3 decimals for BCA, 2 for minutes)."""
    out = [str(position), row.label, row.engine, row.pruner, row.dataset, row.backbone, row.protocol,
           str(len(set(row.seeds))), _number(row.trials, 1), fmt_space(row), fmt_pruned(row),
           _number(row.epochs_spent.mean if row.epochs_spent else None, 1), fmt_best(row), fmt_stat(row.test),
           fmt_stat(row.minutes_to_best, 2, sd=False), fmt_stat(row.efficiency, 2, sd=False)]
    for threshold in board.thresholds:
        out.append(fmt_threshold(row.thresholds.get(threshold)))
    for target in board.targets:
        out.append(fmt_stat(row.transfer.get(target)))
    return out


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
    if cell is None:
        return "—"
    if not cell.reached:
        return "not reached"
    text = f"{cell.minutes:.2f} (#{_number(cell.trial, 1)})"
    if cell.reached < cell.searches:
        text += f" {cell.reached}/{cell.searches}"
    return text


def _number(value: float | None, digits: int) -> str:
    if value is None:
        return "—"
    return str(int(value)) if float(value).is_integer() else f"{value:.{digits}f}"
