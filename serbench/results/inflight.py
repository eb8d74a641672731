"""The in-flight marker: which trial a study is running right now.

Before a trial starts, the study writes ``<out>/<job>/inflight.json`` (atomically): its
fold, number, parameters, start time and the fold's search seconds at its start. The
marker is removed once the trial is journalled in ``trials.jsonl`` (or the study stops
with an error or an interruption). A marker left behind therefore means the process
died in the middle of that trial; the supervisor (:mod:`serbench.execution.supervisor`) reads it
to journal a trial killed by the memory limit as failed with reason ``oom``.

Only the study writes the marker; only the supervisor (with the study's process dead)
turns it into a journal record. A study that starts or resumes removes a stale one.
"""

from __future__ import annotations

import json
import os
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from serbench.results.schema import TrialRecord

from serbench import atomic

from serbench.results.journal import TrialJournal

INFLIGHT_FILE = "inflight.json"


class InflightMarker:
    """``inflight.json`` of one study folder."""

    def __init__(self, path: Path):
        self.path = path

    def start(self, fold: int, number: int, params: dict[str, Any], cumulative_s: float) -> None:
        """Mark trial ``number`` of ``fold`` as running; ``cumulative_s`` is the fold's
        search time when it started (so a failed record continues the fold's clock)."""
        atomic.write_json(
            self.path,
            {
                "fold": fold,
                "number": number,
                "params": params,
                "started_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                "started_epoch": time.time(),
                "cumulative_s": cumulative_s,
                "pid": os.getpid(),
            },
        )

    def clear(self) -> None:
        self.path.unlink(missing_ok=True)

    def read(self) -> dict[str, Any] | None:
        """The marker's content; None when there is none (or it cannot be read: a marker
        is written atomically, so that means it was never there)."""
        try:
            value = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        return value if isinstance(value, dict) else None


def journal_lost_trial(out_dir: Path, reason: str, error: str, now: float | None = None) -> TrialRecord | None:
    """Journal the trial the marker in ``out_dir`` names as failed (``reason``, ``error``)
    and remove the marker. Call only when the study's process is dead.

    The record's duration runs from the marker's start time to ``now`` (default: the
    current time). Returns the record, or None when there was no marker, or when its
    trial is already journalled or is not the next trial of its fold (then only the
    marker is removed). A last journal line cut short by the crash is dropped.
    """
    marker = InflightMarker(out_dir / INFLIGHT_FILE)
    state = marker.read()
    if state is None:
        marker.clear()
        return None
    journal = TrialJournal(out_dir / "trials.jsonl")
    records = journal.read()
    try:
        fold, number = int(state["fold"]), int(state["number"])
        done = [r.number for r in records if r.fold == fold]
        if number in done or number != len(done):
            marker.clear()
            return None
        duration = max(0.0, (time.time() if now is None else now) - float(state["started_epoch"]))
        record = TrialRecord(
            fold=fold,
            number=number,
            params=dict(state["params"]),
            status="failed",
            reason=reason,
            error=error,
            duration_s=duration,
            cumulative_s=max(0.0, float(state["cumulative_s"])) + duration,
        )
    except (KeyError, TypeError, ValueError):
        marker.clear()
        return None
    journal.rewrite(records + [record])
    marker.clear()
    return record
