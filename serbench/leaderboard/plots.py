"""The report's figures, drawn with matplotlib (Agg, no pyplot state) from validated
results.

Contract: :func:`make_plots` returns one :class:`Plot` per kind in :data:`PLOT_KINDS`
order, leaving out ``curves`` when no trial has a curve (results from before epoch
reports), ``transfer`` when no run has transfer scores and ``confusion`` when the
leaderboard's first row has no test score. Every plot has a ``kind`` (its HTML id is ``fig-<kind>``), a title
drawn on the figure, and an alt text. Colours: one per job, the same in every figure;
the hyperparameter figure colours by engine.

Pruned trials: their value is a partial score (the last report before the pruner stopped
them), so it never raises a best-so-far line (:func:`best_so_far`: completed trials
only); the trials figure draws them as hollow circles, the curves figure as dashed lines
ending in × at the epoch they were stopped after. A plot's ``marks`` count the artists it
drew with the SVG group id ``fig-<kind>-<mark>-<i>`` (``i`` from 0): one per completed
or pruned trial in the curves figure, one per pruned trial in the trials figure, and in
the anytime figure a ``mean`` line and a ``band`` per leaderboard row of several seeds;
:func:`serbench.leaderboard.check.check_html` counts them in the markup.

Anytime figure: a row of one run draws one best-so-far line per fold, as it always has;
a row of several seeds (runs whose specs differ only in seed) draws instead the mean
best-so-far line over its searches (seeds, and folds where there are several) on a
common time grid (:func:`serbench.leaderboard.stats.mean_curve`: the union of their
steps; the mean starts once every search has a completed trial, and a search holds its
best after it ended), with a shaded band from the lowest to the highest search (min–max,
not ± sd: with a handful of seeds the range is what was seen, an sd would be a guess).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from serbench.leaderboard.board import Row, Run, build_rows, fmt_stat, rank, seed_group_key
from serbench.leaderboard.stats import mean_curve

PLOT_KINDS = ("anytime", "trials", "curves", "hparams", "confusion", "transfer")


@dataclass
class Plot:
    kind: str
    title: str
    alt: str
    figure: Any  # matplotlib.figure.Figure
    marks: dict[str, int] = field(default_factory=dict)  # mark -> artists with gid fig-<kind>-<mark>-<i>

    @property
    def id(self) -> str:
        return f"fig-{self.kind}"

    def gid(self, mark: str) -> str:
        """The SVG group id of the next ``mark`` artist (and count it)."""
        index = self.marks.get(mark, 0)
        self.marks[mark] = index + 1
        return f"{self.id}-{mark}-{index}"


def _figure(width: float, height: float):
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), layout="constrained")


def _colours(keys: list[str]) -> dict[str, Any]:
    from matplotlib import colormaps

    palette = colormaps["tab10" if len(keys) <= 10 else "tab20"].colors
    return {key: palette[i % len(palette)] for i, key in enumerate(keys)}


def make_plots(runs: list[Run], top: Row | None = None) -> list[Plot]:
    """The figures for ``runs``; the confusion matrix is the one of ``top``, the
    leaderboard's first row (default: the first row of ``rank(build_rows(runs))``)."""
    colours = _colours([run.label for run in runs])
    plots = [anytime_plot(runs, colours), trials_plot(runs, colours)]
    if any(trial.curve for run in runs for trial in run.result.trials):
        plots.append(curves_plot(runs, colours))
    plots.append(hparams_plot(runs))
    if top is None:
        top = rank(build_rows(runs))[0]
    if any(run.result.test_summary is not None for run in top.runs):
        plots.append(confusion_plot(top))
    if any(run.result.transfer for run in runs):
        plots.append(transfer_plot(runs, colours))
    return plots


def _outside_legend(ax) -> None:
    """Legend right of the axes, so it never hides a line."""
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1), title="job", title_fontsize=8)


def _by_fold(run: Run) -> dict[int, list]:
    folds: dict[int, list] = {}
    for trial in sorted(run.result.trials, key=lambda t: (t.fold, t.number)):
        folds.setdefault(trial.fold, []).append(trial)
    return folds


def _thresholds(runs: list[Run]) -> list[float]:
    values = {hit.threshold for run in runs for fold in run.result.folds for hit in fold.thresholds}
    values |= {float(t) for run in runs for t in run.result.spec.get("thresholds", [])}
    return sorted(values)


def best_so_far(trials: list) -> tuple[list[float], list[float]]:
    """One fold's best-so-far line: study minutes (0, then each trial's journal time, in
    journal order) and the best validation BCA of the *completed* trials journalled by
    then (nan before the first). Failed trials score nothing and a pruned trial's value is
    a partial score, so neither raises the line."""
    xs, ys, best = [0.0], [math.nan], -math.inf
    for trial in sorted(trials, key=lambda t: (t.cumulative_s, t.number)):
        if trial.status == "ok" and trial.value is not None:
            best = max(best, trial.value)
        xs.append(trial.cumulative_s / 60)
        ys.append(best if best > -math.inf else math.nan)
    return xs, ys


def anytime_plot(runs: list[Run], colours: dict[str, Any]) -> Plot:
    """Best-so-far validation BCA (completed trials) against study minutes: one line per
    job (per fold), or for a row of several seeds their mean with a min–max band; dashed
    lines at the thresholds."""
    import numpy as np

    title = "Anytime performance: best validation BCA so far against study minutes"
    fig = _figure(10, 4.6)
    plot = Plot("anytime", title, "", fig)
    ax = fig.add_subplot()
    groups: dict[str, list[Run]] = {}
    for run in runs:
        groups.setdefault(seed_group_key(run.result), []).append(run)
    singles, seeded = 0, []
    for members in groups.values():
        if len(members) == 1:
            run = members[0]
            singles += 1
            labelled = False
            for trials in _by_fold(run).values():
                xs, ys = best_so_far(trials)
                ax.step(xs, ys, where="post", color=colours[run.label], marker="o", markersize=3,
                        linewidth=1.6, label=None if labelled else run.label)
                labelled = True
            continue
        curves = [best_so_far(trials) for run in members for trials in _by_fold(run).values()]
        curve = mean_curve(curves)
        if curve is None:
            continue
        colour = colours[members[0].label]
        seeds = len({int(run.result.spec.get("seed", 0)) for run in members})
        jobs = ", ".join(run.label for run in members) if len(members) <= 2 \
            else f"{members[0].label} … {members[-1].label}"
        label = f"{jobs} (mean of {seeds} seeds, band min–max)"
        ax.fill_between(curve.grid, np.ma.masked_invalid(curve.low), np.ma.masked_invalid(curve.high), step="post",
                        color=colour, alpha=0.2, linewidth=0, gid=plot.gid("band"))
        ax.step(curve.grid, curve.mean, where="post", color=colour, linewidth=2.2, label=label,
                gid=plot.gid("mean"))
        seeded.append((label, curve.curves))
    for threshold in _thresholds(runs):
        ax.axhline(threshold, color="0.35", linestyle="--", linewidth=1)
        ax.annotate(f"threshold {threshold:g}", (0, threshold), xycoords=("axes fraction", "data"),
                    xytext=(4, 2), textcoords="offset points", va="bottom", fontsize=8, color="0.35")
    pruned = any(trial.status == "pruned" for run in runs for trial in run.result.trials)
    ax.set(xlabel="study minutes (wall clock, from the first trial)",
           ylabel="best validation BCA so far" + (" (completed trials)" if pruned else ""), ylim=(0, 1.02))
    fig.suptitle(title)  # over the whole figure: a long legend narrows the axes
    ax.set_xlim(left=0)
    ax.grid(alpha=0.3)
    _outside_legend(ax)
    parts = []
    if singles:
        parts.append(f"step lines of best-so-far validation BCA against minutes for {singles} job(s)")
    for label, searches in seeded:
        parts.append(f"the mean best-so-far line of {label} over {searches} searches with a shaded min–max band")
    text = "; ".join(parts) or "no best-so-far line"
    plot.alt = text[0].upper() + text[1:] + (
        f", dashed lines at thresholds {', '.join(f'{t:g}' for t in _thresholds(runs)) or 'none'}"
        + ("; pruned trials' partial scores do not count." if pruned else "."))
    return plot


def trials_plot(runs: list[Run], colours: dict[str, Any]) -> Plot:
    """Validation BCA of every trial against its number: completed trials joined by a
    line, pruned ones as hollow circles at their partial score, failed ones as crosses
    at 0."""
    title = "Validation BCA per trial"
    fig = _figure(10, 4.2)
    plot = Plot("trials", title, "", fig)
    ax = fig.add_subplot()
    any_failed = False
    for run in runs:
        labelled = False
        for trials in _by_fold(run).values():
            ok = [t for t in trials if t.status == "ok" and t.value is not None]
            ax.plot([t.number for t in ok], [t.value for t in ok], color=colours[run.label], marker="o",
                    markersize=4, linewidth=1, label=None if labelled else run.label)
            for trial in trials:
                if trial.status == "pruned" and trial.value is not None:
                    ax.plot([trial.number], [trial.value], linestyle="none", marker="o", markersize=5,
                            markerfacecolor="none", markeredgewidth=1.2, color=colours[run.label],
                            clip_on=False, gid=plot.gid("pruned"))
            failed = [t.number for t in trials if t.status == "failed"]
            if failed:
                any_failed = True
                ax.plot(failed, [0] * len(failed), linestyle="none", marker="x", color=colours[run.label])
            labelled = True
    keys = (["× = failed"] if any_failed else []) + (["○ = pruned, its partial score"] if plot.marks else [])
    ax.set(xlabel="trial number" + (f" ({'; '.join(keys)})" if keys else ""), ylabel="validation BCA",
           ylim=(0, 1.02), title=title)
    ax.xaxis.get_major_locator().set_params(integer=True)
    ax.grid(alpha=0.3)
    _outside_legend(ax)
    plot.alt = f"Validation BCA of each trial against the trial number, one line per job ({len(runs)} jobs)"
    pruned = plot.marks.get("pruned", 0)
    plot.alt += f"; {pruned} pruned trial(s) as hollow circles at their partial score." if pruned else "."
    return plot


def curves_plot(runs: list[Run], colours: dict[str, Any]) -> Plot:
    """Validation BCA after each reported epoch: every trial's curve as a thin line in its
    job's colour (epoch 0: the frozen probe, where trials had one); completed trials solid,
    pruned ones dashed, ending in × at the epoch the pruner stopped them after."""
    from matplotlib.lines import Line2D

    title = "Validation BCA per epoch: every trial's curve"
    fig = _figure(10, 4.6)
    plot = Plot("curves", title, "", fig)
    ax = fig.add_subplot()
    epochs: set[int] = set()
    drawn: list[str] = []
    for run in runs:
        colour = colours[run.label]
        for trials in _by_fold(run).values():
            for trial in trials:
                if not trial.curve or trial.status not in ("ok", "pruned"):
                    continue
                xs = [point.epoch for point in trial.curve]
                ys = [point.bca for point in trial.curve]
                epochs.update(xs)
                if run.label not in drawn:
                    drawn.append(run.label)
                if trial.status == "ok":
                    ax.plot(xs, ys, color=colour, linewidth=1, alpha=0.85, marker="o", markersize=2.5,
                            gid=plot.gid("completed"))
                    continue
                ax.plot(xs, ys, color=colour, linewidth=1, alpha=0.85, linestyle=(0, (4, 2)),
                        gid=plot.gid("pruned"))
                stop = trial.pruned_at if trial.pruned_at is not None else xs[-1]
                value = next((y for x, y in zip(xs, ys) if x == stop), ys[-1])
                ax.plot([stop], [value], linestyle="none", marker="x", markersize=7, markeredgewidth=1.6,
                        color=colour, clip_on=False, gid=plot.gid("stop"))
    probe = 0 in epochs
    ax.set(xlabel="epoch" + (" (0: the frozen probe, encoder frozen)" if probe else ""),
           ylabel="validation BCA", ylim=(-0.02, 1.02), title=title)
    low, high = (min(epochs), max(epochs)) if epochs else (1, 1)
    ax.set_xlim(low - 0.25, high + 0.25)
    ax.xaxis.get_major_locator().set_params(integer=True)
    ax.grid(alpha=0.3)
    jobs = [Line2D([], [], color=colours[label], linewidth=1.6, label=label) for label in drawn]
    styles = [Line2D([], [], color="0.2", linewidth=1, marker="o", markersize=2.5, label="completed trial")]
    if plot.marks.get("pruned"):
        styles.append(Line2D([], [], color="0.2", linewidth=1, linestyle=(0, (4, 2)), marker="x", markersize=7,
                             markeredgewidth=1.6, label="pruned trial (× where stopped)"))
    legend = ax.legend(handles=jobs, fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1), title="job",
                       title_fontsize=8)
    ax.add_artist(legend)
    ax.legend(handles=styles, fontsize=8, loc="lower left", bbox_to_anchor=(1.01, 0), title="trials",
              title_fontsize=8)
    completed, pruned = plot.marks.get("completed", 0), plot.marks.get("pruned", 0)
    plot.alt = (f"Validation BCA after each reported epoch for {completed + pruned} trial(s) of {len(drawn)} job(s): "
                f"{completed} completed (solid lines) and {pruned} pruned (dashed lines ending in a cross at the "
                f"epoch the pruner stopped them after)" + ("; epoch 0 is the frozen probe." if probe else "."))
    return plot


def hparams_plot(runs: list[Run]) -> Plot:
    """Small multiples: each hyperparameter's value against the trial number, by engine."""
    title = "Hyperparameters chosen by each engine"
    keys = sorted({key for run in runs for trial in run.result.trials for key in trial.params})
    from matplotlib.lines import Line2D

    engines = sorted({str(run.result.spec.get("engine", {}).get("name", "?")) for run in runs})
    colours = _colours(engines)
    ncols = 2 if len(keys) > 1 else 1
    nrows = max(1, math.ceil(len(keys) / ncols))
    fig = _figure(10, 1.2 + 2.4 * nrows)
    fig.suptitle(title)
    for index, key in enumerate(keys or ["(no tuned hyperparameters)"]):
        ax = fig.add_subplot(nrows, ncols, index + 1)
        values = [t.params.get(key) for run in runs for t in run.result.trials if key in t.params]
        numeric = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values)
        categories = sorted({repr(v) for v in values})
        for run in runs:
            engine = str(run.result.spec.get("engine", {}).get("name", "?"))
            points = [(t.number, t.params[key]) for t in run.result.trials if key in t.params]
            if not points:
                continue
            xs = [x for x, _ in points]
            ys = [y if numeric else categories.index(repr(y)) for _, y in points]
            ax.scatter(xs, ys, color=colours[engine], s=22, alpha=0.8)
        if numeric and _log_scale(runs, key) and all(v > 0 for v in values):
            ax.set_yscale("log")
        elif all(isinstance(v, int) for v in values):
            ax.yaxis.get_major_locator().set_params(integer=True)
        if not numeric:
            ax.set_yticks(range(len(categories)), [c.strip("'") for c in categories])
        ax.set_title(key, fontsize=10)
        ax.set_xlabel("trial number", fontsize=8)
        ax.xaxis.get_major_locator().set_params(integer=True)
        ax.tick_params(labelsize=8)
        ax.grid(alpha=0.3)
    handles = [Line2D([], [], linestyle="none", marker="o", color=colours[e], label=e) for e in engines]
    fig.legend(handles=handles, loc="outside right upper", fontsize=8, title="engine", title_fontsize=8)
    alt = (f"One panel per hyperparameter ({', '.join(keys) or 'none'}): the value each trial used "
           f"against its number, coloured by engine ({', '.join(engines)}).")
    return Plot("hparams", title, alt, fig)


def _log_scale(runs: list[Run], key: str) -> bool:
    for run in runs:
        param = run.result.spec.get("search_space", {}).get(key)
        if isinstance(param, dict) and param.get("log"):
            return True
    return False


def confusion_plot(row: Row) -> Plot:
    """The test confusion matrix of a leaderboard row: summed over folds, and over its
    seeds when they share the classes (else the seed with the best test BCA alone)."""
    scored = [run.result for run in row.runs if run.result.test_summary is not None]
    labels = _labels(scored[0])
    if any(_labels(result) != labels for result in scored):
        scored = [max(scored, key=lambda result: result.test_summary.bca_mean)]
        labels = _labels(scored[0])
    size = len(scored[0].test_summary.confusion_matrix)
    matrix = [[sum(r.test_summary.confusion_matrix[i][j] for r in scored) for j in range(size)] for i in range(size)]
    if len(labels) != size:
        labels = [str(i) for i in range(size)]
    total = sum(map(sum, matrix))
    jobs = ", ".join(result.job for result in scored)
    bca = fmt_stat(row.test) if len(scored) == len(row.runs) else f"{scored[0].test_summary.bca_mean:.3f}"
    title = f"Test confusion matrix of the top-ranked row: {jobs} (test BCA {bca}, n={total})"
    side = min(3.2 + 0.4 * len(labels), 7.0)
    fig = _figure(side + 1.4, side)
    ax = fig.add_subplot()
    image = ax.imshow(matrix, cmap="Blues", vmin=0)
    peak = max((max(line) for line in matrix), default=0)
    for i, line in enumerate(matrix):
        for j, count in enumerate(line):
            ax.text(j, i, str(count), ha="center", va="center", fontsize=9,
                    color="white" if peak and count > peak / 2 else "black")
    ax.set_xticks(range(len(labels)), labels, rotation=45, ha="right")
    ax.set_yticks(range(len(labels)), labels)
    ax.set(xlabel="predicted", ylabel="true")
    ax.set_title(title, fontsize=10, wrap=True)
    fig.colorbar(image, ax=ax, shrink=0.8, label="utterances")
    alt = (f"Confusion matrix of {jobs} on the test split: rows true classes, columns predicted "
           f"({', '.join(labels)}), {total} utterances.")
    return Plot("confusion", title, alt, fig)


def _labels(result) -> list[str]:
    return list(result.test.labels) if result.test is not None else list(result.data.classes)


def transfer_plot(runs: list[Run], colours: dict[str, Any]) -> Plot:
    """Zero-shot transfer BCA per target corpus, one bar per job (sd over folds as error bars)."""
    title = "Zero-shot transfer: BCA per target corpus and job"
    with_transfer = [run for run in runs if run.result.transfer]
    targets = sorted({target for run in with_transfer for target in run.result.transfer})
    fig = _figure(10, 4.2)
    ax = fig.add_subplot()
    width = min(0.8 / len(with_transfer), 0.3)
    for index, run in enumerate(with_transfer):
        xs, heights, errors = [], [], []
        for position, target in enumerate(targets):
            score = run.result.transfer.get(target)
            if score is None:
                continue
            xs.append(position + width * (index + 0.5 - len(with_transfer) / 2))
            heights.append(score.bca)
            errors.append(score.bca_sd)
        bars = ax.bar(xs, heights, width * 0.9, yerr=errors if any(errors) else None,
                      color=colours[run.label], label=run.label, capsize=3)
        ax.bar_label(bars, fmt="%.3f", fontsize=8, padding=2)
    ax.set_xticks(range(len(targets)), targets)
    ax.set(ylabel="BCA (classes the target has)", ylim=(0, 1.05), xlim=(-0.6, len(targets) - 0.4), title=title)
    ax.grid(axis="y", alpha=0.3)
    _outside_legend(ax)
    alt = (f"Bars of zero-shot BCA on {', '.join(targets)} for {len(with_transfer)} job(s) with transfer results.")
    return Plot("transfer", title, alt, fig)
