"""The built-in random engine: inside the space, typed, log-aware, seeded."""

import math

import numpy as np

from serbench.engines.base import Outcome
from serbench.spec import ChoiceParam, FloatParam, IntParam
from serbench.engines.random_search import RandomSearch

PAPER_SPACE = {
    "lr": FloatParam(type="float", low=1e-6, high=1e-3, log=True),
    "epochs": IntParam(type="int", low=1, high=10),
    "unfreeze": IntParam(type="int", low=0, high=5),
    "maxlen": ChoiceParam(type="choice", values=[32000, 48000, 64000, 80000, 112000, 160000]),
}


def ask_many(engine, n):
    configs = []
    for number in range(n):
        configs.append(engine.ask(number))
        engine.tell(number, Outcome.ok(0.5))
    return configs


def test_samples_respect_bounds_and_types():
    for params in ask_many(RandomSearch(PAPER_SPACE, seed=0), 300):
        assert set(params) == set(PAPER_SPACE)
        assert isinstance(params["lr"], float) and 1e-6 <= params["lr"] <= 1e-3
        assert isinstance(params["epochs"], int) and 1 <= params["epochs"] <= 10
        assert isinstance(params["unfreeze"], int) and 0 <= params["unfreeze"] <= 5
        assert params["maxlen"] in PAPER_SPACE["maxlen"].values


def test_log_scale_spreads_over_decades():
    lrs = np.array([p["lr"] for p in ask_many(RandomSearch(PAPER_SPACE, seed=1), 600)])
    decades = np.histogram(np.log10(lrs), bins=[-6, -5, -4, -3])[0]
    assert all(150 <= n <= 250 for n in decades)  # uniform in log space: ~200 per decade


def test_every_integer_and_choice_is_reached():
    configs = ask_many(RandomSearch(PAPER_SPACE, seed=2), 300)
    assert {p["epochs"] for p in configs} == set(range(1, 11))
    assert {p["maxlen"] for p in configs} == set(PAPER_SPACE["maxlen"].values)


def test_log_int_covers_its_range():
    space = {"epochs": IntParam(type="int", low=1, high=100, log=True)}
    values = [p["epochs"] for p in ask_many(RandomSearch(space, seed=0), 500)]
    assert min(values) == 1 and max(values) >= 60
    assert sum(v <= 10 for v in values) > 200  # half the log range lies below 10


def test_same_seed_same_sequence_other_seed_other_sequence():
    a = ask_many(RandomSearch(PAPER_SPACE, seed=7), 15)
    b = ask_many(RandomSearch(PAPER_SPACE, seed=7), 15)
    c = ask_many(RandomSearch(PAPER_SPACE, seed=8), 15)
    assert a == b and a != c


def test_trial_configuration_does_not_depend_on_what_came_before():
    engine = RandomSearch(PAPER_SPACE, seed=3)
    later = engine.ask(9)
    assert later == ask_many(RandomSearch(PAPER_SPACE, seed=3), 10)[9]
    assert not math.isnan(later["lr"])
