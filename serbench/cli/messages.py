"""How the ``serbench`` command words what goes wrong, shared by the commands and by the
exit-code handling in :mod:`.main`: one line on stderr, and bad input named after the job
file it is about; and how a command's ``--output FILE`` is written."""

from __future__ import annotations

import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from serbench.errors import UserError


def error(message: str) -> None:
    """Print ``serbench: error: MESSAGE`` on stderr, its whitespace folded onto one line."""
    print(f"serbench: error: {' '.join(message.split())}", file=sys.stderr)


@contextmanager
def about(job: Path) -> Iterator[None]:
    """Prefix bad-input messages with the job file they are about (unless they are about
    something else, ``about_job`` false)."""
    try:
        yield
    except UserError as exc:
        message = str(exc)
        if exc.about_job and not message.startswith(str(job)):
            message = f"{job}: {message}"
        raise type(exc)(message) from None


def write_output(text: str, output: Path | None, summary: str) -> None:
    """``text`` to stdout, or to ``output`` (its folder made) followed by ``OUTPUT:
    SUMMARY`` on stdout; ``UserError`` (one line) when the file cannot be written."""
    if output is None:
        sys.stdout.write(text)
        return
    try:
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise UserError(f"--output {output}: cannot write ({exc.strerror or exc.__class__.__name__})") from None
    print(f"{output}: {summary}")
