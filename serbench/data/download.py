"""Streaming HTTP downloads with resume, for ``serbench data fetch``.

A download goes to ``<dest>.part`` and is renamed to ``dest`` once complete. A ``.part``
left by an interrupted run is resumed with an HTTP ``Range`` request; a server that
ignores ranges sends the whole file, which then replaces the partial one. Any failure to
reach a host or an HTTP error status raises ``NetworkError`` with one line naming the URL.
"""

from __future__ import annotations

import shutil
import socket
import urllib.error
import urllib.request
from pathlib import Path
from typing import Callable

from serbench import __version__
from serbench.errors import NetworkError

CHUNK = 1 << 16
TIMEOUT = 30.0
USER_AGENT = f"serbench/{__version__}"

Advance = Callable[[int], None]  # called with each chunk's size in bytes
Start = Callable[[int | None], None]  # called once with the total size, if known


def download(url: str, dest: Path, on_start: Start | None = None, on_chunk: Advance | None = None) -> Path:
    """Fetch ``url`` into ``dest`` (resuming ``dest.part``); return ``dest``."""
    part = dest.with_name(dest.name + ".part")
    dest.parent.mkdir(parents=True, exist_ok=True)
    offset = part.stat().st_size if part.exists() else 0
    request = urllib.request.Request(url, headers={"User-Agent": USER_AGENT})
    if offset:
        request.add_header("Range", f"bytes={offset}-")
    try:
        response = urllib.request.urlopen(request, timeout=TIMEOUT)
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and offset:  # the partial file is already whole, or stale
            part.unlink()
            return download(url, dest, on_start, on_chunk)
        raise NetworkError(f"{url}: HTTP {exc.code} {exc.reason}") from None
    except (urllib.error.URLError, OSError, ValueError) as exc:
        raise NetworkError(f"cannot download {url}: {_reason(exc)}") from None
    with response:
        resumed = bool(offset) and getattr(response, "status", 200) == 206
        if not resumed:
            offset = 0
        length = response.headers.get("Content-Length")
        if on_start:
            on_start(offset + int(length) if length and length.isdigit() else None)
        if on_chunk and offset:
            on_chunk(offset)
        try:
            with open(part, "ab" if resumed else "wb") as out:
                while chunk := response.read(CHUNK):
                    out.write(chunk)
                    if on_chunk:
                        on_chunk(len(chunk))
        except (urllib.error.URLError, OSError) as exc:
            raise NetworkError(
                f"download of {url} broke off: {_reason(exc)}; run the command again to resume"
            ) from None
    shutil.move(part, dest)
    return dest


def _reason(exc: BaseException) -> str:
    reason = getattr(exc, "reason", None) or exc
    if isinstance(reason, socket.timeout):
        return f"no answer within {TIMEOUT:.0f} s"
    if isinstance(reason, socket.gaierror):
        return "host name not found (no network?)"
    if isinstance(reason, ConnectionRefusedError):
        return "connection refused"
    text = str(reason).strip() or reason.__class__.__name__
    return " ".join(text.split())
