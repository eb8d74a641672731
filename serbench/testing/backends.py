"""The execution-backend contract as a test kit, for plugin authors and for serbench's own
backends (:mod:`serbench.execution.backend` states the contract).

One test checks a backend against every clause::

    from serbench.testing.backends import check_backend
    from my_package.serbench_plugin import MyBackend

    def test_my_backend_keeps_the_backend_contract():
        check_backend(MyBackend, {"address": "10.0.0.5:6379"}, parallel=2)

A broken clause raises ``BackendContractError`` (an ``AssertionError``, and a
:class:`serbench.testing.contract.ContractError`) saying which clause and what was seen.
The kit drives real pools with the toy worker of this module (:class:`KitWorker`, built by
:func:`kit_factory`; both module-level, so they pickle to other processes and machines by
reference: ``serbench`` must be importable where the slots run). One pool serves every
clause about calls; ``open`` is called twice more, for the refusals.

The clauses:

- ``declaration``: an ``ExecutionBackend`` subclass with a non-empty ``name``, an
  ``Options`` model that rejects unknown keys and accepts ``options``, ``max_parallel``
  None or at least 1, and ``parallel`` within it.
- ``idle wait``: ``wait()`` on a fresh pool, with nothing submitted, returns None.
- ``every call once``: ``3 * parallel`` calls (a short sleep each) come back exactly once
  each, with their key, the value the worker returned, no error, not lost; ``wait()``
  then returns None.
- ``busy``: ``busy`` is the number submitted right after submitting, goes down by one
  with each ``Done`` returned, and is 0 at the end.
- ``slots``: every ``Done.slot`` is a :class:`Slot` with an index below ``parallel``, the
  CPUs and memory asked for, a non-empty node, and is the slot its worker was built for.
- ``times``: ``submitted <= started <= ended`` (``CLOCK_SKEW_S`` allowed between the
  driver's clock and a slot's).
- ``at most parallel``: the calls' ``started``-``ended`` intervals never overlap more
  than ``parallel`` deep.
- ``submission order``: calls start in the order they were submitted (a call never
  starts more than half a call's length before one submitted earlier).
- ``errors``: a ``ValueError``, a :class:`~serbench.errors.UserError` and the kit's own
  :class:`KitError` raised by the worker come back as ``Done.error`` of exactly that class
  with that message, the slot survives them, and later calls run on the same worker.
- ``worker reuse``: one worker per slot, built once and reused by every later call (the
  factory is called once per slot).
- ``messages``: calls that :func:`~serbench.execution.backend.ask_driver` several
  messages each (``parallel`` of them at once) get the served handler's replies, in
  order (the kit's handler returns a function of key and message); the handler gets each
  call's messages in the order sent, in the thread that is inside ``wait()`` at the
  time, and never for a call whose ``Done`` was already returned. Before any handler is
  served, and after ``serve(None)``, every reply is None. A handler that raises makes
  ``ask_driver`` raise ``RuntimeError`` in the call, naming the handler's exception (its
  class and message); the call catches it and ends normally. ``ask_driver`` outside a
  call raises ``RuntimeError``: in the kit's own thread, and in the thread that ran
  ``wait()`` once it has returned.
- ``close``: ``close()`` returns, and a second ``close()`` too.
- ``too big``: ``open`` with a slot larger than any machine (``cpus`` as asked,
  ``memory_gb`` 65536) raises ``UserError`` (one line) within ``REFUSAL_TIMEOUT_S``.
- ``max parallel``: with ``max_parallel`` set, ``open(max_parallel + 1)`` raises
  ``UserError`` (one line).

``check_backend(backend_cls, options=None, parallel=2, resources=Resources(cpus=1,
memory_gb=1))``: ``parallel`` must not exceed the class's ``max_parallel``;
``resources`` must fit where the backend runs.
"""

from __future__ import annotations

import os
import threading
import time
import uuid
from typing import Any, Hashable, Mapping


from serbench.errors import UserError
from serbench.execution.backend import Done, ExecutionBackend, Pool, Slot, ask_driver
from serbench.spec import Resources
from serbench.testing.contract import ContractError, clause, options_problem

CALL_S = 0.3  # how long each of the kit's calls sleeps
CLOCK_SKEW_S = 2.0  # allowed between the driver's clock and a slot's
REFUSAL_TIMEOUT_S = 60.0  # how long a refusing open() may take (it may connect first)
WAIT_TIMEOUT_S = 300.0  # how long the kit waits for one call to come back
KIT_RESOURCES = Resources(cpus=1, memory_gb=1)
MESSAGES = 5  # how many messages each of the kit's asking calls sends
HANDLER_ERROR = "kit: the handler's own error"


class BackendContractError(ContractError):
    """An execution backend breaks a clause of the execution-backend contract."""

    kind = "execution backend"


class KitError(Exception):
    """The kit's own exception class, raised by :meth:`KitWorker.fail`."""


class KitWorker:
    """The worker the kit's pools run: each call reports which worker ran it (``token``,
    unique to one build), on which slot and in which process."""

    def __init__(self, slot: Slot):
        self.slot = slot
        self.token = uuid.uuid4().hex
        self.calls = 0

    def report(self, **extra: Any) -> dict[str, Any]:
        self.calls += 1
        return {"token": self.token, "slot": self.slot, "pid": os.getpid(), "calls": self.calls, **extra}

    def echo(self, *args: Any) -> dict[str, Any]:
        """Its arguments back."""
        return self.report(args=list(args))

    def sleep(self, seconds: float, value: Any = None, marker: str | None = None) -> dict[str, Any]:
        """Sleep ``seconds`` (after appending this process's PID to the file ``marker``,
        so a test knows the call started, and where), then report ``value``."""
        if marker:
            with open(marker, "a", encoding="utf-8") as handle:
                handle.write(f"{os.getpid()}\n")
        time.sleep(seconds)
        return self.report(value=value)

    def fail(self, error: BaseException) -> None:
        """Raise ``error``."""
        raise error

    def ask(self, messages: list[Any], catch: bool = False, pause: float = 0.0, marker: str | None = None) -> dict[str, Any]:
        """``ask_driver`` each of ``messages`` in turn (``pause`` seconds apart; ``marker``:
        append ``PID N`` to that file before sending message N), then report the replies
        and each round trip's seconds. ``catch``: an exception ``ask_driver`` raises is
        reported in place of its reply, as ``{"error": class name, "runtime_error": bool,
        "message": text}``, and the call goes on."""
        replies: list[Any] = []
        seconds: list[float] = []
        for n, message in enumerate(messages):
            if n and pause:
                time.sleep(pause)
            if marker:
                with open(marker, "a", encoding="utf-8") as handle:
                    handle.write(f"{os.getpid()} {n}\n")
            sent = time.perf_counter()
            try:
                replies.append(ask_driver(message))
            except Exception as exc:
                if not catch:
                    raise
                replies.append({"error": type(exc).__name__, "runtime_error": isinstance(exc, RuntimeError), "message": str(exc)})
            seconds.append(time.perf_counter() - sent)
        return self.report(replies=replies, seconds=seconds)

    def allocate(self, gb: float, seconds: float = 0.0, marker: str | None = None, swallow: bool = False) -> dict[str, Any]:
        """Allocate and touch ``gb`` GiB in 64 MiB steps, then hold it ``seconds`` in short
        Python-level sleeps, and free it when the call ends. ``swallow``: a worker that
        catches the ``MemoryError`` a memory guard raises in it and keeps allocating and
        holding its memory (on ``self``) regardless."""
        if marker:
            with open(marker, "a", encoding="utf-8") as handle:
                handle.write(f"{os.getpid()}\n")
        step = 64 * 2**20
        steps = max(1, int(gb * 2**30 // step))
        chunks: list[bytearray] = []
        if swallow:
            self.kept = chunks
        deadline = time.monotonic() + seconds
        while True:
            try:
                while len(chunks) < steps:
                    chunks.append(bytearray(b"\1") * step)
                while time.monotonic() < deadline:
                    time.sleep(0.01)
                break
            except MemoryError:
                if not swallow:
                    raise
        return self.report(allocated=len(chunks) * step)


def kit_factory(slot: Slot) -> KitWorker:
    """The kit's worker factory (module-level, so it pickles by reference)."""
    return KitWorker(slot)


# --- the kit ----------------------------------------------------------------------------


def check_backend(
    backend_cls: type[ExecutionBackend],
    options: Mapping[str, Any] | None = None,
    parallel: int = 2,
    resources: Resources = KIT_RESOURCES,
) -> None:
    """Run every clause of the contract on ``backend_cls`` with these ``options``, on a
    pool of ``parallel`` slots of ``resources`` each; the first broken clause raises
    ``BackendContractError``."""
    backend = check_declaration(backend_cls, options, parallel)
    with _clause(backend_cls, "open"):
        pool = backend.open(parallel, resources, kit_factory)
    try:
        check_idle_wait(backend_cls, pool)
        dones = check_every_call_once(backend_cls, pool)
        check_slots(backend_cls, dones, parallel, resources)
        check_times(backend_cls, dones)
        check_at_most_parallel(backend_cls, dones, parallel)
        check_submission_order(backend_cls, dones)
        check_errors(backend_cls, pool, dones)
        check_worker_reuse(backend_cls, dones, parallel)
        check_messages(backend_cls, pool)
    finally:
        check_close(backend_cls, pool)
    check_too_big(backend_cls, backend_cls(backend.options), resources)
    check_max_parallel(backend_cls, backend_cls(backend.options), resources)


def check_declaration(backend_cls, options=None, parallel: int = 2) -> ExecutionBackend:
    """The class's declarations; returns a backend made with ``options``."""
    name = "declaration"

    def broken(detail: str) -> BackendContractError:
        return BackendContractError(backend_cls, name, detail)

    if not (isinstance(backend_cls, type) and issubclass(backend_cls, ExecutionBackend)):
        raise broken("the class must subclass serbench.execution.ExecutionBackend")
    if not isinstance(getattr(backend_cls, "name", None), str) or not backend_cls.name:
        raise broken("the class needs a non-empty string `name`")
    problem = options_problem(backend_cls.Options, dict(options or {}))
    if problem is not None:
        raise broken(problem)
    limit = backend_cls.max_parallel
    if limit is not None and (not isinstance(limit, int) or limit < 1):
        raise broken(f"`max_parallel` must be None or a positive int, not {limit!r}")
    if limit is not None and parallel > limit:
        raise broken(f"the kit was asked for parallel={parallel}, above the class's max_parallel={limit}")
    with _clause(backend_cls, name):
        return backend_cls(backend_cls.Options.model_validate(dict(options or {})))


def check_idle_wait(backend_cls, pool: Pool) -> None:
    name = "idle wait"
    with _clause(backend_cls, name):
        done = pool.wait()
        busy = pool.busy
    if done is not None:
        raise BackendContractError(backend_cls, name, f"wait() with nothing submitted returned {done!r}, not None")
    if busy != 0:
        raise BackendContractError(backend_cls, "busy", f"busy is {busy} on a fresh pool")


def check_every_call_once(backend_cls, pool: Pool) -> list[Done]:
    """``3 * parallel`` sleeping calls, each back once; returns their Dones in the order
    ``wait()`` gave them."""
    name = "every call once"
    count = 3 * pool.parallel
    keys = [("kit", i) for i in range(count)]
    with _clause(backend_cls, name):
        for i, key in enumerate(keys):
            pool.submit(key, "sleep", CALL_S, i)
    _expect_busy(backend_cls, pool, count, f"after {count} submits")
    dones = _collect(backend_cls, pool, name, count)
    got = [done.key for done in dones]
    if sorted(got) != sorted(keys):
        missing = [k for k in keys if k not in got]
        extra = [k for k in got if k not in keys or got.count(k) > 1]
        raise BackendContractError(backend_cls, name, f"keys back {got!r}: missing {missing!r}, unexpected or repeated {extra!r}")
    for done in dones:
        i = done.key[1]
        if done.error is not None or done.lost is not None:
            raise BackendContractError(backend_cls, name, f"call {done.key!r} ended with error={done.error!r}, lost={done.lost!r}")
        if not isinstance(done.value, dict) or done.value.get("value") != i:
            raise BackendContractError(backend_cls, name, f"call {done.key!r} returned {done.value!r}, not the worker's report of {i}")
    return dones


def check_slots(backend_cls, dones: list[Done], parallel: int, resources: Resources) -> None:
    name = "slots"
    for done in dones:
        slot = done.slot
        if not isinstance(slot, Slot):
            raise BackendContractError(backend_cls, name, f"call {done.key!r}: Done.slot is {slot!r}, not a Slot")
        if not (isinstance(slot.index, int) and 0 <= slot.index < parallel):
            raise BackendContractError(backend_cls, name, f"call {done.key!r}: slot index {slot.index!r} not in 0..{parallel - 1}")
        if slot.cpus != resources.cpus or slot.memory_gb != resources.memory_gb:
            raise BackendContractError(
                backend_cls, name,
                f"call {done.key!r}: slot grants {slot.cpus} CPUs and {slot.memory_gb} GB, "
                f"not the {resources.cpus} and {resources.memory_gb} asked for",
            )
        if not isinstance(slot.node, str) or not slot.node:
            raise BackendContractError(backend_cls, name, f"call {done.key!r}: slot node {slot.node!r} is not a name")
        built_for = done.value.get("slot") if isinstance(done.value, dict) else None
        if built_for != slot:
            raise BackendContractError(
                backend_cls, name, f"call {done.key!r}: Done.slot is {slot!r}, but its worker was built for {built_for!r}"
            )


def check_times(backend_cls, dones: list[Done]) -> None:
    name = "times"
    for done in dones:
        if done.started is None or done.ended is None:
            raise BackendContractError(backend_cls, name, f"call {done.key!r} ran but has started={done.started}, ended={done.ended}")
        if not (done.submitted - CLOCK_SKEW_S <= done.started <= done.ended):
            raise BackendContractError(
                backend_cls, name,
                f"call {done.key!r}: submitted {done.submitted:.3f}, started {done.started:.3f}, ended {done.ended:.3f}",
            )
        if done.ended - done.started < CALL_S * 0.9:
            raise BackendContractError(
                backend_cls, name, f"call {done.key!r} slept {CALL_S} s, but ran {done.ended - done.started:.3f} s"
            )


def check_at_most_parallel(backend_cls, dones: list[Done], parallel: int) -> None:
    name = "at most parallel"
    events = sorted([(d.started, 1, d.key) for d in dones] + [(d.ended, -1, d.key) for d in dones], key=lambda e: (e[0], e[1]))
    running: list[Hashable] = []
    for _, step, key in events:
        if step < 0:
            running.remove(key)
            continue
        running.append(key)
        if len(running) > parallel:
            raise BackendContractError(backend_cls, name, f"{len(running)} calls ran at once ({running!r}), parallel is {parallel}")


def check_submission_order(backend_cls, dones: list[Done]) -> None:
    name = "submission order"
    ordered = sorted(dones, key=lambda d: d.key[1])
    for earlier_index, earlier in enumerate(ordered):
        for later in ordered[earlier_index + 1:]:
            if later.started < earlier.started - CALL_S / 2:
                raise BackendContractError(
                    backend_cls, name,
                    f"call {later.key!r} started {earlier.started - later.started:.3f} s before {earlier.key!r}, "
                    "which was submitted before it",
                )


def check_errors(backend_cls, pool: Pool, dones: list[Done]) -> None:
    name = "errors"
    errors = {
        ("kit-error", 0): ValueError("kit: a bad value"),
        ("kit-error", 1): UserError("kit: bad input, one line"),
        ("kit-error", 2): KitError("kit: the kit's own error"),
    }
    with _clause(backend_cls, name):
        for key, error in errors.items():
            pool.submit(key, "fail", error)
        for i in range(pool.parallel):
            pool.submit(("kit-after", i), "sleep", CALL_S, i)
    got = _collect(backend_cls, pool, name, len(errors) + pool.parallel)
    for done in got:
        if done.key in errors:
            expected = errors[done.key]
            if done.lost is not None:
                raise BackendContractError(backend_cls, name, f"call {done.key!r} raising {expected!r} came back lost: {done.lost}")
            if type(done.error) is not type(expected) or str(done.error) != str(expected):
                raise BackendContractError(
                    backend_cls, name, f"call {done.key!r} raised {expected!r}, but Done.error is {done.error!r} "
                    f"({type(done.error).__module__}.{type(done.error).__qualname__})",
                )
        elif done.error is not None or done.lost is not None or not isinstance(done.value, dict):
            raise BackendContractError(
                backend_cls, name, f"call {done.key!r} after the errors ended with error={done.error!r}, lost={done.lost!r}"
            )
    dones.extend(d for d in got if d.key not in errors)


def check_worker_reuse(backend_cls, dones: list[Done], parallel: int) -> None:
    name = "worker reuse"
    tokens: dict[int, set[str]] = {}
    calls: dict[str, list[int]] = {}
    for done in dones:
        report = done.value
        tokens.setdefault(report["slot"].index, set()).add(report["token"])
        calls.setdefault(report["token"], []).append(report["calls"])
    for index, seen in sorted(tokens.items()):
        if len(seen) != 1:
            raise BackendContractError(
                backend_cls, name, f"slot {index} ran its calls on {len(seen)} different workers: the factory must be "
                "called once per slot and its worker kept between calls",
            )
    for token, counts in calls.items():
        if sorted(counts) != list(range(min(counts), min(counts) + len(counts))):
            raise BackendContractError(backend_cls, name, f"a worker counted its calls as {sorted(counts)}: not one object kept between calls")


def kit_reply(key: Hashable, message: Any) -> tuple[str, Hashable, Any]:
    """The reply of the kit's handler: a function of the call's key and its message."""
    return ("kit-reply", key, message)


def check_messages(backend_cls, pool: Pool) -> None:
    """``ask_driver`` from calls: replies in order, the handler in the driver's thread
    inside ``wait()``, None without a handler, a raising handler's error in the call."""
    name = "messages"
    messages = list(range(MESSAGES))
    driver = _ServingDriver()

    def broken(detail: str) -> BackendContractError:
        return BackendContractError(backend_cls, name, detail)

    with _clause(backend_cls, name):
        try:
            ask_driver("kit: outside any call")
        except RuntimeError:
            pass
        else:
            raise broken("ask_driver() outside any call (in the kit's own thread) did not raise RuntimeError")

    def none_each(key: Hashable, replies: Any) -> str | None:
        return None if replies == [None] * len(messages) else "None each (no handler is served)"

    def the_handlers(key: Hashable, replies: Any) -> str | None:
        expected = [kit_reply(key, m) for m in messages]
        return None if replies == expected else f"the handler's, in order: {expected!r}"

    def runtime_errors(key: Hashable, replies: Any) -> str | None:
        good = isinstance(replies, list) and len(replies) == len(messages) and all(
            isinstance(r, dict) and r.get("runtime_error") and KitError.__name__ in r["message"] and HANDLER_ERROR in r["message"]
            for r in replies
        )
        return None if good else f"a RuntimeError each, naming the handler's {KitError.__name__}: {HANDLER_ERROR}"

    steps = [  # (what is served, how many calls at once, whether calls catch ask_driver's errors, the replies expected)
        ("no handler", False, 1, False, none_each),
        ("a handler", driver.handler, pool.parallel, False, the_handlers),
        ("a raising handler", driver.raising, 1, True, runtime_errors),
        ("serve(None)", None, 1, False, none_each),
    ]
    for step, (what, handler, count, catch, check) in enumerate(steps):
        if handler is not False:
            with _clause(backend_cls, name):
                pool.serve(handler)
        keys = [(f"kit-ask-{step}", i) for i in range(count)]
        with _clause(backend_cls, name):
            for key in keys:
                pool.submit(key, "ask", messages, catch)
        got = {done.key: done for done in driver.collect(backend_cls, pool, name, count)}
        for key in keys:
            done = got.get(key)
            if done is None or done.error is not None or done.lost is not None or not isinstance(done.value, dict):
                detail = "did not come back" if done is None else f"ended with error={done.error!r}, lost={done.lost!r}"
                raise broken(f"with {what}, call {key!r} sending {len(messages)} messages {detail}")
            replies = done.value.get("replies")
            wanted = check(key, replies)
            if wanted is not None:
                raise broken(f"with {what}, call {key!r} got the replies {replies!r}, not {wanted}")
            handled = [message for k, message, _ in driver.calls if k == key]
            if handler and handled != messages:
                raise broken(f"with {what}, the handler got call {key!r}'s messages as {handled!r}, not {messages!r}")
            if not handler and handled:
                raise broken(f"with {what}, a handler served before got call {key!r}'s messages {handled!r}")
        for key, message, problem in driver.calls:
            if problem:
                raise broken(f"the handler was called for call {key!r} (message {message!r}) {problem}")
        if driver.leaks:
            raise broken(f"ask_driver() in the thread that ran wait(), after it returned, {driver.leaks[0]}")


class _ServingDriver:
    """The kit's driver for the ``messages`` clause: ``wait()`` in a thread of its own (as
    :func:`_wait` does), recording which thread is inside it; handlers that note where and
    when they are called."""

    def __init__(self) -> None:
        self.inside: int | None = None  # the thread inside wait() now
        self.returned: set[Hashable] = set()  # keys whose Done wait() has returned
        self.calls: list[tuple[Hashable, Any, str]] = []  # (key, message, what was wrong or "")
        self.leaks: list[str] = []

    def _note(self, key: Hashable, message: Any) -> None:
        problem = ""
        if self.inside is None:
            problem = "while no thread was inside wait()"
        elif threading.get_ident() != self.inside:
            problem = "in another thread than the one inside wait()"
        elif key in self.returned:
            problem = "after its Done had been returned"
        self.calls.append((key, message, problem))

    def handler(self, key: Hashable, message: Any) -> Any:
        self._note(key, message)
        return kit_reply(key, message)

    def raising(self, key: Hashable, message: Any) -> Any:
        self._note(key, message)
        raise KitError(HANDLER_ERROR)

    def wait(self, pool: Pool) -> Done | None:
        self.inside = threading.get_ident()
        try:
            done = pool.wait()
        finally:
            self.inside = None
        if done is not None:
            self.returned.add(done.key)
        try:
            ask_driver("kit: after wait() returned")
        except RuntimeError:
            pass
        except Exception as exc:
            self.leaks.append(f"raised {exc.__class__.__name__}: {exc}, not RuntimeError")
        else:
            self.leaks.append("did not raise RuntimeError")
        return done

    def collect(self, backend_cls, pool: Pool, name: str, count: int) -> list[Done]:
        dones = []
        for _ in range(count):
            done = _wait(backend_cls, pool, name, lambda: self.wait(pool))
            if not isinstance(done, Done):
                raise BackendContractError(backend_cls, name, f"wait() returned {done!r} with calls not back")
            dones.append(done)
        return dones


def check_close(backend_cls, pool: Pool) -> None:
    name = "close"
    with _clause(backend_cls, name):
        pool.close()
    with _clause(backend_cls, name + " twice"):
        pool.close()


def check_too_big(backend_cls, backend: ExecutionBackend, resources: Resources = KIT_RESOURCES) -> None:
    """A slot no machine has room for is refused by ``open``, at once, in one line."""
    name = "too big"
    huge = Resources(cpus=resources.cpus, memory_gb=65536)
    _expect_refusal(backend_cls, name, lambda: backend.open(1, huge, kit_factory), "a slot of 65536 GB")


def check_max_parallel(backend_cls, backend: ExecutionBackend, resources: Resources = KIT_RESOURCES) -> None:
    name = "max parallel"
    limit = backend_cls.max_parallel
    if limit is None:
        return
    _expect_refusal(backend_cls, name, lambda: backend.open(limit + 1, resources, kit_factory), f"parallel={limit + 1}")


# --- helpers ------------------------------------------------------------------------------


def _clause(backend_cls, name: str):
    return clause(BackendContractError, backend_cls, name)


def _expect_busy(backend_cls, pool: Pool, expected: int, when: str) -> None:
    with _clause(backend_cls, "busy"):
        busy = pool.busy
    if busy != expected:
        raise BackendContractError(backend_cls, "busy", f"busy is {busy} {when}, not {expected}")


def _collect(backend_cls, pool: Pool, name: str, count: int) -> list[Done]:
    """``count`` Dones from ``wait()``, checking ``busy`` along the way and that ``wait()``
    returns None once they are all back."""
    dones: list[Done] = []
    for returned in range(1, count + 1):
        done = _wait(backend_cls, pool, name)
        if done is None:
            raise BackendContractError(backend_cls, name, f"wait() returned None with {count - len(dones)} calls not back")
        if not isinstance(done, Done):
            raise BackendContractError(backend_cls, name, f"wait() returned {done!r}, not a Done")
        dones.append(done)
        _expect_busy(backend_cls, pool, count - returned, f"after {returned} of {count} calls came back")
    extra = _wait(backend_cls, pool, name)
    if extra is not None:
        raise BackendContractError(backend_cls, name, f"wait() returned {extra!r} after every call had come back")
    return dones


def _bounded(call, timeout: float) -> dict[str, Any]:
    """Run ``call()`` in a thread for at most ``timeout`` seconds: ``{"value": ...}``,
    ``{"error": exc}``, or ``{}`` when it had not returned (the thread is left behind)."""
    box: dict[str, Any] = {}

    def run() -> None:
        try:
            box["value"] = call()
        except BaseException as exc:  # handed to the kit's thread
            box["error"] = exc

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(timeout)
    return {} if thread.is_alive() else box


def _wait(backend_cls, pool: Pool, name: str, waiting=None) -> Done | None:
    """``pool.wait()`` (or ``waiting()``), failing the clause if it takes longer than
    ``WAIT_TIMEOUT_S``."""
    box = _bounded(waiting or pool.wait, WAIT_TIMEOUT_S)
    if not box:
        raise BackendContractError(backend_cls, name, f"wait() did not return within {WAIT_TIMEOUT_S:g} s")
    if "error" in box:
        exc = box["error"]
        raise BackendContractError(backend_cls, name, f"wait() raised {exc.__class__.__name__}: {exc}") from exc
    return box["value"]


def _expect_refusal(backend_cls, name: str, opening, what: str) -> None:
    started = time.monotonic()
    box = _bounded(opening, REFUSAL_TIMEOUT_S)
    if not box:
        raise BackendContractError(backend_cls, name, f"open() with {what} did not return within {REFUSAL_TIMEOUT_S:g} s")
    if "value" in box:
        box["value"].close()
        raise BackendContractError(backend_cls, name, f"open() with {what} returned a pool instead of raising UserError")
    exc = box["error"]
    if not isinstance(exc, UserError):
        raise BackendContractError(backend_cls, name, f"open() with {what} raised {exc.__class__.__name__}: {exc}, not a UserError") from exc
    message = str(exc)
    if not message.strip() or "\n" in message.strip():
        raise BackendContractError(backend_cls, name, f"open() with {what}: the UserError is not one line: {message!r}")
    if time.monotonic() - started > REFUSAL_TIMEOUT_S:
        raise BackendContractError(backend_cls, name, f"open() with {what} took {time.monotonic() - started:.0f} s to refuse")
