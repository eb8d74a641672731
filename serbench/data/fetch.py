"""``serbench data fetch``: download a corpus, unpack it to the adapter's layout, verify it.

What to download is the adapter's ``source`` (:class:`serbench.data.sources.Source`) and
what to verify against its manifest: this module knows no corpus. The contract: when
``fetch`` returns, every file the manifest lists is under ``root`` at its listed path
with its listed sha256. Otherwise it raises a ``UserError`` with one line naming the
files or the URL at fault: ``NetworkError`` (host unreachable, HTTP error),
``DataError`` (not a zip, checksum mismatch, files missing). A broken-off archive
download is resumed by the next run; files already verified are not fetched again.
Progress goes to a :class:`serbench.data.progress.Progress`; nothing is printed here.
"""

from __future__ import annotations

import hashlib
import shutil
import zipfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from urllib.parse import quote, urlparse

from serbench.data.download import download
from serbench.data.manifest import CHUNK, Entry, Manifest, matches
from serbench.data.progress import SILENT, Progress
from serbench.data.sources import Source
from serbench.errors import DataError, NetworkError, UserError

DOWNLOAD_DIR = ".serbench-download"
WORKERS = 8
SHOWN = 5  # files named in a one-line error before "and N more"


@dataclass(frozen=True)
class Fetched:
    """What ``fetch`` left under ``root``: ``files`` verified files of ``size`` bytes;
    ``already`` when they were all there and nothing was downloaded."""

    root: Path
    files: int
    size: int
    already: bool


def fetch(
    source: Source,
    root: Path,
    manifest: Manifest,
    *,
    url: str | None = None,
    archive: Path | None = None,
    name: str = "this corpus",
    progress: Progress = SILENT,
) -> Fetched:
    """Get ``source`` (corpus ``name``'s, as its adapter declares it) into ``root``: from
    ``archive`` (a local zip) if given, else from ``url`` (a mirror: an archive URL, or
    for per-file sources a template with ``{path}``), else from the official URLs, in
    order. The published archive checksum is checked on official downloads only."""
    size = sum(e.size for e in manifest.entries.values())
    root.mkdir(parents=True, exist_ok=True)
    if _complete(root, manifest):
        return Fetched(root, len(manifest), size, already=True)
    if archive is not None:
        if not archive.is_file():
            raise DataError(f"{archive}: no such archive file")
        unpack(archive, root, manifest)
    elif source.kind == "archive":
        saved = _download_archive((url,) if url else source.urls, root / DOWNLOAD_DIR, progress)
        if url is None:
            for algorithm in ("md5", "sha256"):
                if expected := getattr(source, f"archive_{algorithm}"):
                    _check_archive(saved, algorithm, expected.lower())
        unpack(saved, root, manifest)
        shutil.rmtree(root / DOWNLOAD_DIR, ignore_errors=True)
    else:
        templates = (url,) if url else source.urls
        for template in templates:
            if "{path}" not in template:
                raise DataError(f"--url for {name} must be a URL template containing {{path}}, got {template}")
        _download_files(templates, root, manifest, progress)
    verify(root, manifest)
    return Fetched(root, len(manifest), size, already=False)


def unpack(archive: Path, root: Path, manifest: Manifest) -> int:
    """Extract ``archive`` under ``root`` so that its files land at manifest paths.

    Archives wrap the corpus differently (``wav/...`` at the top, or inside a folder), so
    the prefix to strip is found from the first member whose tail is a listed path; every
    member under that prefix is extracted. Returns the number of files extracted.
    """
    try:
        with zipfile.ZipFile(archive) as zf:
            members = [m for m in zf.infolist() if not m.is_dir()]
            prefix = _prefix(members, manifest)
            if prefix is None:
                raise DataError(
                    f"{archive}: holds none of the {len(manifest)} files of {manifest.source} "
                    "(not this corpus's archive?)"
                )
            count = 0
            for member in members:
                parts = PurePosixPath(member.filename).parts
                if parts[: len(prefix)] != prefix or len(parts) == len(prefix):
                    continue
                rel = PurePosixPath(*parts[len(prefix) :])
                if rel.is_absolute() or ".." in rel.parts:
                    raise DataError(f"{archive}: member {member.filename} points outside the corpus folder")
                dest = root.joinpath(*rel.parts)
                dest.parent.mkdir(parents=True, exist_ok=True)
                tmp = dest.with_name(dest.name + ".part")
                with zf.open(member) as src, open(tmp, "wb") as out:
                    shutil.copyfileobj(src, out, CHUNK)
                tmp.replace(dest)
                count += 1
    except zipfile.BadZipFile:
        raise DataError(f"{archive}: not a zip archive (or a truncated one; delete it and fetch again)") from None
    except (zipfile.LargeZipFile, NotImplementedError, EOFError, OSError) as exc:
        raise DataError(f"{archive}: cannot unpack ({exc.__class__.__name__}: {exc})") from None
    return count


def verify(root: Path, manifest: Manifest) -> None:
    """``DataError`` listing the manifest files under ``root`` that are missing or differ."""
    missing, differ = [], []
    for entry in manifest.entries.values():
        path = root / entry.path
        if not path.is_file():
            missing.append(entry.path)
        elif not matches(path, entry):
            differ.append(entry.path)
    if differ:
        raise DataError(
            f"{len(differ)} file{_s(differ)} in {root} differ from the manifest ({manifest.source}): {_names(differ)}"
        )
    if missing:
        raise DataError(
            f"{len(missing)} of {len(manifest)} files of {manifest.source} are missing from {root}: {_names(missing)}"
        )


def _complete(root: Path, manifest: Manifest) -> bool:
    entries = manifest.entries.values()
    if not all((root / e.path).is_file() and (root / e.path).stat().st_size == e.size for e in entries):
        return False
    return all(matches(root / e.path, e) for e in entries)


def _prefix(members: list[zipfile.ZipInfo], manifest: Manifest) -> tuple[str, ...] | None:
    for member in members:
        parts = PurePosixPath(member.filename).parts
        for start in range(len(parts)):
            if "/".join(parts[start:]) in manifest:
                return parts[:start]
    return None


def _download_archive(urls: tuple[str, ...], folder: Path, progress: Progress) -> Path:
    """The archive from the first of ``urls`` that answers; if none does, a
    ``NetworkError`` with each one's error."""
    errors: list[NetworkError] = []
    for url in urls:
        name = PurePosixPath(urlparse(url).path).name or "archive.zip"
        task = progress.task(f"downloading {name}", None, unit="bytes")
        try:
            return download(url, folder / name, on_start=task.set_total, on_chunk=task.advance)
        except NetworkError as exc:
            errors.append(exc)
    raise NetworkError("; ".join(str(e) for e in errors))


def _check_archive(path: Path, algorithm: str, expected: str) -> None:
    digest = hashlib.new(algorithm)
    with open(path, "rb") as handle:
        while chunk := handle.read(CHUNK):
            digest.update(chunk)
    if digest.hexdigest() != expected:
        path.unlink()
        raise DataError(
            f"{path.name}: {algorithm} {digest.hexdigest()} is not the published {expected}; "
            "the download was corrupted and has been deleted, run the command again"
        )


def _download_files(templates: tuple[str, ...], root: Path, manifest: Manifest, progress: Progress) -> None:
    todo = [e for e in manifest.entries.values() if not ((root / e.path).is_file() and matches(root / e.path, e))]
    if not todo:
        return
    task = progress.task(f"downloading {len(todo)} files", len(todo))
    # One file first: with no network, fail once, not once per file.
    order = list(templates)
    working = _fetch_one(todo[0], order, root)
    if isinstance(working, UserError):
        raise working
    order.remove(working)
    order.insert(0, working)
    task.advance()
    failures: list[tuple[str, UserError]] = []

    def one(entry: Entry) -> None:
        outcome = _fetch_one(entry, order, root)
        if isinstance(outcome, UserError):
            failures.append((entry.path, outcome))
        task.advance()

    with ThreadPoolExecutor(WORKERS) as pool:
        list(pool.map(one, todo[1:]))
    if failures:
        path, error = sorted(failures)[0]
        raise DataError(
            f"{len(failures)} of {len(todo)} files could not be fetched, first {path}: {error}; "
            "run the command again to retry them"
        )


def _fetch_one(entry: Entry, templates: list[str], root: Path) -> str | UserError:
    """Download one listed file, trying each URL template; return the template that
    worked, or the error of the first one tried."""
    dest = root / entry.path
    errors: list[UserError] = []
    for template in templates:
        url = template.replace("{path}", quote(entry.path))
        try:
            download(url, dest)
        except NetworkError as exc:
            errors.append(exc)
            continue
        if matches(dest, entry):
            return template
        head = dest.read_bytes()[:64]
        dest.unlink()
        if head.startswith(b"version https://git-lfs"):
            errors.append(DataError(f"{url} sent a Git LFS pointer, not the file (LFS quota used up?)"))
        else:
            errors.append(DataError(f"{url}: sha256 differs from the manifest"))
    if all(isinstance(e, NetworkError) for e in errors):
        return NetworkError("; ".join(str(e) for e in errors))
    return DataError("; ".join(str(e) for e in errors))


def _names(paths: list[str]) -> str:
    shown = ", ".join(sorted(paths)[:SHOWN])
    return shown + (f" and {len(paths) - SHOWN} more" if len(paths) > SHOWN else "")


def _s(items: list) -> str:
    return "" if len(items) == 1 else "s"
