"""Rich rendering of a study: progress bars for trials and epochs on stderr, and a
summary table on stdout at the end."""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from serbench.results.schema import FoldResult, Result, TrialRecord
from serbench.study.events import Stage, StudyEvents


class RichEvents(StudyEvents):
    """Use as a context manager around ``Study.run``."""

    def __init__(self, console: Console | None = None):
        self.console = console or Console(stderr=True)
        self.progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TextColumn("{task.fields[info]}"),
            console=self.console,
            transient=False,
        )
        self.trials_task = None
        self.epochs_task = None
        self.live = False
        self.status = None

    @contextmanager
    def preparing(self) -> Iterator[None]:
        """A transient spinner: if preparation fails on bad input, nothing but the
        one-line error is left on stderr."""
        with self.console.status("preparing") as status:
            self.status = status
            try:
                yield
            finally:
                self.status = None

    def __enter__(self) -> "RichEvents":
        self.progress.start()
        self.live = True
        return self

    def __exit__(self, *exc: Any) -> None:
        self.progress.stop()
        self.live = False

    def step(self, message: str) -> None:
        if self.status is not None:
            self.status.update(message)
        else:
            self.progress.console.log(message)

    def trials_started(self, total: int) -> None:
        self.trials_task = self.progress.add_task("trials", total=total, info="")

    def training_started(self, stage: Stage, trial: int, params: dict[str, Any], epochs: int) -> None:
        label = {Stage.FINAL: "final", Stage.PROBE: f"trial {trial} probe"}.get(stage, f"trial {trial}")
        shown = ", ".join(f"{k}={_short(v)}" for k, v in params.items())
        if self.epochs_task is None:
            self.epochs_task = self.progress.add_task("epochs", total=epochs, info="")
        self.progress.reset(self.epochs_task, total=epochs, description=f"{label} epochs", info=shown)

    def epoch_done(self, epoch: int, loss: float) -> None:
        if self.epochs_task is not None:
            self.progress.update(self.epochs_task, completed=epoch + 1, info=f"loss {loss:.3f}")

    def trial_done(self, record: TrialRecord) -> None:
        if record.status == "ok":
            info = f"last: {record.value:.3f}"
        elif record.status == "pruned":
            info = f"last: pruned after epoch {record.pruned_at} at {record.value:.3f}"
        else:
            info = f"last: failed ({record.reason})"
        self.progress.update(self.trials_task, advance=1, info=info)


def _short(value: Any) -> str:
    return f"{value:.3g}" if isinstance(value, float) else str(value)


def fold_score(fold: FoldResult, classes: list[str]) -> str:
    """``08: 0.927 (6 of 7 classes: no disgust)``: a fold's test BCA and, when its test
    split lacks some of the model's classes, over which classes it is averaged."""
    name = "+".join(fold.test_speakers) or f"fold {fold.fold}"
    if fold.test is None:
        return f"{name}: no test score"
    present = fold.test_classes or list(fold.test.per_class_recall)
    missing = [c for c in classes if c not in present]
    over = f" ({len(present)} of {len(classes)} classes: no {', '.join(missing)})" if missing else ""
    return f"{name}: {fold.test.bca:.3f}{over}"


def print_summary(result: Result, out_dir: Path, console: Console | None = None) -> None:
    console = console or Console()
    table = Table(title=f"job {result.job}", show_header=False)
    table.add_column("what")
    table.add_column("value", overflow="fold")
    ok = sum(t.status == "ok" for t in result.trials)
    pruned = sum(t.status == "pruned" for t in result.trials)
    pruned_text = f", {pruned} pruned" if pruned else ""
    table.add_row("trials", f"{len(result.trials)} ({ok} ok{pruned_text}), stopped by {result.stopped_by}")
    if result.pruning is not None and result.pruning.pruner != "none":
        table.add_row("pruning", f"{result.pruning.decided_by}; {result.pruning.epochs_spent} epochs trained")
    if result.best is not None:
        epoch = f" (its epoch {result.best.epoch})" if result.best.epoch is not None else ""
        table.add_row("best trial", f"{result.best.trial}{epoch}: {result.best.params}")
        table.add_row("validation BCA", f"{result.best.val_bca:.4f} after {result.best.minutes:.2f} min")
    for hit in result.thresholds:
        reached = f"trial {hit.trial} at {hit.minutes:.2f} min" if hit.reached else "not reached"
        table.add_row(f"val BCA >= {hit.threshold}", reached)
    if result.test is not None:
        table.add_row("test BCA", f"{result.test.bca:.4f} (accuracy {result.test.accuracy:.4f}, n={result.test.n})")
    elif result.test_summary is not None:
        summary = result.test_summary
        table.add_row(
            "test BCA", f"{summary.bca_mean:.4f} ± {summary.bca_sd:.4f} over {summary.n_folds} folds"
        )
        table.add_row("test BCA per fold", "; ".join(fold_score(fold, result.data.classes) for fold in result.folds))
    for name, transfer in result.transfer.items():
        table.add_row(f"transfer {name}", f"BCA {transfer.bca:.4f} (n={transfer.n}, dropped {transfer.dropped})")
    table.add_row("wall time", f"{result.wall_seconds:.1f} s")
    console.print(table)
    console.print(f"result: {out_dir / 'result.json'}", soft_wrap=True, highlight=False)
