"""The pruner contract: after each validation report of a running trial, should it stop?

A fold's search owns one pruner (fresh per fold, like its engine). The loop calls:

- ``report(trial, step, value) -> bool`` each time trial ``trial`` reports its validation
  BCA ``value`` after ``step`` epochs of training (steps go up within a trial; step 0 is
  the *frozen probe*: the trial's configuration trained with its encoder frozen, on
  cached features, before any encoder training). True: stop the trial now, it is
  *pruned*. A trial that is run again (its slot died) reports its steps again: a step
  reported again replaces the earlier value.
- ``finished(trial, status)`` once the trial is journalled: ``ok`` (it trained every
  epoch), ``pruned`` or ``failed``.

Trials report in any interleaving (several run at once on parallel backends), so rules
must be asynchronous: a decision uses what has been reported so far, never waits for
other trials (the asynchronous successive-halving rule, ASHA, is one such).

Determinism: a pruner's decisions are a function of its options, the
:class:`PruningContext` and the sequence of calls it received -- no clocks, no global
random state. ``--resume`` rebuilds a fold's pruner by ``replay``-ing the journal's
trials in journal order (each trial's curve, then its status), so a resumed study
prunes exactly as the uninterrupted one would have with one trial at a time.
``serbench.testing.pruners.check_pruner`` checks the contract.

Values are maximised (BCA).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, ClassVar, Literal, Sequence

from pydantic import BaseModel

from serbench.spec import NoOptions

Status = Literal["ok", "pruned", "failed"]


@dataclass(frozen=True)
class PruningContext:
    """What a pruner may know about the study beyond its reports."""

    max_step: int  # the most epochs a trial of this study may train (the space's largest ``epochs``)
    seed: int  # the job's seed, for rules that assign trials at random (Hyperband's brackets)
    fold: int = 0


class Pruner(ABC):
    """Base class of every pruner plugin.

    Subclasses set ``name`` and, if they take options, an ``Options`` pydantic model
    (unknown keys rejected); the constructor receives the validated options and the
    context.
    """

    name: ClassVar[str]
    Options: ClassVar[type[BaseModel]] = NoOptions

    def __init__(self, context: PruningContext, options: BaseModel | None = None):
        self.context = context
        self.options = options if options is not None else self.Options()

    @abstractmethod
    def report(self, trial: int, step: int, value: float) -> bool:
        """Record trial ``trial``'s ``value`` after ``step`` epochs; True: stop it now."""

    @abstractmethod
    def finished(self, trial: int, status: Status) -> None:
        """Trial ``trial`` ended with ``status`` (it reports nothing after this)."""

    def replay(self, trial: int, curve: Sequence[tuple[int, float]], status: Status) -> None:
        """Rebuild state from a journalled trial: its curve reported (decisions ignored),
        then its status."""
        for step, value in curve:
            self.report(trial, step, value)
        self.finished(trial, status)

    def describe(self) -> dict[str, Any]:
        """The pruner as ``result.json`` records it: name and options."""
        return {"name": self.name, "options": self.options.model_dump(mode="json")}
