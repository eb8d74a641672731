"""Several trials in flight: the scheduler and fold search over a pool whose calls end in
an order the test chooses, with real engines, the real journal and in-flight marker,
and ``--resume`` replaying the ask/tell interleaving.

``OrderedPool`` is a real implementation of the pool contract (it runs each call on its
in-process worker); what it adds is control over *which* running call ends next, so the
interleavings Ray produces at random are reproduced on purpose here. Ray itself runs in
``tests/execution/test_ray_*.py`` and the study-level fault tests.
"""

from __future__ import annotations

import random
import time

import pytest

from conftest import FunctionWorker
from serbench.engines.base import Engine, NotReady, Outcome
from serbench.errors import UserError
from serbench.execution.backend import Done, Pool, Slot
from serbench.plugin.registry import registry
from serbench.results.inflight import INFLIGHT_FILE, InflightMarker
from serbench.results.journal import TrialJournal
from serbench.spec import Budget, FloatParam, IntParam
from serbench.study.events import StudyEvents
from serbench.study.scheduler import Scheduler
from serbench.study.search import FoldSearch

SPACE = {
    "lr": FloatParam(type="float", low=1e-5, high=1e-2, log=True),
    "epochs": IntParam(type="int", low=1, high=10),
}


def score(number, params):
    """A deterministic trial: a smooth function of the configuration."""
    return {"status": "ok", "value": 1.0 / (1.0 + abs(params["epochs"] - 6)) * min(1.0, params["lr"] * 300)}


class OrderedPool(Pool):
    """``parallel`` slots in this process; ``wait()`` ends one of the running calls,
    chosen by a seeded random order. ``lose(key)`` returning a reason makes that call
    come back lost; ``stop_after`` raises KeyboardInterrupt (a dying driver) once that
    many calls have come back."""

    def __init__(self, parallel, run_trial, seed=0, lose=lambda key, attempt: None, stop_after=None):
        self.parallel = parallel
        self.worker = FunctionWorker(run_trial)
        self.rng = random.Random(seed)
        self.running = []
        self.lose = lose
        self.attempts = {}
        self.stop_after = stop_after
        self.returned = 0
        self.most_running = 0

    def submit(self, key, method, *args):
        self.running.append((key, method, args, time.time()))
        self.most_running = max(self.most_running, len(self.running))

    @property
    def busy(self):
        return len(self.running)

    def wait(self):
        if not self.running:
            return None
        if self.stop_after is not None and self.returned >= self.stop_after:
            raise KeyboardInterrupt
        key, method, args, submitted = self.running.pop(self.rng.randrange(len(self.running)))
        self.returned += 1
        slot = Slot(0, "test-node", 1, 1)
        attempt = self.attempts[key] = self.attempts.get(key, 0) + 1
        why = self.lose(key, attempt)
        if why is not None:
            return Done(key, slot, lost=why, oom=why == "oom", submitted=submitted)
        started = time.time()
        value = getattr(self.worker, method)(*args)
        return Done(key, slot, value=value, submitted=submitted, started=started, ended=time.time())

    def close(self):
        self.running = []


def engine(name, seed=0, **options):
    cls = registry().get("engine", name).cls
    return cls(SPACE, seed, cls.Options(**options))


def search(tmp_path, eng, trials, fold=0, name="trials.jsonl", marker=None):
    """A fold's search journalling to ``tmp_path/name``; the folds of one study share
    one in-flight marker (pass it)."""
    marker = marker or InflightMarker(tmp_path / INFLIGHT_FILE)
    return FoldSearch(fold, eng, Budget(trials=trials), TrialJournal(tmp_path / name), inflight=marker)


def drive(pool, *searches):
    with pool:
        Scheduler(pool, list(searches), StudyEvents(), finals=False).run()


@pytest.mark.parametrize("name", ["random", "optuna", "hyperopt", "grid"])
def test_every_trial_is_journalled_once_with_its_place_in_the_interleaving(tmp_path, name):
    fold = search(tmp_path, engine(name), trials=10)
    pool = OrderedPool(3, score, seed=1)
    drive(pool, fold)
    records = TrialJournal(tmp_path / "trials.jsonl").read()
    count = len(records)  # a grid may hold fewer points than the budget
    assert count == 10 or (name == "grid" and fold.stop_reason == "exhausted" and count >= 6)
    assert sorted(r.number for r in records) == list(range(count))
    assert pool.most_running == 3
    assert [r.number for r in records] != list(range(10)), "the pool should have returned trials out of order"
    for position, record in enumerate(records):
        told_before = {r.number for r in records[:position]}
        assert record.asked_after <= position  # asked before its own tell
        assert record.asked_after <= len(told_before)
        assert record.node == "test-node" and record.slot == 0 and record.queued_s >= 0
    configurations = [tuple(sorted(r.params.items())) for r in records]
    assert len(set(configurations)) == count, "pending trials got the same configuration"
    assert not (tmp_path / INFLIGHT_FILE).exists()


@pytest.mark.parametrize("name", ["random", "optuna", "hyperopt"])
def test_a_resumed_study_replays_the_interleaving_and_runs_the_trials_that_were_in_flight(tmp_path, name):
    """The driver dies with trials in flight; a fresh engine replays the journal in its
    ask/tell order (exactly: a re-asked configuration must equal the journalled one), the
    trials that were in flight run first, and the study ends with every trial once and
    the same configurations as an uninterrupted run with the same order of returns."""
    whole = tmp_path / "whole"
    whole.mkdir()
    drive(OrderedPool(3, score, seed=4), search(whole, engine(name), trials=9))
    uninterrupted = {r.number: r.params for r in TrialJournal(whole / "trials.jsonl").read()}

    first = search(tmp_path, engine(name), trials=9)
    with pytest.raises(KeyboardInterrupt):
        drive(OrderedPool(3, score, seed=4, stop_after=5), first)
    done = TrialJournal(tmp_path / "trials.jsonl").read()
    in_flight = InflightMarker(tmp_path / INFLIGHT_FILE).read()
    assert len(done) == 5 and len(in_flight) == 3
    assert {t["number"] for t in in_flight}.isdisjoint(r.number for r in done)

    resumed = search(tmp_path, engine(name), trials=9)
    resumed.resume(done, in_flight)
    gaps = {n for n in range(max(r.number for r in done)) if n not in {r.number for r in done}}
    assert set(resumed.pending) == gaps  # in flight before a later trial was journalled: pending again
    assert all(resumed.pending[n].params == next(t["params"] for t in in_flight if t["number"] == n) for n in gaps)
    drive(OrderedPool(3, score, seed=4), resumed)
    records = TrialJournal(tmp_path / "trials.jsonl").read()
    assert sorted(r.number for r in records) == list(range(9))
    for record in records[:5] + [r for r in records if r.number in gaps]:
        assert record.params == uninterrupted[record.number]


def test_with_one_slot_the_journal_is_sequential_and_replays_as_before(tmp_path):
    fold = search(tmp_path, engine("optuna"), trials=4)
    drive(OrderedPool(1, score), fold)
    records = TrialJournal(tmp_path / "trials.jsonl").read()
    assert [(r.number, r.asked_after) for r in records] == [(0, 0), (1, 1), (2, 2), (3, 3)]
    legacy = [r.model_copy(update={"asked_after": None}) for r in records[:2]]  # a journal from before parallel trials
    resumed = search(tmp_path, engine("optuna"), trials=4, name="again.jsonl")
    resumed.resume(legacy)
    assert resumed.next_number == 2 and not resumed.pending
    drive(OrderedPool(1, score), resumed)
    assert [r.params for r in TrialJournal(tmp_path / "again.jsonl").read()] == [r.params for r in records[2:]]


def test_a_journal_that_does_not_replay_exactly_is_refused(tmp_path):
    drive(OrderedPool(3, score, seed=2), search(tmp_path, engine("random", seed=0), trials=6))
    done = TrialJournal(tmp_path / "trials.jsonl").read()
    assert any(r.asked_after != i for i, r in enumerate(done))
    with pytest.raises(UserError, match=r"cannot resume fold 0: engine 'random' asks .* for trial \d+ on replay, "
                                        r"but the journal has .*not deterministic"):
        search(tmp_path, engine("random", seed=1), trials=6, name="other.jsonl").resume(done)
    twice = done + [done[0]]
    with pytest.raises(UserError, match="fold 0 has trials .*each trial must appear once"):
        search(tmp_path, engine("random"), trials=6, name="x.jsonl").resume(twice)


def test_a_lost_trial_runs_again_once_with_its_configuration_then_is_journalled_as_lost(tmp_path):
    def lose(key, attempt):
        if key == ("trial", 0, 2):
            return "the slot's worker process died (SIGKILL)"
        if key == ("trial", 0, 4) and attempt == 1:
            return "the node died"
        if key == ("trial", 0, 5):
            return "oom"
        return None

    drive(OrderedPool(2, score, seed=3, lose=lose), search(tmp_path, engine("random"), trials=7))
    records = {r.number: r for r in TrialJournal(tmp_path / "trials.jsonl").read()}
    assert sorted(records) == list(range(7))
    assert records[4].status == "ok" and records[4].reruns == 1
    assert records[2].status == "failed" and records[2].reason == "lost" and records[2].reruns == 1
    assert "SIGKILL" in records[2].error
    assert records[5].status == "failed" and records[5].reason == "oom" and records[5].reruns == 0


class Impatient(Engine):
    """Needs a result whenever two trials are pending: NotReady, which the loop honours."""

    name = "impatient-parallel-test-engine"
    supports_pending = True

    def __init__(self, space, seed, options=None):
        super().__init__(space, seed, options)
        self.pending = set()
        self.not_ready = 0

    def ask(self, number):
        if number not in self.pending and len(self.pending) >= 2:
            self.not_ready += 1
            raise NotReady("two pending are enough")
        self.pending.add(number)
        return {"lr": 1e-3 * (1 + number), "epochs": 1 + number % 10}

    def tell(self, number, outcome: Outcome):
        self.pending.discard(number)


def test_not_ready_holds_the_slot_until_a_trial_is_told(tmp_path):
    eng = Impatient(SPACE, 0)
    pool = OrderedPool(4, score, seed=5)
    drive(pool, search(tmp_path, eng, trials=6))
    assert sorted(r.number for r in TrialJournal(tmp_path / "trials.jsonl").read()) == list(range(6))
    assert eng.not_ready > 0 and pool.most_running == 2


def test_folds_run_side_by_side_each_with_its_own_numbers(tmp_path):
    marker = InflightMarker(tmp_path / INFLIGHT_FILE)
    folds = [search(tmp_path, engine("random", seed=0), trials=4, fold=index, marker=marker) for index in range(3)]
    pool = OrderedPool(3, score, seed=6)
    drive(pool, *folds)
    records = TrialJournal(tmp_path / "trials.jsonl").read()
    for index in range(3):
        assert sorted(r.number for r in records if r.fold == index) == list(range(4))
    assert [r.fold for r in records] != sorted(r.fold for r in records), "folds did not interleave"
