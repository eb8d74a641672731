"""A user's own labelled corpus, in one of two layouts.

1. A CSV, ``<root>/labels.csv`` (or the file named by option ``csv``, relative to the
   root), with columns ``path,label[,speaker]``: paths relative to the root, labels as
   they are, speaker optional. A first row ``path,label[,speaker]`` is a header; columns
   are read in that order either way.
2. Otherwise one sub-folder per label: ``<root>/<label>/**/<file>`` for files whose
   extension is in option ``extensions`` (searched recursively).

Without a CSV or a speaker column every file's speaker is ``"unknown"``, so
speaker-independent protocols need the CSV. Labels are used as they are
(``label_map = None``); a job's ``dataset.label_map`` can map them into the unified space.
Audio is not read here: a listed file that is not audio is reported when it is loaded.
"""

from __future__ import annotations

import csv
from pathlib import Path, PurePosixPath

from pydantic import Field

from serbench import hookimpl
from serbench.data.base import BadFile, DatasetAdapter, Scan, Utterance
from serbench.errors import DataError
from serbench.spec import StrictModel

DEFAULT_CSV = "labels.csv"
UNKNOWN_SPEAKER = "unknown"


class FolderOptions(StrictModel):
    csv: str | None = Field(
        None, description="CSV of path,label[,speaker], relative to the root; default labels.csv if present."
    )
    extensions: list[str] = Field(
        default_factory=lambda: [".wav", ".flac", ".ogg", ".mp3"],
        description="Audio file extensions read in the sub-folder layout.",
    )


class Folder(DatasetAdapter):
    name = "folder"
    corpus_dir = "folder"
    classes = ()  # not known before a scan: the labels are the folder's own
    label_map = None
    fetch_hint = (
        "Point dataset.root at your corpus: one sub-folder per label, "
        "or a labels.csv with path,label[,speaker]."
    )
    Options = FolderOptions

    def __init__(self, options: FolderOptions | None = None):
        super().__init__(options)

    def scan(self, root: Path) -> Scan:
        if self.options.csv is not None:
            table = root / self.options.csv
            if not table.is_file():
                raise DataError(f"{table}: no such labels CSV (option csv)")
            return _from_csv(root, table)
        if (root / DEFAULT_CSV).is_file():
            return _from_csv(root, root / DEFAULT_CSV)
        extensions = {("" if e.startswith(".") else ".") + e.lower() for e in self.options.extensions}
        return _from_subfolders(root, extensions)


def _from_csv(root: Path, table: Path) -> Scan:
    try:
        with open(table, newline="", encoding="utf-8-sig") as handle:
            rows = list(csv.reader(handle))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise DataError(f"{table}: cannot read the labels CSV ({exc.__class__.__name__}: {exc})") from None
    if rows and [cell.strip().lower() for cell in rows[0][:2]] == ["path", "label"]:
        rows = [[]] + rows[1:]  # keep line numbers: row i is line i + 1
    utterances: dict[str, Utterance] = {}
    bad: list[BadFile] = []
    for number, row in enumerate(rows, start=1):
        cells = [cell.strip() for cell in row]
        if not any(cells):
            continue
        where = f"{table.name} line {number}"
        if len(cells) not in (2, 3) or not cells[0] or not cells[1]:
            bad.append(BadFile(table, f"{where}: expected path,label[,speaker], got {len(cells)} cells"))
            continue
        rel, label = cells[0], cells[1]
        speaker = cells[2] if len(cells) == 3 and cells[2] else UNKNOWN_SPEAKER
        path = root / rel
        key = PurePosixPath(rel.replace("\\", "/")).as_posix()
        if not path.is_file():
            bad.append(BadFile(path, f"listed in {where} but not found"))
        elif key in utterances:
            bad.append(BadFile(path, f"listed twice (again in {where})"))
        else:
            utterances[key] = Utterance(id=key, path=path, label=label, speaker=speaker)
    if not utterances and not bad:
        raise DataError(f"{table}: lists no files")
    return Scan(sorted(utterances.values(), key=lambda u: u.id), bad)


def _from_subfolders(root: Path, extensions: set[str]) -> Scan:
    folders = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    utterances: list[Utterance] = []
    bad: list[BadFile] = []
    for path in sorted(root.iterdir()):
        if path.is_file() and path.suffix.lower() in extensions:
            bad.append(BadFile(path, "not in a label sub-folder (expected <root>/<label>/<file>)"))
    for folder in folders:
        for path in sorted(folder.rglob("*")):
            if path.is_file() and path.suffix.lower() in extensions and not _hidden(path, root):
                rel = path.relative_to(root).as_posix()
                utterances.append(Utterance(id=rel, path=path, label=folder.name, speaker=UNKNOWN_SPEAKER))
    if not utterances and not bad:
        raise DataError(
            f"{root}: holds neither {DEFAULT_CSV} nor label sub-folders with audio files "
            f"({', '.join(sorted(extensions))})"
        )
    return Scan(sorted(utterances, key=lambda u: u.id), bad)


def _hidden(path: Path, root: Path) -> bool:
    return any(part.startswith(".") for part in path.relative_to(root).parts)


@hookimpl
def serbench_datasets():
    return [Folder]
