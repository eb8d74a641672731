"""What every contract kit shares: :class:`ContractError`, the failure of one clause of a
plugin's contract, and :func:`clause`, which turns anything a plugin raises inside a
clause into that failure; and :func:`options_problem`, the check every kit makes of a
plugin's ``Options`` model."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from pydantic import BaseModel, ValidationError


class ContractError(AssertionError):
    """A plugin breaks a clause of its contract: ``<kind> 'name' breaks 'clause': detail``.
    Each kit subclasses it with its ``kind`` (engine, dataset adapter, backbone)."""

    kind = "engine"

    def __init__(self, plugin_cls: type, clause: str, detail: str):
        self.clause = clause
        name = getattr(plugin_cls, "name", None) or getattr(plugin_cls, "__name__", repr(plugin_cls))
        super().__init__(f"{self.kind} {name!r} breaks '{clause}': {detail}")


@contextmanager
def clause(error: type[ContractError], plugin_cls: type, name: str) -> Iterator[None]:
    """An exception raised inside is the clause breaking: re-raised as ``error`` (a
    :class:`ContractError` raised inside passes as it is)."""
    try:
        yield
    except ContractError:
        raise
    except Exception as exc:
        raise error(plugin_cls, name, f"raised {exc.__class__.__name__}: {exc}") from exc


def options_problem(model: Any, options: Mapping[str, Any] | None) -> str | None:
    """What is wrong with a plugin's ``Options`` class, or None: it must be a pydantic
    model that rejects keys it does not know (tried with ``options`` plus one unknown key)."""
    if not (isinstance(model, type) and issubclass(model, BaseModel)):
        return "`Options` must be a pydantic model"
    try:
        model.model_validate({**dict(options or {}), "no_such_option_xyz": 1})
    except ValidationError:
        return None
    return "`Options` accepts unknown keys (use serbench.spec.StrictModel)"
