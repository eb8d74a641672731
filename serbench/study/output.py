"""The study's folder, ``<out>/<job>/``: ``study.json`` (the fingerprint of the spec the
journal belongs to), ``trials.jsonl`` (the journal), ``inflight.json`` (the trial
running now, :mod:`serbench.results.inflight`), at the end ``result.json``, and, while
a run drives it, ``run.lock`` (:mod:`serbench.results.lock`).

A folder holds one study: a fresh one, or (``--resume``) the journal of the same spec,
never a mix; and one run writes it at a time: :meth:`StudyOutput.check` takes the
folder's lock before it reads anything there, :meth:`StudyOutput.close` releases it.
"""

from __future__ import annotations

import hashlib
import json
from datetime import datetime, timezone
from pathlib import Path

from serbench import atomic
from serbench.errors import UserError
from serbench.results.inflight import INFLIGHT_FILE, InflightMarker
from serbench.results.journal import TrialJournal
from serbench.results.lock import FolderLock
from serbench.results.schema import Result, TrialRecord
from serbench.spec import JobSpec

STUDY_FILE = "study.json"  # fingerprint of the spec a journal belongs to
JOURNAL_FILE = "trials.jsonl"
RESULT_FILE = "result.json"


def spec_fingerprint(spec: JobSpec) -> str:
    """The sha256 of the spec without ``execution`` (where trials run changes no result)."""
    text = json.dumps(spec.fingerprint_data(), sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


class StudyOutput:
    """One study's folder (created, empty, with the journal object) and its lock."""

    def __init__(self, out_dir: Path, spec: JobSpec):
        self.dir = out_dir
        self.spec = spec
        self.journal = TrialJournal(out_dir / JOURNAL_FILE)
        self.inflight = InflightMarker(out_dir / INFLIGHT_FILE)
        self.study_file = out_dir / STUDY_FILE
        self.result_file = out_dir / RESULT_FILE
        self.lock = FolderLock(out_dir)

    def check(self, force: bool, resume: bool) -> list[TrialRecord]:
        """Lock the folder (:class:`~serbench.errors.FolderInUse` when another run holds
        it, whatever ``force`` says; nothing when the driver that started this process
        holds it), then: a fresh folder, or (``resume``) the journal of the same spec;
        never a mix. Returns the journalled trials to resume from (none unless
        ``resume``); writes nothing but the lock file (released on a refusal)."""
        self.lock.acquire()
        try:
            return self._check(force, resume)
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        """Release the folder's lock (removing the lock file); safe to call again."""
        self.lock.release()

    def _check(self, force: bool, resume: bool) -> list[TrialRecord]:
        # the lock file is not an earlier study: a killed run leaves it behind, unlocked
        existing = [p for p in (self.journal.path, self.result_file, self.study_file) if p.exists()]
        if resume:
            if not self.study_file.exists():
                raise UserError(f"{self.dir}: nothing to resume (no {STUDY_FILE}); run without --resume")
            if json.loads(self.study_file.read_text()).get("spec_sha256") != spec_fingerprint(self.spec):
                raise UserError(f"{self.dir}: the job spec changed since the study started; cannot resume it")
            return self.journal.read()
        if existing and not force:
            raise UserError(
                f"{self.dir} already holds results of job {self.spec.name!r}; "
                "pass --resume to continue it, --force to replace it, or --out to write elsewhere"
            )
        return []

    def start(self, resume: bool, done: list[TrialRecord]) -> None:
        """Lay out the folder for this study (after everything else was prepared):
        resuming, the journal keeps ``done``; otherwise it starts empty under a new
        ``study.json``."""
        self.dir.mkdir(parents=True, exist_ok=True)
        self.result_file.unlink(missing_ok=True)
        self.inflight.clear()  # stale: its trial runs again
        if resume:
            self.journal.rewrite(done)  # drops a line cut short by a crash
            return
        self.journal.path.unlink(missing_ok=True)
        atomic.write_json(
            self.study_file,
            {"job": self.spec.name, "spec_sha256": spec_fingerprint(self.spec), "started_at": now()},
        )

    def write_result(self, result: Result) -> None:
        atomic.write_json(self.result_file, result.model_dump(mode="json"))
