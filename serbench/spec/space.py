"""Search-space parameters: ``float`` and ``int`` ranges (optionally log-scaled) and
``choice`` lists, as a job's ``search_space`` names them."""

from __future__ import annotations

import math
from typing import Annotated, Any, Literal, Union

from pydantic import Field, field_validator, model_validator

from serbench.spec.options import StrictModel


class FloatParam(StrictModel):
    """A real-valued hyperparameter in [low, high], optionally sampled on a log scale."""

    type: Literal["float"]
    low: float
    high: float
    log: bool = False

    @model_validator(mode="after")
    def _check_bounds(self) -> "FloatParam":
        check_range(self.low, self.high, self.log)
        return self


class IntParam(StrictModel):
    """An integer hyperparameter in [low, high] (both included), optionally log-scaled."""

    type: Literal["int"]
    low: int
    high: int
    log: bool = False

    @model_validator(mode="after")
    def _check_bounds(self) -> "IntParam":
        check_range(self.low, self.high, self.log)
        return self


class ChoiceParam(StrictModel):
    """A hyperparameter taking one of a list of values (numbers or strings)."""

    type: Literal["choice"]
    values: list[Union[int, float, str, bool]]

    @field_validator("values")
    @classmethod
    def _non_empty_unique(cls, values: list[Any]) -> list[Any]:
        if not values:
            raise ValueError("a choice needs at least one value")
        if len({repr(v) for v in values}) != len(values):
            raise ValueError("choice values must be distinct")
        return values


def check_range(low: float, high: float, log: bool) -> None:
    if not (math.isfinite(low) and math.isfinite(high)):
        raise ValueError("low and high must be finite")
    if low >= high:
        raise ValueError(f"low ({low:g}) must be less than high ({high:g})")
    if log and low <= 0:
        raise ValueError(f"a log-scaled range needs low > 0 (got {low:g})")


Param = Annotated[Union[FloatParam, IntParam, ChoiceParam], Field(discriminator="type")]


def extremes(param: FloatParam | IntParam | ChoiceParam) -> list[Any]:
    if isinstance(param, ChoiceParam):
        return list(param.values)
    return [param.low, param.high]
