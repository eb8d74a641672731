"""``serbench data fetch|check``: the command line of :mod:`serbench.data.fetch` and
:mod:`serbench.data.check`. Heavy imports happen inside the handlers."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import TYPE_CHECKING

from serbench.errors import DataError, UserError

if TYPE_CHECKING:
    from serbench.data.manifest import Manifest


def add_data_parser(commands: argparse._SubParsersAction) -> None:
    data = commands.add_parser("data", help="download (fetch) or verify (check) a corpus")
    actions = data.add_subparsers(dest="data_command", metavar="ACTION", parser_class=type(data))

    fetch = actions.add_parser("fetch", help="download a corpus from its official source and verify every file")
    fetch.add_argument("name", help="emodb, ravdess or cremad")
    fetch.add_argument("--root", type=Path, help="corpus folder to fill (default $SERBENCH_DATA/<name>)")
    fetch.add_argument("--url", help="a mirror: the archive's URL, or for cremad a URL template with {path}")
    fetch.add_argument("--archive", type=Path, help="a zip already on disk instead of downloading")
    fetch.add_argument("--manifest", type=Path, help="verify against this sha256 manifest instead of the shipped one")

    check = actions.add_parser("check", help="scan a corpus copy, read every file, verify checksums")
    check.add_argument("name", help="a dataset adapter: emodb, ravdess, cremad, folder, ...")
    check.add_argument("--root", type=Path, help="corpus folder (default $SERBENCH_DATA/<corpus folder>)")
    check.add_argument("--manifest", type=Path, help="sha256 manifest to verify against (default: the shipped one)")
    check.add_argument("--json", action="store_true", help="print the report as JSON")


def cmd_data(args: argparse.Namespace) -> int:
    if args.data_command == "fetch":
        return _fetch(args)
    if args.data_command == "check":
        return _check(args)
    raise UserError("serbench data: name an action (fetch, check); see serbench data --help")


def _fetch(args: argparse.Namespace) -> int:
    from serbench.data.sources import SOURCES
    from serbench.data.base import default_data_home
    from serbench.data.fetch import fetch
    from serbench.plugin.registry import registry

    source = SOURCES.get(args.name)
    if source is None:
        raise UserError(f"serbench data fetch: no download source for {args.name!r}; available: {', '.join(SOURCES)}")
    if args.url and args.archive:
        raise UserError("serbench data fetch: give --url or --archive, not both")
    adapter = registry().get("dataset", source.name).cls
    root = (args.root or default_data_home() / adapter.corpus_dir).expanduser()
    done = fetch(source, root, _manifest(args.manifest, source.name), url=args.url, archive=args.archive)
    state = "already complete" if done.already else "fetched"
    print(f"{source.name}: {state}, {done.files} files ({done.size / 1e6:.1f} MB) in {root} match the manifest")
    print(f"license: {source.license}")
    return 0


def _check(args: argparse.Namespace) -> int:
    from rich.console import Console

    from serbench.data.check import check_corpus, render
    from serbench.data.base import resolve_root
    from serbench.data.manifest import load, shipped
    from serbench.plugin.registry import registry

    adapter_cls = registry().get("dataset", args.name).cls
    root = resolve_root(adapter_cls, args.root)
    manifest = load(args.manifest) if args.manifest else shipped(adapter_cls.name)  # None: not verified
    report = check_corpus(adapter_cls(), root, manifest)
    if args.json:
        print(json.dumps(report.as_json(), indent=2))
    else:
        render(report, Console())
    if not report.clean:
        raise DataError(report.problem())
    return 0


def _manifest(path: Path | None, name: str) -> "Manifest":
    """The manifest at ``path``, else the one serbench ships for ``name``."""
    from serbench.data.manifest import load, shipped

    if path is not None:
        return load(path)
    manifest = shipped(name)
    if manifest is None:
        raise DataError(f"no manifest ships for {name}; pass --manifest FILE")
    return manifest
