"""The one place that builds a worker's ``serbench run`` command line, for the supervised
worker process (:mod:`.supervisor`) and the job container (:mod:`.docker`)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Sequence


def run_arguments(
    job: Path | str, out: Path | str, data_root: Path | str | None, again: str | None, extra: Sequence[str] = ()
) -> list[str]:
    """The arguments after ``serbench``: ``run JOB --out OUT [--data-root DIR] [AGAIN]
    [EXTRA...]``; ``again`` is ``--force``, ``--resume`` or None; ``extra`` are more
    options passed on as given (``--backend ray --parallel 2``)."""
    arguments = ["run", str(job), "--out", str(out)]
    if data_root is not None:
        arguments += ["--data-root", str(data_root)]
    if again:
        arguments.append(again)
    return arguments + list(extra)


def worker_command(
    job: Path, out: Path, data_root: Path | None, again: str | None, extra: Sequence[str] = ()
) -> list[str]:
    """The supervised worker's whole command line: this Python running ``serbench.cli``."""
    return [sys.executable, "-m", "serbench.cli", *run_arguments(job, out, data_root, again, extra)]
