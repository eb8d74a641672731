"""The ``none`` pruner: every report is answered False, so every trial trains all its
epochs. It keeps no state, so replay and re-reports change nothing."""

from __future__ import annotations

from serbench import hookimpl
from serbench.pruning.base import Pruner, Status


class NoPruner(Pruner):
    name = "none"

    def report(self, trial: int, step: int, value: float) -> bool:
        return False

    def finished(self, trial: int, status: Status) -> None:
        """Nothing to record."""


@hookimpl
def serbench_pruners():
    return [NoPruner]
