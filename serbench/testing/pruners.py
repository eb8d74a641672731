"""The pruner contract as a test kit, for plugin authors and for serbench's own pruners
(:mod:`serbench.pruning.base` states the contract).

One test checks a pruner against every clause::

    from serbench.testing.pruners import check_pruner
    from my_package.serbench_plugin import MyPruner

    def test_my_pruner_keeps_the_pruner_contract():
        check_pruner(MyPruner)                     # or check_pruner(MyPruner, {"option": 1})

or one test per clause, so a report lists each clause that broke::

    from serbench.testing.pruners import pruner_contract_test

    test_my_pruner_contract = pruner_contract_test(MyPruner)   # or (MyPruner, {"option": 1})

(``CONTRACT_CHECKS`` holds the checks, for a parametrisation of your own.)

Every check makes fresh pruners as a study does, ``pruner_cls(context, options)`` with
the options validated by ``pruner_cls.Options`` and ``context`` (default
``KIT_CONTEXT``: trials of at most 9 epochs, seed 0), and drives them through synthetic
studies: seeded random sequences of the calls a study's loop makes, no training. A study
has ``trials`` trials (default ``TRIALS``); each trains a drawn number of epochs (1 to
the context's ``max_step``) and reports a value in [0, 1] (its quality plus noise,
rising with the epochs, rounded to two decimals so that ties happen) every ``every``
epochs and after its last, and first at step 0 if it has a frozen probe; about one trial
in six fails after a drawn number of reports (none, some or all). Up to ``PARALLEL``
trials run at once, their reports interleaved at random. A trial whose report is
answered True is finished ``pruned`` at once and reports nothing more -- no pruner needs
to handle a report after its trial's first True: the kit never sends one --, a trial
that makes every report is finished ``ok``, and one that fails is finished ``failed``.
Every clause runs the studies of ``STUDIES``: every trial probed, none, about half (a
job's trials that never unfreeze skip the probe), reports every epoch or every second
one. A broken clause raises ``PrunerContractError`` (an ``AssertionError``, and a
:class:`serbench.testing.contract.ContractError`) saying which clause and what was
seen.

The clauses:

- ``check_declaration``: a ``Pruner`` subclass with a non-empty ``name``; ``Options``
  rejects unknown keys and accepts ``options``; the constructor takes (context,
  options); ``describe()``, fresh and after a study, is a JSON-serialisable dict whose
  ``name`` is the class's.
- ``check_bool_decisions``: every ``report`` returns a ``bool`` (True or False: not
  None, not a numpy bool).
- ``check_deterministic``: two fresh pruners driven through the same seeded study get
  the same calls and answer every report the same, although the global ``random`` and
  numpy generators are seeded differently for each (the calls depend on the answers:
  the first answer that differs is reported).
- ``check_replay``: a study run one trial at a time; a fresh pruner that is
  ``replay``-ed its first *k* trials (each trial's reported curve, the report answered
  True included, then its status), for *k* a third and two thirds of the trials, then
  answers every report of the remaining trials exactly as the pruner that ran them all.
- ``check_rerun``: a re-reported step replaces the earlier one. After a study, a new
  trial of the highest quality runs and is lost part way through (its slot died: some
  of its reports, each answered False, and no ``finished``), then runs again from its
  first step, with the lost run's values and, in a second case, with values of a random
  quality. The re-run, and the trials after it, are answered exactly as by a pruner in
  the same state that never saw the lost run. (A case whose lost run would be stopped at
  its first report has nothing to re-run and is skipped.)

Every check takes ``(pruner_cls, options=None, context=None, *, trials=TRIALS)``.
``run_study`` and ``kit_trials`` (of a :class:`KitStudy`) are there for an author's own
tests: they drive a pruner as the study loop does, without training anything.
"""

from __future__ import annotations

import json
import random
import sys
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

from serbench.pruning.base import Pruner, PruningContext, Status
from serbench.testing.contract import ContractError, clause, options_problem

KIT_CONTEXT = PruningContext(max_step=9, seed=0, fold=0)
TRIALS = 40  # trials of one synthetic study
PARALLEL = 3  # trials running at once in an interleaved study

Call = tuple
"""One call a pruner received: ``("report", trial, step, value, answer)`` or
``("finished", trial, status)``."""


class PrunerContractError(ContractError):
    """A pruner breaks a clause of the pruner contract."""

    kind = "pruner"


@dataclass(frozen=True)
class KitStudy:
    """How a synthetic study is drawn: from ``seed``, with a frozen probe for a fraction
    ``probe`` of its trials, and reports every ``every`` epochs (and after the last)."""

    seed: int
    probe: float
    every: int = 1

    def __str__(self) -> str:
        return f"study {self.seed} ({self.probe:.0%} of trials probed, reports every {self.every} epochs)"


STUDIES = (
    KitStudy(0, 1.0),
    KitStudy(0, 0.0),
    KitStudy(1, 0.5),
    KitStudy(1, 1.0, every=2),
    KitStudy(2, 0.0, every=2),
    KitStudy(2, 1.0),
)
"""The studies every clause runs."""


@dataclass(frozen=True)
class KitTrial:
    """A synthetic trial: the points it reports unless it is stopped, and after how many
    reports it fails (None: it does not)."""

    number: int
    curve: tuple[tuple[int, float], ...]
    fails_after: int | None = None


def kit_trials(study: KitStudy, count: int, max_step: int, start: int = 0) -> list[KitTrial]:
    """``count`` synthetic trials of ``study``, numbered from ``start``."""
    rng = random.Random(f"kit-trials-{study.seed}-{study.probe}-{study.every}-{start}")
    trials = []
    for number in range(start, start + count):
        probe = rng.random() < study.probe
        curve = _curve(rng, rng.randint(1, max_step), max_step, probe, study.every)
        fails_after = rng.randint(0, len(curve)) if rng.random() < 1 / 6 else None
        trials.append(KitTrial(number, curve, fails_after))
    return trials


def run_study(pruner: Pruner, trials: Sequence[KitTrial], seed: int = 0, parallel: int = PARALLEL) -> list[Call]:
    """Drive ``pruner`` as the study loop does through ``trials`` (started in order, at
    most ``parallel`` at once, their reports interleaved by ``seed``); every call made,
    in order."""
    rng = random.Random(f"kit-order-{seed}")
    waiting = list(trials)
    running: dict[int, list[Any]] = {}  # number -> [trial, reports made]
    calls: list[Call] = []

    def finish(number: int, status: Status) -> None:
        pruner.finished(number, status)
        calls.append(("finished", number, status))
        del running[number]

    while waiting or running:
        if waiting and len(running) < parallel and (not running or rng.random() < 0.5):
            trial = waiting.pop(0)
            running[trial.number] = [trial, 0]
            continue
        number = rng.choice(sorted(running))
        trial, made = running[number]
        if trial.fails_after == made:
            finish(number, "failed")
        elif made == len(trial.curve):
            finish(number, "ok")
        else:
            step, value = trial.curve[made]
            answer = pruner.report(number, step, value)
            calls.append(("report", number, step, value, answer))
            running[number][1] = made + 1
            if answer:
                finish(number, "pruned")
    return calls


def make_pruner(
    pruner_cls: type[Pruner], options: Mapping[str, Any] | None = None, context: PruningContext | None = None
) -> Pruner:
    """A pruner as a study makes one: the context and validated options."""
    return pruner_cls(context or KIT_CONTEXT, pruner_cls.Options.model_validate(dict(options or {})))


# --- the clauses ------------------------------------------------------------------------


def check_declaration(pruner_cls, options=None, context=None, *, trials=TRIALS) -> None:
    """The class's declarations, its constructor and ``describe()``."""
    name = "declaration"

    def broken(detail: str) -> PrunerContractError:
        return PrunerContractError(pruner_cls, name, detail)

    if not (isinstance(pruner_cls, type) and issubclass(pruner_cls, Pruner)):
        raise broken("the class must subclass serbench.pruning.Pruner")
    if not isinstance(getattr(pruner_cls, "name", None), str) or not pruner_cls.name:
        raise broken("the class needs a non-empty string `name`")
    problem = options_problem(pruner_cls.Options, dict(options or {}))
    if problem is not None:
        raise broken(problem)
    context = context or KIT_CONTEXT
    with _clause(pruner_cls, name):
        pruner = make_pruner(pruner_cls, options, context)
        fresh = pruner.describe()
        run_study(pruner, kit_trials(STUDIES[0], trials, context.max_step))
        after = pruner.describe()
    for when, described in (("fresh", fresh), ("after a study", after)):
        if not isinstance(described, dict) or described.get("name") != pruner_cls.name:
            raise broken(f"describe() ({when}) returned {described!r}, not a dict with name {pruner_cls.name!r}")
        try:
            json.dumps(described)
        except (TypeError, ValueError) as exc:
            raise broken(f"describe() ({when}) is not JSON-serialisable: {exc}") from None


def check_bool_decisions(pruner_cls, options=None, context=None, *, trials=TRIALS) -> None:
    """Every answer of every study is a ``bool``."""
    name = "bool decisions"
    for study, calls in _studies(pruner_cls, options, context, trials, name):
        for call in calls:
            if call[0] == "report" and type(call[4]) is not bool:
                answer = call[4]
                raise PrunerContractError(
                    pruner_cls, name, f"report({call[1]}, {call[2]}, {call[3]}) returned {answer!r} "
                    f"({type(answer).__module__}.{type(answer).__qualname__}), not True or False",
                )


def check_deterministic(pruner_cls, options=None, context=None, *, trials=TRIALS) -> None:
    """Two fresh pruners, the same study, other global random states: the same answers."""
    name = "deterministic"
    first = _studies(pruner_cls, options, context, trials, name, global_seed=1)
    again = _studies(pruner_cls, options, context, trials, name, global_seed=2)
    for (study, expected), (_, got) in zip(first, again):
        _same_calls(pruner_cls, name, expected, got, f"another fresh pruner ({study})")


def check_replay(pruner_cls, options=None, context=None, *, trials=TRIALS) -> None:
    """A pruner rebuilt by ``replay`` answers the rest of a one-at-a-time study as the
    pruner that ran it all."""
    name = "replay"
    context = context or KIT_CONTEXT
    for study in STUDIES:
        drawn = kit_trials(study, trials, context.max_step)
        with _clause(pruner_cls, name):
            live = run_study(make_pruner(pruner_cls, options, context), drawn, study.seed, parallel=1)
        for cut in (trials // 3, 2 * trials // 3):
            with _clause(pruner_cls, name):
                rebuilt = make_pruner(pruner_cls, options, context)
                for trial in drawn[:cut]:
                    curve, status = _journalled(live, trial.number)
                    rebuilt.replay(trial.number, curve, status)
                rest = run_study(rebuilt, drawn[cut:], study.seed, parallel=1)
            expected = [call for call in live if call[1] >= cut]
            reference = f"the pruner that ran all {trials} trials ({study}, {cut} replayed)"
            _same_calls(pruner_cls, name, expected, rest, reference)


def check_rerun(pruner_cls, options=None, context=None, *, trials=TRIALS) -> None:
    """A trial lost part way and run again is answered as if the lost run never was."""
    context = context or KIT_CONTEXT
    for study in STUDIES:
        drawn = kit_trials(study, trials, context.max_step)
        rng = random.Random(f"kit-rerun-{study}")
        probe, epochs = study.probe > 0, context.max_step
        lost = _curve(rng, epochs, epochs, probe, study.every, quality=1.0 - 0.05 * rng.random())
        other = _curve(rng, epochs, epochs, probe, study.every)
        later = kit_trials(KitStudy(study.seed + 100, study.probe, study.every), trials // 4, epochs, start=trials + 1)
        for rerun, values in ((lost, "the same"), (other, "other")):
            case = f"{study}, re-run with {values} values"
            _check_rerun_case(pruner_cls, options, context, drawn, KitTrial(trials, rerun), lost, later, rng, study.seed, case)


CONTRACT_CHECKS = (
    check_declaration,
    check_bool_decisions,
    check_deterministic,
    check_replay,
    check_rerun,
)


def check_pruner(
    pruner_cls: type[Pruner],
    options: Mapping[str, Any] | None = None,
    context: PruningContext | None = None,
    *,
    trials: int = TRIALS,
) -> None:
    """Run every clause of the contract on ``pruner_cls`` (with these ``options``, in
    ``context``, default ``KIT_CONTEXT``); the first broken one raises
    ``PrunerContractError``."""
    for check in CONTRACT_CHECKS:
        check(pruner_cls, options, context, trials=trials)


def pruner_contract_test(pruner_cls: type[Pruner], options: Mapping[str, Any] | None = None, **kit: Any):
    """A pytest test function, parametrised with one case per clause, for a test module:
    ``test_my_pruner_contract = pruner_contract_test(MyPruner)``. ``options`` and the
    keyword arguments (``context``, ``trials``) go to every check."""
    import pytest

    @pytest.mark.parametrize("check", CONTRACT_CHECKS, ids=lambda check: check.__name__.removeprefix("check_"))
    def test_pruner_contract(check):
        check(pruner_cls, options, **kit)

    return test_pruner_contract


# --- helpers ------------------------------------------------------------------------------


def _clause(pruner_cls, name: str):
    return clause(PrunerContractError, pruner_cls, name)


def _curve(
    rng: random.Random, epochs: int, max_step: int, probe: bool, every: int = 1, quality: float | None = None
) -> tuple[tuple[int, float], ...]:
    quality = rng.random() if quality is None else quality
    steps = [0] * probe + list(range(every, epochs + 1, every))
    if steps[-1:] != [epochs]:
        steps.append(epochs)

    def value(step: int) -> float:
        return round(min(1.0, max(0.0, quality * (0.6 + 0.4 * step / max_step) + rng.gauss(0.0, 0.05))), 2)

    return tuple((step, value(step)) for step in steps)


def _studies(pruner_cls, options, context, trials: int, name: str, global_seed: int | None = None):
    """(study, calls) of every kit study, each run on a fresh pruner (with the global
    generators seeded ``global_seed`` while it runs, then restored)."""
    context = context or KIT_CONTEXT
    found = []
    for study in STUDIES:
        with _clause(pruner_cls, name), _global_random(global_seed):
            calls = run_study(make_pruner(pruner_cls, options, context), kit_trials(study, trials, context.max_step), study.seed)
        found.append((study, calls))
    return found


class _global_random:
    """Seed ``random`` (and numpy's legacy generator, when numpy is imported) on entry;
    restore their states on exit. None: leave them alone."""

    def __init__(self, seed: int | None):
        self.seed = seed

    def __enter__(self) -> None:
        if self.seed is None:
            return
        self.state = random.getstate()
        random.seed(self.seed)
        numpy = sys.modules.get("numpy")
        self.numpy_state = numpy.random.get_state() if numpy is not None else None
        if numpy is not None:
            numpy.random.seed(self.seed)

    def __exit__(self, *exc: Any) -> None:
        if self.seed is None:
            return
        random.setstate(self.state)
        if self.numpy_state is not None:
            sys.modules["numpy"].random.set_state(self.numpy_state)


def _journalled(calls: list[Call], number: int) -> tuple[tuple[tuple[int, float], ...], Status]:
    """Trial ``number``'s curve as it reported it, and its status, from ``calls``."""
    curve = tuple((call[2], call[3]) for call in calls if call[0] == "report" and call[1] == number)
    (status,) = [call[2] for call in calls if call[0] == "finished" and call[1] == number]
    return curve, status


def _same_calls(pruner_cls, name: str, expected: list[Call], got: list[Call], reference: str) -> None:
    for index, (a, b) in enumerate(zip(expected, got)):
        if a != b:
            raise PrunerContractError(pruner_cls, name, f"call {index}: {_show(b)}, but {reference}: {_show(a)}")
    if len(expected) != len(got):
        raise PrunerContractError(pruner_cls, name, f"{len(got)} calls where {reference} made {len(expected)}")


def _show(call: Call) -> str:
    if call[0] == "report":
        return f"report({call[1]}, {call[2]}, {call[3]}) answered {call[4]!r}"
    return f"finished({call[1]}, {call[2]!r})"


def _check_rerun_case(pruner_cls, options, context, study, rerun: KitTrial, lost, later, rng, seed: int, case: str):
    """One lost-and-re-run trial: ``lost_pruner`` sees the lost run, ``clean`` does not;
    after the same study both must answer the re-run and the later trials alike. A third
    pruner, ``scout``, finds how many of the lost run's reports are answered False."""
    name = "re-run"
    with _clause(pruner_cls, name):
        clean, lost_pruner, scout = (make_pruner(pruner_cls, options, context) for _ in range(3))
        before = [run_study(p, study, seed) for p in (clean, lost_pruner, scout)]
    for other in before[1:]:
        _same_calls(pruner_cls, name, before[0], other, f"a fresh pruner in the same study ({case})")
    with _clause(pruner_cls, name):
        answered = 0
        for step, value in lost:
            if scout.report(rerun.number, step, value):
                break
            answered += 1
    if answered == 0:
        return  # the lost run would have been stopped at its first report: nothing to re-run
    length = rng.randint(1, answered)
    with _clause(pruner_cls, name):
        for step, value in lost[:length]:
            if lost_pruner.report(rerun.number, step, value):
                raise PrunerContractError(
                    pruner_cls, name, f"{case}: report({rerun.number}, {step}, {value}) answered True, "
                    "but a pruner in the same state answered False",
                )
        expected = run_study(clean, [rerun, *later], seed)
        got = run_study(lost_pruner, [rerun, *later], seed)
    reference = f"a pruner that never saw the lost run of trial {rerun.number} ({case}, {length} reports lost)"
    _same_calls(pruner_cls, name, expected, got, reference)
