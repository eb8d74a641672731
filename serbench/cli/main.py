"""The ``serbench`` command.

Exit codes: 0 success; 2 bad input (one line on stderr, no traceback); 1 internal error;
130 interrupted by Ctrl-C or SIGTERM (finished trials stay in ``trials.jsonl``).
"""

from __future__ import annotations

import argparse
from typing import Sequence

import serbench
from serbench import env
from serbench.cli import data, doctor, export, leaderboard, plugins, predict, run, schema, validate
from serbench.cli.messages import error
from serbench.errors import UserError

#: Every command, in help order. Each is a module with ``NAME``, ``add_parser(subparsers)``
#: and ``run(args) -> int`` (the exit code), and a docstring stating its contract.
COMMANDS = (validate, run, plugins, schema, doctor, data, leaderboard, predict, export)


class OneLineParser(argparse.ArgumentParser):
    """argparse, but usage errors are one line and exit 2 like every other bad input."""

    def error(self, message: str):  # type: ignore[override]
        raise UserError(f"{self.prog}: {message}")


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog="serbench", description=serbench.__doc__.splitlines()[0])
    parser.add_argument("--version", action="store_true", help="print the version and exit")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=OneLineParser)
    for command in COMMANDS:
        command.add_parser(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    try:
        return _dispatch(build_parser().parse_args(argv))
    except UserError as exc:
        error(str(exc))
        return exc.exit_code
    except KeyboardInterrupt:
        error("interrupted; finished trials are kept in trials.jsonl")
        return 130
    except Exception as exc:
        if env.get(env.DEBUG):
            raise
        error(f"internal error: {exc.__class__.__name__}: {exc} (set {env.DEBUG}=1 for the traceback)")
        return 1


def _dispatch(args: argparse.Namespace) -> int:
    if args.version:
        from serbench import __version__

        print(__version__)
        return 0
    if args.command is None:
        names = ", ".join(command.NAME for command in COMMANDS)
        raise UserError(f"serbench: name a command ({names}); see serbench --help")
    handlers = {command.NAME: command.run for command in COMMANDS}
    return handlers[args.command](args)
