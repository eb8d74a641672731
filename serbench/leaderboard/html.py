"""The static HTML report: one self-contained file (inline CSS, figures as inline SVG,
no script, no external URL) with the leaderboard and the figures of :mod:`serbench.leaderboard.plots`.

Contract: :func:`render_html` returns the page. It declares the figures it holds in
``<meta name="serbench-figures" content="kind kind ...">``, and each figure is
``<figure id="fig-<kind>" data-kind="<kind>">`` holding one ``<svg role="img"
aria-label="...">`` with a ``<title>`` and a ``<figcaption>``; a figure whose plot has
``marks`` also says ``data-marks="mark=count ..."`` (the SVG groups
``fig-<kind>-<mark>-<i>`` it holds): what :mod:`serbench.leaderboard.check` verifies.
"""

from __future__ import annotations

import html
import io
import re
from datetime import datetime, timezone

from serbench.leaderboard.board import Board, cells, columns, comparison_cells, comparison_columns, rank
from serbench.leaderboard.formats import COMPARISONS_NOTE, COMPARISONS_TITLE
from serbench.leaderboard.plots import Plot, make_plots

CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 24px auto; max-width: 1600px;
       color: #1d1d1f; background: #ffffff; padding: 0 16px; }
h1 { font-size: 1.6em; margin-bottom: 0.2em; }
h2 { font-size: 1.25em; margin-top: 1.6em; border-bottom: 1px solid #ddd; padding-bottom: 4px; }
h3 { font-size: 1.05em; margin: 1.2em 0 0.4em; }
p.meta, p.note { color: #555; font-size: 0.9em; }
div.scroll { overflow-x: auto; }
table.board { border-collapse: collapse; font-size: 0.78em; width: 100%; }
table.board th, table.board td { border: 1px solid #d0d0d7; padding: 3px 5px; text-align: left; vertical-align: top; }
table.board th { background: #f1f3f7; }
table.board td.num { text-align: right; white-space: nowrap; font-variant-numeric: tabular-nums; }
table.board tr.top td { background: #eef7ee; }
ul.skipped { color: #9a3412; font-size: 0.9em; }
figure { margin: 20px 0; padding: 8px; border: 1px solid #e3e3e8; border-radius: 4px; background: #fff; }
figure svg { display: block; max-width: 100%; height: auto; margin: 0 auto; }
figcaption { color: #444; font-size: 0.9em; margin-top: 6px; text-align: center; }
"""

_TEXT_COLUMNS = {"job", "engine", "pruner", "dataset", "backbone", "protocol"}


def render_html(board: Board, plots: list[Plot] | None = None) -> str:
    """The whole report; ``plots`` default to :func:`serbench.leaderboard.plots.make_plots` of the
    board's runs, with the confusion matrix of the board's overall first row."""
    if plots is None:
        plots = make_plots(board.loaded.runs, rank(board.rows)[0])
    figures = "\n".join(figure_html(plot) for plot in plots)
    kinds = " ".join(plot.kind for plot in plots)
    generated = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    n_runs, n_rows = len(board.loaded.runs), len(board.rows)
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="serbench-figures" content="{kinds}">
<title>serbench report: {_e(board.loaded.root)}</title>
<style>{CSS}</style>
</head>
<body>
<h1>serbench report</h1>
<p class="meta">{n_runs} result(s) from <code>{_e(board.loaded.root)}</code> in {n_rows} row(s); generated {generated}.</p>
{_skipped_html(board)}
<h2 id="leaderboard">Leaderboard</h2>
<p class="note">Ranked by test BCA, then best validation BCA. Jobs whose specs differ only in seed share a row:
their values are means, and ± is the (population) sd over seeds, or over folds for a single multi-fold job.
Pruner: what stopped unpromising trials (engine:NAME when the engine's own library decided; — none);
pruned: trials it stopped / trials; epochs spent: training epochs of a search's trials (mean over searches,
frozen probes not counted; — in results from before pruners); a best val BCA marked (pruned) is a pruned trial's
partial score, in searches where no trial completed.
Space covered: for a finite search space (a grid), trials per search / its configurations (— for sampled spaces).
Test BCA 95% CI: the percentile bootstrap interval of the mean test BCA over seeds (10000 resamples, seeded;
— with one seed). Min to best: study minutes to the best trial, summed over folds (LOSO);
𝓔 = best validation BCA / those minutes (a study-level figure, never a mean of per-fold ones).
alc: the area under the best-so-far curve, ALC = ∫ s(t) d(log(1 + t/t0)) / log(1 + T/t0) with t0 = 60 s and
T the wall-minutes budget (else the search's own time), mean over seeds and folds.
Threshold columns: study minutes to first reach the validation BCA (summed over folds), with the trial number in
brackets; with several seeds, the median over the seeds that reached it and how many did (3/5);
only completed trials reach a threshold or raise a best-so-far line (a pruned trial's value is a partial score).</p>
{_tables_html(board)}
{_comparisons_html(board)}
<h2 id="figures">Figures</h2>
{figures}
</body>
</html>
"""


def _e(value: object) -> str:
    return html.escape(str(value), quote=True)


def _skipped_html(board: Board) -> str:
    if not board.loaded.skipped:
        return ""
    items = "".join(f"<li><code>{_e(s.path)}</code>: {_e(s.reason)}</li>" for s in board.loaded.skipped)
    return f'<p class="note">Skipped files:</p>\n<ul class="skipped">{items}</ul>'


def _tables_html(board: Board) -> str:
    head = columns(board)
    out = []
    for heading, rows in board.groups:
        if heading:
            out.append(f"<h3>{_e(heading)}</h3>")
        ths = "".join(f"<th>{_e(name)}</th>" for name in head)
        lines = ['<div class="scroll"><table class="board">', f"<thead><tr>{ths}</tr></thead>", "<tbody>"]
        for position, row in enumerate(rows, 1):
            tds = "".join(
                f"<td>{_e(cell)}</td>" if name in _TEXT_COLUMNS else f'<td class="num">{_e(cell)}</td>'
                for name, cell in zip(head, cells(board, position, row))
            )
            lines.append(f'<tr class="top">{tds}</tr>' if position == 1 else f"<tr>{tds}</tr>")
        lines += ["</tbody>", "</table></div>"]
        out.append("\n".join(lines))
    return "\n".join(out)


def _comparisons_html(board: Board) -> str:
    if not board.comparisons:
        return ""
    ths = "".join(f"<th>{_e(name)}</th>" for name in comparison_columns())
    body = "".join("<tr>" + "".join(f"<td>{_e(cell)}</td>" for cell in comparison_cells(comparison)) + "</tr>"
                   for comparison in board.comparisons)
    return (f'<h2 id="comparisons">{_e(COMPARISONS_TITLE)}</h2>\n<p class="note">{_e(COMPARISONS_NOTE)}</p>\n'
            f'<div class="scroll"><table class="board comparisons">\n<thead><tr>{ths}</tr></thead>\n'
            f"<tbody>{body}</tbody>\n</table></div>")


def figure_html(plot: Plot) -> str:
    svg = svg_of(plot)
    marks = " ".join(f"{mark}={count}" for mark, count in sorted(plot.marks.items()))
    attributes = f' data-marks="{_e(marks)}"' if marks else ""
    return (f'<figure id="{plot.id}" data-kind="{plot.kind}"{attributes}>\n{svg}\n'
            f"<figcaption>{_e(plot.title)}</figcaption>\n</figure>")


def svg_of(plot: Plot) -> str:
    """The figure as an inline ``<svg>`` element: text drawn as paths (no fonts needed),
    ids salted per figure (several SVGs share one document), and no XML prolog,
    namespace URIs or metadata (inline SVG in HTML needs none)."""
    import matplotlib

    buffer = io.StringIO()
    with matplotlib.rc_context({"svg.fonttype": "path", "svg.hashsalt": plot.id}):
        plot.figure.savefig(buffer, format="svg", metadata={"Date": None})
    svg = buffer.getvalue()
    svg = svg[svg.index("<svg"):]
    svg = re.sub(r"<metadata>.*?</metadata>", "", svg, flags=re.S)
    svg = re.sub(r'\s+xmlns(:\w+)?="[^"]*"', "", svg)
    svg = re.sub(r"<!--.*?-->", "", svg, flags=re.S)
    label = _e(plot.alt)
    return re.sub(r"<svg\b([^>]*)>", rf'<svg\1 role="img" aria-label="{label}">\n<title>{_e(plot.title)}</title>',
                  svg, count=1)
