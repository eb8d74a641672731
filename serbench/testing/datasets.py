"""The dataset adapter contract as a test kit, for corpus plugin authors and for
serbench's own adapters.

The author lists a few paths of a tiny corpus in the adapter's layout, each with what
the adapter must make of it, and one test checks every clause of the contract::

    from serbench.testing.datasets import check_adapter
    from acme_corpus import AcmeCorpus

    def test_acme_keeps_the_adapter_contract():
        check_adapter(AcmeCorpus, {
            "clips/s01_joy_1.wav": ("joy", "s01"),    # an utterance: (label, speaker), as the corpus names them
            "clips/s02_rage_1.wav": ("rage", "s02"),
            "clips/take 2.wav": "not an Acme file name",  # must be reported bad, the reason containing this
        })

or one test per clause, so a report lists each clause that broke::

    from serbench.testing.datasets import adapter_contract_test

    test_acme_contract = adapter_contract_test(AcmeCorpus, FILES)

(``CONTRACT_CHECKS`` holds the checks, for a parametrisation of your own.)

Each check writes the corpus into a fresh temporary folder: every listed path as a real
audio file (0.5 s of a tone at 16 kHz, mono, 16-bit, its pitch set by its path, so no
two files are alike; WAV, or FLAC/OGG for those extensions), and the ``extra`` files (path -> text or bytes: a labels CSV, a note the
adapter must ignore) as given. A path listed in both is written from ``extra`` (a CSV the
adapter must report bad, say). A broken clause raises ``AdapterContractError`` (an
:class:`~serbench.testing.contract.ContractError`, so an ``AssertionError``) saying which
clause and what was seen. The clauses:

- ``check_declaration``: a ``DatasetAdapter`` subclass with a non-empty ``name`` and
  ``corpus_dir``; ``classes`` a tuple of distinct labels; ``label_map`` (unless
  ``None``) maps every class, each to a class of the unified space
  (:data:`serbench.data.labels.UNIFIED`) or to ``None``; ``Options`` rejects unknown keys.
- ``check_source_and_manifest``: ``source`` is a :class:`serbench.data.Source` or
  ``None``; a source comes with a ``manifest``; a declared manifest ships (it is in the
  package data) and parses; the paths it lists, created as empty placeholders, scan as
  utterances or are ignored, never reported bad (a spread of at most ``MANIFEST_SAMPLE``
  of them, so that a 7442-file manifest costs no more than a small one).
- ``check_scan``: the scan finds exactly the listed utterances, sorted by id, ids unique
  and equal to their paths relative to the root, paths under the root, with the listed
  labels and speakers; it reports exactly the listed bad files, each with a reason
  containing the listed fragment; a second scan gives the same.
- ``check_labels``: every label found is one of ``classes`` (when the adapter declares
  them) and a key of ``label_map`` (when it has one).
- ``check_no_audio_read``: the scan does not depend on what the files hold: with every
  listed file replaced by a few bytes of text (not audio), it gives the same result. Audio
  is read when a study loads a corpus (``serbench data check`` reports unreadable files),
  never by the scan.
- ``check_not_a_corpus``: an empty folder, and a folder holding only a text file, raise
  ``DataError`` with one line that names the folder (``serbench`` shows it as is).

Every check takes ``(adapter_cls, files, options=None, *, extra=None)``; ``options`` is
the mapping a job's ``dataset.options`` would give (validated by ``adapter_cls.Options``).
``write_corpus`` is there for an author's own tests.
"""

from __future__ import annotations

import tempfile
import zlib
from collections import Counter
from contextlib import contextmanager
from pathlib import Path, PurePosixPath
from typing import Any, Iterator, Mapping, Union

import numpy as np

from serbench.data.base import BadFile, DatasetAdapter, Scan, Utterance
from serbench.data.labels import UNIFIED
from serbench.data.sources import Source
from serbench.errors import DataError
from serbench.testing.contract import ContractError, clause, options_problem

Expected = Union[tuple[str, str], str]  # (label, speaker) of an utterance, or a fragment of a bad file's reason
Files = Mapping[str, Expected]
Extra = Mapping[str, Union[str, bytes]]

RATE = 16_000
SECONDS = 0.5
MANIFEST_SAMPLE = 400  # listed paths that check_source_and_manifest creates and scans
PLACEHOLDER = b"not audio: the dataset adapter contract kit checks that a scan reads no audio\n"
_FORMATS = {".flac": "FLAC", ".ogg": "OGG"}


class AdapterContractError(ContractError):
    """A dataset adapter breaks a clause of the dataset adapter contract."""

    kind = "dataset adapter"


def write_corpus(root: Path, files: Files, extra: Extra | None = None, *, audio: bool = True) -> Path:
    """Write the tiny corpus under ``root``: each path of ``files`` as a real audio file
    (or, with ``audio=False``, as a few bytes of text), then the ``extra`` files as
    given. Returns ``root``."""
    extra = dict(extra or {})
    for rel in files:
        if rel in extra:
            continue
        path = root.joinpath(*PurePosixPath(rel).parts)
        path.parent.mkdir(parents=True, exist_ok=True)
        if audio:
            _write_tone(path, 200.0 + zlib.crc32(rel.encode()) % 4000 / 10)  # each file its own tone
        else:
            path.write_bytes(PLACEHOLDER)
    for rel, content in extra.items():
        path = root.joinpath(*PurePosixPath(rel).parts)
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content, encoding="utf-8")
    return root


def make_adapter(adapter_cls: type[DatasetAdapter], options: Mapping[str, Any] | None = None) -> DatasetAdapter:
    """An adapter as a study makes one: its options validated by its ``Options`` model."""
    return adapter_cls(adapter_cls.Options.model_validate(dict(options or {})))


# --- the clauses ------------------------------------------------------------------------


def check_declaration(adapter_cls, files=None, options=None, *, extra=None) -> None:
    """The class's declarations: base class, names, classes, label map, options."""
    clause = "declaration"

    def broken(detail: str) -> AdapterContractError:
        return AdapterContractError(adapter_cls, clause, detail)

    if not (isinstance(adapter_cls, type) and issubclass(adapter_cls, DatasetAdapter)):
        raise broken("the class must subclass serbench.data.DatasetAdapter")
    for attribute in ("name", "corpus_dir"):
        value = getattr(adapter_cls, attribute, None)
        if not isinstance(value, str) or not value.strip():
            raise broken(f"the class needs a non-empty string `{attribute}`, got {value!r}")
    classes = getattr(adapter_cls, "classes", None)
    if not isinstance(classes, tuple) or not all(isinstance(c, str) and c for c in classes):
        raise broken(f"`classes` must be a tuple of the corpus's labels (strings), got {classes!r}")
    twice = sorted(c for c, n in Counter(classes).items() if n > 1)
    if twice:
        raise broken(f"`classes` lists {twice} more than once")
    label_map = adapter_cls.label_map
    if label_map is not None:
        if not isinstance(label_map, Mapping):
            raise broken(f"`label_map` must be a dict (or None), got {type(label_map).__name__}")
        unmapped = [c for c in classes if c not in label_map]
        if unmapped:
            raise broken(f"`label_map` does not map the classes {unmapped}")
        outside = {k: v for k, v in label_map.items() if v is not None and v not in UNIFIED}
        if outside:
            raise broken(f"`label_map` maps {outside} outside the unified classes {list(UNIFIED)} (None drops a label)")
        if all(v is None for v in label_map.values()):
            raise broken("`label_map` drops every label")
    if not isinstance(adapter_cls.fetch_hint, str):
        raise broken("`fetch_hint` must be a string")
    problem = options_problem(adapter_cls.Options, dict(options or {}))
    if problem is not None:
        raise broken(problem)
    with _clause(adapter_cls, clause):
        make_adapter(adapter_cls, options)


def check_source_and_manifest(adapter_cls, files=None, options=None, *, extra=None) -> None:
    """What ``serbench data fetch|check`` use: the download source and the shipped
    manifest, and that every path the manifest lists is a name the adapter accepts."""
    from serbench.data.manifest import shipped

    clause = "source and manifest"

    def broken(detail: str) -> AdapterContractError:
        return AdapterContractError(adapter_cls, clause, detail)

    source = getattr(adapter_cls, "source", None)
    if source is not None and not isinstance(source, Source):
        raise broken(f"`source` must be a serbench.data.Source or None, got {type(source).__name__}")
    declared = getattr(adapter_cls, "manifest", None)
    if declared is None:
        if source is not None:
            raise broken("it declares a `source` but no `manifest`: a fetch verifies every file against one")
        return
    if not isinstance(declared, str):
        raise broken(f"`manifest` must name a package resource (a string), got {declared!r}")
    with _clause(adapter_cls, clause):
        manifest = shipped(adapter_cls)
    if not manifest.entries:
        raise broken(f"the manifest {manifest.source} lists no files")
    adapter = make_adapter(adapter_cls, options)
    listed = list(manifest.entries)
    sample = listed[:: -(-len(listed) // MANIFEST_SAMPLE)]
    with _folder() as root:
        for rel in sample:
            path = root.joinpath(*PurePosixPath(rel).parts)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.touch()
        what = f"placeholders of {len(sample)} of the {len(listed)} files of {manifest.source}"
        scan = _scan(adapter_cls, clause, adapter, root, what)
        if scan.bad:
            first = scan.bad[0]
            raise broken(
                f"{len(scan.bad)} of the files its manifest lists are reported bad, "
                f"first {_rel(first.path, root)}: {first.reason}"
            )
        unlisted = [u.id for u in scan.utterances if u.id not in manifest.entries]
        if unlisted:
            raise broken(f"scanning the manifest's files gave utterances it does not list: {unlisted[:3]}")
        if not scan.utterances:
            raise broken(f"none of the files {manifest.source} lists scans as an utterance")


def check_scan(adapter_cls, files, options=None, *, extra=None) -> None:
    """The scan of the tiny corpus: exactly the listed utterances and bad files."""
    clause = "scan"
    good, bad = _expected(files)

    def broken(detail: str) -> AdapterContractError:
        return AdapterContractError(adapter_cls, clause, detail)

    adapter = make_adapter(adapter_cls, options)
    with _folder() as root:
        write_corpus(root, files, extra)
        scan = _scan(adapter_cls, clause, adapter, root, "the corpus")
        ids = [u.id for u in scan.utterances]
        for before, after in zip(ids, ids[1:]):
            if before > after:
                raise broken(f"utterances are not sorted by id: {before!r} comes before {after!r}")
        twice = sorted(i for i, n in Counter(ids).items() if n > 1)
        if twice:
            raise broken(f"utterance ids are not unique: {twice}")
        found: dict[str, Utterance] = {}
        for utt in scan.utterances:
            rel = _under(adapter_cls, clause, utt.path, root, f"utterance {utt.id!r}")
            if utt.id != rel:
                raise broken(f"utterance id {utt.id!r} is not its path relative to the root ({rel!r})")
            for attribute in ("label", "speaker"):
                value = getattr(utt, attribute)
                if not isinstance(value, str) or not value:
                    raise broken(f"{utt.id}: {attribute} must be a non-empty string, got {value!r}")
            found[utt.id] = utt
        reported: dict[str, list[str]] = {}
        for item in scan.bad:
            rel = _under(adapter_cls, clause, item.path, root, "bad file")
            if not isinstance(item.reason, str) or not item.reason.strip():
                raise broken(f"bad file {rel} has no reason")
            reported.setdefault(rel, []).append(item.reason)
        for rel, (label, speaker) in good.items():
            if rel not in found:
                why = f"; it was reported bad: {reported[rel][0]}" if rel in reported else ""
                raise broken(f"{rel} is not found as an utterance (expected label {label!r}, speaker {speaker!r}){why}")
            utt = found[rel]
            if (utt.label, utt.speaker) != (label, speaker):
                raise broken(
                    f"{rel}: label {utt.label!r}, speaker {utt.speaker!r}; expected label {label!r}, speaker {speaker!r}"
                )
        for rel in found:
            if rel not in good:
                what = f"should be reported bad ({bad[rel]!r})" if rel in bad else "is not listed"
                raise broken(f"{rel} is scanned as an utterance but {what}")
        for rel, fragment in bad.items():
            if rel not in reported:
                raise broken(f"{rel} is not reported bad (expected a reason containing {fragment!r})")
            if not any(fragment in reason for reason in reported[rel]):
                raise broken(f"{rel} is reported bad with {reported[rel]}, none containing {fragment!r}")
        for rel, reasons in reported.items():
            if rel not in bad:
                what = "is listed as an utterance" if rel in good else "is not listed"
                raise broken(f"{rel} is reported bad ({reasons[0]}) but {what}")
        again = _scan(adapter_cls, clause, adapter, root, "the corpus a second time")
        if _outline(again, root) != _outline(scan, root):
            raise broken("a second scan of the same folder gives another result")


def check_labels(adapter_cls, files, options=None, *, extra=None) -> None:
    """Every label the scan gives is a declared class and has a place in the label map."""
    clause = "labels"
    adapter = make_adapter(adapter_cls, options)
    with _folder() as root:
        write_corpus(root, files, extra)
        scan = _scan(adapter_cls, clause, adapter, root, "the corpus")
    classes, label_map = adapter_cls.classes, adapter_cls.label_map
    for utt in scan.utterances:
        if classes and utt.label not in classes:
            raise AdapterContractError(
                adapter_cls, clause, f"{utt.id}: label {utt.label!r} is not one of `classes` {list(classes)}"
            )
        if label_map is not None and utt.label not in label_map:
            raise AdapterContractError(adapter_cls, clause, f"{utt.id}: label {utt.label!r} is not in `label_map`")


def check_no_audio_read(adapter_cls, files, options=None, *, extra=None) -> None:
    """The same scan when no listed file holds audio: a scan goes by names and layout."""
    clause = "no audio read"
    adapter = make_adapter(adapter_cls, options)
    with _folder() as real, _folder() as fake:
        write_corpus(real, files, extra)
        write_corpus(fake, files, extra, audio=False)
        expected = _outline(_scan(adapter_cls, clause, adapter, real, "the corpus"), real)
        try:
            got = _outline(adapter.scan(fake), fake)
        except Exception as exc:
            raise AdapterContractError(
                adapter_cls,
                clause,
                f"the scan raised {exc.__class__.__name__}: {exc} when the files hold text, not audio; "
                "a scan must not read audio (a study reads it when it loads the corpus)",
            ) from exc
    if got != expected:
        difference = next(
            (f"{a} vs {b}" for a, b in zip(expected[0] + expected[1], got[0] + got[1]) if a != b),
            f"{len(expected[0])} utterances and {len(expected[1])} bad files vs {len(got[0])} and {len(got[1])}",
        )
        raise AdapterContractError(
            adapter_cls,
            clause,
            "the scan changes when the files hold text instead of audio, so it reads them "
            f"(first difference, with audio vs without: {difference})",
        )


def check_not_a_corpus(adapter_cls, files=None, options=None, *, extra=None) -> None:
    """A folder that is not the corpus is a ``DataError`` naming it, in one line."""
    clause = "not a corpus"
    adapter = make_adapter(adapter_cls, options)
    for what, content in (("an empty folder", None), ("a folder holding only notes.txt", "not a corpus\n")):
        with _folder() as root:
            if content is not None:
                (root / "notes.txt").write_text(content, encoding="utf-8")
            try:
                scan = adapter.scan(root)
            except DataError as exc:
                message = str(exc)
                if str(root) not in message:
                    raise AdapterContractError(
                        adapter_cls, clause, f"the DataError for {what} does not name the folder: {message!r}"
                    ) from None
                if "\n" in message.strip():
                    raise AdapterContractError(
                        adapter_cls, clause, f"the DataError for {what} is not one line: {message!r}"
                    ) from None
                continue
            except Exception as exc:
                raise AdapterContractError(
                    adapter_cls, clause, f"scanning {what} raised {exc.__class__.__name__}: {exc}, not a DataError"
                ) from exc
            found = len(scan.utterances) if isinstance(scan, Scan) else "?"
            raise AdapterContractError(
                adapter_cls, clause, f"scanning {what} returned {found} utterances instead of raising DataError"
            )


CONTRACT_CHECKS = (
    check_declaration,
    check_source_and_manifest,
    check_scan,
    check_labels,
    check_no_audio_read,
    check_not_a_corpus,
)


def check_adapter(
    adapter_cls: type[DatasetAdapter],
    files: Files,
    options: Mapping[str, Any] | None = None,
    *,
    extra: Extra | None = None,
) -> None:
    """Run every clause of the contract on ``adapter_cls`` with the tiny corpus ``files``
    (path -> ``(label, speaker)`` of an utterance, or a fragment of the reason of a file
    that must be reported bad) plus ``extra`` files written as given; the first broken
    clause raises ``AdapterContractError``."""
    _expected(files)
    for check in CONTRACT_CHECKS:
        check(adapter_cls, files, options, extra=extra)


def adapter_contract_test(
    adapter_cls: type[DatasetAdapter], files: Files, options: Mapping[str, Any] | None = None, **kit: Any
):
    """A pytest test function, parametrised with one case per clause, for a test module:
    ``test_acme_contract = adapter_contract_test(AcmeCorpus, FILES)``."""
    import pytest

    _expected(files)

    @pytest.mark.parametrize("check", CONTRACT_CHECKS, ids=lambda check: check.__name__.removeprefix("check_"))
    def test_adapter_contract(check):
        check(adapter_cls, files, options, **kit)

    return test_adapter_contract


# --- helpers --------------------------------------------------------------------------


def _expected(files: Files) -> tuple[dict[str, tuple[str, str]], dict[str, str]]:
    """The listed utterances and bad files; ``ValueError`` for a mistake of the test's."""
    good: dict[str, tuple[str, str]] = {}
    bad: dict[str, str] = {}
    for rel, expected in files.items():
        pure = PurePosixPath(rel)
        if not rel or pure.is_absolute() or ".." in pure.parts or pure.as_posix() != rel:
            raise ValueError(f"{rel!r}: list plain paths relative to the corpus root, like 'wav/03a01Fa.wav'")
        if isinstance(expected, str) and expected:
            bad[rel] = expected
        elif isinstance(expected, tuple) and len(expected) == 2 and all(isinstance(x, str) for x in expected):
            good[rel] = expected
        else:
            raise ValueError(f"{rel}: expected (label, speaker) or a fragment of a bad file's reason, got {expected!r}")
    if not good:
        raise ValueError("list at least one file the adapter must find as an utterance")
    return good, bad


def _write_tone(path: Path, freq: float) -> None:
    import soundfile as sf

    t = np.arange(int(SECONDS * RATE)) / RATE
    wave = (0.3 * np.sin(2 * np.pi * freq * t)).astype(np.float32)
    kind = _FORMATS.get(path.suffix.lower(), "WAV")
    sf.write(str(path), wave, RATE, format=kind, subtype="VORBIS" if kind == "OGG" else "PCM_16")


def _scan(adapter_cls, clause: str, adapter: DatasetAdapter, root: Path, what: str) -> Scan:
    try:
        scan = adapter.scan(root)
    except Exception as exc:
        raise AdapterContractError(
            adapter_cls, clause, f"scanning {what} raised {exc.__class__.__name__}: {exc}"
        ) from exc
    if not isinstance(scan, Scan):
        raise AdapterContractError(adapter_cls, clause, f"scan() returned {type(scan).__name__}, not a Scan")
    if not all(isinstance(u, Utterance) for u in scan.utterances) or not all(isinstance(b, BadFile) for b in scan.bad):
        raise AdapterContractError(adapter_cls, clause, "a Scan holds Utterance and BadFile objects only")
    return scan


def _under(adapter_cls, clause: str, path: Any, root: Path, what: str) -> str:
    """``path`` relative to ``root`` (posix), or a contract error if it is not under it."""
    if not isinstance(path, Path):
        raise AdapterContractError(adapter_cls, clause, f"{what}: path {path!r} is not a pathlib.Path")
    try:
        return path.resolve().relative_to(root.resolve()).as_posix()
    except ValueError:
        raise AdapterContractError(adapter_cls, clause, f"{what}: {path} is not under the root {root}") from None


def _rel(path: Path, root: Path) -> str:
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return str(path)


def _outline(scan: Scan, root: Path) -> tuple[list[tuple[str, ...]], list[tuple[str, str]]]:
    """A scan with the root taken out of paths and reasons, to compare two folders."""
    utterances = [(u.id, _rel(u.path, root), u.label, u.speaker) for u in scan.utterances]
    bad = [(_rel(b.path, root), b.reason.replace(str(root), "<root>")) for b in scan.bad]
    return utterances, bad


@contextmanager
def _folder() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="serbench-adapter-kit-") as name:
        yield Path(name)


def _clause(adapter_cls, name: str):
    return clause(AdapterContractError, adapter_cls, name)
