"""Where and under which limits a study runs: the execution-backend contract
(:mod:`.backend`: ``ExecutionBackend``, ``Pool``, ``Slot``, ``Done``) and its built-ins
``local_backend`` and ``ray_backend`` (registered through the ``serbench`` entry points
like a third-party backend); the limits in force (:mod:`.limits`), a supervised worker
(:mod:`.supervisor`, :mod:`.isolate`), and containers (:mod:`.docker`)."""

from serbench.execution.backend import Done, ExecutionBackend, Pool, Slot, WorkerFactory

__all__ = ["Done", "ExecutionBackend", "Pool", "Slot", "WorkerFactory"]
