"""``serbench leaderboard RESULTS_DIR [--format table|md|csv|json|html] [--output FILE]
[--by KEY]``: rank every ``result.json`` below a folder; the command line of
:mod:`serbench.leaderboard.board`.

Invalid ``result.json`` files are named on stderr, one warning line each, and left out;
no valid result at all is bad input (exit 2). Output goes to stdout, or to ``--output``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from serbench.errors import UserError
from serbench.leaderboard.board import GROUP_KEYS
from serbench.leaderboard.formats import FORMATS


NAME = "leaderboard"


def add_parser(commands: argparse._SubParsersAction) -> None:
    board = commands.add_parser(NAME, help="rank every result.json below a folder (table, md, csv, json, html)")
    board.add_argument("results", type=Path, metavar="RESULTS_DIR", help="folder searched for result.json files")
    board.add_argument("--format", choices=FORMATS, default="table", help="output format (default: table)")
    board.add_argument("--output", type=Path, metavar="FILE", help="write to FILE instead of stdout")
    board.add_argument("--by", choices=GROUP_KEYS, help="group rows under a heading per engine, dataset, ...")


def run(args: argparse.Namespace) -> int:
    from serbench.leaderboard.board import make_board

    if args.output is not None and args.output.is_dir():
        raise UserError(f"--output {args.output}: is a folder; name a file")
    board = make_board(args.results, by=args.by)
    for skipped in board.loaded.skipped:
        print(f"serbench: warning: {skipped.path}: {skipped.reason}; skipped", file=sys.stderr)
    if args.format == "table" and args.output is None:
        from rich.console import Console

        from serbench.leaderboard.formats import print_table

        console = Console()
        if console.is_terminal:
            print_table(board, console)
            return 0
    from serbench.cli.messages import write_output

    summary = f"{args.format} leaderboard of {len(board.loaded.runs)} result(s) in {len(board.rows)} row(s)"
    write_output(render(board, args.format), args.output, summary)
    return 0


def render(board, fmt: str) -> str:
    """The whole output of one format as text."""
    from serbench.leaderboard import formats as formats

    if fmt == "html":
        from serbench.leaderboard.html import render_html

        return render_html(board)
    return {
        "table": formats.render_table,
        "md": formats.render_markdown,
        "csv": formats.render_csv,
        "json": formats.render_json,
    }[fmt](board)
