"""Text renderings of a :class:`~serbench.leaderboard.board.Board`: a rich table, Markdown, CSV
and JSON. Each function returns the whole output as a string (HTML is in
:mod:`serbench.leaderboard.html`).

Table and Markdown show rounded display strings (``mean ± sd``); CSV and JSON carry the
unrounded numbers in separate fields, for spreadsheets and scripts. The paired comparisons
of engines (:func:`serbench.leaderboard.board.compare_engines`) follow the rows in the
table and Markdown (a section of their own) and are the top-level ``comparisons`` list of
the JSON; the CSV holds the rows only (one table: a spreadsheet reads it as such), so
read the comparisons from the JSON.
"""

from __future__ import annotations

import csv
import io
import json

from serbench.leaderboard.board import (
    NO_PRUNER,
    Board,
    Row,
    Stat,
    cells,
    columns,
    comparison_cells,
    comparison_columns,
)

FORMATS = ("table", "md", "csv", "json", "html")


def render_table(board: Board, width: int = 300) -> str:
    """The rich tables as plain text, ``width`` columns wide."""
    from rich.console import Console

    console = Console(file=io.StringIO(), width=width, record=True, color_system=None)
    print_table(board, console)
    return "\n".join(line.rstrip() for line in console.export_text().splitlines()) + "\n"


def print_table(board: Board, console) -> None:
    """One rich table per group, then a one-paragraph footer."""
    from rich.table import Table

    for heading, rows in board.groups:
        table = Table(title=heading or f"serbench leaderboard: {board.loaded.root}", title_justify="left")
        for name in columns(board):
            table.add_column(name, overflow="fold", no_wrap=name == "job")
        for position, row in enumerate(rows, 1):
            table.add_row(*cells(board, position, row))
        console.print(table)
    if board.comparisons:
        table = Table(title=COMPARISONS_TITLE, title_justify="left")
        for name in comparison_columns():
            table.add_column(name, overflow="fold")
        for comparison in board.comparisons:
            table.add_row(*comparison_cells(comparison))
        console.print(table)
    console.print(_footer(board), highlight=False, soft_wrap=True)


COMPARISONS_TITLE = "Engines compared: test BCA paired by seed"
COMPARISONS_NOTE = ("Rows whose specs differ only in the engine, paired by seed on test BCA: Wilcoxon signed-rank "
                    "(two engines, two-sided; exact p without tied differences, which cannot go below 2/2^n for "
                    "n pairs), Friedman (more engines; average rank 1 = best); fewer than two shared seeds: "
                    "not enough paired seeds.")


def render_markdown(board: Board) -> str:
    head = columns(board)
    lines = [f"# serbench leaderboard: {board.loaded.root}", ""]
    for heading, rows in board.groups:
        if heading:
            lines += [f"## {heading}", ""]
        lines.append("| " + " | ".join(head) + " |")
        lines.append("|" + "|".join(" --- " for _ in head) + "|")
        for position, row in enumerate(rows, 1):
            lines.append("| " + " | ".join(_md(cell) for cell in cells(board, position, row)) + " |")
        lines.append("")
    if board.comparisons:
        head = comparison_columns()
        lines += [f"## {COMPARISONS_TITLE}", "", COMPARISONS_NOTE, ""]
        lines.append("| " + " | ".join(head) + " |")
        lines.append("|" + "|".join(" --- " for _ in head) + "|")
        for comparison in board.comparisons:
            lines.append("| " + " | ".join(_md(cell) for cell in comparison_cells(comparison)) + " |")
        lines.append("")
    lines.append(_footer(board))
    return "\n".join(lines) + "\n"


def _md(text: str) -> str:
    return text.replace("|", "\\|")


def _footer(board: Board) -> str:
    n = len(board.loaded.runs)
    text = (f"{n} result{'s' if n != 1 else ''} in {len(board.rows)} row{'s' if len(board.rows) != 1 else ''}; "
            "ranked by test BCA, then best validation BCA; ± is the sd over seeds (or folds); "
            "95% CI: percentile bootstrap of the mean test BCA over seeds (10000 resamples, seeded); "
            "pruned: trials the pruner stopped / trials (a best val BCA marked pruned is a partial score: "
            "no trial of that search completed); epochs spent: training epochs per search "
            "(frozen probes not counted); min to best and 𝓔: study minutes summed over folds; "
            "alc: area under the best-so-far curve on a log time axis (t0 = 60 s); thresholds: study minutes "
            "to reach them summed over folds (trial number), with several seeds the median over the seeds "
            "that reached it (seeds that did / seeds)")
    if any(row.space_size is not None for row in board.rows):
        text += "; space covered: trials per search / configurations of its finite search space (a grid)"
    if board.loaded.skipped:
        text += f"; skipped {len(board.loaded.skipped)} invalid file(s)"
    return text


def csv_header(board: Board) -> list[str]:
    head = ["rank", "group", "job", "engine", "pruner", "dataset", "backbone", "protocol", "seeds", "trials",
            "space_size", "space_covered", "pruned", "epochs_spent", "folds", "status", "best_val_bca",
            "best_val_bca_sd", "best_val_pruned", "test_bca", "test_bca_sd", "test_bca_ci_low", "test_bca_ci_high",
            "minutes_to_best", "efficiency", "alc", "alc_sd"]
    for t in board.thresholds:
        head += [f"minutes_to_{t:g}", f"trial_to_{t:g}", f"reached_{t:g}", f"efficiency_to_{t:g}"]
    for target in board.targets:
        head += [f"transfer_{target}_bca", f"transfer_{target}_bca_sd"]
    return head


def render_csv(board: Board) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(csv_header(board))
    for heading, rows in board.groups:
        group = heading.split(": ", 1)[1] if heading else ""
        for position, row in enumerate(rows, 1):
            writer.writerow(_csv_row(board, position, group, row))
    return buffer.getvalue()


def _csv_row(board: Board, position: int, group: str, row: Row) -> list[object]:
    pruner = "" if row.pruner == NO_PRUNER else row.pruner
    out: list[object] = [position, group, row.label, row.engine, pruner, row.dataset, row.backbone, row.protocol,
                         len(set(row.seeds)), _whole(row.trials), _blank(row.space_size), _num(row.space_covered),
                         _whole(row.pruned), _mean(row.epochs_spent),
                         row.folds, row.status]
    ci = row.test_ci
    out += [*_pair(row.best_val), row.best_pruned, *_pair(row.test), *((_num(ci.low), _num(ci.high)) if ci else ("", "")),
            _mean(row.minutes_to_best), _mean(row.efficiency), *_pair(row.alc)]
    for t in board.thresholds:
        cell = row.thresholds.get(t)
        out += ([_num(cell.minutes), _num(cell.trial), f"{cell.reached}/{cell.runs}", _num(cell.efficiency)]
                if cell else ["", "", "", ""])
    for target in board.targets:
        out += list(_pair(row.transfer.get(target)))
    return out


def _pair(value: Stat | None) -> tuple[object, object]:
    if value is None:
        return "", ""
    return _num(value.mean), _num(value.sd)


def _mean(value: Stat | None) -> object:
    return "" if value is None else _num(value.mean)


def _whole(value: float) -> object:
    return int(value) if float(value).is_integer() else value


def _blank(value: object) -> object:
    return "" if value is None else value


def _num(value: float | None) -> object:
    return "" if value is None else round(value, 6)


def render_json(board: Board) -> str:
    data = {
        "root": str(board.loaded.root),
        "by": board.by,
        "thresholds": board.thresholds,
        "transfer_targets": board.targets,
        "groups": [
            {
                "heading": heading,
                "rows": [{"rank": position, **row.as_json()} for position, row in enumerate(rows, 1)],
            }
            for heading, rows in board.groups
        ],
        "comparisons": [comparison.as_json() for comparison in board.comparisons],
        "skipped": [{"path": str(s.path), "reason": s.reason} for s in board.loaded.skipped],
    }
    return json.dumps(data, indent=2, ensure_ascii=False) + "\n"
