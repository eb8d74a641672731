"""The ``serbench`` command: the top-level parser, the table of commands and dispatch
(:mod:`.main`); one module per command (:mod:`.validate`, :mod:`.run`, :mod:`.plugins`,
:mod:`.schema`, :mod:`.doctor`, :mod:`.data`, :mod:`.leaderboard`), each with
``add_parser(subparsers)`` and ``run(args) -> int``; one-line messages (:mod:`.messages`);
rich rendering of a study (:mod:`.console`)."""

from serbench.cli.main import main

__all__ = ["main"]
