"""The execution-backend contract: where a study's trials run, and how many at once.

A backend plugin (``execution.backend`` in a job, ``--backend`` on the command line)
opens a :class:`Pool` of ``parallel`` *slots*. Each slot holds one *worker*: an object
built once on the slot by the study's :data:`WorkerFactory` and kept between calls, so
a slot loads its corpus, backbone and feature cache once, not once per trial. The
study then drives the pool:

1. ``pool.submit(key, method, *args)`` queues the call ``worker.<method>(*args)``; a
   free slot runs it (never more than ``parallel`` calls at once, in submission order);
2. ``pool.wait()`` blocks until a call has ended and returns it as a :class:`Done`, in
   the order calls end (``None`` when nothing is queued or running); when calls are
   queued and no slot can run them any more (every slot lost, none can be placed),
   it raises a :class:`~serbench.errors.UserError` after a bounded wait the backend
   documents, rather than block forever;
3. ``pool.close()`` stops every slot (also when the study stops with an error).

A :class:`Done` carries exactly one of:

- ``value``: what the method returned (picklable);
- ``error``: the exception the method raised, as the method raised it (a
  :class:`~serbench.errors.UserError` stays one, so it can end the study);
- ``lost``: why the call produced nothing -- the slot's process or its node died
  (``oom`` is set when the backend knows memory was the cause). The pool replaces the
  slot's worker where the cluster has room for it; the caller decides whether to
  submit the call again.

**Messages to the driver.** A call running on a slot may call :func:`ask_driver`
``(message)`` any number of times (a trial reporting an epoch's score and asking whether
to go on): the pool hands ``(key, message)`` to the handler the driver gave
:meth:`Pool.serve`, in the driver's process and thread, while the driver is in
:meth:`Pool.wait`, and the call gets the handler's return value back (both picklable).
Messages of one call arrive in the order it sent them; the handler is never called for
a call whose :class:`Done` was already returned. With no handler served, ``ask_driver``
returns ``None``; outside a pool's call it raises ``RuntimeError``. A handler that
raises makes ``ask_driver`` raise a ``RuntimeError`` in the call, naming the error.

``in_process`` backends build the worker in the driver's own process, so the factory
may close over objects already loaded there; other backends pickle the factory to the
slots. A backend checks in :meth:`ExecutionBackend.open` that one slot's
``resources`` fit somewhere (a clear :class:`~serbench.errors.UserError` before any
call, never a hang), and holds each slot to them where it runs (threads from the CPUs
granted, memory guarded). ``serbench.testing.backends`` checks all of this.
"""

from __future__ import annotations

import socket
from abc import ABC, abstractmethod
from dataclasses import dataclass
from contextvars import ContextVar
from typing import Any, Callable, ClassVar, Hashable

from pydantic import BaseModel

from serbench.spec import NoOptions, Resources


@dataclass(frozen=True)
class Slot:
    """Where a worker lives: slot ``index`` (0 .. parallel-1) of a pool, on ``node``."""

    index: int
    node: str
    cpus: float  # CPUs granted to the slot
    memory_gb: float  # memory granted to the slot, guarded where it runs


WorkerFactory = Callable[[Slot], Any]
"""Builds a slot's worker (called on the slot, once per worker process)."""


@dataclass(frozen=True)
class Done:
    """One call that ended. Times are ``time.time()`` seconds: ``submitted`` on the
    driver, ``started``/``ended`` where the call ran (``None`` when it never started;
    ``started`` is taken once the slot's worker is built, so a slot's loading counts as
    the call waiting, not running)."""

    key: Hashable
    slot: Slot | None
    value: Any = None
    error: BaseException | None = None
    lost: str | None = None
    oom: bool = False
    submitted: float = 0.0
    started: float | None = None
    ended: float | None = None


Handler = Callable[[Hashable, Any], Any]
"""The driver's handler of messages from calls: ``(call key, message) -> reply``."""

_TO_DRIVER: ContextVar[Callable[[Any], Any] | None] = ContextVar("serbench_to_driver", default=None)


def ask_driver(message: Any) -> Any:
    """From inside a call a pool runs: send ``message`` to the driver's handler and
    return its reply (see the module docstring). ``RuntimeError`` outside a call."""
    send = _TO_DRIVER.get()
    if send is None:
        raise RuntimeError("ask_driver() is only available inside a call run by an execution pool")
    return send(message)


def running_call(send: Callable[[Any], Any]):
    """For backends: the context in which a call runs, with ``ask_driver`` going to
    ``send`` (a function of the message that returns the driver's reply). Use as
    ``token = running_call(send)`` ... ``finish_call(token)``."""
    return _TO_DRIVER.set(send)


def finish_call(token) -> None:
    """For backends: leave the context :func:`running_call` entered."""
    _TO_DRIVER.reset(token)


class Pool(ABC):
    """``parallel`` slots running calls on their workers (see the module docstring);
    ``resources``: what each slot is granted (the job's, or less where the backend shares
    a machine out between its slots)."""

    parallel: int
    resources: Resources

    @abstractmethod
    def submit(self, key: Hashable, method: str, *args: Any) -> None:
        """Queue ``worker.<method>(*args)``; ``key`` comes back in its :class:`Done`."""

    @abstractmethod
    def wait(self) -> Done | None:
        """The next call to end; None when nothing is queued or running. ``UserError``
        when calls are queued and no slot can run them (after a bounded wait)."""

    @property
    @abstractmethod
    def busy(self) -> int:
        """Calls queued or running (submitted, not yet returned by :meth:`wait`)."""

    @abstractmethod
    def close(self) -> None:
        """Stop every slot; safe to call again."""

    handler: Handler | None = None

    def serve(self, handler: Handler | None) -> None:
        """Answer calls' :func:`ask_driver` messages with ``handler(key, message)`` from now
        on (None: reply None)."""
        self.handler = handler

    def answer(self, key: Hashable, message: Any) -> Any:
        """For backends: the driver's reply to ``message`` from call ``key`` (the served
        handler's, or None)."""
        return None if self.handler is None else self.handler(key, message)

    def __enter__(self) -> "Pool":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class ExecutionBackend(ABC):
    """Base class of every execution-backend plugin.

    Subclasses set ``name`` and, if they take options, an ``Options`` pydantic model
    (unknown keys rejected); the constructor receives the validated options.
    """

    name: ClassVar[str]
    Options: ClassVar[type[BaseModel]] = NoOptions
    in_process: ClassVar[bool] = False
    """True: workers are built in the driver's process (the factory is not pickled)."""
    max_parallel: ClassVar[int | None] = None
    """The most slots one pool may have (None: as many as the cluster holds)."""
    library: ClassVar[str | None] = None
    """The distribution the backend is built on, as pip names it (``"ray"``)."""

    def __init__(self, options: BaseModel | None = None):
        self.options = options if options is not None else self.Options()

    @abstractmethod
    def open(self, parallel: int, resources: Resources, factory: WorkerFactory) -> Pool:
        """A pool of ``parallel`` slots, each granted ``resources``; ``UserError`` when
        ``parallel`` exceeds ``max_parallel`` or one slot fits on no node."""

    def describe(self) -> str:
        """Where the pool runs, for the study's log line (e.g. ``ray at 10.0.0.5:6379``)."""
        return self.name


def this_node() -> str:
    """The name slots on this machine report as their node."""
    return socket.gethostname()
