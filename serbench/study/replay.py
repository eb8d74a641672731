"""Replaying a fold's journal to a fresh engine for ``--resume``.

The journal lists a fold's trials in the order they came back; each record's
``asked_after`` says how many tells the engine had received when that trial was asked.
Three cases:

- **Sequential** (every trial asked after all earlier ones were told, as with
  ``parallel: 1``, and journals from before parallel trials): each record is
  ``engine.replay``-ed in order, exactly as resuming always worked.
- **Interleaved, exact**: for an engine with ``deterministic_replay``, asks and tells are
  replayed in the recorded interleaving -- trial ``n`` is asked once ``asked_after(n)``
  tells were made -- so the engine sees what it saw in the run. Each re-asked
  configuration must equal the journalled one (else the study cannot be resumed, and
  says so). A trial asked but never journalled while a later-numbered one was (it was
  in flight when the driver died) is asked at its place (``asked_after`` from
  ``inflight.json``) and stays pending: the search runs it first.
- **Approximate** (an engine without ``deterministic_replay``, or a gap that
  ``inflight.json`` does not describe): records are ``engine.replay``-ed in number order
  and a missing trial is asked at its place, pending.

Trials in flight after the last journalled number are not replayed: they are asked
again as new trials. Each trial is counted once: a journal with a trial twice is
refused.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from serbench.engines.base import Engine, NotReady, Outcome, SearchExhausted
from serbench.errors import UserError
from serbench.results.schema import TrialRecord


@dataclass(frozen=True)
class Replayed:
    trials: list[TrialRecord]  # the journalled trials kept, in journal order
    next_number: int  # the number the next new trial gets
    pending: dict[int, tuple[dict[str, Any], int]]  # number -> (configuration, asked_after), to run first


def outcome_of(record: TrialRecord) -> Outcome:
    """What the engine is told of a journalled trial: its status, value and curve."""
    curve = tuple((point.epoch, point.bca) for point in record.curve)
    if record.status == "ok":
        return Outcome.ok(record.value, curve)
    if record.status == "pruned":
        return Outcome.pruned(record.value, curve)
    return Outcome.failed(record.reason or "error", curve)


def replay_fold(
    fold: int, engine: Engine, done: list[TrialRecord], inflight: list[dict[str, Any]], budget_trials: int
) -> Replayed:
    """Replay fold ``fold``'s journalled trials ``done`` (journal order) and its
    ``inflight.json`` entries to ``engine``; see the module docstring."""
    numbers = [r.number for r in done]
    if len(set(numbers)) != len(numbers):
        raise UserError(f"trials.jsonl: fold {fold} has trials {sorted(numbers)}; each trial must appear once")
    if _sequential(done):
        kept = done[:budget_trials]
        for record in kept:
            engine.replay(record.number, record.params, outcome_of(record))
        return Replayed(kept, len(kept), {})
    by_number = {r.number: r for r in done}
    marks = {}
    for entry in inflight:
        try:
            if int(entry["fold"]) == fold:
                marks[int(entry["number"])] = (dict(entry["params"]), int(entry["asked_after"]))
        except (KeyError, TypeError, ValueError):
            continue
    top = max(numbers)
    gaps = [n for n in range(top) if n not in by_number]
    exact = (
        engine.deterministic_replay
        and all(n in marks for n in gaps)
        and all(r.asked_after is not None for r in done)
    )
    if exact:
        pending = _interleaved(fold, engine, done, by_number, {n: marks[n][1] for n in gaps}, top)
    else:
        pending = _in_number_order(engine, by_number, top)
    return Replayed(list(done), top + 1, pending)


def _sequential(done: list[TrialRecord]) -> bool:
    return all(r.number == i and r.asked_after in (None, i) for i, r in enumerate(done))


def _interleaved(
    fold: int,
    engine: Engine,
    done: list[TrialRecord],
    by_number: dict[int, TrialRecord],
    gap_asked_after: dict[int, int],
    top: int,
) -> dict[int, tuple[dict[str, Any], int]]:
    told, asked, pending = 0, set(), {}

    def tell_up_to(count: int) -> None:
        nonlocal told
        while told < count:
            record = done[told]
            if record.number not in asked:
                raise UserError(
                    f"trials.jsonl: fold {fold}: trial {record.number} is journalled before it was asked "
                    "(its asked_after is inconsistent); cannot resume this journal"
                )
            engine.tell(record.number, outcome_of(record))
            told += 1

    for number in range(top + 1):
        record = by_number.get(number)
        asked_after = record.asked_after if record is not None else gap_asked_after[number]
        if asked_after > len(done):
            raise UserError(
                f"trials.jsonl: fold {fold}: trial {number} was asked after {asked_after} tells, "
                f"but the journal has {len(done)}; cannot resume this journal"
            )
        tell_up_to(asked_after)
        try:
            params = engine.ask(number)
        except (NotReady, SearchExhausted) as exc:
            raise UserError(
                f"cannot resume fold {fold}: engine {engine.name!r} would not ask trial {number} again "
                f"({exc.__class__.__name__}) where the run asked it; its replay is not deterministic"
            ) from None
        asked.add(number)
        if record is None:
            pending[number] = (params, asked_after)
        elif _normal(params) != _normal(record.params):
            raise UserError(
                f"cannot resume fold {fold}: engine {engine.name!r} asks {params} for trial {number} on replay, "
                f"but the journal has {record.params}; its replay is not deterministic"
            )
    tell_up_to(len(done))
    return pending


def _in_number_order(
    engine: Engine, by_number: dict[int, TrialRecord], top: int
) -> dict[int, tuple[dict[str, Any], int]]:
    pending, told = {}, 0
    for number in range(top + 1):
        record = by_number.get(number)
        if record is None:
            pending[number] = (engine.ask(number), told)
        else:
            engine.replay(number, record.params, outcome_of(record))
            told += 1
    return pending


def _normal(params: dict[str, Any]) -> Any:
    return json.loads(json.dumps(params, sort_keys=True))
