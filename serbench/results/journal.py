"""The trials journal, ``trials.jsonl``: one line per finished trial, appended and
flushed as it ends, read back by ``--resume``."""

from __future__ import annotations

import os
from pathlib import Path

from serbench import atomic
from serbench.results.schema import TrialRecord


class TrialJournal:
    """Append-only ``trials.jsonl``: each finished trial is flushed to disk at once, so a
    crash loses at most the trial in flight."""

    def __init__(self, path: Path):
        self.path = path  # nothing is created before the first write (the folder's lock comes first)

    def append(self, record: TrialRecord) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a", encoding="utf-8") as handle:
            handle.write(record.model_dump_json() + "\n")
            handle.flush()
            os.fsync(handle.fileno())

    def rewrite(self, records: list[TrialRecord]) -> None:
        """Replace the journal with ``records`` (drops a line cut short by a crash)."""
        atomic.write_text(self.path, "".join(r.model_dump_json() + "\n" for r in records))

    def read(self) -> list[TrialRecord]:
        """The journalled trials; a last line cut short by a crash is ignored."""
        if not self.path.exists():
            return []
        lines = [line for line in self.path.read_text(encoding="utf-8").splitlines() if line.strip()]
        records = []
        for index, line in enumerate(lines):
            try:
                records.append(TrialRecord.model_validate_json(line))
            except ValueError:
                if index == len(lines) - 1:
                    break
                raise
        return records
