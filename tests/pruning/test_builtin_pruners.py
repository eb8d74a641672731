"""What is particular to each built-in pruner beyond the contract and Optuna's rules:
``none`` never stops, the frozen probe's step 0 in ``median`` and ``successive-halving``,
re-run trials, and ``hyperband``'s brackets (a seeded draw of each trial's bracket,
weighted as Optuna weighs them, and trials competing only within their bracket)."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from collections import Counter

import pytest

from serbench.errors import SpecError
from serbench.plugin.registry import registry
from serbench.pruning import PruningContext
from serbench.spec import plugin_options
from serbench.testing.pruners import KitStudy, KitTrial, kit_trials, run_study

CONTEXT = PruningContext(max_step=9, seed=0)


def pruner(name: str, context: PruningContext = CONTEXT, **options):
    cls = registry().get("pruner", name).cls
    return cls(context, plugin_options(cls.Options, options, "pruner.options"))


def finish_ok(p, trial: int, curve: dict[int, float]) -> None:
    for step, value in curve.items():
        assert p.report(trial, step, value) is False
    p.finished(trial, "ok")


def test_none_never_stops_a_trial():
    for probe in (True, False):
        calls = run_study(pruner("none"), kit_trials(KitStudy(0, float(probe)), 40, 9))
        answers = [call[4] for call in calls if call[0] == "report"]
        assert len(answers) > 100 and not any(answers)
        assert not any(call[2] == "pruned" for call in calls if call[0] == "finished")


def test_median_judges_the_probe_against_the_completed_trials_probes():
    p = pruner("median", n_startup_trials=3)
    for trial, probe in enumerate((0.4, 0.5, 0.6)):
        finish_ok(p, trial, {0: probe, 1: 0.7})
    assert p.report(3, 0, 0.45) is True  # below the median probe score, 0.5
    assert p.report(4, 0, 0.8) is False
    assert p.report(4, 1, 0.6) is False  # below the median (0.7), but its best so far is its probe's 0.8
    assert p.report(5, 0, 0.5) is False
    assert p.report(5, 1, 0.6) is True
    warm = pruner("median", n_startup_trials=3, n_warmup_steps=1)
    for trial, probe in enumerate((0.4, 0.5, 0.6)):
        finish_ok(warm, trial, {0: probe, 1: 0.7})
    assert warm.report(3, 0, 0.1) is False  # no check before step 1
    assert warm.report(3, 1, 0.2) is True


def test_median_judges_a_rerun_on_its_new_values_only():
    p = pruner("median", n_startup_trials=2)
    for trial in (0, 1):
        finish_ok(p, trial, {1: 0.5, 2: 0.6, 3: 0.7})
    assert p.report(2, 1, 0.9) is False
    assert p.report(2, 2, 0.9) is False  # lost here; it runs again
    assert p.report(2, 1, 0.3) is True  # 0.9 was the lost run's, not this run's


def test_successive_halving_probe_rung():
    p = pruner("successive-halving")
    assert p.report(0, 0, 0.5) is False  # the first probe is the best so far
    assert p.report(1, 0, 0.4) is True  # fewer than 3 at the rung: only the best goes on
    assert p.report(2, 0, 0.6) is False
    p.finished(1, "pruned")
    assert p.report(3, 0, 0.55) is True  # 4 probes: the top 4 // 3 = 1 goes on; the pruned one counts
    assert [p.report(t, 0, 0.1) for t in range(4, 9)] == [True] * 5
    assert p.report(9, 0, 0.5) is False  # 10 probes: the top 3 (0.6, 0.55, 0.5) go on
    assert p.report(9, 1, 0.1) is False  # the first at rung 0 (step 1)
    late = pruner("successive-halving", min_early_stopping_rate=1)
    assert [late.report(t, 0, v) for t, v in enumerate((0.9, 0.1, 0.05))] == [False] * 3
    assert late.report(1, 1, 0.1) is False and late.report(1, 2, 0.1) is False  # first rung at step 3


def test_successive_halving_rerun_competes_as_its_first_run():
    p = pruner("successive-halving")
    assert p.report(0, 1, 0.5) is False
    assert p.report(1, 1, 0.9) is False  # lost after its first rung; it runs again
    assert p.report(1, 1, 0.4) is True  # its lost 0.9 is no longer at the rung
    q = pruner("successive-halving")
    assert q.report(0, 1, 0.5) is False
    assert q.report(1, 1, 0.4) is True


def brackets(name_seed: int, trials: int, **options) -> list[int]:
    p = pruner("hyperband", PruningContext(max_step=9, seed=name_seed), **options)
    return [p.bracket(n) for n in range(trials)]


def test_hyperband_brackets_and_their_weights():
    p = pruner("hyperband")
    assert p.weights == [9, 5, 3]  # ceil(3 * 3**s / (s + 1)), s = 2, 1, 0: Optuna's budgets
    assert p.describe() == {
        "name": "hyperband",
        "options": {"min_resource": 1, "max_resource": "auto", "reduction_factor": 3},
        "max_resource": 9,
        "brackets": [
            {"min_early_stopping_rate": 0, "weight": 9, "rungs": [0, 1, 3, 9]},
            {"min_early_stopping_rate": 1, "weight": 5, "rungs": [3, 9]},
            {"min_early_stopping_rate": 2, "weight": 3, "rungs": [9]},
        ],
    }
    json.dumps(p.describe())
    counts = {}
    for max_step, min_resource, factor in [(1, 1, 3), (2, 1, 3), (3, 1, 3), (8, 1, 3), (26, 1, 3), (27, 1, 3),
                                           (243, 1, 3), (10, 2, 2), (3, 4, 3)]:
        context = PruningContext(max_step=max_step, seed=0)
        counts[max_step, min_resource, factor] = len(
            pruner("hyperband", context, min_resource=min_resource, reduction_factor=factor).brackets
        )
    assert counts == {(1, 1, 3): 1, (2, 1, 3): 1, (3, 1, 3): 2, (8, 1, 3): 2, (26, 1, 3): 3, (27, 1, 3): 4,
                      (243, 1, 3): 6, (10, 2, 2): 3, (3, 4, 3): 1}
    assert len(pruner("hyperband", max_resource=30).brackets) == 4


def test_hyperband_max_resource_below_min_resource_is_refused():
    with pytest.raises(SpecError, match="max_resource .* must be at least min_resource"):
        pruner("hyperband", min_resource=4, max_resource=3)
    with pytest.raises(SpecError, match="pruner.options.max_resource"):
        pruner("hyperband", max_resource="all")


def test_hyperband_bracket_draw_is_seeded_and_weighted():
    draw = brackets(0, 6000)
    assert draw == brackets(0, 6000)
    assert draw != brackets(1, 6000)
    shares = Counter(draw)
    for bracket, weight in enumerate([9, 5, 3]):
        assert abs(shares[bracket] / len(draw) - weight / 17) < 0.025, (bracket, shares)
    for seed in (0, 7, 2**32 - 1):
        assert set(brackets(seed, 60)) == {0, 1, 2}


def test_hyperband_bracket_draw_is_the_same_in_another_process():
    """No salted hashes: another interpreter, with another hash seed, draws the same."""
    code = (
        "from serbench.plugin.registry import registry\n"
        "from serbench.pruning import PruningContext\n"
        "p = registry().get('pruner', 'hyperband').cls(PruningContext(max_step=9, seed=5))\n"
        "print([p.bracket(n) for n in range(300)])\n"
    )
    for hash_seed in ("1", "2"):
        env = {**os.environ, "PYTHONHASHSEED": hash_seed}
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120, check=True)
        assert json.loads(out.stdout) == brackets(5, 300)


def by_bracket(p, calls) -> dict[int, list]:
    split: dict[int, list] = {}
    for call in calls:
        split.setdefault(p.bracket(call[1]), []).append(call)
    return split


def feed(p, calls) -> list:
    """``calls`` made again on ``p``: the answers ``p`` gives, in place of the recorded ones."""
    again = []
    for call in calls:
        if call[0] == "report":
            again.append((*call[:4], p.report(*call[1:4])))
        else:
            p.finished(call[1], call[2])
            again.append(call)
    return again


@pytest.mark.parametrize("probe", [True, False], ids=["probe", "no-probe"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_hyperband_trials_compete_only_within_their_bracket(seed, probe):
    """An interleaved study: each bracket's trials get exactly the answers a
    successive-halving pruner with the bracket's early-stopping rate gives when it sees
    those trials alone; one successive-halving pruner seeing every trial answers otherwise."""
    context = PruningContext(max_step=9, seed=seed)
    hyperband = pruner("hyperband", context)
    rng = random.Random(seed)
    full = [  # every trial trains 9 epochs unless stopped, so that many reach bracket 2's one rung, step 9
        KitTrial(n, tuple((step, round(q * (0.6 + step / 25) + rng.gauss(0, 0.05), 2)) for step in range(not probe, 10)))
        for n, q in enumerate(rng.random() for _ in range(150))
    ]
    calls = run_study(hyperband, full + kit_trials(KitStudy(seed, float(probe)), 150, 9, start=150), seed)
    split = by_bracket(hyperband, calls)
    assert sorted(split) == [0, 1, 2]
    for bracket, own in split.items():
        alone = pruner("successive-halving", context, min_early_stopping_rate=bracket)
        assert feed(alone, own) == own, f"bracket {bracket}"
        assert any(call[0] == "report" and call[4] for call in own), f"bracket {bracket} stopped no trial"
    for bracket in (1, 2):
        together = pruner("successive-halving", context, min_early_stopping_rate=bracket)
        assert feed(together, calls) != calls
    assert feed(pruner("successive-halving", context), calls) != calls
