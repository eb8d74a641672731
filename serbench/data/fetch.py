"""``serbench data fetch``: download a corpus, unpack it to the adapter's layout, verify it.

The contract: when ``fetch`` returns, every file the manifest lists is under ``root`` at
its listed path with its listed sha256. Otherwise it raises a ``UserError`` with one line
naming the files or the URL at fault: ``NetworkError`` (host unreachable, HTTP error),
``DataError`` (not a zip, checksum mismatch, files missing). A broken-off archive
download is resumed by the next run; files already verified are not fetched again.
"""

from __future__ import annotations

import hashlib
import shutil
import zipfile
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Iterator
from urllib.parse import quote, urlparse

from rich.console import Console
from rich.progress import BarColumn, DownloadColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from serbench.data.sources import Source
from serbench.data.download import download
from serbench.errors import DataError, NetworkError, UserError
from serbench.data.manifest import CHUNK, Entry, Manifest, matches

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
    console: Console | None = None,
) -> Fetched:
    """Get ``source`` into ``root``: from ``archive`` (a local zip) if given, else from
    ``url`` (a mirror: an archive URL, or for per-file sources a template with
    ``{path}``), else from the official URLs."""
    console = console or Console(stderr=True)
    size = sum(e.size for e in manifest.entries.values())
    root.mkdir(parents=True, exist_ok=True)
    if _complete(root, manifest):
        return Fetched(root, len(manifest), size, already=True)
    if archive is not None:
        if not archive.is_file():
            raise DataError(f"{archive}: no such archive file")
        unpack(archive, root, manifest)
    elif source.kind == "archive":
        official = url is None
        target = url or source.urls[0]
        saved = _download_archive(target, root / DOWNLOAD_DIR, console)
        if official and source.archive_md5:
            _check_md5(saved, source.archive_md5)
        unpack(saved, root, manifest)
        shutil.rmtree(root / DOWNLOAD_DIR, ignore_errors=True)
    else:
        templates = (url,) if url else source.urls
        for template in templates:
            if "{path}" not in template:
                raise DataError(f"--url for {source.name} must be a URL template containing {{path}}, got {template}")
        _download_files(templates, root, manifest, console)
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


def _download_archive(url: str, folder: Path, console: Console) -> Path:
    name = PurePosixPath(urlparse(url).path).name or "archive.zip"
    with _progress(console, DownloadColumn()) as progress:
        task = progress.add_task(f"downloading {name}", total=None)
        return download(
            url,
            folder / name,
            on_start=lambda total: progress.update(task, total=total),
            on_chunk=lambda n: progress.advance(task, n),
        )


def _check_md5(path: Path, expected: str) -> None:
    digest = hashlib.md5()
    with open(path, "rb") as handle:
        while chunk := handle.read(CHUNK):
            digest.update(chunk)
    if digest.hexdigest() != expected:
        path.unlink()
        raise DataError(
            f"{path.name}: md5 {digest.hexdigest()} is not the published {expected}; "
            "the download was corrupted and has been deleted, run the command again"
        )


def _download_files(templates: tuple[str, ...], root: Path, manifest: Manifest, console: Console) -> None:
    todo = [e for e in manifest.entries.values() if not ((root / e.path).is_file() and matches(root / e.path, e))]
    if not todo:
        return
    with _progress(console, MofNCompleteColumn()) as progress:
        task = progress.add_task(f"downloading {len(todo)} files", total=len(todo))
        # One file first: with no network, fail once, not once per file.
        order = list(templates)
        working = _fetch_one(todo[0], order, root)
        if isinstance(working, UserError):
            raise working
        order.remove(working)
        order.insert(0, working)
        progress.advance(task)
        failures: list[tuple[str, UserError]] = []

        def one(entry: Entry) -> None:
            outcome = _fetch_one(entry, order, root)
            if isinstance(outcome, UserError):
                failures.append((entry.path, outcome))
            progress.advance(task)

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


@contextmanager
def _progress(console: Console, counter) -> Iterator[Progress]:
    """A transient progress bar on a terminal; nothing at all otherwise, so that a
    failure leaves just the one-line error on stderr."""
    progress = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        counter,
        TimeRemainingColumn(),
        console=console,
        transient=True,
        disable=not console.is_terminal,
    )
    with progress:
        yield progress


def _names(paths: list[str]) -> str:
    shown = ", ".join(sorted(paths)[:SHOWN])
    return shown + (f" and {len(paths) - SHOWN} more" if len(paths) > SHOWN else "")


def _s(items: list) -> str:
    return "" if len(items) == 1 else "s"
