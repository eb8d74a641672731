"""The in-flight marker: which trials a study has asked for and not yet journalled.

``<out>/<job>/inflight.json`` (written atomically) lists every trial submitted and not
yet in ``trials.jsonl``: its fold, number, parameters, ``asked_after`` (tells its fold
had received when it was asked), start time and the fold's search seconds at its
start. A trial leaves the marker once it is journalled; the file is removed when no
trial is left. A marker left behind therefore names the trials a stopped or killed
driver had in flight:

- the supervisor (:mod:`serbench.execution.supervisor`), with the study's process dead
  from the memory limit, journals the one trial in flight as failed with reason ``oom``
  (:func:`journal_lost_trial`);
- ``--resume`` re-asks each of them at its place between the journalled tells, so an
  engine is replayed exactly as it ran (:mod:`serbench.study.replay`).
"""

from __future__ import annotations

import json
import os
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from serbench import atomic
from serbench.results.journal import TrialJournal
from serbench.results.schema import TrialRecord

INFLIGHT_FILE = "inflight.json"


class InflightMarker:
    """``inflight.json`` of one study folder; only the study's driver writes it."""

    def __init__(self, path: Path):
        self.path = path
        self._trials: dict[tuple[int, int], dict[str, Any]] = {}

    def start(
        self, fold: int, number: int, params: dict[str, Any], cumulative_s: float, asked_after: int | None = None
    ) -> None:
        """Mark trial ``number`` of ``fold`` as in flight; ``cumulative_s`` is the fold's
        search time when it started (so a failed record continues the fold's clock)."""
        self._trials[(fold, number)] = {
            "fold": fold,
            "number": number,
            "params": params,
            "asked_after": number if asked_after is None else asked_after,
            "started_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "started_epoch": time.time(),
            "cumulative_s": cumulative_s,
        }
        self._write()

    def finish(self, fold: int, number: int) -> None:
        """Trial ``number`` of ``fold`` is journalled (or will not be): unmark it."""
        if self._trials.pop((fold, number), None) is not None:
            self._write()

    def clear(self) -> None:
        """Forget every trial and remove the file."""
        self._trials = {}
        self.path.unlink(missing_ok=True)

    def read(self) -> list[dict[str, Any]]:
        """The trials in the marker (none when there is no marker, or it cannot be read:
        a marker is written atomically, so that means it was never there). A marker of
        one trial written before markers listed several is read as that trial."""
        try:
            value = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return []
        if isinstance(value, dict) and isinstance(value.get("trials"), list):
            return [t for t in value["trials"] if isinstance(t, dict)]
        return [value] if isinstance(value, dict) and "number" in value else []

    def _write(self) -> None:
        if not self._trials:
            self.path.unlink(missing_ok=True)
            return
        atomic.write_json(self.path, {"pid": os.getpid(), "trials": list(self._trials.values())})


def journal_lost_trial(out_dir: Path, reason: str, error: str, now: float | None = None) -> TrialRecord | None:
    """Journal the one trial the marker in ``out_dir`` names as failed (``reason``,
    ``error``) and remove the marker. Call only when the study's process is dead.

    The record's duration runs from the marker's start time to ``now`` (default: the
    current time). Returns the record, or None -- and only the marker is removed --
    when there was no marker, when it names several trials (which of them took the
    memory cannot be told: ``--resume`` runs them all again), or when its trial is
    already journalled. A last journal line cut short by the crash is dropped.
    """
    marker = InflightMarker(out_dir / INFLIGHT_FILE)
    states = marker.read()
    if len(states) != 1:
        marker.clear()
        return None
    state = states[0]
    journal = TrialJournal(out_dir / "trials.jsonl")
    records = journal.read()
    try:
        fold, number = int(state["fold"]), int(state["number"])
        if any(r.fold == fold and r.number == number for r in records):
            marker.clear()
            return None
        duration = max(0.0, (time.time() if now is None else now) - float(state["started_epoch"]))
        asked_after = state.get("asked_after")
        record = TrialRecord(
            fold=fold,
            number=number,
            params=dict(state["params"]),
            status="failed",
            reason=reason,
            error=error,
            duration_s=duration,
            cumulative_s=max(0.0, float(state["cumulative_s"])) + duration,
            asked_after=None if asked_after is None else int(asked_after),
        )
    except (KeyError, TypeError, ValueError):
        marker.clear()
        return None
    journal.rewrite(records + [record])
    marker.clear()
    return record
