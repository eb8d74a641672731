"""Per-file checksum manifests of the original corpora, and file hashing.

A manifest is a text file of ``sha256<TAB>bytes<TAB>path`` lines, paths relative to the
corpus root that the adapter reads (``wav/03a01Fa.wav``); lines starting with ``#`` are
comments. serbench ships one per corpus it can fetch (``serbench/manifests/<name>.tsv``);
``--manifest FILE`` points at another one (a mirror holding a subset, a private corpus).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from serbench.errors import DataError

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


def shipped(name: str) -> Manifest | None:
    """The manifest serbench ships for corpus ``name``, or ``None`` if there is none."""
    resource = resources.files("serbench").joinpath("manifests", f"{name}.tsv")
    if not resource.is_file():
        return None
    return parse(resource.read_text(encoding="utf-8"), f"serbench/manifests/{name}.tsv")


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
