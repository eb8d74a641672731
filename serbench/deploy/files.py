"""The audio files a list of command-line paths names: files as given, folders searched
recursively for the extensions libsndfile reads (``.wav``, ``.flac``, ``.ogg``, ...),
in sorted order, each file once."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

from serbench.errors import DataError


def audio_extensions() -> set[str]:
    """Lower-case extensions (with the dot) of the formats soundfile reads here, plus aliases."""
    import soundfile as sf

    found = {f".{name.lower()}" for name in sf.available_formats()}
    return found | {".aif", ".oga", ".opus"}


def audio_files(paths: Sequence[Path]) -> list[Path]:
    """Every file named, and every audio file below every folder named. A folder without
    audio is bad input (``DataError``); a path that does not exist is kept, so the one
    reading it reports it with the others that fail."""
    extensions = audio_extensions()
    found: list[Path] = []
    for path in paths:
        if path.is_dir():
            inside = sorted(p for p in path.rglob("*") if p.suffix.lower() in extensions and p.is_file())
            if not inside:
                raise DataError(f"{path}: no audio files in this folder (looked for {', '.join(sorted(extensions))})")
            found += inside
        else:
            found.append(path)
    seen: set[Path] = set()
    return [p for p in found if not (p in seen or seen.add(p))]
