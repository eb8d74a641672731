"""The backbone contract: a pre-trained speech encoder plus a linear head.

A ``Backbone`` plugin class is cheap to construct (no weights loaded); ``build`` returns
a fresh :class:`serbench.backbones.model.SERModel` (torch) with the pre-trained encoder and a new
head. Sources are resolved by :func:`resolve_source`: a local folder, a name under
``$SERBENCH_MODELS``, or a hub id, all loaded by the same code.
"""

from __future__ import annotations

import json
import os
import re
from abc import ABC, abstractmethod
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import BaseModel

from serbench.errors import ModelError
from serbench.spec import NoOptions
from serbench import env

if TYPE_CHECKING:
    from typing import Callable

    import numpy as np

    from serbench.backbones.model import SERModel


# Hugging Face's rule for a repo id: owner/name, each part of letters, digits, "-", "_"
# and ".", neither starting nor ending with "-" or "."; no "--" or ".."; at most 96 chars.
_HUB_PART = r"[A-Za-z0-9_](?:[A-Za-z0-9_.-]*[A-Za-z0-9_])?"
_HUB_ID = re.compile(rf"{_HUB_PART}/{_HUB_PART}")


def is_hub_id(source: str) -> bool:
    """``owner/name`` as Hugging Face (and SpeechBrain, which loads from it) allows."""
    return (
        len(source) <= 96
        and _HUB_ID.fullmatch(source) is not None
        and "--" not in source
        and ".." not in source
        and not source.endswith(".git")
    )


def looks_like_path(source: str) -> bool:
    """Written as a path, so never a name under ``$SERBENCH_MODELS`` or a hub id: absolute,
    starting with ``~``, ``./`` or ``../`` (or ``.``/``..``), or holding a backslash on Windows."""
    if source in (".", "..") or source.startswith(("~", "./", "../")) or Path(source).is_absolute():
        return True
    return any(sep in source for sep in (os.sep, os.altsep) if sep and sep != "/")


def hub_offline() -> bool:
    """Whether ``HF_HUB_OFFLINE`` forbids downloads (Hugging Face's truthy values)."""
    return (env.get(env.HF_OFFLINE) or "").strip().upper() in ("1", "ON", "YES", "TRUE")


def resolve_source(source: str) -> str:
    """A local folder when one matches ``source``, else ``source`` itself (a hub id).

    Tried in order: ``source`` as a path; ``$SERBENCH_MODELS/<source>``;
    ``$SERBENCH_MODELS/<last part of source>`` (so ``openai/whisper-base`` finds a
    local ``whisper-base`` folder). A source written as a path (:func:`looks_like_path`)
    is only ever that path.
    """
    path = Path(source).expanduser()
    if path.is_dir():
        return str(path.resolve())
    models = env.get(env.MODELS)
    if models and not looks_like_path(source):
        for candidate in (Path(models) / source, Path(models) / Path(source).name):
            if candidate.is_dir():
                return str(candidate.resolve())
    return source


def hub_snapshot(hub_id: str) -> Path | None:
    """The folder of ``hub_id``'s ``main`` revision in the local Hugging Face cache, if any."""
    try:
        from huggingface_hub.constants import HF_HUB_CACHE
    except ImportError:
        return None
    repo = Path(HF_HUB_CACHE) / f"models--{hub_id.replace('/', '--')}"
    try:
        commit = (repo / "refs" / "main").read_text(encoding="utf-8").strip()
    except OSError:
        return None
    snapshot = repo / "snapshots" / commit
    return snapshot if commit and snapshot.is_dir() else None


class Backbone(ABC):
    """Base class of every backbone plugin.

    ``name`` is what a job's ``backbone.name`` says; ``default_source`` is used when the
    job names no source; ``Options`` validates ``backbone.options``.
    """

    name: ClassVar[str]
    default_source: ClassVar[str]
    Options: ClassVar[type[BaseModel]] = NoOptions
    library: ClassVar[str | None] = None
    """The distribution the backbone loads models with, as pip names it (``"transformers"``):
    its installed version goes into ``result.json``'s ``versions.libraries.backbone``."""
    #: What a model folder must hold, for :meth:`check_source`: each entry is a tuple of
    #: glob patterns, one of which must match a file (``(("config.json",), ("*.bin",))``).
    model_files: ClassVar[tuple[tuple[str, ...], ...]] = ()
    #: Glob patterns of the files whose bytes define the pre-trained model (weights,
    #: configuration): a saved model records their sha256 and refuses to load on others.
    weight_files: ClassVar[tuple[str, ...]] = ()
    #: The options :meth:`load_pretrained` reads (where weights are fetched to, ...): a
    #: variant (:meth:`with_options`) that changes one loads its own weights.
    loading_options: ClassVar[tuple[str, ...]] = ()

    def __init__(self, source: str | None = None, options: BaseModel | None = None):
        self.source = source or self.default_source
        self.options = options if options is not None else self.Options()
        self._pretrained: Any = None
        self._weights_from: Backbone | None = None  # the backbone whose loaded weights this one shares

    def with_options(self, update: dict[str, Any]) -> "Backbone":
        """This backbone with ``update`` merged over its options (a search's
        ``backbone.<option>`` values): ``self`` when nothing changes, else a new one of the
        same class and source that shares this one's pre-trained weights (read once for
        both) unless ``update`` changes a :attr:`loading_options` entry. Raises pydantic's
        ``ValidationError`` for options the class refuses."""
        merged = self.Options.model_validate({**self.options.model_dump(), **update})
        if merged == self.options:
            return self
        variant = type(self)(self.source, merged)
        if all(getattr(merged, name) == getattr(self.options, name) for name in self.loading_options):
            variant._weights_from = self._weights_from or self
        return variant

    @abstractmethod
    def build(self, num_classes: int) -> "SERModel":
        """A model with the pre-trained encoder and a fresh ``num_classes``-way head.

        Call ``torch.manual_seed`` first for a reproducible head. Raises ``ModelError``
        when the source cannot be loaded. Built-ins build from a copy of
        :meth:`pretrained`, so the weights are read once per study.
        """

    def load_pretrained(self, resolved: str) -> Any:
        """Read the pre-trained weights from ``resolved`` (a folder, or a hub id when no
        local folder matched); called once by :meth:`pretrained`. Backbones that build
        through :meth:`pretrained` implement it; raises ``ModelError`` on failure."""
        raise NotImplementedError(f"{type(self).__name__} does not load through pretrained()")

    def pretrained(self) -> Any:
        """What :meth:`load_pretrained` returned, loaded on first use after
        :meth:`check_source` (a clear message for a missing folder or an offline hub id);
        :meth:`build` copies it for each model."""
        if self._pretrained is None:
            if self._weights_from is not None:
                self._pretrained = self._weights_from.pretrained()
            else:
                self.check_source()
                self._pretrained = self.load_pretrained(resolve_source(self.source))
        return self._pretrained

    def check_source(self) -> str:
        """Check, without loading anything or touching the network, that ``self.source``
        can be loaded; return where it will come from, for messages.

        A source written as a path must be an existing folder; a folder (found as a path
        or under ``$SERBENCH_MODELS`` by :func:`resolve_source`) must hold
        :attr:`model_files`; anything else must be a well-formed hub id, which is either in
        the local cache (:meth:`hub_cached`) or downloaded at run time -- unless
        ``HF_HUB_OFFLINE`` is set. Raises ``ModelError`` with a one-line message naming
        ``backbone.source``. ``serbench validate`` calls it; built-ins call it in ``build``.
        """
        source = self.source
        path = Path(source).expanduser()
        if looks_like_path(source):
            if not path.exists():
                raise ModelError(f"backbone.source: no such model folder: {os.path.abspath(path)}")
        else:
            found = Path(resolve_source(source))
            if found.is_dir():
                path = found
        if path.exists():
            if not path.is_dir():
                raise ModelError(f"backbone.source: {path} is a file; name the model folder holding it")
            self.check_folder(path.resolve())
            return str(path.resolve())
        models = env.get(env.MODELS)
        if not is_hub_id(source):
            under = f"under ${env.MODELS}={models}" if models else f"under ${env.MODELS}, which is not set"
            raise ModelError(
                f"backbone.source: {source!r} is neither a model folder (none here or {under}) nor a "
                "hub id (owner/name, of letters, digits, '-', '_' and '.')"
            )
        if self.hub_cached(source):
            return f"{source} (hub id, in the local cache)"
        if hub_offline():
            if models:
                why = f"it is neither in the local cache nor at {Path(models) / Path(source).name}"
            else:
                why = f"it is not in the local cache and ${env.MODELS} is not set"
            raise ModelError(
                f"backbone.source: hub id {source!r} cannot be loaded offline: {env.HF_OFFLINE} is set and {why}"
            )
        return f"{source} (hub id, not in the local cache: downloaded at run time)"

    def check_folder(self, folder: Path) -> None:
        """Raise ``ModelError`` unless ``folder`` holds :attr:`model_files`."""
        missing = [" or ".join(group) for group in self.model_files if not _holds(folder, group)]
        if missing:
            raise ModelError(f"backbone.source: {folder} holds no {self.name} model: no {', no '.join(missing)}")

    def hub_cached(self, hub_id: str) -> bool:
        """Whether ``hub_id`` can be loaded without a download: by default, whether the
        local Hugging Face cache holds its ``main`` revision with :attr:`model_files`."""
        snapshot = hub_snapshot(hub_id)
        return snapshot is not None and all(_holds(snapshot, group) for group in self.model_files)

    def onnx_front_end(self) -> "Callable[[np.ndarray, int], dict[str, np.ndarray]]":
        """``onnx_inputs(wave, maxlen)`` of the models this backbone builds
        (:meth:`serbench.backbones.model.SERModel.onnx_inputs`), for a runtime that runs an
        exported graph and needs the graph's inputs, not the encoder's weights. By default
        a built model's (the pre-trained weights are read for it); backbones whose inputs
        rest on light files only (a feature extractor's settings) override it to read just
        those. ``ModelError`` when the backbone has no ONNX export."""
        return self.build(1).onnx_inputs

    def describe(self) -> dict[str, Any]:
        """What identifies the encoder's outputs (for results and feature-cache keys)."""
        return {"name": self.name, "source": self.source, "options": self.options.model_dump(mode="json")}

    def cache_key(self) -> str:
        return json.dumps(self.describe(), sort_keys=True)


def _holds(folder: Path, patterns: tuple[str, ...]) -> bool:
    return any(path.is_file() for pattern in patterns for path in folder.glob(pattern))
