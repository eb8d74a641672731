"""The backbone contract: a pre-trained speech encoder plus a linear head.

A ``Backbone`` plugin class is cheap to construct (no weights loaded); ``build`` returns
a fresh :class:`serbench.model.SERModel` (torch) with the pre-trained encoder and a new
head. Sources are resolved by :func:`resolve_source`: a local folder, a name under
``$SERBENCH_MODELS``, or a hub id, all loaded by the same code.
"""

from __future__ import annotations

import json
import os
from abc import ABC, abstractmethod
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import BaseModel

from serbench.spec import NoOptions

if TYPE_CHECKING:
    from serbench.model import SERModel

MODELS_ENV = "SERBENCH_MODELS"


def resolve_source(source: str) -> str:
    """A local folder when one matches ``source``, else ``source`` itself (a hub id).

    Tried in order: ``source`` as a path; ``$SERBENCH_MODELS/<source>``;
    ``$SERBENCH_MODELS/<last part of source>`` (so ``openai/whisper-base`` finds a
    local ``whisper-base`` folder).
    """
    path = Path(source).expanduser()
    if path.is_dir():
        return str(path.resolve())
    models = os.environ.get(MODELS_ENV)
    if models:
        for candidate in (Path(models) / source, Path(models) / Path(source).name):
            if candidate.is_dir():
                return str(candidate.resolve())
    return source


class Backbone(ABC):
    """Base class of every backbone plugin.

    ``name`` is what a job's ``backbone.name`` says; ``default_source`` is used when the
    job names no source; ``Options`` validates ``backbone.options``.
    """

    name: ClassVar[str]
    default_source: ClassVar[str]
    Options: ClassVar[type[BaseModel]] = NoOptions

    def __init__(self, source: str | None = None, options: BaseModel | None = None):
        self.source = source or self.default_source
        self.options = options if options is not None else self.Options()

    @abstractmethod
    def build(self, num_classes: int) -> "SERModel":
        """A model with the pre-trained encoder and a fresh ``num_classes``-way head.

        Call ``torch.manual_seed`` first for a reproducible head. Raises ``ModelError``
        when the source cannot be loaded.
        """

    def describe(self) -> dict[str, Any]:
        """What identifies the encoder's outputs (for results and feature-cache keys)."""
        return {"name": self.name, "source": self.source, "options": self.options.model_dump(mode="json")}

    def cache_key(self) -> str:
        return json.dumps(self.describe(), sort_keys=True)
