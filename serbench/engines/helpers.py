"""Helpers shared by the built-in engines (not a plugin: no entry point)."""

from __future__ import annotations

import math
from typing import Any, Mapping

from serbench.engines.base import Curve, Outcome
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


def reached_value(outcome: Outcome) -> float | None:
    """The score an ``ok`` or ``pruned`` outcome reached (a pruned trial's: its last
    reported value), or None when it failed or the value is not a finite number."""
    if outcome.status == "failed" or outcome.value is None:
        return None
    value = float(outcome.value)
    return value if math.isfinite(value) else None


def unrecorded(curve: Curve, recorded: Mapping[int, float]) -> Curve:
    """The points of a told ``curve`` not yet recorded as they are (delegated pruning's
    ``report`` calls recorded most of them), as ``(int, float)``. Points whose value is
    not a finite number are left out: the built-in engines never record them, as a
    non-finite score is no score."""
    points = ((int(step), float(value)) for step, value in curve)
    return tuple((step, value) for step, value in points if math.isfinite(value) and recorded.get(step) != value)


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
    data = {"status": outcome.status, "value": outcome.value, "reason": outcome.reason}
    if outcome.curve:
        data["curve"] = curve_to_json(outcome.curve)
    return data


def outcome_from_json(data: dict[str, Any]) -> Outcome:
    curve = curve_from_json(data.get("curve", []))
    return Outcome(data["status"], value=data.get("value"), reason=data.get("reason"), curve=curve)


def curve_to_json(curve: Curve) -> list[list[Any]]:
    return [[int(step), value] for step, value in curve]


def curve_from_json(data: list[list[Any]]) -> Curve:
    return tuple((int(step), float(value)) for step, value in data)


History = dict[int, tuple[dict[str, Any], "Outcome | None"]]


def history_state(history: History, reported: Mapping[int, Mapping[int, float]] | None = None) -> dict[str, Any]:
    """``state_dict`` of an engine that keeps its trials as ``number -> (params,
    outcome or None while in flight)``: the trials as JSON, in order (outcomes with
    their status, ``pruned`` included, and curves). ``reported``: the points recorded
    so far for the trials in flight (delegated pruning), restored by ``reported_points``."""
    state: dict[str, Any] = {
        "trials": [
            [number, params, None if outcome is None else outcome_to_json(outcome)]
            for number, (params, outcome) in sorted(history.items())
        ]
    }
    in_flight = sorted((number, points) for number, points in (reported or {}).items() if points)
    if in_flight:
        state["reported"] = [[number, curve_to_json(sorted(points.items()))] for number, points in in_flight]
    return state


def history_entries(state: dict[str, Any]) -> list[tuple[int, dict[str, Any], "Outcome | None"]]:
    """What ``history_state`` saved, decoded: ``(number, params, outcome or None)``."""
    return [
        (int(number), dict(params), None if outcome is None else outcome_from_json(outcome))
        for number, params, outcome in state["trials"]
    ]


def reported_points(state: dict[str, Any]) -> dict[int, Curve]:
    """The points ``history_state`` saved for trials in flight: ``number -> curve``."""
    return {int(number): curve_from_json(curve) for number, curve in state.get("reported", [])}


def pruner_defaults(name: str) -> dict[str, Any]:
    """Serbench pruner ``name``'s options and their defaults, from its plugin's
    ``Options``: an engine that delegates pruning takes the same options (a job's
    ``pruner.options``) and maps them onto its library."""
    from serbench.plugin.registry import registry

    return registry().get("pruner", name).cls.Options().model_dump(mode="json")


def pruner_options(engine: str, offered: tuple[str, ...], name: str, options: Mapping[str, Any]) -> dict[str, Any]:
    """Serbench pruner ``name``'s ``options`` with its defaults filled in, for an engine
    that offers the pruners ``offered``. ``ValueError`` (one line) for a pruner it does
    not offer, an unknown option, or a value that is not an int (``max_resource`` may
    also be ``"auto"``); the library checks the ranges."""
    if name not in offered:
        raise ValueError(f"engine {engine}: cannot prune with {name!r} (it offers {', '.join(offered) or 'none'})")
    defaults = pruner_defaults(name)
    unknown = sorted(set(options) - set(defaults))
    if unknown:
        raise ValueError(f"engine {engine}: pruner {name} has no option {unknown[0]!r} (options: {', '.join(defaults)})")
    merged = {**defaults, **options}
    for key, value in merged.items():
        if not (type(value) is int or (key == "max_resource" and value == "auto")):
            raise ValueError(f"engine {engine}: pruner {name} option {key} must be an integer, not {value!r}")
    return merged


def reportable(engine: str, delegated: bool, pending: Mapping[int, Any], number: int, value: float) -> bool:
    """Whether a delegated ``report`` of trial ``number`` is recorded: ``RuntimeError``
    before ``delegate_pruning``, ``ValueError`` for a trial that is not pending, False
    for a value that is not a finite number (never recorded: the trial goes on)."""
    if not delegated:
        raise RuntimeError(f"engine {engine}: report() before delegate_pruning()")
    if number not in pending:
        raise ValueError(f"engine {engine}: trial {number} is not pending")
    return math.isfinite(value)


def call_text(callee: str, kwargs: Mapping[str, Any]) -> str:
    """``callee(key=value, ...)``: how a delegated pruner is described in ``result.json``."""
    return f"{callee}({', '.join(f'{key}={value!r}' for key, value in kwargs.items())})"

