"""``serbench data check``: verify a corpus copy with its adapter, file by file.

:func:`check_corpus` scans the copy, reads every file exactly as a study would
(:func:`serbench.data.corpus.load_clip`: decodable, at least 0.1 s long), compares each file
the manifest lists with its sha256, and returns a :class:`CheckReport`. It raises only when the folder is not the
corpus at all (the adapter's ``DataError``); every per-file problem goes into the report.
A copy is clean when no file is bad and no checksum differs. Listed files that are absent
are counted, not failed: a subset (``ravdess-mini``) is a legitimate copy, and
``data fetch`` is what guarantees completeness. The report is data (``as_json``); the
command line renders it (:mod:`serbench.cli.data`).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from serbench.data.base import BadFile, DatasetAdapter
from serbench.data.corpus import load_clip
from serbench.data.labels import map_labels
from serbench.data.manifest import Manifest, matches
from serbench.data.progress import SILENT, Progress
from serbench.errors import DataError


@dataclass
class CheckReport:
    """What ``check_corpus`` found. ``classes`` counts readable utterances by the
    corpus's own labels, ``mapped`` by the class the label map gives them."""

    corpus: str
    root: Path
    utterances: int = 0
    classes: dict[str, int] = field(default_factory=dict)
    label_map: dict[str, str | None] = field(default_factory=dict)
    mapped: dict[str, int] = field(default_factory=dict)
    dropped: dict[str, int] = field(default_factory=dict)
    speakers: dict[str, int] = field(default_factory=dict)
    sample_rates: dict[int, int] = field(default_factory=dict)
    channels: dict[int, int] = field(default_factory=dict)
    duration_seconds: float = 0.0
    manifest: str | None = None
    checksum_ok: int = 0
    checksum_mismatch: list[Path] = field(default_factory=list)
    unlisted: int = 0
    absent: int = 0
    bad: list[BadFile] = field(default_factory=list)

    @property
    def clean(self) -> bool:
        return not self.bad and not self.checksum_mismatch

    def as_json(self) -> dict[str, Any]:
        return {
            "corpus": self.corpus,
            "root": str(self.root),
            "clean": self.clean,
            "utterances": self.utterances,
            "classes": self.classes,
            "label_map": self.label_map,
            "mapped": self.mapped,
            "dropped": self.dropped,
            "speakers": self.speakers,
            "sample_rates": {str(rate): n for rate, n in self.sample_rates.items()},
            "channels": {str(ch): n for ch, n in self.channels.items()},
            "duration_seconds": round(self.duration_seconds, 3),
            "checksums": {
                "manifest": self.manifest,
                "ok": self.checksum_ok,
                "mismatch": [str(p) for p in self.checksum_mismatch],
                "unlisted": self.unlisted,
                "absent": self.absent,
            },
            "bad": [{"path": str(b.path), "reason": b.reason} for b in self.bad],
        }


def check_corpus(
    adapter: DatasetAdapter,
    root: Path,
    manifest: Manifest | None = None,
    label_map: dict[str, str | None] | None = None,
    progress: Progress = SILENT,
) -> CheckReport:
    """Check the copy of ``adapter``'s corpus at ``root``. ``label_map`` replaces the
    adapter's (as a job's ``dataset.label_map`` does); with neither, labels map to
    themselves."""
    import soundfile as sf

    scan = adapter.scan(root)
    report = CheckReport(adapter.name, root, manifest=manifest.source if manifest else None)
    report.bad = list(scan.bad)
    report.label_map = dict(label_map or adapter.label_map or {u.label: u.label for u in scan.utterances})
    unknown = {b.path for b in map_labels(scan.utterances, report.label_map).unknown}
    readable = []
    task = progress.task("reading audio", len(scan.utterances))
    for utt in scan.utterances:
        task.advance()
        if utt.path in unknown:
            report.bad.append(BadFile(utt.path, f"label {utt.label!r} is not in the label map"))
            continue
        try:
            load_clip(utt)  # first: its errors are the ones a study would give
            info = sf.info(str(utt.path))
        except (DataError, sf.LibsndfileError, RuntimeError, OSError) as exc:
            report.bad.append(BadFile(utt.path, _without_path(str(exc), utt.path)))
            continue
        readable.append(utt)
        report.sample_rates[info.samplerate] = report.sample_rates.get(info.samplerate, 0) + 1
        report.channels[info.channels] = report.channels.get(info.channels, 0) + 1
        report.duration_seconds += info.frames / info.samplerate
    if manifest is not None:
        paths = sorted({u.path for u in scan.utterances} | {b.path for b in scan.bad})
        task = progress.task("checksums", len(paths))
        for path in paths:
            _compare(report, manifest, root, path)
            task.advance()
        on_disk = {_rel(u.path, root) for u in scan.utterances} | {_rel(b.path, root) for b in scan.bad}
        report.absent = sum(1 for p in manifest.entries if p not in on_disk)
    report.utterances = len(readable)
    counts = Counter(u.label for u in readable)
    order = [c for c in adapter.classes if c in counts] + sorted(set(counts) - set(adapter.classes))
    report.classes = {label: counts[label] for label in order}
    report.speakers = dict(sorted(Counter(u.speaker for u in readable).items()))
    mapped = map_labels(readable, report.label_map)
    report.mapped = dict(sorted(Counter(u.label for u in mapped.utterances).items()))
    report.dropped = mapped.dropped
    report.sample_rates = dict(sorted(report.sample_rates.items()))
    report.channels = dict(sorted(report.channels.items()))
    report.bad.sort(key=lambda b: str(b.path))
    return report


def _compare(report: CheckReport, manifest: Manifest, root: Path, path: Path) -> None:
    entry = manifest.get(_rel(path, root))
    if not path.is_file():
        return
    if entry is None:
        report.unlisted += 1
    elif matches(path, entry):
        report.checksum_ok += 1
    else:
        report.checksum_mismatch.append(path)


def _rel(path: Path, root: Path) -> str:
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return path.as_posix()


def _without_path(message: str, path: Path) -> str:
    prefix = f"{path}: "
    return message[len(prefix) :] if message.startswith(prefix) else message
