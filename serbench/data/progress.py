"""How ``fetch`` and ``check_corpus`` report progress without drawing anything.

The caller passes a :class:`Progress`; each phase of the work (``"reading audio"``,
``"downloading 7442 files"``) is a :class:`Task` that is advanced as items or bytes are
done, possibly from several threads. The base classes report nothing; the command line
shows them as progress bars (:mod:`serbench.cli.data`).
"""

from __future__ import annotations

from typing import Literal

Unit = Literal["files", "bytes"]


class Task:
    """One phase of the work. The base class ignores everything."""

    def advance(self, count: int = 1) -> None:
        """``count`` more items (or bytes) are done."""

    def set_total(self, total: int | None) -> None:
        """The total, once it is known (a download's length)."""


class Progress:
    """Where long work reports its phases. The base class reports nothing."""

    def task(self, description: str, total: int | None = None, unit: Unit = "files") -> Task:
        """Start a phase of ``total`` items (``unit``: files, or bytes of a download)."""
        return Task()


SILENT = Progress()
