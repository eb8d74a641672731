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


@dataclass(frozen=True)
class Outcome:
    """What a trial gave: ``value`` when it finished, ``reason`` when it failed."""

    status: Literal["ok", "failed"]
    value: float | None = None
    reason: str | None = None

    @classmethod
    def ok(cls, value: float) -> "Outcome":
        return cls("ok", value=value)

    @classmethod
    def failed(cls, reason: str) -> "Outcome":
        return cls("failed", reason=reason)


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

    def state_dict(self) -> dict[str, Any]:
        """JSON-serialisable state from which ``load_state_dict`` restores the engine."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what ``state_dict`` returned."""
