"""How a dataset adapter declares where its corpus is officially distributed.

The core names no corpus: each adapter that ``serbench data fetch`` can fill sets
``source`` (a :class:`Source`) and ships a per-file checksum manifest (its ``manifest``
resource, :mod:`serbench.data.manifest`). Two kinds of source:

- ``archive``: one zip (EmoDB's ``download.zip``, RAVDESS's Zenodo archive), from the first
  of ``urls`` that answers. It is downloaded, checked against the archive checksum the
  host publishes (``archive_md5`` / ``archive_sha256``, if declared), and the files it
  holds are unpacked under the corpus root at the paths the manifest lists: whatever
  folder wraps them in the zip is found from the manifest and stripped.
- ``files``: one URL per listed file (CREMA-D keeps its audio in Git LFS; GitHub's
  repository archive holds LFS pointer stubs, not audio). ``urls`` are templates with
  ``{path}`` (the manifest path), tried in order: the official host first, then mirrors.

Whatever the source, every file is verified against the adapter's per-file sha256
manifest, which is what makes a copy trustworthy.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from serbench.errors import PluginError

if TYPE_CHECKING:
    from serbench.data.base import DatasetAdapter

KINDS = ("archive", "files")


@dataclass(frozen=True)
class Source:
    """Where and how to download one corpus: ``kind`` (``"archive"`` or ``"files"``),
    ``urls`` (archive URLs, or ``{path}`` templates, official first, then mirrors), the
    corpus's ``license`` (printed after a fetch), a ``note`` for people, and the
    archive's published checksum if its host gives one (per-file sha256 is checked
    regardless)."""

    kind: Literal["archive", "files"]
    urls: tuple[str, ...]
    license: str
    note: str = ""
    archive_md5: str | None = None
    archive_sha256: str | None = None

    def __post_init__(self) -> None:
        if isinstance(self.urls, str):
            object.__setattr__(self, "urls", (self.urls,))
        else:
            object.__setattr__(self, "urls", tuple(self.urls))
        if self.kind not in KINDS:
            raise ValueError(f"Source kind must be 'archive' or 'files', got {self.kind!r}")
        if not self.urls or not all(isinstance(url, str) and url for url in self.urls):
            raise ValueError("a Source needs at least one URL")
        if self.kind == "files":
            if any("{path}" not in url for url in self.urls):
                raise ValueError("the URLs of a 'files' Source are templates containing {path}")
            if self.archive_md5 or self.archive_sha256:
                raise ValueError("a 'files' Source has no archive checksum")
        for field, length in (("archive_md5", 32), ("archive_sha256", 64)):
            value = getattr(self, field)
            if value is not None and (len(value) != length or any(c not in "0123456789abcdefABCDEF" for c in value)):
                raise ValueError(f"{field} must be {length} hex digits, got {value!r}")


def declared(adapter: type["DatasetAdapter"]) -> Source | None:
    """The adapter's ``source``, or ``None`` if it declares none; ``PluginError`` if it
    declares something that is not a :class:`Source`."""
    source = getattr(adapter, "source", None)
    if source is not None and not isinstance(source, Source):
        raise PluginError(
            f"dataset adapter {adapter.name!r}: `source` must be a serbench.data.Source, got {type(source).__name__}"
        )
    return source
