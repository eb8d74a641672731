"""The optimiser engine contract.

The study loop drives an engine through ask/tell:

1. ``params = engine.ask(number)`` -- configuration for trial ``number`` (0, 1, 2, ...),
   a dict with one value per search-space parameter, inside its bounds and of its type;
2. the study trains and scores it;
3. ``engine.tell(number, outcome)`` -- the validation BCA, or a failure (an exception,
   out of memory, a timeout). A failure is told as a failure, never as a score of 0.

``state_dict()`` / ``load_state_dict()`` let a study be resumed; ``replay(number,
params, outcome)`` tells a fresh engine about a trial it did not ask for (the default
implementation asks and discards, then tells, which suits engines that are deterministic
per seed). Engines maximise the value.

Pending trials. A trial is *pending* from the ``ask`` that returned its configuration
to its ``tell``. Today's loop keeps one trial in flight: nothing is pending when it asks.
An engine that sets ``supports_pending = True`` also accepts this, for a loop that runs
several trials at once:

- ``ask(number)`` while any earlier trials are pending (numbers still go up one at a
  time) returns a valid configuration, different from every pending one wherever the
  space leaves room (a float range leaves room for any number), and asking a pending
  trial's number again returns its configuration;
- tells come in any order, each exactly once per asked trial;
- ``ask`` may raise ``NotReady`` instead, but only while some trial is pending: the
  loop then tells it a pending trial's outcome as soon as one finishes and asks for the
  same number again. With nothing pending, ``NotReady`` breaks the contract (the study
  stops with an error);
- ``state_dict()`` taken with trials pending restores them as pending.

With one trial at a time (ask, tell, ask, tell ...), an engine behaves exactly as if
pending trials did not exist. ``serbench.testing.engines.check_pending_asks`` checks
all of this with 1, 2 and 8 trials pending.

Pruning. A trial reports its validation BCA as it trains: a *curve* of ``(step,
value)`` points, ``step`` the epochs trained so far (1, 2, ...; step 0 is the frozen
probe, when the job has one). After each report the loop asks a pruner whether to stop
the trial (:mod:`serbench.pruning`); a stopped trial is *pruned* and its outcome is
``Outcome.pruned(last value, curve)``: the engine is told it is pruned, never that it
finished (Optuna: ``TrialState.PRUNED`` with its intermediate values; each engine's
module docstring says what its library is told). Finished trials carry their curve too.
Engines only see curves at ``tell``, so every engine works with every pruner.

An engine whose library prunes by itself may offer that instead (``pruner.by: engine``
in a job): it lists the serbench pruner names it maps onto its library in
``prunes_with``; the study calls ``delegate_pruning(name, options, max_step)`` once, before the
first ``ask``, then ``report(number, step, value)`` after each report of a pending trial,
which records the point and returns True when the library says stop. A replayed or told
outcome's curve is recorded as if it had been reported (so a resumed library sees the
curves it saw). ``serbench.testing.engines.check_pruning`` checks this.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, ClassVar, Literal, Mapping

from pydantic import BaseModel

from serbench.spec import ChoiceParam, FloatParam, IntParam, NoOptions

SearchSpace = Mapping[str, FloatParam | IntParam | ChoiceParam]


class SearchExhausted(Exception):
    """Raised by ``ask`` when the engine has no configuration left (e.g. a finished
    grid). The study stops that search there and records ``stopped_by: exhausted``."""


class NotReady(Exception):
    """Raised by ``ask`` when the engine needs the outcome of a pending trial before it
    can suggest another: "tell me something first" (Ax once every Sobol trial has been
    asked and too few have scores for its GP). Nothing changes in the engine: the loop tells it the next
    pending trial that finishes and asks again for the same trial number. Allowed only
    while at least one trial is pending; with none, it breaks the contract."""


Curve = tuple[tuple[int, float], ...]
"""A trial's validation BCA by step: ``((step, value), ...)``, steps increasing; step
``n`` is after ``n`` epochs of training, step 0 the frozen probe (see the module
docstring)."""


@dataclass(frozen=True)
class Outcome:
    """What a trial gave: ``value`` when it finished, ``reason`` when it failed, and for
    a pruned trial the last value it reported. ``curve``: every report it made."""

    status: Literal["ok", "failed", "pruned"]
    value: float | None = None
    reason: str | None = None
    curve: Curve = ()

    @classmethod
    def ok(cls, value: float, curve: Curve = ()) -> "Outcome":
        return cls("ok", value=value, curve=tuple(curve))

    @classmethod
    def failed(cls, reason: str, curve: Curve = ()) -> "Outcome":
        return cls("failed", reason=reason, curve=tuple(curve))

    @classmethod
    def pruned(cls, value: float, curve: Curve) -> "Outcome":
        """Stopped by a pruner after reporting ``curve`` (``value``: its last point's)."""
        return cls("pruned", value=value, curve=tuple(curve))


class Engine(ABC):
    """Base class of every optimiser engine plugin.

    Subclasses set ``name`` and, if they take options, an ``Options`` pydantic model
    (unknown keys rejected). The constructor receives the validated options.
    """

    name: ClassVar[str]
    Options: ClassVar[type[BaseModel]] = NoOptions
    deterministic_replay: ClassVar[bool] = True
    """True when a fresh engine (same space, seed and options) that is ``replay``-ed the
    first trials of a run then asks for exactly what the uninterrupted run asked for
    next. ``serbench.testing.engines`` checks this when it is True; set it to False if replay
    only approximates the run (the engine must still accept replayed trials)."""
    supports_pending: ClassVar[bool] = False
    """True when ``ask`` may be called while other trials are pending (asked, not yet
    told), tells may come in any order, and ``ask`` raises ``NotReady`` when it needs a
    result first (see the module docstring). False (the default): a loop keeps one trial
    in flight with this engine, ask, tell, ask, tell."""
    library: ClassVar[str | None] = None
    """The distribution the engine is built on, as pip names it (``"optuna"``,
    ``"ax-platform"``): its installed version goes into ``result.json``'s
    ``versions.libraries.engine``. None: the engine is built on nothing worth naming."""
    prunes_with: ClassVar[tuple[str, ...]] = ()
    """The serbench pruner names (``median``, ``successive-halving``, ``hyperband``) this
    engine can hand to its own library (``pruner.by: engine``); empty: it cannot."""

    def __init__(self, space: SearchSpace, seed: int, options: BaseModel | None = None):
        if not space:
            raise ValueError("an engine needs a non-empty search space")
        self.space = dict(space)
        self.seed = seed
        self.options = options if options is not None else self.Options()

    @abstractmethod
    def ask(self, number: int) -> dict[str, Any]:
        """Suggest the configuration for trial ``number``."""

    @abstractmethod
    def tell(self, number: int, outcome: Outcome) -> None:
        """Report the outcome of trial ``number``."""

    def replay(self, number: int, params: dict[str, Any], outcome: Outcome) -> None:
        """Tell a finished trial from a journal to a fresh engine (for resuming)."""
        self.ask(number)
        self.tell(number, outcome)

    def delegate_pruning(self, name: str, options: dict[str, Any], max_step: int) -> str:
        """Prune with the library's own equivalent of serbench pruner ``name`` (one of
        ``prunes_with``) and its ``options`` (the job's ``pruner.options``); ``max_step``:
        the most epochs any trial may train. Called once, before the first ``ask``.
        Returns what the library uses, for ``result.json`` (e.g.
        ``optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=0)``).
        ``ValueError`` (one line) for a name or option it cannot honour."""
        raise ValueError(f"engine {self.name!r} has no pruner of its own")

    def report(self, number: int, step: int, value: float) -> bool:
        """With delegated pruning: record pending trial ``number``'s validation ``value``
        after ``step`` and return True when the library says stop it now."""
        raise NotImplementedError(f"engine {self.name!r} does not prune by itself")

    def space_size(self) -> int | None:
        """How many distinct configurations the engine can ask for, when that is a finite
        number it walks through (a grid: its size); None (the default) for a space it
        samples. ``result.json`` records it per fold, so a board can say how much of the
        space a search covered."""
        return None

    def state_dict(self) -> dict[str, Any]:
        """JSON-serialisable state from which ``load_state_dict`` restores the engine."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what ``state_dict`` returned."""
