"""The ``local`` execution backend: one slot, in the driver's own process.

Today's loop, as a backend: ``wait()`` runs the oldest queued call right there and
returns it, so a study with ``parallel: 1`` asks, trains, tells and asks again exactly
as before backends existed. The slot's limits are the process's own (``serbench run
--isolate`` or a container holds them), so ``open`` refuses a slot larger than what this
process may use (:func:`serbench.execution.limits.check_fits`); its worker is built once,
from what the driver already loaded.
"""

from __future__ import annotations

import time
from collections import deque
from typing import Any, Hashable

from serbench import hookimpl
from serbench.errors import UserError
from serbench.execution.backend import (
    Done,
    ExecutionBackend,
    Pool,
    Slot,
    WorkerFactory,
    finish_call,
    running_call,
    this_node,
)
from serbench.execution.limits import check_fits
from serbench.spec import Resources


class LocalPool(Pool):
    def __init__(self, slot: Slot, factory: WorkerFactory):
        self.parallel = 1
        self.resources = Resources(cpus=slot.cpus, memory_gb=slot.memory_gb)
        self.slot = slot
        self._factory = factory
        self._worker: Any = None
        self._queue: deque[tuple[Hashable, str, tuple[Any, ...], float]] = deque()

    def submit(self, key: Hashable, method: str, *args: Any) -> None:
        self._queue.append((key, method, args, time.time()))

    @property
    def busy(self) -> int:
        return len(self._queue)

    def wait(self) -> Done | None:
        if not self._queue:
            return None
        key, method, args, submitted = self._queue.popleft()
        if self._worker is None:
            self._worker = self._factory(self.slot)
        started = time.time()  # once the worker is built: its load is the slot's time, not the call's
        token = running_call(lambda message: self._reply(key, message))
        try:
            value = getattr(self._worker, method)(*args)
        except Exception as exc:  # KeyboardInterrupt and SystemExit stop the study
            return Done(key, self.slot, error=exc, submitted=submitted, started=started, ended=time.time())
        finally:
            finish_call(token)
        return Done(key, self.slot, value=value, submitted=submitted, started=started, ended=time.time())

    def _reply(self, key: Hashable, message: Any) -> Any:
        try:
            return self.answer(key, message)
        except Exception as exc:
            raise RuntimeError(f"the driver failed to answer: {exc.__class__.__name__}: {exc}") from exc

    def close(self) -> None:
        self._queue.clear()
        self._worker = None


class LocalBackend(ExecutionBackend):
    """One trial at a time, here."""

    name = "local"
    in_process = True
    max_parallel = 1

    def open(self, parallel: int, resources: Resources, factory: WorkerFactory) -> LocalPool:
        if parallel > 1:
            raise UserError(
                f"execution.parallel: {parallel}, but the local backend runs one trial at a time; "
                "for trials in parallel use the ray backend (--backend ray --ray-address local)"
            )
        check_fits(resources.cpus, resources.memory_gb)
        return LocalPool(Slot(0, this_node(), resources.cpus, resources.memory_gb), factory)


@hookimpl
def serbench_backends():
    return [LocalBackend]
