"""The ``ray`` execution backend: one Ray actor per slot, on this machine or a cluster.

``options.address`` says which Ray (default ``$SERBENCH_RAY_ADDRESS``, else ``local``):
``local`` starts a private Ray instance here, sized to the CPUs this process may use (:func:`serbench.execution.limits.cpu_limit`),
and stops it when the pool closes; ``auto`` joins the cluster Ray finds (``RAY_ADDRESS``,
or the one started last on this machine); ``HOST:PORT`` joins the cluster whose head
listens there. Joining a cluster never stops it: closing the pool only disconnects.
``ray`` is imported only inside methods (plugin modules are imported by every command).

The contract of :mod:`serbench.execution.backend`, as this backend keeps it:

- **Fit, before any call.** :meth:`RayBackend.open` connects (quietly: no dashboard, no
  worker output on the driver, Ray's logging at ERROR; a failure is one ``UserError``
  naming the address) and checks that one slot -- ``resources.cpus`` CPUs and
  ``resources.memory_gb`` GiB of Ray's ``memory`` resource -- fits on at least one alive
  node; otherwise a ``UserError`` says what the largest node has.
- **Slots.** Each slot is a ``_SlotActor`` asking for exactly those resources, spread
  over the nodes, with ``max_restarts=0`` and ``max_task_retries=0``: Ray never restarts
  it or runs a call twice. Its ``__init__`` sets torch's threads to the CPUs granted; the
  worker is built by ``factory(Slot(...))`` on the slot's *first call*, inside that call
  (under its memory guard, and an error it raises is that call's ``error``; the call's
  ``started`` is taken once the worker is built, so loading counts as waiting for the
  slot, not as the call's time). The
  factory is pickled once (``ray.put``) and shared by every slot. ``Slot.node`` is the
  node's IP address and the start of its Ray node id (``10.0.0.5/3f2a9c1d``: several
  nodes may share one address, as containers sharing a network namespace do).
- **Readiness.** A slot takes calls once its actor has answered a cheap ``ready()``;
  calls queue in the driver (FIFO) and go to idle ready slots, one at a time each.
- **Losses.** A call whose actor, worker process or node dies comes back ``lost`` (Ray's
  ``RayActorError``, ``WorkerCrashedError``, ``NodeDiedError``, ``ObjectLostError``...), with
  ``oom=True`` when memory was the cause: the slot's memory guard killed it, or Ray's own
  memory monitor did (``OutOfMemoryError``). A call sent to a slot that died while idle
  comes back lost too, never started (``started`` None): Ray tells of a dead actor when
  it is called. The pool then replaces that slot's actor. A
  replacement that cannot be placed (the cluster shrank) stays pending while the other
  slots go on; only when calls are queued and *no* slot is alive does :meth:`RayPool.wait`
  wait for one, at most ``options.placement_timeout_s`` seconds, and then raise a
  ``UserError`` saying what a slot needs and what the cluster has. A slot whose actor
  fails to start ``CREATION_ATTEMPTS`` times in a row is given up; when every slot is,
  ``wait`` raises with the last failure.
- **Memory guard.** While the actor lives, a thread polls the resident memory of its
  process tree (:func:`serbench.execution.isolate.tree_rss_bytes`; every 0.1 s during a
  call, every second between calls). Above ``memory_gb`` it raises
  :class:`SlotMemoryError` (a ``MemoryError``) in the running call's thread
  (``PyThreadState_SetAsyncExc``; it lands at the call's next Python instruction), so the
  call ends with that error. If the memory stays above the limit for
  ``KILL_AFTER_S`` seconds (the call is stuck in native code, or the worker keeps what it
  allocated), the guard records why in Ray's internal key-value store and SIGKILLs the
  actor's process tree; the driver finds that record when it sees the loss and sets
  ``oom=True``. Neither path is retried: the caller decides.
- **Errors.** The actor returns what a method raised as a value, with its times, so the
  driver's ``Done.error`` is the original exception (a ``UserError`` stays one); a
  ``RayTaskError`` that gets through anyway is unwrapped to its ``cause``.
- **Messages to the driver.** A call's ``ask_driver`` goes through the pool's *mailbox*
  (:mod:`serbench.execution.ray_mailbox`): a small async actor on the driver's node,
  asking for no CPU, started when the pool opens and killed at ``close()``. ``wait``
  keeps one take from it in its ``ray.wait`` beside the calls in flight, so messages are
  answered while calls run, by the served handler in the driver's thread; calls that
  ended in the same ``ray.wait`` are settled first, and a message from a call no longer
  in flight (ended, or its slot lost) is dropped, never handed to the handler. A call
  waits for its reply at most ``options.reply_timeout_s`` seconds (default 300), then
  ``ask_driver`` raises ``RuntimeError``; a mailbox that died fails its calls' messages
  at once (``RuntimeError``), and once ``wait`` sees it dead the pool starts another, for
  the calls dispatched after that.
- **Quiet.** Ray's usage statistics are off unless ``RAY_USAGE_STATS_ENABLED`` says
  otherwise; the slots' own output stays in Ray's log files.
- **Overhead.** The driver never sleeps to poll: ``wait`` blocks in ``ray.wait`` on the
  calls in flight, the readiness of starting actors and the mailbox's pending take.
"""

from __future__ import annotations

import ctypes
import itertools
import math
import os
import re
import signal
import threading
import time
import uuid
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Hashable

from pydantic import Field, field_validator

from serbench import hookimpl
from serbench.errors import UserError
from serbench.execution.backend import Done, ExecutionBackend, Pool, Slot, WorkerFactory, finish_call, running_call
from serbench.execution.isolate import process_tree, tree_rss_bytes
from serbench.execution.limits import GIB
from serbench.execution.ray_connect import address_in_force, checked_address, connect, first_line, remote_class
from serbench.execution.ray_mailbox import ENDED, Channel, Inbox, sender
from serbench.spec import Resources, StrictModel

POLL_S = 0.1  # the memory guard's period while a call runs
IDLE_POLL_S = 1.0  # ... and between calls
KILL_AFTER_S = 3.0  # memory above the limit this long: the guard kills the actor
CREATION_ATTEMPTS = 3  # actor starts that fail in a row before a slot is given up
CONNECT_TIMEOUT_S = 10.0  # a HOST:PORT that accepts no TCP connection in this long is unreachable
KV_NAMESPACE = "serbench"

_HOST_PORT = re.compile(r"^(?P<host>\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?):(?P<port>[0-9]{1,5})$")


class SlotMemoryError(MemoryError):
    """A call ended because its slot's process tree used more than ``memory_gb``."""

    def __init__(self, message: str = "the slot's memory limit (resources.memory_gb) was exceeded"):
        super().__init__(message)


class RayOptions(StrictModel):
    address: str | None = Field(
        None,
        description="local (a private Ray instance here), auto (the cluster Ray finds: RAY_ADDRESS) "
        "or HOST:PORT (a cluster's head); default $SERBENCH_RAY_ADDRESS, else local.",
    )
    placement_timeout_s: float = Field(
        300.0, gt=0, description="With calls queued and no slot alive, how long to wait for one to start."
    )
    reply_timeout_s: float = Field(
        300.0, gt=0, description="How long a call's ask_driver waits for the driver's reply before it raises RuntimeError."
    )

    @field_validator("address")
    @classmethod
    def _address(cls, address: str | None) -> str | None:
        return None if address is None else checked_address(address)

    def resolved_address(self) -> str:
        """The address in force: this option, else ``$SERBENCH_RAY_ADDRESS``, else ``local``."""
        return address_in_force(self.address, "execution.options.address")


# --- the driver's side ------------------------------------------------------------------


class RayBackend(ExecutionBackend):
    """Trials in parallel, one Ray actor per slot."""

    name = "ray"
    library = "ray"
    Options = RayOptions

    def __init__(self, options: RayOptions | None = None):
        super().__init__(options)
        self._described: str | None = None

    def open(self, parallel: int, resources: Resources, factory: WorkerFactory) -> "RayPool":
        if parallel < 1:
            raise UserError(f"execution.parallel: {parallel}; a pool needs at least one slot")
        address = self.options.resolved_address()
        connection = _Connection.acquire(address)
        try:
            import ray

            nodes = [n for n in ray.nodes() if n.get("Alive")]
            where = connection.where()
            asked = resources
            _check_fits(nodes, resources, where)  # one slot as asked, or a UserError
            if address == "local":
                resources = shared_out(resources, parallel, nodes)
            cpus = sum(n["Resources"].get("CPU", 0.0) for n in nodes)
            self._described = f"ray at {where} ({_count(len(nodes), 'node')}, {_count(cpus, 'CPU')})"
            if resources != asked:
                self._described += (
                    f"; each of the {parallel} slots gets {resources.cpus:g} CPU and {resources.memory_gb:g} GB "
                    f"(the job asks {asked.cpus:g} and {asked.memory_gb:g} per trial: more than fit {parallel} "
                    "times on this machine)"
                )
            try:
                factory_ref = ray.put(factory)
            except Exception as exc:
                raise TypeError(f"the ray backend pickles the worker factory to its slots, and it cannot: {exc}") from exc
            return RayPool(parallel, resources, factory_ref, connection, self.options)
        except BaseException:
            connection.release()
            raise

    def describe(self) -> str:
        return self._described or f"ray ({self.options.address or 'default address'})"


@dataclass
class _Call:
    key: Hashable
    method: str
    args: tuple[Any, ...]
    submitted: float
    id: int = -1  # the dispatch's, for its messages (a call run again is another call)


@dataclass
class _SlotState:
    index: int
    actor: Any = None
    actor_id: str = ""
    slot: Slot | None = None  # known once the actor answered ready()
    pid: int | None = None
    ready: bool = False
    call: _Call | None = None
    failures: int = 0  # actor starts that failed in a row
    last_failure: str = ""
    given_up: bool = False
    history: list[int] = field(default_factory=list)  # pids of the slot's actors, oldest first


class RayPool(Pool):
    """The driver's side of a ray pool (see the module docstring)."""

    def __init__(self, parallel: int, resources: Resources, factory_ref: Any, connection: "_Connection", options: RayOptions):
        import ray

        self.parallel = parallel
        self.resources = resources
        self._ray = ray
        self._factory_ref = factory_ref
        self._connection = connection
        self._options = options
        self._token = uuid.uuid4().hex[:12]
        self._queue: deque[_Call] = deque()
        self._slots = [_SlotState(i) for i in range(parallel)]
        self._idle: deque[_SlotState] = deque()
        self._inflight: dict[Any, _SlotState] = {}  # call ref -> its slot
        self._readying: dict[Any, _SlotState] = {}  # ready() ref -> its slot
        self._done: deque[Done] = deque()
        self._closed = False
        self._ids = itertools.count()
        self._inbox = Inbox(options.reply_timeout_s)
        for state in self._slots:
            self._start(state)

    # -- the contract ------------------------------------------------------------------

    def submit(self, key: Hashable, method: str, *args: Any) -> None:
        if self._closed:
            raise RuntimeError("submit() on a closed pool")
        self._queue.append(_Call(key, method, args, time.time()))
        self._dispatch()

    @property
    def busy(self) -> int:
        return len(self._queue) + len(self._inflight) + len(self._done)

    def wait(self) -> Done | None:
        ray = self._ray
        while not self._done:
            if not self._queue and not self._inflight:
                return None
            self._dispatch()
            if not self._inflight:
                self._wait_for_a_slot()
                continue
            mail = self._inbox.ref
            refs = [*self._inflight, *self._readying, *([mail] if mail is not None else [])]
            ready, rest = ray.wait(refs, num_returns=1)
            if rest:  # everything else that has ended too, so Dones come in the order calls ended
                more, _ = ray.wait(rest, num_returns=len(rest), timeout=0)
                ready += more
            ended = []
            for ref in ready:
                if mail is not None and ref == mail:
                    continue
                done = self._settle(ref)
                if done is not None:
                    ended.append(done)
            if mail is not None and any(ref == mail for ref in ready):  # after the calls that ended: never answer them
                self._inbox.deliver(self._answer)
            self._done.extend(sorted(ended, key=lambda d: d.ended if d.ended is not None else time.time()))
            self._dispatch()
        return self._done.popleft()

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        for state in self._slots:
            self._kill(state)
        self._inbox.close()
        self._queue.clear()
        self._inflight.clear()
        self._readying.clear()
        self._idle.clear()
        try:
            from ray.experimental import internal_kv

            internal_kv._internal_kv_del(f"oom:{self._token}:", del_by_prefix=True, namespace=KV_NAMESPACE)
        except Exception:
            pass
        self._connection.release()

    # -- what tests and logs may look at --------------------------------------------------

    def slot_pids(self) -> list[list[int]]:
        """For each slot, the PIDs of the Ray worker processes its actors ran in, oldest first."""
        return [list(state.history) for state in self._slots]

    def mailboxes(self) -> list[tuple[int, str] | None]:
        """For each mailbox the pool started, oldest first: the PID of its Ray worker
        process and its node's Ray id (None: it never started)."""
        return self._inbox.where()

    # -- slots -------------------------------------------------------------------------

    def _start(self, state: _SlotState) -> None:
        actor_cls = remote_class(_SlotActor)
        state.actor = actor_cls.options(
            num_cpus=self.resources.cpus,
            memory=int(self.resources.memory_gb * GIB),
            max_restarts=0,
            max_task_retries=0,
            scheduling_strategy="SPREAD",
        ).remote(state.index, self.resources.cpus, self.resources.memory_gb, self._factory_ref, self._token)
        state.actor_id = state.actor._actor_id.hex()
        state.ready, state.slot, state.pid, state.call = False, None, None, None
        self._readying[state.actor.ready.remote()] = state

    def _kill(self, state: _SlotState) -> None:
        if state.actor is not None:
            try:
                self._ray.kill(state.actor, no_restart=True)
            except Exception:
                pass
        state.actor, state.ready = None, False

    def _replace(self, state: _SlotState) -> None:
        self._kill(state)
        if state in self._idle:
            self._idle.remove(state)
        self._start(state)

    def _dispatch(self) -> None:
        while self._queue and self._idle:
            state = self._idle.popleft()
            call = self._queue.popleft()
            call.id = next(self._ids)
            try:
                ref = state.actor.call.remote(self._inbox.channel(call.id), call.method, *call.args)
            except Exception as exc:  # arguments Ray cannot pickle: the call's error, not the slot's
                self._idle.appendleft(state)
                self._done.append(Done(call.key, state.slot, error=exc, submitted=call.submitted))
                continue
            state.call = call
            self._inflight[ref] = state

    def _wait_for_a_slot(self) -> None:
        """Calls are queued and none runs: wait (bounded) for a slot to become ready."""
        ray = self._ray
        deadline = time.monotonic() + self._options.placement_timeout_s
        while not self._idle:
            if not self._readying:
                failures = "; ".join(f"slot {s.index}: {s.last_failure}" for s in self._slots if s.last_failure)
                raise UserError(f"ray: every slot of the pool failed to start ({failures or 'no reason given'})")
            remaining = deadline - time.monotonic()
            ready = ray.wait(list(self._readying), num_returns=1, timeout=max(remaining, 0))[0] if remaining > 0 else []
            if not ready:
                raise UserError(self._no_room_message())
            for ref in ready:
                self._settle(ref)

    def _no_room_message(self) -> str:
        nodes = [n for n in self._ray.nodes() if n.get("Alive")]
        cpus = max((n["Resources"].get("CPU", 0.0) for n in nodes), default=0.0)
        memory = max((n["Resources"].get("memory", 0.0) for n in nodes), default=0.0)
        return (
            f"ray: no slot of the pool has been able to start for {self._options.placement_timeout_s:g} s "
            f"while calls wait: a slot needs {_count(self.resources.cpus, 'CPU')} and {self.resources.memory_gb:g} GB, "
            f"and the cluster at {self._connection.where()} has {_count(len(nodes), 'alive node')} "
            f"(at most {_count(cpus, 'CPU')} and {memory / GIB:.1f} GB each, some of it perhaps in use)"
        )

    # -- messages ------------------------------------------------------------------------

    def _answer(self, call_id: int, message: Any) -> tuple[bool, Any]:
        """The reply to a message from call ``call_id``: the served handler's, for a call
        still in flight (``(False, why)`` when the handler raised or the call has ended)."""
        call = next((s.call for s in self._inflight.values() if s.call is not None and s.call.id == call_id), None)
        if call is None:
            return False, ENDED
        try:
            return True, self.answer(call.key, message)
        except Exception as exc:
            return False, f"the driver failed to answer: {exc.__class__.__name__}: {exc}"

    # -- results -------------------------------------------------------------------------

    def _settle(self, ref: Any) -> Done | None:
        """Take one finished ref: a slot that became ready (None) or a call that ended."""
        ray = self._ray
        if ref in self._readying:
            state = self._readying.pop(ref)
            try:
                state.slot, state.pid = ray.get(ref)
            except ray.exceptions.RayError as exc:
                state.failures += 1
                state.last_failure = first_line(exc)
                self._kill(state)
                if state.failures < CREATION_ATTEMPTS:
                    self._start(state)
                else:
                    state.given_up = True
                return None
            state.ready, state.failures = True, 0
            state.history.append(state.pid)
            self._idle.append(state)
            return None
        state = self._inflight.pop(ref)
        call, state.call = state.call, None
        assert call is not None
        try:
            ok, payload, started, ended = ray.get(ref)
        except ray.exceptions.RayTaskError as exc:  # the actor normally returns errors as values
            self._idle.append(state)
            return Done(call.key, state.slot, error=_unwrap(exc), submitted=call.submitted, ended=time.time())
        except ray.exceptions.RayError as exc:
            reason, oom = self._loss(state, exc)
            slot = state.slot
            self._replace(state)
            return Done(call.key, slot, lost=reason, oom=oom, submitted=call.submitted, ended=time.time())
        self._idle.append(state)
        if ok:
            return Done(call.key, state.slot, value=payload, submitted=call.submitted, started=started, ended=ended)
        return Done(call.key, state.slot, error=payload, submitted=call.submitted, started=started, ended=ended)

    def _loss(self, state: _SlotState, exc: BaseException) -> tuple[str, bool]:
        """Why a slot's call was lost, and whether memory was the cause."""
        ray = self._ray
        try:
            from ray.experimental import internal_kv

            key = f"oom:{self._token}:{state.actor_id}"
            record = internal_kv._internal_kv_get(key, namespace=KV_NAMESPACE)
            if record:
                internal_kv._internal_kv_del(key, namespace=KV_NAMESPACE)
                return record.decode(), True
        except Exception:
            pass
        text = str(exc)
        # Ray's memory monitor says "low on memory"; Ray's text for any worker that died
        # unexpectedly mentions an "OOM killer" among possible causes, which says nothing.
        oom = isinstance(exc, ray.exceptions.OutOfMemoryError) or bool(re.search(r"low on memory|memory pressure", text, re.I))
        if isinstance(exc, ray.exceptions.NodeDiedError) or re.search(r"node.{0,40}(died|dead)", text, re.I):
            what = "node"
        else:
            what = "worker process"
        where = f"slot {state.index}" + (f" on {state.slot.node}" if state.slot else "")
        return f"{where}: the slot's {what} died ({exc.__class__.__name__}: {first_line(exc)})", oom


def shared_out(resources: Resources, parallel: int, nodes: list[dict]) -> Resources:
    """For a private instance on this machine (where one slot as asked fits): each of
    ``parallel`` slots gets the job's ``resources``, or an equal share of the machine's
    CPUs and Ray memory where ``parallel`` such slots would not fit at once (never more
    than asked), so ``--parallel N`` really runs N trials here."""
    if not nodes:
        return resources
    have = nodes[0]["Resources"]
    cpus = math.floor(100 * have.get("CPU", 0.0) / parallel) / 100
    memory_gb = math.floor(100 * have.get("memory", 0.0) / GIB / parallel) / 100
    if cpus <= 0 or memory_gb <= 0:
        return resources
    return Resources(cpus=min(resources.cpus, cpus), memory_gb=min(resources.memory_gb, memory_gb))


def _check_fits(nodes: list[dict], resources: Resources, where: str) -> None:
    need_cpu, need_memory = resources.cpus, resources.memory_gb * GIB

    def room(node: dict) -> float:
        have = node["Resources"]
        return min(have.get("CPU", 0.0) / need_cpu, have.get("memory", 0.0) / need_memory)

    if not nodes:
        raise UserError(f"ray: the cluster at {where} has no alive node")
    largest = max(nodes, key=room)
    if room(largest) >= 1 - 1e-9:
        return
    have = largest["Resources"]
    raise UserError(
        f"resources: one slot needs {_count(need_cpu, 'CPU')} and {resources.memory_gb:g} GB, but no node of the ray "
        f"cluster at {where} has that: the largest ({largest.get('NodeManagerAddress', '?')}, of {len(nodes)} "
        f"alive) has {_count(have.get('CPU', 0.0), 'CPU')} and {have.get('memory', 0.0) / GIB:.1f} GB; lower "
        "resources.cpus or resources.memory_gb, or add a larger node"
    )


def _unwrap(exc: BaseException) -> BaseException:
    """The exception a Ray task raised, from the ``RayTaskError`` that carries it."""
    cause = getattr(exc, "cause", None)
    if isinstance(cause, BaseException):
        return cause
    try:
        return exc.as_instanceof_cause()  # type: ignore[attr-defined]
    except Exception:
        return exc


def _count(number: float, noun: str) -> str:
    """``1 CPU``, ``2 CPUs``, ``0.5 CPUs``."""
    return f"{number:g} {noun}{'' if number == 1 else 's'}"




class _Connection:
    """This process's one connection to Ray, shared by the pools open at once: the last
    pool to close disconnects, and stops the Ray instance if ``local`` started it here.
    A Ray session the caller opened before the first pool is left open."""

    _current: "_Connection | None" = None

    def __init__(self, address: str, owned: bool):
        self.address, self.owned, self.users = address, owned, 0

    @classmethod
    def acquire(cls, address: str) -> "_Connection":
        import ray

        current = cls._current
        if current is not None and ray.is_initialized() and current.address != address:
            raise UserError(
                f"ray: this process is connected to Ray ({current.address}) by a pool still open; "
                f"close it before opening one at {address}"
            )
        if current is None or not ray.is_initialized():
            if ray.is_initialized():  # the caller's own session
                current = cls(address, owned=False)
            else:
                connect(address)
                current = cls(address, owned=True)
            cls._current = current
        current.users += 1
        return current

    def release(self) -> None:
        self.users -= 1
        if self.users > 0:
            return
        if _Connection._current is self:
            _Connection._current = None
        if self.owned:
            import ray

            ray.shutdown()

    def where(self) -> str:
        import ray

        try:
            return ray.get_runtime_context().gcs_address
        except Exception:
            return self.address


# --- the slot's side ----------------------------------------------------------------------


class _SlotActor:
    """One slot: a Ray actor that builds the worker on its first call and runs calls on it
    under the memory guard (see the module docstring)."""

    def __init__(self, index: int, cpus: float, memory_gb: float, factory: WorkerFactory, token: str):
        import ray

        node = f"{ray.util.get_node_ip_address()}/{ray.get_runtime_context().get_node_id()[:8]}"
        self.slot = Slot(index, node, cpus, memory_gb)
        try:
            import torch

            torch.set_num_threads(max(1, int(cpus)))
        except ImportError:
            pass
        self.factory = factory
        self.worker: Any = None
        kv_key = f"oom:{token}:{ray.get_runtime_context().get_actor_id()}"
        self.guard = _MemoryGuard(self.slot, kv_key)

    def ready(self) -> tuple[Slot, int]:
        return self.slot, os.getpid()

    def call(self, channel: Channel, method: str, *args: Any) -> tuple[bool, Any, float, float]:
        """``(True, value, started, ended)`` or ``(False, exception, started, ended)``;
        the method's ``ask_driver`` goes through ``channel``."""
        started = time.time()
        ok, payload = False, None
        try:
            try:
                self.guard.arm()
                if self.worker is None:
                    self.worker = self.factory(self.slot)
                    started = time.time()  # building the slot's worker is the slot's time, not the call's
                token = running_call(sender(channel))
                try:
                    payload, ok = getattr(self.worker, method)(*args), True
                finally:
                    finish_call(token)
            except Exception as exc:
                payload = exc
            finally:
                fired = self.guard.disarm()
        except SlotMemoryError as exc:  # the guard's error landed after the method had ended
            fired, payload, ok = self.guard.disarm(), exc, False
        if not ok:
            if fired and isinstance(payload, SlotMemoryError) and payload.args == SlotMemoryError().args:
                payload = SlotMemoryError(fired)
            payload = _picklable(payload.with_traceback(None))
        return ok, payload, started, time.time()


class _MemoryGuard:
    """Holds an actor's process tree to its slot's ``memory_gb`` (see the module docstring)."""

    def __init__(self, slot: Slot, kv_key: str):
        self.slot = slot
        self.limit = int(slot.memory_gb * GIB)
        self.kv_key = kv_key
        self.lock = threading.Lock()
        self.target: int | None = None  # the thread of the running call
        self.fired: str | None = None  # the message, once the error was sent to this call
        self.wake = threading.Event()
        threading.Thread(target=self._watch, name="serbench-memory-guard", daemon=True).start()

    def arm(self) -> None:
        with self.lock:
            self.target, self.fired = threading.get_ident(), None
        self.wake.set()

    def disarm(self) -> str | None:
        """Stop sending errors to this call; returns the message if one was sent. Any
        error still pending for this thread is withdrawn."""
        while True:
            try:
                with self.lock:
                    target, self.target = self.target, None
                    fired = self.fired
                if target is not None:
                    _set_async_exc(target, None)
                return fired
            except SlotMemoryError:  # it landed in here: withdraw again
                continue

    def _watch(self) -> None:
        over_since: float | None = None
        while True:
            self.wake.wait(POLL_S if self.target is not None else IDLE_POLL_S)
            self.wake.clear()
            rss = tree_rss_bytes(os.getpid())
            if rss <= self.limit:
                over_since = None
                continue
            now = time.monotonic()
            over_since = over_since or now
            with self.lock:
                if self.target is not None and self.fired is None:
                    self.fired = (
                        f"slot {self.slot.index} on {self.slot.node} used {rss / GIB:.2f} GB, above its limit of "
                        f"{self.slot.memory_gb:g} GB (resources.memory_gb)"
                    )
                    _set_async_exc(self.target, SlotMemoryError)
            if now - over_since >= KILL_AFTER_S:
                self._kill(rss)

    def _kill(self, rss: int) -> None:
        message = (
            f"slot {self.slot.index} on {self.slot.node}: its memory stayed above its limit of "
            f"{self.slot.memory_gb:g} GB (resources.memory_gb) for {KILL_AFTER_S:g} s ({rss / GIB:.2f} GB), "
            "so the slot's process was killed"
        )

        def record() -> None:
            try:
                from ray.experimental import internal_kv

                internal_kv._internal_kv_put(self.kv_key, message, namespace=KV_NAMESPACE)
            except Exception:
                pass

        writer = threading.Thread(target=record, daemon=True)
        writer.start()
        writer.join(timeout=5)
        own = os.getpid()
        for pid in reversed(process_tree(own)):
            if pid != own:
                try:
                    os.kill(pid, signal.SIGKILL)
                except OSError:
                    pass
        os.kill(own, signal.SIGKILL)


def _set_async_exc(thread_id: int, exc_type: type[BaseException] | None) -> None:
    """Raise ``exc_type`` in thread ``thread_id`` at its next Python instruction (None:
    withdraw a pending one)."""
    target = ctypes.py_object(exc_type) if exc_type is not None else ctypes.c_void_p(0)
    ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(thread_id), target)


def _picklable(exc: BaseException) -> BaseException:
    """``exc`` itself if it survives pickling (as Ray will pickle it), else a
    ``RuntimeError`` with its class and message."""
    from ray import cloudpickle

    try:
        cloudpickle.loads(cloudpickle.dumps(exc))
        return exc
    except Exception:
        return RuntimeError(f"{exc.__class__.__module__}.{exc.__class__.__qualname__}: {exc}")



@hookimpl
def serbench_backends():
    return [RayBackend]
