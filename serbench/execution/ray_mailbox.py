"""Messages from calls on the ray backend's slots to the driver (``ask_driver``, see
:mod:`serbench.execution.backend`): one small asynchronous Ray actor per pool, its
*mailbox*, through which every slot's call reaches the driver and gets its reply.

- **The mailbox** (:class:`Mailbox`) is started by the pool when it opens, on the
  driver's own node (node affinity, not soft), asking for no CPU and no memory, with
  ``max_restarts=0``; ``close()`` kills it. It holds what calls posted until the driver
  takes it, and each poster's pending reply.
- **A call** (the slot's side, :func:`sender`) posts ``(call id, sequence number,
  message)`` and blocks until the reply, one message at a time per call (a lock), so a
  call's messages reach the driver in the order it sent them. The call id is the
  dispatch's, not the key: a lost call run again under its key is another call.
- **The driver** (:class:`Inbox`) keeps one ``take`` pending on the mailbox, in the
  ``ray.wait`` of ``RayPool.wait`` beside the calls in flight. A take returns as soon as
  something was posted, with everything posted so far; the pool answers each message in
  the driver's thread (the served handler's reply, or None) and sends the replies with
  the next take, so a message costs one post and one take. A message whose call is no
  longer in flight (it ended, or its slot was lost) never reaches the handler: it is
  answered "the call has ended", which only a dead or finished call could receive. A
  driver stopped while answering (``KeyboardInterrupt``) tells the rest of what it took
  so, rather than leave them waiting.
- **Bounded.** A call waits for its reply at most ``reply_timeout_s`` (the ray backend's
  option, default 300 s: the driver answers while it is in ``wait()``), then
  ``ask_driver`` raises ``RuntimeError`` and the post is withdrawn (``ray.cancel``), so a
  hung mailbox or a driver that stopped waiting cannot hold a call for ever. A mailbox
  that died fails its posts at once (``RuntimeError`` in the call: Ray tells a caller
  of a dead actor), and once the driver's take fails too, the driver starts another
  for the calls dispatched after that (``ATTEMPTS`` failures in a row:
  the pool gives up, and every later ``ask_driver`` raises ``RuntimeError`` naming the
  last failure). The call waits in slices of ``SLICE_S`` seconds, so the slot's memory
  guard can still interrupt it.

``ray`` is imported only inside functions.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable

from serbench.execution.ray_connect import first_line, remote_class

ATTEMPTS = 3  # mailboxes that fail in a row before the pool gives messages up
SLICE_S = 0.5  # a call waits for its reply in slices this long
ENDED = "ask_driver: the call has ended"  # the reply to a message from a call no longer in flight


@dataclass(frozen=True)
class Channel:
    """What one call needs to reach the driver: the pool's mailbox (None: there is none
    any more, ``gone`` says why), the call's id, the bound on a reply."""

    mailbox: Any
    call: int
    timeout_s: float
    gone: str = ""


# --- the mailbox actor ----------------------------------------------------------------------


class Mailbox:
    """A pool's mailbox (an async Ray actor; see the module docstring)."""

    def __init__(self) -> None:
        self.posted: dict[tuple[int, int], Any] = {}  # (call, seq) -> message, not yet taken, in posting order
        self.replies: dict[tuple[int, int], asyncio.Future] = {}
        self.arrived: asyncio.Event | None = None  # made in the actor's event loop

    def _arrived(self) -> asyncio.Event:
        if self.arrived is None:
            self.arrived = asyncio.Event()
        return self.arrived

    async def ready(self) -> tuple[int, str]:
        """Where it runs: its PID and its node's Ray id."""
        import ray

        return os.getpid(), ray.get_runtime_context().get_node_id()

    async def post(self, call: int, seq: int, message: Any) -> tuple[bool, Any]:
        """Hold ``message`` for the driver; ``(True, reply)`` or ``(False, why not)``."""
        slot = (call, seq)
        reply = asyncio.get_running_loop().create_future()
        self.replies[slot] = reply
        self.posted[slot] = message
        self._arrived().set()
        try:
            return await reply
        finally:  # answered, or withdrawn (cancelled): a withdrawn message is never taken
            self.replies.pop(slot, None)
            self.posted.pop(slot, None)

    async def take(self, answers: list[tuple[int, int, tuple[bool, Any]]]) -> list[tuple[int, int, Any]]:
        """Hand ``answers`` to their posters, then wait until something is posted and
        return all of it, oldest first."""
        for call, seq, answer in answers:
            reply = self.replies.get((call, seq))
            if reply is not None and not reply.done():
                reply.set_result(answer)
        arrived = self._arrived()
        while not self.posted:
            arrived.clear()
            await arrived.wait()
        taken = [(call, seq, message) for (call, seq), message in self.posted.items()]
        self.posted.clear()
        return taken



# --- the driver's side ----------------------------------------------------------------------


class Inbox:
    """The driver's side of a pool's mailbox: the actor, its pending take, the replies."""

    def __init__(self, timeout_s: float):
        self.timeout_s = timeout_s
        self.actor: Any = None
        self.ref: Any = None  # the pending take: in RayPool.wait's ray.wait while calls run
        self.failures = 0  # mailboxes that failed in a row
        self.last_failure = ""
        self._ready: list[Any] = []  # ready() of every mailbox started, oldest first
        self._start()

    def _start(self) -> None:
        import ray
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        here = ray.get_runtime_context().get_node_id()
        self.actor = remote_class(Mailbox).options(
            num_cpus=0,
            max_restarts=0,
            max_task_retries=0,
            scheduling_strategy=NodeAffinitySchedulingStrategy(node_id=here, soft=False),
        ).remote()
        self._ready.append(self.actor.ready.remote())
        self._take([])

    def channel(self, call: int) -> Channel:
        if self.actor is None:
            return Channel(None, call, self.timeout_s, f"its mailbox failed {self.failures} times: {self.last_failure}")
        return Channel(self.actor, call, self.timeout_s)

    def deliver(self, answer: Callable[[int, Any], tuple[bool, Any]]) -> None:
        """The pending take returned: answer each message with ``answer(call, message)``
        (``(True, reply)`` or ``(False, why not)``), in order, and take again."""
        import ray

        ref, self.ref = self.ref, None
        try:
            taken = ray.get(ref)
        except ray.exceptions.RayError as exc:  # the mailbox died: its posters fail at once
            self.failures += 1
            self.last_failure = first_line(exc)
            self.close()
            if self.failures < ATTEMPTS:
                self._start()
            return
        self.failures = 0
        answers: list[tuple[int, int, tuple[bool, Any]]] = []
        try:
            for call, seq, message in taken:
                answers.append((call, seq, answer(call, message)))
        except BaseException as exc:  # the driver stops (KeyboardInterrupt...): the rest are told, not left waiting
            stopped = (False, f"ask_driver: the driver stopped ({exc.__class__.__name__})")
            answers += [(call, seq, stopped) for call, seq, _ in taken[len(answers):]]
            raise
        finally:
            self._take(answers)

    def _take(self, answers: list[tuple[int, int, tuple[bool, Any]]]) -> None:
        try:
            self.ref = self.actor.take.remote(answers)
        except Exception:  # a reply that cannot be pickled: that reply's error, not the others'
            self.ref = self.actor.take.remote([(call, seq, _picklable(answer)) for call, seq, answer in answers])

    def where(self, timeout: float = 30.0) -> list[tuple[int, str] | None]:
        """For each mailbox this pool started, oldest first: its PID and its node's Ray id
        (None: it never started)."""
        import ray

        where = []
        for ref in self._ready:
            try:
                where.append(tuple(ray.get(ref, timeout=timeout)))
            except ray.exceptions.RayError:
                where.append(None)
        return where

    def close(self) -> None:
        import ray

        if self.actor is not None:
            try:
                ray.kill(self.actor, no_restart=True)
            except Exception:
                pass
        self.actor, self.ref = None, None


def _picklable(answer: tuple[bool, Any]) -> tuple[bool, Any]:
    from ray import cloudpickle

    try:
        cloudpickle.dumps(answer)
        return answer
    except Exception as exc:
        return False, f"ask_driver: the driver's reply cannot be pickled ({exc.__class__.__name__}: {exc})"


# --- the slot's side ------------------------------------------------------------------------


def sender(channel: Channel) -> Callable[[Any], Any]:
    """The ``send`` of one call on a slot (for ``running_call``): post, wait for the reply
    (bounded), return it or raise ``RuntimeError``."""
    lock = threading.Lock()
    seqs = itertools.count()

    def send(message: Any) -> Any:
        import ray

        if channel.mailbox is None:
            raise RuntimeError(f"ask_driver: the pool cannot take messages any more ({channel.gone})")
        with lock:
            ref = channel.mailbox.post.remote(channel.call, next(seqs), message)
            deadline = time.monotonic() + channel.timeout_s
            while True:
                try:
                    ok, reply = ray.get(ref, timeout=max(0.0, min(SLICE_S, deadline - time.monotonic())))
                    break
                except ray.exceptions.GetTimeoutError:
                    if time.monotonic() < deadline:
                        continue
                    _withdraw(ref)
                    raise RuntimeError(
                        f"ask_driver: the driver did not answer within {channel.timeout_s:g} s "
                        "(execution.options.reply_timeout_s)"
                    ) from None
                except ray.exceptions.RayError as exc:
                    raise RuntimeError(f"ask_driver: the pool's mailbox failed ({first_line(exc)})") from None
                except BaseException:  # the memory guard's error, or the call cancelled
                    _withdraw(ref)
                    raise
        if not ok:
            raise RuntimeError(reply)
        return reply

    return send


def _withdraw(ref: Any) -> None:
    import ray

    try:
        ray.cancel(ref)
    except Exception:
        pass
