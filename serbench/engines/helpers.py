"""Helpers shared by the built-in engines (not a plugin: no entry point)."""

from __future__ import annotations

import math
from typing import Any

from serbench.engines.base import Outcome
from serbench.spec import ChoiceParam, FloatParam, IntParam


def trial_seed(seed: int, number: int) -> int:
    """A 31-bit seed for trial ``number`` of a job seeded ``seed``.

    Engines that take a seed per suggestion (hyperopt's ``tpe.suggest``) or that are
    rebuilt per trial (optuna's samplers) use it, so a trial's suggestion depends only on
    the job seed, the trial number and the trials before it: never on how many times the
    process restarted.
    """
    import numpy as np

    return int(np.random.SeedSequence([seed, number]).generate_state(1)[0] >> 1)


def finite_value(outcome: Outcome) -> float | None:
    """The outcome's score, or None when it failed or its value is not a finite number
    (which engines then treat as a failure, never as a score)."""
    if outcome.status != "ok" or outcome.value is None:
        return None
    value = float(outcome.value)
    return value if math.isfinite(value) else None


def clamp_float(param: FloatParam, value: float) -> float:
    return float(min(max(float(value), param.low), param.high))


def clamp_int(param: IntParam, value: float) -> int:
    return int(min(max(int(round(float(value))), param.low), param.high))


def choice_index(param: ChoiceParam, value: Any) -> int:
    """The index of ``value`` among the choice's values, comparing type and value (so
    ``1`` is not ``True``)."""
    for index, candidate in enumerate(param.values):
        if type(candidate) is type(value) and candidate == value:
            return index
    raise ValueError(f"{value!r} is not one of the choices {param.values!r}")


def same_config(a: dict[str, Any], b: dict[str, Any]) -> bool:
    """Whether two configurations are the same (floats to 1e-9 relative; a JSON round
    trip of a float is exact, but another writer may shorten it)."""
    if set(a) != set(b):
        return False
    for key in a:
        x, y = a[key], b[key]
        if type(x) is not type(y):
            return False
        if isinstance(x, float):
            if not math.isclose(x, y, rel_tol=1e-9, abs_tol=0.0):
                return False
        elif x != y:
            return False
    return True


def outcome_to_json(outcome: Outcome) -> dict[str, Any]:
    return {"status": outcome.status, "value": outcome.value, "reason": outcome.reason}


def outcome_from_json(data: dict[str, Any]) -> Outcome:
    return Outcome(data["status"], value=data.get("value"), reason=data.get("reason"))


History = dict[int, tuple[dict[str, Any], "Outcome | None"]]


def history_state(history: History) -> dict[str, Any]:
    """``state_dict`` of an engine that keeps its trials as ``number -> (params,
    outcome or None while in flight)``: the trials as JSON, in order."""
    return {
        "trials": [
            [number, params, None if outcome is None else outcome_to_json(outcome)]
            for number, (params, outcome) in sorted(history.items())
        ]
    }


def history_entries(state: dict[str, Any]) -> list[tuple[int, dict[str, Any], "Outcome | None"]]:
    """What ``history_state`` saved, decoded: ``(number, params, outcome or None)``."""
    return [
        (int(number), dict(params), None if outcome is None else outcome_from_json(outcome))
        for number, params, outcome in state["trials"]
    ]

