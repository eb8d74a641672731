"""Per-file checksum manifests of corpora, and file hashing.

A manifest is a text file of ``sha256<TAB>bytes<TAB>path`` lines, paths relative to the
corpus root that the adapter reads (``wav/03a01Fa.wav``); lines starting with ``#`` are
comments. A dataset adapter ships its own as a package resource named by its
``manifest`` attribute (the built-ins': ``serbench/data/adapters/manifests/<name>.tsv``);
``--manifest FILE`` points at another one (a mirror holding a subset, a private corpus).
"""

from __future__ import annotations

import hashlib
import importlib
from dataclasses import dataclass
from importlib import resources
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING

from serbench.errors import DataError, PluginError

if TYPE_CHECKING:
    from importlib.resources.abc import Traversable

    from serbench.data.base import DatasetAdapter

CHUNK = 1 << 20


@dataclass(frozen=True)
class Entry:
    """One listed file: its sha256 (hex, lower case), its size in bytes, its path."""

    sha256: str
    size: int
    path: str


@dataclass(frozen=True)
class Manifest:
    """The listed files of one corpus, by path relative to the corpus root."""

    source: str
    entries: dict[str, Entry]

    def __len__(self) -> int:
        return len(self.entries)

    def __contains__(self, path: object) -> bool:
        return path in self.entries

    def get(self, path: str) -> Entry | None:
        return self.entries.get(path)


def shipped(adapter: "type[DatasetAdapter] | DatasetAdapter") -> Manifest | None:
    """The manifest a dataset adapter ships (its ``manifest`` resource), or ``None`` if it
    declares none. ``adapter`` is its class or an instance. A declared resource that is not there is the plugin's packaging error
    (``PluginError``): its copies would otherwise silently go unverified."""
    cls = adapter if isinstance(adapter, type) else type(adapter)
    declared = getattr(cls, "manifest", None)
    if declared is None:
        return None
    relative = PurePosixPath(declared) if isinstance(declared, str) else None
    if relative is None or not relative.parts or relative.is_absolute() or ".." in relative.parts:
        raise PluginError(
            f"dataset adapter {cls.name!r}: `manifest` must be a resource path relative to its package, "
            f"like 'manifests/{cls.name}.tsv', got {declared!r}"
        )
    anchor, where = _anchor(cls)
    resource = anchor.joinpath(*relative.parts)
    if not resource.is_file():
        raise PluginError(
            f"dataset adapter {cls.name!r} declares the manifest {declared}, but {where} holds no such file "
            "(is it in the package data?)"
        )
    return parse(resource.read_text(encoding="utf-8"), f"{where}/{relative}")


def _anchor(cls: type) -> "tuple[Traversable, str]":
    """Where the adapter's manifest is found: the package of the module of the class that
    declares it (a subclass elsewhere inherits its parent's file), or the folder of a
    top-level module; and how to name that place in messages (``serbench/data/adapters``)."""
    owner = next((k for k in cls.__mro__ if "manifest" in vars(k)), cls)
    module = importlib.import_module(owner.__module__)
    package = module.__name__ if hasattr(module, "__path__") else (module.__package__ or "")
    if package:
        return resources.files(package), package.replace(".", "/")
    folder = Path(module.__file__).parent
    return folder, str(folder)


def load(path: Path) -> Manifest:
    """Read a manifest file; ``DataError`` naming the file if it is missing or malformed."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: cannot read the manifest ({exc.__class__.__name__})") from None
    return parse(text, str(path))


def parse(text: str, source: str) -> Manifest:
    entries: dict[str, Entry] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip() or line.startswith("#"):
            continue
        fields = line.split("\t")
        if len(fields) != 3 or len(fields[0]) != 64 or not fields[1].isdigit():
            raise DataError(f"{source}: line {number} is not 'sha256<TAB>bytes<TAB>path'")
        digest, size, path = fields
        parts = PurePosixPath(path).parts
        if not parts or path.startswith("/") or "\\" in path or ".." in parts or PurePosixPath(path).as_posix() != path:
            raise DataError(f"{source}: line {number}: {path!r} is not a plain path relative to the corpus root")
        entries[path] = Entry(digest.lower(), int(size), path)
    return Manifest(source, entries)


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def matches(path: Path, entry: Entry) -> bool:
    """Whether the file at ``path`` has the listed size and sha256 (size first: cheap)."""
    return path.stat().st_size == entry.size and sha256_file(path) == entry.sha256
