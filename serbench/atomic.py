"""The one atomic writer: a file is written to a temporary file in its own folder and
renamed over the target, so a reader (or a study resumed after a crash) sees the old
file or the new one, never half of one. Results, the trials journal, the in-flight
marker and the feature cache all write through it.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any


@contextmanager
def atomic_file(path: Path, mode: str = "wb", durable: bool = True) -> Iterator[IO[Any]]:
    """A handle to write ``path``'s new content to (``mode`` ``"wb"`` or ``"w"``, UTF-8).
    On a clean exit the content is flushed (and fsync-ed when ``durable``) and renamed over
    ``path``; on an error the temporary file is removed and ``path`` is left as it was.
    Caches pass ``durable=False``: a lost write there costs a recomputation, not a result.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, mode, **({} if "b" in mode else {"encoding": "utf-8"})) as handle:
            yield handle
            handle.flush()
            if durable:
                os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def write_bytes(path: Path, data: bytes, durable: bool = True) -> None:
    with atomic_file(path, "wb", durable) as handle:
        handle.write(data)


def write_text(path: Path, text: str, durable: bool = True) -> None:
    with atomic_file(path, "w", durable) as handle:
        handle.write(text)


def write_json(path: Path, data: Any) -> None:
    """``data`` as indented JSON with a final newline (result.json, study.json, markers)."""
    write_text(path, json.dumps(data, indent=2) + "\n")
