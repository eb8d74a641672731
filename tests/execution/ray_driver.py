"""Drivers for the ray backend's tests: each scenario opens real pools on a real Ray
(the test cluster of ``tests/ray_cluster.py``, or a private ``local`` instance), and
prints one JSON line per event on stdout; the tests (``test_ray_backend.py``) run it in
the cluster's network namespace, inject faults from outside (by PID), and check the lines.

    python ray_driver.py SCENARIO '{"address": "127.0.0.1:6379", ...}'
"""

from __future__ import annotations

import json
import os
import signal
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from serbench.errors import UserError
from serbench.execution.backend import Done
from serbench.execution.isolate import process_tree
from serbench.execution.ray_backend import RayBackend
from serbench.spec import Resources
from serbench.testing.backends import check_backend, kit_factory

SLOT = Resources(cpus=1, memory_gb=1)


def emit(event: str, **fields: Any) -> None:
    print(json.dumps({"event": event, **fields}, default=str), flush=True)


def done_line(done: Done, received: float) -> dict[str, Any]:
    value = done.value
    if isinstance(value, dict):
        value = {k: (v.index if k == "slot" else v) for k, v in value.items()}
    error = None
    if done.error is not None:
        kind = type(done.error)
        error = {"type": f"{kind.__module__}.{kind.__qualname__}", "message": str(done.error),
                 "memory_error": isinstance(done.error, MemoryError), "user_error": isinstance(done.error, UserError)}
    return {
        "key": done.key, "slot": done.slot.index if done.slot else None, "node": done.slot.node if done.slot else None,
        "value": value, "error": error, "lost": done.lost, "oom": done.oom,
        "submitted": done.submitted, "started": done.started, "ended": done.ended, "received": received,
    }


def drain(pool, until: int | None = None) -> list[dict[str, Any]]:
    """Dones until the pool is idle (or ``until`` of them), each emitted as it comes."""
    lines = []
    while until is None or len(lines) < until:
        done = pool.wait()
        if done is None:
            break
        line = done_line(done, time.time())
        emit("done", **line)
        lines.append(line)
    return lines


def open_pool(address: str, parallel: int = 2, resources: Resources = SLOT, **options: Any):
    backend = RayBackend(RayBackend.Options(address=address, **options))
    pool = backend.open(parallel, resources, kit_factory)
    emit("opened", describe=backend.describe())
    return backend, pool


# --- scenarios ----------------------------------------------------------------------------


def kit(args: dict) -> None:
    started = time.monotonic()
    check_backend(RayBackend, {"address": args["address"]}, parallel=args.get("parallel", 2))
    emit("kit", seconds=time.monotonic() - started)


def too_big(args: dict) -> None:
    backend = RayBackend(RayBackend.Options(address=args["address"]))
    started = time.monotonic()
    try:
        backend.open(2, Resources(cpus=args["cpus"], memory_gb=args["memory_gb"]), kit_factory)
    except UserError as exc:
        emit("refused", message=str(exc), seconds=time.monotonic() - started)
    else:
        emit("opened")


def kill_worker(args: dict) -> None:
    """A long call (its marker tells the test its PID, which the test kills), short calls
    beside it; after its loss, calls enough to reach the replaced slot."""
    _, pool = open_pool(args["address"])
    pool.submit("long", "sleep", 60, None, args["marker"])
    lines = []
    while not any(line["key"] == "long" for line in lines):
        lines += drain(pool, until=1)
    lost = next(line for line in lines if line["key"] == "long")
    for i in range(8):
        pool.submit(["after", i], "sleep", 1.0, i)
    drain(pool)
    emit("slots", pids=pool.slot_pids(), lost_slot=lost["slot"])
    pool.close()
    pool.close()


def kill_raylet(args: dict) -> None:
    """One long call per node (the test kills the worker node's raylet); after the loss,
    more calls, which must complete on the slot that is left."""
    _, pool = open_pool(args["address"])
    for i in range(2):
        pool.submit(["long", i], "sleep", args["seconds"], i, f"{args['marker']}.{i}")
    first = drain(pool, until=1)
    emit("first", seconds=time.time() - first[0]["submitted"])
    for i in range(3):
        pool.submit(["after", i], "sleep", 0.2, i)
    drain(pool)
    emit("slots", pids=pool.slot_pids())
    pool.close()


def memory(args: dict) -> None:
    """A call that allocates past the slot's limit (``swallow``: and swallows the guard's
    MemoryError, holding on to its memory), then an ordinary call."""
    _, pool = open_pool(args["address"], parallel=1)
    pool.submit("baseline", "echo")
    drain(pool)
    pool.submit("hog", "allocate", args["gb"], args["seconds"], args["marker"], args["swallow"])
    drain(pool)
    pool.submit("after", "echo")
    drain(pool)
    emit("slots", pids=pool.slot_pids())
    pool.close()


def overhead(args: dict) -> None:
    """Calls one at a time: how long from submit to start, and from end to the driver."""
    _, pool = open_pool(args["address"], parallel=1)
    pool.submit("warm", "echo")
    drain(pool)
    for i in range(args["calls"]):
        pool.submit(["echo", i], "echo", i)
        drain(pool)
    pool.close()


def stall(args: dict) -> None:
    """Every CPU of the cluster held by another actor: the pool's slot cannot start, and a
    queued call makes ``wait`` give up after ``placement_timeout_s``."""
    import ray

    ray.init(address=args["address"], log_to_driver=False, logging_level="ERROR")

    @ray.remote(num_cpus=1)
    class Hog:
        def ready(self) -> int:
            return os.getpid()

    hogs = [Hog.remote() for _ in range(args["nodes"])]
    ray.get([h.ready.remote() for h in hogs])
    _, pool = open_pool(args["address"], parallel=1, placement_timeout_s=args["placement_timeout"])
    pool.submit("queued", "echo")
    started = time.monotonic()
    try:
        drain(pool)
    except UserError as exc:
        emit("gave-up", message=str(exc), seconds=time.monotonic() - started)
    pool.close()


def message_latency(args: dict) -> None:
    """One call that asks the driver ``messages`` times in a row (after a warm-up call):
    each round trip as the call measured it."""
    _, pool = open_pool(args["address"], parallel=1)
    pool.serve(lambda key, message: message)
    pool.submit("warm", "ask", [0])
    drain(pool)
    pool.submit("asks", "ask", list(range(args["messages"])))
    (line,) = drain(pool)
    seconds = line["value"]["seconds"]
    emit("latency", seconds=seconds, median=statistics.median(seconds), replies_ok=line["value"]["replies"] == list(range(args["messages"])))
    pool.close()


def _gone(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0] == "Z"
    except (OSError, IndexError):
        return True


def _await_death(pid: int, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not _gone(pid):
        if time.monotonic() > deadline:
            raise SystemExit(f"process {pid} was not killed within {timeout:g} s")
        time.sleep(0.02)


def _first_pid(marker: str, timeout: float = 60.0) -> int:
    deadline = time.monotonic() + timeout
    while True:
        try:
            return int(Path(marker).read_text().split()[0])
        except (OSError, IndexError, ValueError):
            if time.monotonic() > deadline:
                raise SystemExit(f"no call wrote {marker} within {timeout:g} s") from None
            time.sleep(0.02)


def lost_asking(args: dict) -> None:
    """Calls that keep asking the driver, each killed by the test (by PID) with a message in
    flight: ``victim-a`` while the driver's handler is answering it (the handler waits for
    the kill), ``victim-b`` while the driver is outside ``wait()`` and its message waits in
    the mailbox. Every handler call and every Done is emitted with the time it happened."""
    _, pool = open_pool(args["address"])
    marker = args["marker"]
    returned: dict[str, float] = {}

    def handler(key, message):
        emit("handled", key=key, message=message, at=time.time(), after_done=json.dumps(key) in returned)
        if key == "victim-a" and message == 3:
            Path(f"{marker}.a.handler").write_text("in the handler\n")
            _await_death(_first_pid(f"{marker}.a"))
            time.sleep(0.5)
        return ["reply", message]

    def drain_noting(until: int | None = None) -> list[dict[str, Any]]:
        lines = drain(pool, until)
        for line in lines:
            returned[json.dumps(line["key"])] = line["received"]
        return lines

    pool.serve(handler)
    many = list(range(2000))
    pool.submit("victim-a", "ask", many, False, 0.05, f"{marker}.a")
    pool.submit("bystander-a", "ask", list(range(5)), False, 0.1)
    drain_noting()
    pool.submit("victim-b", "ask", many, False, 0.1, f"{marker}.b")
    pool.submit("bystander-b", "ask", list(range(5)), False, 0.1)
    _first_pid(f"{marker}.b")
    while "victim-b" not in [line["key"] for line in drain_noting(until=1)]:
        if json.dumps("bystander-b") in returned and not Path(f"{marker}.b.outside").exists():
            # outside wait(): victim-b's next message waits in the mailbox, unanswered
            Path(f"{marker}.b.outside").write_text("outside wait()\n")
            _await_death(_first_pid(f"{marker}.b"))
            time.sleep(2.0)  # Ray learns of the death before the driver looks again
            emit("looking-again", at=time.time())
    for i in range(2):
        pool.submit(["after", i], "ask", list(range(3)))
    drain_noting()
    emit("slots", pids=pool.slot_pids(), mailboxes=pool.mailboxes())
    pool.close()


def mailbox_faults(args: dict) -> None:
    """The mailbox stopped (SIGSTOP): a call's ask_driver gives up after
    ``reply_timeout_s``; killed (SIGKILL): a call's ask_driver fails at once, and a new
    mailbox answers the calls dispatched after."""
    import ray

    _, pool = open_pool(args["address"], parallel=1, reply_timeout_s=args["reply_timeout"])
    pool.serve(lambda key, message: ["reply", message])
    emit("driver", node=ray.get_runtime_context().get_node_id())
    pool.submit("before", "ask", [1, 2, 3])
    drain(pool)
    (pid, node), = pool.mailboxes()
    emit("mailbox", pid=pid, node=node)
    os.kill(pid, signal.SIGSTOP)
    pool.submit("stopped", "ask", [1], True)
    drain(pool)
    os.kill(pid, signal.SIGKILL)
    _await_death(pid)
    time.sleep(1.0)
    pool.submit("killed", "ask", [1, 2], True)
    drain(pool)
    pool.submit("after", "ask", [1, 2, 3])
    drain(pool)
    emit("mailboxes", mailboxes=pool.mailboxes())
    pool.close()


def local(args: dict) -> None:
    """``address: local``: a private Ray instance, sized to this process's CPUs, stopped
    at close."""
    backend, pool = open_pool("local", parallel=args["parallel"])
    emit("children", pids=[p for p in process_tree(os.getpid()) if p != os.getpid()])
    for i in range(args["parallel"]):
        pool.submit(["local", i], "sleep", 0.5, i)
    drain(pool)
    pool.close()
    deadline = time.monotonic() + 30
    while len(process_tree(os.getpid())) > 1 and time.monotonic() < deadline:
        time.sleep(0.1)
    emit("closed", children=[p for p in process_tree(os.getpid()) if p != os.getpid()])
    try:
        RayBackend(RayBackend.Options(address="local")).open(1, Resources(cpus=64, memory_gb=1), kit_factory)
    except UserError as exc:
        emit("refused", message=str(exc))
    emit("closed-again", children=[p for p in process_tree(os.getpid()) if p != os.getpid()])


def connect(args: dict) -> None:
    """Each address in turn: refused (one line), or opened and closed again."""
    for address in args["addresses"]:
        started = time.monotonic()
        backend = RayBackend(RayBackend.Options(address=address))
        try:
            pool = backend.open(1, SLOT, kit_factory)
        except UserError as exc:
            emit("refused", address=address, message=str(exc), seconds=time.monotonic() - started)
        else:
            emit("opened", address=address, describe=backend.describe())
            pool.close()


SCENARIOS = {
    f.__name__.replace("_", "-"): f
    for f in (kit, too_big, kill_worker, kill_raylet, memory, overhead, message_latency, lost_asking, mailbox_faults, stall, local, connect)
}

if __name__ == "__main__":
    SCENARIOS[sys.argv[1]](json.loads(sys.argv[2]) if len(sys.argv) > 2 else {})
