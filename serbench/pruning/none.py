"""The ``none`` pruner: every trial trains all its epochs (TEMPORARY, replaced on merge)."""

from __future__ import annotations

from serbench import hookimpl
from serbench.pruning.base import Pruner


class NoPruner(Pruner):
    name = "none"

    def report(self, trial: int, step: int, value: float) -> bool:
        return False

    def finished(self, trial: int, status) -> None:
        pass


@hookimpl
def serbench_pruners():
    return [NoPruner]
