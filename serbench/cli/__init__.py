"""The ``serbench`` command: the parser and dispatch (:mod:`.main`), one module per
command, and rich rendering (:mod:`.console`)."""

from serbench.cli.main import main

__all__ = ["main"]
