"""Fingerprints a saved model is checked against: of the pre-trained files its backbone
reads, and of the training audio.

Both are sha256 over sorted ``name<TAB>sha256`` lines, so they name content, never where
it lies: the same checkpoint copied elsewhere (or reached through another
``$SERBENCH_MODELS``) has the same fingerprint.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import TYPE_CHECKING, Iterable

from serbench.backbones.base import hub_snapshot, resolve_source
from serbench.data.manifest import sha256_file
from serbench.errors import ModelError

if TYPE_CHECKING:
    from serbench.backbones.base import Backbone
    from serbench.data.base import Utterance


def combined(hashes: Iterable[tuple[str, str]]) -> str:
    """sha256 over ``name<TAB>sha256`` lines, sorted by name."""
    text = "".join(f"{name}\t{digest}\n" for name, digest in sorted(hashes))
    return hashlib.sha256(text.encode()).hexdigest()


def pretrained_folder(backbone: "Backbone") -> Path:
    """The local folder the backbone's source is read from (a folder, a folder under
    ``$SERBENCH_MODELS``, or the hub cache's snapshot of a hub id)."""
    resolved = Path(resolve_source(backbone.source))
    if resolved.is_dir():
        return resolved
    snapshot = hub_snapshot(backbone.source)
    if snapshot is None:
        raise ModelError(f"backbone source {backbone.source!r} is not on this machine (no folder, not in the hub cache)")
    return snapshot


def pretrained_files(backbone: "Backbone") -> dict[str, str]:
    """sha256 of each file the backbone declares as its pre-trained weights
    (``Backbone.weight_files``), by path relative to its folder."""
    folder = pretrained_folder(backbone)
    files = {}
    for pattern in backbone.weight_files:
        for path in sorted(folder.glob(pattern)):
            if path.is_file():
                files[path.relative_to(folder).as_posix()] = sha256_file(path)
    if not files:
        raise ModelError(f"{folder}: none of the pre-trained files of backbone {backbone.name!r} are there")
    return files


def audio_fingerprint(utterances: Iterable["Utterance"]) -> str:
    """sha256 over the utterances' ids and file hashes."""
    return combined((u.id, sha256_file(u.path)) for u in utterances)
