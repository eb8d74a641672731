"""The execution backends on real Ray: the contract kit on ``local`` and ``ray``, the ray
backend's options and refusals, faults on a real two-node cluster (a worker process
killed mid-call, a node's raylet killed, a call over its memory limit), and messages from
calls to the driver (round trip, a slot lost with a message in flight, the mailbox
stopped or killed), with no mocks.

Every driver runs in the cluster's network namespace (``tests/ray_cluster.py``,
``ray_driver.py`` beside this file); faults are injected from here, by PID."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from serbench.errors import SpecError
from serbench.execution.local_backend import LocalBackend
from serbench.spec import Resources, plugin_options
from serbench.testing.backends import check_backend

DRIVER = Path(__file__).with_name("ray_driver.py")
ADDRESS = "127.0.0.1:6379"


def events(output: str) -> list[dict]:
    return [json.loads(line) for line in output.splitlines() if line.startswith("{")]


def scenario(cluster, name: str, timeout: float = 120, env: dict | None = None, **args) -> list[dict]:
    """Run a scenario of ray_driver.py to its end in the namespace; its events."""
    done = cluster.run(DRIVER, name, json.dumps({"address": ADDRESS, **args}), timeout=timeout, env=env)
    assert done.returncode == 0, done.stderr[-6000:]
    assert "Traceback" not in done.stderr, done.stderr[-6000:]
    return events(done.stdout)


def start(cluster, name: str, **args) -> subprocess.Popen:
    return cluster.driver(DRIVER, name, json.dumps({"address": ADDRESS, **args}))


def finish(proc: subprocess.Popen, timeout: float = 120) -> list[dict]:
    out, err = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, err[-6000:]
    return events(out)


def wait_for_lines(path: Path, count: int = 1, timeout: float = 60) -> list[int]:
    """The PIDs a toy worker wrote to its marker file, once there are ``count``."""
    deadline = time.monotonic() + timeout
    while True:
        lines = path.read_text().split() if path.exists() else []
        if len(lines) >= count:
            return [int(p) for p in lines]
        assert time.monotonic() < deadline, f"no call started within {timeout} s ({path})"
        time.sleep(0.05)


def dones(lines: list[dict]) -> dict:
    return {json.dumps(line["key"]): line for line in lines if line["event"] == "done"}


def one(lines: list[dict], event: str) -> dict:
    (found,) = [line for line in lines if line["event"] == event]
    return found


# --- the contract kit -------------------------------------------------------------------


def test_local_backend_keeps_the_backend_contract():
    check_backend(LocalBackend, parallel=1)


def test_ray_backend_keeps_the_backend_contract(ray_cluster):
    """Two slots on the two nodes of the cluster."""
    kit = one(scenario(ray_cluster, "kit", parallel=2, timeout=300), "kit")
    assert kit["seconds"] < 60


# --- options and refusals -------------------------------------------------------------------


@pytest.mark.parametrize("address", ["local", "auto", "10.0.0.5:6379", "head-1.example.org:6379", "[::1]:6379", " auto "])
def test_ray_addresses_accepted(address):
    from serbench.execution.ray_backend import RayBackend

    options = plugin_options(RayBackend.Options, {"address": address}, "execution.options")
    assert options.address == address.strip()


@pytest.mark.parametrize("address", ["", "nowhere", "10.0.0.5", "10.0.0.5:0", "10.0.0.5:70000", "ray://10.0.0.5:10001", "http://h:80", "a b:1"])
def test_a_bad_ray_address_is_a_one_line_error(address):
    from serbench.execution.ray_backend import RayBackend

    with pytest.raises(SpecError) as caught:
        plugin_options(RayBackend.Options, {"address": address}, "execution.options")
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith("execution.options.address: "), message
    assert "local, auto or HOST:PORT" in message


def test_the_default_address_comes_from_serbench_ray_address(monkeypatch):
    from serbench.errors import UserError
    from serbench.execution.ray_backend import RayBackend

    options = plugin_options(RayBackend.Options, {}, "execution.options")
    monkeypatch.delenv("SERBENCH_RAY_ADDRESS", raising=False)
    assert options.resolved_address() == "local"
    monkeypatch.setenv("SERBENCH_RAY_ADDRESS", " 127.0.0.1:6379 ")
    assert options.resolved_address() == "127.0.0.1:6379"
    given = plugin_options(RayBackend.Options, {"address": "auto"}, "execution.options")
    assert given.resolved_address() == "auto"  # the job's (or --ray-address's) choice wins
    monkeypatch.setenv("SERBENCH_RAY_ADDRESS", "nowhere")
    with pytest.raises(UserError, match=r"^\$SERBENCH_RAY_ADDRESS: 'nowhere' is not local, auto or HOST:PORT"):
        options.resolved_address()


def test_ray_options_reject_unknown_keys():
    from serbench.execution.ray_backend import RayBackend

    with pytest.raises(SpecError, match="execution.options.adress: unknown key"):
        plugin_options(RayBackend.Options, {"adress": "local"}, "execution.options")


def test_the_plugin_module_does_not_import_ray():
    code = "import sys, serbench.execution.ray_backend; print('ray' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


def test_a_slot_too_big_for_every_node_is_refused_before_any_call(ray_cluster):
    """The nodes have one CPU and 3 GB each: 5 GB, or 2 CPUs, fit nowhere."""
    for cpus, memory_gb, needle in [(1, 5, "1 CPU and 5 GB"), (2, 1, "2 CPUs and 1 GB")]:
        refused = one(scenario(ray_cluster, "too-big", cpus=cpus, memory_gb=memory_gb), "refused")
        message = refused["message"]
        assert "\n" not in message
        assert needle in message and ADDRESS in message, message
        assert "the largest (127.0.0.1, of 2 alive) has 1 CPU and 3.0 GB" in message, message
        assert refused["seconds"] < 10


def test_connection_failure_is_a_one_line_error_naming_the_address_and_auto_joins_ray_address(ray_cluster):
    """No Ray listens at 127.0.0.1:1; ``auto`` joins the cluster ``RAY_ADDRESS`` names."""
    lines = scenario(ray_cluster, "connect", addresses=["127.0.0.1:1", "auto"])
    refused = one(lines, "refused")
    assert refused["address"] == "127.0.0.1:1"
    assert refused["message"].startswith("ray: cannot reach a Ray cluster at 127.0.0.1:1 ("), refused
    assert "\n" not in refused["message"] and refused["seconds"] < 10, refused
    opened = one(lines, "opened")
    assert opened["address"] == "auto"
    assert opened["describe"] == f"ray at {ADDRESS} (2 nodes, 2 CPUs)", opened


# --- faults on the cluster ----------------------------------------------------------------


def test_a_worker_process_killed_mid_call_is_lost_and_its_slot_replaced(ray_cluster, tmp_path):
    marker = tmp_path / "long"
    proc = start(ray_cluster, "kill-worker", marker=str(marker))
    (pid,) = wait_for_lines(marker)
    assert ray_cluster.node_of(pid) is not None, "the call does not run in a Ray worker process of the cluster"
    os.kill(pid, signal.SIGKILL)
    lines = finish(proc)
    calls = dones(lines)
    long = calls['"long"']
    assert long["lost"] and not long["oom"] and long["error"] is None, long
    assert long["started"] is None
    after = [calls[json.dumps(["after", i])] for i in range(8)]
    assert all(line["error"] is None and line["lost"] is None for line in after), after
    slots = one(lines, "slots")
    replaced = slots["pids"][slots["lost_slot"]]
    assert replaced[0] == pid and len(replaced) == 2, slots  # the slot got a new actor
    assert any(line["slot"] == slots["lost_slot"] and line["value"]["pid"] == replaced[1] for line in after), after
    assert marker.read_text().split() == [str(pid)]  # the lost call never ran again


def test_a_node_whose_raylet_dies_loses_its_call_and_the_rest_finish_on_the_head(ray_cluster, tmp_path):
    """SIGKILL the worker node's raylet while both nodes run a call: that call comes back
    lost (once the GCS declares the node dead), the head's finishes, and later calls all
    run on the head's slot (the replacement cannot be placed: the cluster shrank)."""
    marker = tmp_path / "long"
    proc = start(ray_cluster, "kill-raylet", marker=str(marker), seconds=8)
    try:
        pids = [wait_for_lines(Path(f"{marker}.{i}"))[0] for i in range(2)]
        nodes = [ray_cluster.node_of(pid) for pid in pids]
        assert sorted(nodes) == [0, 1], nodes  # one slot per node
        killed_at = time.time()
        os.kill(ray_cluster.nodes[1].raylet_pid(), signal.SIGKILL)
        lines = finish(proc)
        calls = dones(lines)
        on_worker = calls[json.dumps(["long", nodes.index(1)])]
        on_head = calls[json.dumps(["long", nodes.index(0)])]
        assert on_worker["lost"] and on_worker["error"] is None, on_worker
        assert on_worker["received"] - killed_at < 15, "node death took too long to detect"
        assert on_head["value"]["value"] == nodes.index(0) and on_head["lost"] is None, on_head
        after = [calls[json.dumps(["after", i])] for i in range(3)]
        assert all(line["lost"] is None and line["error"] is None for line in after), after
        assert {line["value"]["pid"] for line in after} == {pids[nodes.index(0)]}, after
    finally:
        ray_cluster.kill_node(1)  # what is left of it
        ray_cluster.add_node()


@pytest.mark.parametrize("swallow", [False, True], ids=["memory-error", "killed-for-memory"])
def test_a_call_over_its_memory_limit_ends_as_oom_and_is_not_retried(ray_cluster, tmp_path, swallow):
    """A slot of 1 GB allocates 2 GB. The guard's MemoryError lands in the call, which ends
    with it, and the slot goes on. A worker that swallows that error and keeps its memory
    (as one stuck in native code would) is killed by the guard: the call is lost, ``oom``."""
    marker = tmp_path / "hog"
    lines = scenario(ray_cluster, "memory", gb=2, seconds=30, marker=str(marker), swallow=swallow)
    calls = dones(lines)
    hog = calls['"hog"']
    assert len(marker.read_text().split()) == 1  # one start: not retried
    assert hog["received"] - hog["submitted"] < 20  # ended well before its 30 s
    pids = one(lines, "slots")["pids"][0]
    if swallow:
        assert hog["lost"] and hog["oom"] and hog["error"] is None, hog
        assert "above its limit of 1 GB" in hog["lost"], hog
        assert len(pids) == 2, pids  # the slot was replaced
    else:
        assert hog["error"]["memory_error"] and hog["lost"] is None, hog
        assert "above its limit of 1 GB (resources.memory_gb)" in hog["error"]["message"], hog
        assert len(pids) == 1, pids  # the same actor goes on
    after = calls['"after"']
    assert after["value"]["pid"] == pids[-1] and after["error"] is None, after


def test_per_call_overhead_is_small(ray_cluster):
    """Submit to start and end to the driver, for calls one at a time (goal: < 50 ms)."""
    lines = [line for line in scenario(ray_cluster, "overhead", calls=20) if line["event"] == "done"][1:]
    to_start = sorted(line["started"] - line["submitted"] for line in lines)
    to_driver = sorted(line["received"] - line["ended"] for line in lines)
    print(f"median submit->start {to_start[10] * 1000:.1f} ms, end->driver {to_driver[10] * 1000:.1f} ms")
    assert to_start[10] < 0.05 and to_driver[10] < 0.05, (to_start, to_driver)


# --- messages to the driver -----------------------------------------------------------------


def test_a_message_round_trip_is_short(ray_cluster):
    """A call that asks the driver 50 times in a row, each round trip as the call measures
    it (goal: a median under 20 ms)."""
    latency = one(scenario(ray_cluster, "message-latency", messages=50), "latency")
    seconds = sorted(latency["seconds"])
    assert latency["replies_ok"] and len(seconds) == 50, latency
    print(f"ask_driver round trip: median {latency['median'] * 1000:.1f} ms, max {seconds[-1] * 1000:.1f} ms")
    assert latency["median"] < 0.02, seconds


def first_pid(path: Path, timeout: float = 60) -> int:
    """The PID an asking toy worker wrote first to its marker (``PID N`` lines)."""
    deadline = time.monotonic() + timeout
    while not (path.exists() and path.read_text().split()):
        assert time.monotonic() < deadline, f"no call started within {timeout} s ({path})"
        time.sleep(0.05)
    return int(path.read_text().split()[0])


def sent(path: Path) -> list[int]:
    """The numbers of the messages an asking toy worker was about to send (its marker)."""
    return [int(line.split()[1]) for line in path.read_text().splitlines() if len(line.split()) == 2]


def wait_for_file(path: Path, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert time.monotonic() < deadline, f"{path} did not appear within {timeout} s"
        time.sleep(0.02)


def test_a_slot_lost_with_a_message_in_flight_neither_hangs_the_driver_nor_delivers_after_its_done(ray_cluster, tmp_path):
    """Two calls that keep asking the driver, each SIGKILLed with a message in flight: the
    first while the driver's handler answers it, the second while the driver is outside
    wait() and its message waits in the mailbox. Both come back lost, the handler never
    hears from a call after its Done, the second's waiting message is dropped, the driver
    does not hang, and later calls get their replies through the same mailbox."""
    marker = tmp_path / "victim"
    proc = start(ray_cluster, "lost-asking", marker=str(marker))
    try:
        wait_for_file(Path(f"{marker}.a.handler"))
        pid_a = first_pid(Path(f"{marker}.a"))
        assert ray_cluster.node_of(pid_a) is not None
        os.kill(pid_a, signal.SIGKILL)
        wait_for_file(Path(f"{marker}.b.outside"))
        pid_b = first_pid(Path(f"{marker}.b"))
        # Now a message of victim-b waits in the mailbox, unanswered: either one it posts
        # next (its pause is 0.1 s), or, when its last one reached the mailbox just as the
        # driver left wait(), that one -- then it is blocked on it and posts nothing more.
        # Either way the checks below hold: exactly its last message goes unhandled.
        sent_before = len(sent(Path(f"{marker}.b")))
        deadline = time.monotonic() + 2
        while len(sent(Path(f"{marker}.b"))) == sent_before and time.monotonic() < deadline:
            time.sleep(0.02)
        time.sleep(0.3)  # ... and in the mailbox
        os.kill(pid_b, signal.SIGKILL)
        lines = finish(proc)
    finally:
        if proc.poll() is None:
            proc.kill()
    calls = dones(lines)
    handled = [line for line in lines if line["event"] == "handled"]
    assert not [line for line in handled if line["after_done"]], "the handler heard from a call after its Done"
    for victim, pid in (("victim-a", pid_a), ("victim-b", pid_b)):
        done = calls[json.dumps(victim)]
        assert done["lost"] and done["error"] is None, done
        assert all(line["at"] < done["received"] for line in handled if line["key"] == victim), victim
        posted = sent(Path(f"{marker}.{victim[-1]}"))
        got = [line["message"] for line in handled if line["key"] == victim]
        assert got == posted[: len(got)], (victim, posted, got)  # in order, none twice
    # a: the message being answered when the slot died was the last one handled
    assert [line["message"] for line in handled if line["key"] == "victim-a"][-1] == 3
    # b: the message that was waiting in the mailbox when the slot died was dropped
    sent_b = sent(Path(f"{marker}.b"))
    handled_b = [line["message"] for line in handled if line["key"] == "victim-b"]
    assert len(handled_b) == len(sent_b) - 1, (sent_b, handled_b)
    looked = one(lines, "looking-again")["at"]
    assert not [line for line in handled if line["key"] == "victim-b" and line["at"] > looked], handled_b
    for key in ("bystander-a", "bystander-b"):
        assert calls[json.dumps(key)]["value"]["replies"] == [["reply", n] for n in range(5)], calls[json.dumps(key)]
    after = [calls[json.dumps(["after", i])] for i in range(2)]
    assert all(line["value"]["replies"] == [["reply", n] for n in range(3)] for line in after), after
    slots = one(lines, "slots")
    assert {pid_a, pid_b} <= {pid for pids in slots["pids"] for pid in pids}, slots
    assert len(slots["mailboxes"]) == 1, slots  # one mailbox all along


def test_a_stopped_or_dead_mailbox_fails_the_message_not_the_call_and_is_replaced(ray_cluster):
    """The pool's mailbox, on the driver's node, SIGSTOPped: the call's ask_driver raises
    RuntimeError after reply_timeout_s (3 s here); SIGKILLed: at once; the call catches it
    and returns. Calls dispatched after that are answered by a new mailbox."""
    lines = scenario(ray_cluster, "mailbox-faults", reply_timeout=3)
    calls = dones(lines)
    assert one(lines, "mailbox")["node"] == one(lines, "driver")["node"]
    assert calls['"before"']["value"]["replies"] == [["reply", n] for n in (1, 2, 3)]
    stopped = calls['"stopped"']
    (reply,) = stopped["value"]["replies"]
    assert reply["runtime_error"] and "did not answer within 3 s" in reply["message"], reply
    assert 3 <= stopped["value"]["seconds"][0] < 5, stopped
    killed = calls['"killed"']
    assert all(r["runtime_error"] and "mailbox failed" in r["message"] for r in killed["value"]["replies"]), killed
    assert max(killed["value"]["seconds"]) < 2, killed
    assert calls['"after"']["value"]["replies"] == [["reply", n] for n in (1, 2, 3)], calls['"after"']
    mailboxes = one(lines, "mailboxes")["mailboxes"]
    assert len(mailboxes) == 2 and mailboxes[1][1] == one(lines, "driver")["node"], mailboxes


def test_queued_calls_with_no_slot_able_to_start_fail_after_the_placement_timeout(ray_cluster):
    """Another driver's actors hold every CPU: the pool's one slot cannot start, and its
    queued call makes ``wait`` raise a one-line UserError after ``placement_timeout_s``."""
    gave_up = one(scenario(ray_cluster, "stall", nodes=2, placement_timeout=3), "gave-up")
    assert 3 <= gave_up["seconds"] < 10, gave_up
    assert "no slot of the pool has been able to start for 3 s" in gave_up["message"]
    assert "\n" not in gave_up["message"]


def test_address_local_starts_a_private_ray_and_stops_it_at_close():
    """In a namespace of its own (no cluster), with Ray's temporary files in its folder."""
    from ray_cluster import RayCluster

    with RayCluster(nodes=0) as bare:
        done = bare.run(DRIVER, "local", json.dumps({"parallel": 2}), env={"RAY_TMPDIR": str(bare.root), "RAY_ADDRESS": ""})
    assert done.returncode == 0, done.stderr[-6000:]
    lines = events(done.stdout)
    cpus = len(os.sched_getaffinity(0))
    assert one(lines, "opened")["describe"].endswith(f"(1 node, {cpus} CPU{'s' if cpus != 1 else ''})")
    assert one(lines, "children")["pids"], "no Ray processes were started"
    assert len(dones(lines)) == 2
    assert one(lines, "closed")["children"] == [], "Ray processes left running after close()"
    refused = one(lines, "refused")["message"]
    assert "64 CPUs" in refused and f"has {cpus} CPU" in refused, refused
    assert one(lines, "closed-again")["children"] == []
    assert "INFO" not in done.stderr, done.stderr  # no Ray logging spam


def test_a_private_instance_shares_this_machine_out_between_its_slots():
    """address local: N slots that do not fit N times get an equal share, never more
    than the job asks; slots that fit keep what they ask."""
    from serbench.execution.ray_backend import shared_out

    nodes = [{"Resources": {"CPU": 2.0, "memory": 16 * 2**30}}]
    assert shared_out(Resources(cpus=2, memory_gb=8), 2, nodes) == Resources(cpus=1, memory_gb=8)
    assert shared_out(Resources(cpus=2, memory_gb=12), 2, nodes) == Resources(cpus=1, memory_gb=8)
    assert shared_out(Resources(cpus=1, memory_gb=4), 2, nodes) == Resources(cpus=1, memory_gb=4)
    assert shared_out(Resources(cpus=2, memory_gb=8), 3, nodes) == Resources(cpus=0.66, memory_gb=5.33)
