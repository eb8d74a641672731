"""``serbench data fetch|check NAME``: the command line of :mod:`serbench.data.fetch` and
:mod:`serbench.data.check`, and their rendering (progress bars, the check summary, the
one-line errors).

``NAME`` is a dataset adapter in the plugin registry: it declares where its corpus is
downloaded from (``source``) and which checksums it ships (``manifest``), so a third-party
corpus plugin is fetched and checked like a built-in. ``fetch`` prints what it left and
the corpus's license, exit 0; ``check`` prints a summary (or ``--json`` the report) and
exits 0 when the copy is clean. Bad input, an unreachable host, a checksum that differs or
a bad file: exit 2 with one line on stderr. Heavy imports happen inside the handlers.
"""

from __future__ import annotations

import argparse
import json
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Iterator

from serbench.errors import DataError, UserError

if TYPE_CHECKING:
    from rich.console import Console

    from serbench.data.base import DatasetAdapter
    from serbench.data.check import CheckReport
    from serbench.data.manifest import Manifest
    from serbench.data.progress import Progress


NAME = "data"


def add_parser(commands: argparse._SubParsersAction) -> None:
    data = commands.add_parser(NAME, help="download (fetch) or verify (check) a corpus")
    actions = data.add_subparsers(dest="data_command", metavar="ACTION", parser_class=type(data))

    fetch = actions.add_parser("fetch", help="download a corpus from its official source and verify every file")
    fetch.add_argument("name", help="a dataset adapter with a download source: emodb, ravdess, cremad, ...")
    fetch.add_argument("--root", type=Path, help="corpus folder to fill (default $SERBENCH_DATA/<name>)")
    fetch.add_argument("--url", help="a mirror: the archive's URL, or for a per-file source (cremad) a URL template with {path}")
    fetch.add_argument("--archive", type=Path, help="a zip already on disk instead of downloading")
    fetch.add_argument("--manifest", type=Path, help="verify against this sha256 manifest instead of the shipped one")

    check = actions.add_parser("check", help="scan a corpus copy, read every file, verify checksums")
    check.add_argument("name", help="a dataset adapter: emodb, ravdess, cremad, folder, ...")
    check.add_argument("--root", type=Path, help="corpus folder (default $SERBENCH_DATA/<corpus folder>)")
    check.add_argument("--manifest", type=Path, help="sha256 manifest to verify against (default: the shipped one)")
    check.add_argument("--json", action="store_true", help="print the report as JSON")


def run(args: argparse.Namespace) -> int:
    if args.data_command == "fetch":
        return _fetch(args)
    if args.data_command == "check":
        return _check(args)
    raise UserError("serbench data: name an action (fetch, check); see serbench data --help")


def _fetch(args: argparse.Namespace) -> int:
    from rich.console import Console

    from serbench.data.base import default_data_home
    from serbench.data.fetch import fetch
    from serbench.data.sources import declared
    from serbench.plugin.registry import registry

    fetchable = {e.name: e.cls for e in registry().entries("dataset") if getattr(e.cls, "source", None) is not None}
    adapter = fetchable.get(args.name)
    if adapter is None:
        raise UserError(
            f"serbench data fetch: no download source for {args.name!r}; available: {', '.join(fetchable) or 'none'}"
        )
    if args.url and args.archive:
        raise UserError("serbench data fetch: give --url or --archive, not both")
    source = declared(adapter)
    root = (args.root or default_data_home() / adapter.corpus_dir).expanduser()
    manifest = _manifest(args.manifest, adapter)
    with progress_bars(Console(stderr=True)) as progress:
        done = fetch(source, root, manifest, url=args.url, archive=args.archive, name=adapter.name, progress=progress)
    state = "already complete" if done.already else "fetched"
    print(f"{adapter.name}: {state}, {done.files} files ({done.size / 1e6:.1f} MB) in {root} match the manifest")
    print(f"license: {source.license}")
    return 0


def _check(args: argparse.Namespace) -> int:
    from rich.console import Console

    from serbench.data.base import resolve_root
    from serbench.data.check import check_corpus
    from serbench.data.manifest import load, shipped
    from serbench.plugin.registry import registry

    adapter_cls = registry().get("dataset", args.name).cls
    root = resolve_root(adapter_cls, args.root)
    manifest = load(args.manifest) if args.manifest else shipped(adapter_cls)  # None: not verified
    with progress_bars(Console(stderr=True)) as progress:
        report = check_corpus(adapter_cls(), root, manifest, progress=progress)
    if args.json:
        print(json.dumps(report.as_json(), indent=2))
    else:
        render_check(report, Console())
    if not report.clean:
        raise DataError(check_problem(report))
    return 0


def _manifest(path: Path | None, adapter: "type[DatasetAdapter]") -> "Manifest":
    """The manifest at ``path``, else the one the adapter ships."""
    from serbench.data.manifest import load, shipped

    if path is not None:
        return load(path)
    manifest = shipped(adapter)
    if manifest is None:
        raise DataError(f"no manifest ships for {adapter.name}; pass --manifest FILE")
    return manifest


# --- rendering ---------------------------------------------------------------------------


@contextmanager
def progress_bars(console: "Console") -> "Iterator[Progress]":
    """A :class:`serbench.data.progress.Progress` drawn as transient rich bars on a
    terminal; nothing at all otherwise, so that a failure leaves just the one-line error
    on stderr."""
    from rich.progress import BarColumn, DownloadColumn, MofNCompleteColumn, ProgressColumn, TextColumn
    from rich.progress import Progress as Bars
    from rich.progress import TimeRemainingColumn

    from serbench.data.progress import Progress, Task

    class Count(ProgressColumn):
        """Bytes for a download, ``done/total`` for files."""

        def __init__(self) -> None:
            super().__init__()
            self.bytes, self.files = DownloadColumn(), MofNCompleteColumn()

        def render(self, task):
            return (self.bytes if task.fields.get("unit") == "bytes" else self.files).render(task)

    class Bar(Task):
        def __init__(self, bars: Bars, task_id) -> None:
            self.bars, self.task_id = bars, task_id

        def advance(self, count: int = 1) -> None:
            self.bars.advance(self.task_id, count)

        def set_total(self, total: int | None) -> None:
            self.bars.update(self.task_id, total=total)

    class Shown(Progress):
        def __init__(self, bars: Bars) -> None:
            self.bars = bars

        def task(self, description: str, total: int | None = None, unit: str = "files") -> Task:
            return Bar(self.bars, self.bars.add_task(description, total=total, unit=unit))

    bars = Bars(
        TextColumn("{task.description}"),
        BarColumn(),
        Count(),
        TimeRemainingColumn(),
        console=console,
        transient=True,
        disable=not console.is_terminal,
    )
    with bars:
        yield Shown(bars)


def check_problem(report: "CheckReport") -> str:
    """One line for the CLI's error: how many problems, and the first one."""
    parts = []
    if report.bad:
        parts.append(f"{len(report.bad)} bad file{_s(report.bad)}")
    if report.checksum_mismatch:
        mismatches = len(report.checksum_mismatch)
        parts.append(f"{mismatches} checksum mismatch{'es' if mismatches > 1 else ''}")
    first = (
        f"{report.bad[0].path}: {report.bad[0].reason}"
        if report.bad
        else f"{report.checksum_mismatch[0]}: sha256 differs from {report.manifest}"
    )
    return f"{report.corpus} at {report.root}: {' and '.join(parts)}, first {first}"


def render_check(report: "CheckReport", console: "Console") -> None:
    """The human summary: one headline, a table of classes, then every problem by path."""
    from rich.markup import escape
    from rich.table import Table

    headline = (
        f"[bold]{escape(report.corpus)}[/] at {escape(str(report.root))}: {_count(report.utterances, 'utterance')}, "
        f"{_count(len(report.classes), 'class')}, {_count(len(report.speakers), 'speaker')}, "
        f"{_duration(report.duration_seconds)} of audio"
    )
    console.print(headline, soft_wrap=True, highlight=False)
    classes = Table(show_edge=False, box=None, padding=(0, 2))
    classes.add_column("label")
    classes.add_column("files", justify="right")
    classes.add_column("class")
    for label, count in report.classes.items():
        target = report.label_map.get(label)
        classes.add_row(escape(label), str(count), escape(target) if target is not None else "[dim]dropped[/]")
    console.print(classes)
    lines = [
        ("speakers", ", ".join(f"{s} ({n})" for s, n in report.speakers.items()) or "none"),
        ("sample rates", ", ".join(f"{rate} Hz: {n}" for rate, n in report.sample_rates.items()) or "none"),
        ("channels", ", ".join(f"{_channels(ch)}: {n}" for ch, n in report.channels.items()) or "none"),
    ]
    if any(source != target for source, target in report.label_map.items()):
        kept = sum(report.mapped.values())
        lines.append(("after the label map", f"{kept} utterances in {len(report.mapped)} classes"))
    if report.dropped:
        lines.append(("dropped by the label map", ", ".join(f"{k} ({n})" for k, n in report.dropped.items())))
    if report.manifest:
        lines.append(
            (
                "checksums",
                f"{report.checksum_ok} ok, {len(report.checksum_mismatch)} mismatch, {report.unlisted} unlisted, "
                f"{report.absent} listed but absent ({report.manifest})",
            )
        )
    else:
        lines.append(("checksums", "no manifest for this corpus: not verified"))
    lines.append(("bad files", str(len(report.bad))))
    for key, value in lines:
        console.print(f"{key}: {value}", soft_wrap=True, highlight=False, markup=False)
    for bad in report.bad:
        console.print(f"  bad: {bad.path}: {bad.reason}", soft_wrap=True, highlight=False, markup=False)
    for path in report.checksum_mismatch:
        console.print(f"  checksum mismatch: {path}", soft_wrap=True, highlight=False, markup=False)


def _duration(seconds: float) -> str:
    minutes, rest = divmod(seconds, 60)
    return f"{int(minutes)} min {rest:.1f} s" if minutes else f"{rest:.1f} s"


def _channels(count: int) -> str:
    return {1: "mono", 2: "stereo"}.get(count, f"{count} channels")


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}{'es' if noun.endswith('s') else 's'}"


def _s(items: list) -> str:
    return "" if len(items) == 1 else "s"
