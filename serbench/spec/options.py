"""The base of every spec model and of plugin options, and the one-line wording of a
validation error.

Every model forbids unknown keys, so a typo is an error rather than a silently ignored
setting; :func:`describe_validation_error` turns pydantic's errors into one line naming
the offending field.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError

from serbench.errors import SpecError


class StrictModel(BaseModel):
    """Base for every spec model: unknown keys are rejected."""

    model_config = ConfigDict(extra="forbid")


class NoOptions(StrictModel):
    """Options model of a plugin that takes none."""


def plugin_options(model: type[BaseModel], options: dict[str, Any], where: str) -> BaseModel:
    """Validate a plugin's ``options`` mapping; ``SpecError`` names ``where.<field>``."""
    try:
        return model.model_validate(options)
    except ValidationError as exc:
        raise SpecError(describe_validation_error(exc, options, prefix=where)) from None


def describe_validation_error(exc: ValidationError, data: Any, prefix: str = "") -> str:
    """One line: the first error's field path and message, plus a count of the others.

    ``data`` is the validated input: pydantic's error locations also hold union member
    tags (``float``, ``literal[...]``), which are kept out of the path by following the
    location through the input.
    """
    located = []
    for error in exc.errors():
        msg = error["msg"].removeprefix("Value error, ")
        if error["type"] == "extra_forbidden":
            msg = "unknown key"
        path = _input_path(data, error["loc"], error["type"] == "missing")
        # A validator's message "<key>: ..." about an entry of the field: fold the key in.
        key, sep, rest = msg.partition(": ")
        inner = _lookup(data, path)
        if sep and isinstance(inner, dict) and key in inner:
            path, msg = path + [key], rest
        located.append((".".join([prefix] + path if prefix else path), msg))
    distinct = list(dict.fromkeys(loc for loc, _ in located))
    loc, msg = located[0]
    line = f"{loc}: {msg}" if loc else msg
    if len(distinct) > 1:
        line += f" (and errors in {len(distinct) - 1} more field{'s' if len(distinct) > 2 else ''})"
    return " ".join(line.split())


def _input_path(data: Any, loc: tuple[Any, ...], missing: bool) -> list[str]:
    """The parts of ``loc`` that are keys or indexes of the input (and, for a missing
    field, its name)."""
    path: list[str] = []
    current = data
    for index, part in enumerate(loc):
        if isinstance(current, dict) and part in current:
            current = current[part]
            path.append(str(part))
        elif isinstance(current, list) and isinstance(part, int) and 0 <= part < len(current):
            current = current[part]
            path.append(str(part))
        elif missing and index == len(loc) - 1:
            path.append(str(part))
    return path


def _lookup(data: Any, path: list[str]) -> Any:
    for part in path:
        if isinstance(data, dict):
            data = data.get(part)
        elif isinstance(data, list) and part.isdigit():
            data = data[int(part)]
        else:
            return None
    return data
