"""Every environment variable serbench reads, its default and what it means: the one
place a ``SERBENCH_*`` name is spelled (the README's table is checked against it).

Modules read a variable through :func:`get` (or use the name for messages), never
``os.environ`` with a literal.
"""

from __future__ import annotations

import os
from dataclasses import dataclass


@dataclass(frozen=True)
class Variable:
    """One environment variable: ``name``, ``default`` (None: unset means "not given")
    and ``meaning``; ``to_containers``: passed on to a job container by
    ``--executor docker``."""

    name: str
    default: str | None
    meaning: str
    to_containers: bool = False

    def __str__(self) -> str:
        return self.name


DATA = Variable(
    "SERBENCH_DATA", None,
    "folder holding the corpora (default: $XDG_DATA_HOME/serbench, i.e. ~/.local/share/serbench)",
)
MODELS = Variable("SERBENCH_MODELS", None, "folder of local model folders that backbone sources name")
CACHE = Variable(
    "SERBENCH_CACHE", None,
    "folder where frozen features persist across runs (default: spilled under the study's output folder)",
)
CACHE_MB = Variable(
    "SERBENCH_CACHE_MB", None,
    "in-memory bound of the feature cache in MB (default: a quarter of resources.memory_gb)", to_containers=True,
)
PLUGINS = Variable(
    "SERBENCH_PLUGINS", None, "comma-separated entry-point names: load only these plugins", to_containers=True,
)
DISABLE_PLUGINS = Variable(
    "SERBENCH_DISABLE_PLUGINS", None, "comma-separated entry-point names: do not load these", to_containers=True,
)
DEBUG = Variable("SERBENCH_DEBUG", None, "any value: print tracebacks of internal errors", to_containers=True)
EXECUTOR = Variable(
    "SERBENCH_EXECUTOR", "local", "where the study runs, as recorded in result.json (set inside job containers)",
)
WORKER = Variable(
    "SERBENCH_WORKER", None, "set by the supervisor for its worker process: JSON saying how it is isolated",
)
LOCK_HELD = Variable(
    "SERBENCH_LOCK_HELD", None,
    "set by the supervisor for its worker and by --executor docker for its container: the driver that "
    "started this process holds the job folder's lock, so this one takes none",
)
HF_OFFLINE = Variable("HF_HUB_OFFLINE", None, "Hugging Face's: 1 forbids hub downloads", to_containers=True)
RAY_ADDRESS = Variable(
    "SERBENCH_RAY_ADDRESS", None,
    "the ray backend's cluster when neither the job's execution.options.address nor --ray-address names one "
    "(default: local, a private Ray instance on this machine)",
)

VARIABLES: tuple[Variable, ...] = (
    DATA, MODELS, CACHE, CACHE_MB, PLUGINS, DISABLE_PLUGINS, DEBUG, EXECUTOR, WORKER, LOCK_HELD, HF_OFFLINE,
    RAY_ADDRESS,
)

TO_SLOTS: tuple[Variable, ...] = (DATA, MODELS, CACHE, CACHE_MB, PLUGINS, DISABLE_PLUGINS, DEBUG, HF_OFFLINE)
"""Passed on from the driver to every execution slot that loads its own inputs (a Ray
worker on another node): where the corpora, models and cache are, and which plugins."""


def for_slots() -> dict[str, str]:
    """The :data:`TO_SLOTS` variables set here, by name."""
    return {v.name: os.environ[v.name] for v in TO_SLOTS if os.environ.get(v.name)}


def get(variable: Variable) -> str | None:
    """The variable's value; its default when unset or empty."""
    return os.environ.get(variable.name) or variable.default
