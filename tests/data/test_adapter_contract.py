"""The dataset adapter contract kit (serbench.testing.datasets): every built-in adapter
keeps every clause on a tiny generated corpus in its layout, and the kit catches
adapters that break one."""

from __future__ import annotations

from dataclasses import replace

import pytest
import soundfile as sf

from serbench.data import BadFile, Scan, Source
from serbench.data.adapters.cremad import CremaD
from serbench.data.adapters.emodb import EmoDB
from serbench.data.adapters.folder import Folder
from serbench.data.adapters.ravdess import RAVDESS
from serbench.errors import DataError
from serbench.testing.datasets import (
    CONTRACT_CHECKS,
    AdapterContractError,
    adapter_contract_test,
    check_adapter,
    check_declaration,
    check_no_audio_read,
    check_not_a_corpus,
    check_scan,
    check_source_and_manifest,
    write_corpus,
)
from serbench.testing.contract import ContractError

EMODB = {
    "wav/03a01Fa.wav": ("happiness", "03"),
    "wav/08a01Ab.wav": ("fear", "08"),
    "wav/16b10Wb.wav": ("anger", "16"),
    "wav/13a05Tc.wav": ("sadness", "13"),
    "wav/recording 1.wav": "not an EmoDB file name",
}
RAVDESS_FILES = {
    "Actor_01/03-01-05-01-01-01-01.wav": ("angry", "01"),
    "Actor_01/03-01-02-02-01-01-01.wav": ("calm", "01"),
    "Actor_24/03-01-08-02-02-02-24.wav": ("surprised", "24"),
    "Actor_01/03-02-05-01-01-01-01.wav": "song",
    "Actor_01/03-01-05-01-01-01-02.wav": "in the name, but the file is in Actor_01",
}
CREMAD = {
    "AudioWAV/1001_DFA_ANG_XX.wav": ("ANG", "1001"),
    "AudioWAV/1091_IEO_SAD_HI.wav": ("SAD", "1091"),
    "AudioWAV/1040_ITH_NEU_XX.wav": ("NEU", "1040"),
    "AudioWAV/1092_DFA_ANG_XX.wav": "actor 1092",
    "AudioWAV/1040_ITH_SAD_X.wav": "not a CREMA-D file name",
}
FOLDER = {
    "angry/a.wav": ("angry", "unknown"),
    "calm/session2/b.flac": ("calm", "unknown"),
    "calm/c.ogg": ("calm", "unknown"),
    "stray.wav": "not in a label sub-folder",
}
FOLDER_CSV = {
    "clips/a.wav": ("joy", "s1"),
    "clips/b.wav": ("calm", "unknown"),
    "labels.csv": "labels.csv line 4: expected path,label[,speaker], got 1 cells",
}
FOLDER_CSV_EXTRA = {"labels.csv": "path,label,speaker\nclips/a.wav,joy,s1\nclips/b.wav,calm\njust-one-cell\n"}

# Ignored by every adapter: not a .wav in the audio folder, or not an audio extension.
NOTES = {"wav/notes.txt": "ignored", "Actor_01/notes.txt": "ignored", "AudioWAV/README.md": "ignored"}

CASES = {
    "emodb": (EmoDB, EMODB, None, NOTES),
    "ravdess": (RAVDESS, RAVDESS_FILES, None, NOTES),
    "cremad": (CremaD, CREMAD, None, NOTES),
    "folder": (Folder, FOLDER, None, {"angry/notes.txt": "ignored", ".cache/x.wav": b"hidden: ignored"}),
    "folder-csv": (Folder, FOLDER_CSV, None, FOLDER_CSV_EXTRA),
    "folder-csv-option": (Folder, {"a/x.wav": ("bored", "03")}, {"csv": "meta.csv"}, {"meta.csv": "a/x.wav,bored,03\n"}),
}


@pytest.mark.parametrize("check", CONTRACT_CHECKS, ids=lambda check: check.__name__.removeprefix("check_"))
@pytest.mark.parametrize("case", CASES)
def test_built_in_adapter_keeps_the_contract(case, check):
    adapter_cls, files, options, extra = CASES[case]
    check(adapter_cls, files, options, extra=extra)


test_emodb_contract_one_case_per_clause = adapter_contract_test(EmoDB, EMODB)


def test_kit_writes_real_audio(tmp_path):
    """The generated corpus is real audio: each file decodes to 0.5 s at 16 kHz."""
    write_corpus(tmp_path, FOLDER)
    for rel in FOLDER:
        info = sf.info(str(tmp_path / rel))
        assert (info.samplerate, info.frames, info.channels) == (16_000, 8_000, 1), rel
    assert sf.info(str(tmp_path / "calm/session2/b.flac")).format == "FLAC"
    assert len({(tmp_path / rel).read_bytes() for rel in FOLDER}) == len(FOLDER)  # no two alike


# --- the kit catches broken adapters ----------------------------------------------------


def broken(check, adapter_cls, *needles, files=EMODB, options=None, extra=None) -> str:
    with pytest.raises(AdapterContractError) as caught:
        check(adapter_cls, files, options, extra=extra)
    message = str(caught.value)
    assert isinstance(caught.value, ContractError) and isinstance(caught.value, AssertionError)
    assert message.startswith(f"dataset adapter {adapter_cls.name!r} breaks '{caught.value.clause}'")
    for needle in needles:
        assert needle in message, f"{needle!r} not in {message!r}"
    return message


class ReadsAudio(EmoDB):
    """Looks at every file's header while scanning."""

    name = "reads-audio"

    def scan(self, root):
        scan = super().scan(root)
        for utt in scan.utterances:
            sf.info(str(utt.path))
        return scan


class SkipsShortFiles(EmoDB):
    """Quietly drops files too small to be audio: its result depends on the content."""

    name = "skips-short"

    def scan(self, root):
        scan = super().scan(root)
        return Scan([u for u in scan.utterances if u.path.stat().st_size > 1000], scan.bad)


def test_kit_catches_an_adapter_that_reads_audio():
    broken(check_no_audio_read, ReadsAudio, "'no audio read'", "raised LibsndfileError", "must not read audio")
    broken(check_no_audio_read, SkipsShortFiles, "changes when the files hold text", "wav/03a01Fa.wav")


class Unsorted(EmoDB):
    name = "unsorted"

    def scan(self, root):
        scan = super().scan(root)
        return Scan(scan.utterances[::-1], scan.bad)


class NameAsId(EmoDB):
    name = "name-as-id"

    def scan(self, root):
        scan = super().scan(root)
        return Scan([type(u)(u.path.name, u.path, u.label, u.speaker) for u in scan.utterances], scan.bad)


class Forgiving(EmoDB):
    """Drops names outside the scheme without reporting them."""

    name = "forgiving"

    def scan(self, root):
        return Scan(super().scan(root).utterances, [])


class Elsewhere(EmoDB):
    name = "elsewhere"

    def scan(self, root):
        scan = super().scan(root)
        return Scan(scan.utterances, [BadFile(root.parent / "x.wav", "outside")])


def test_kit_catches_scans_that_break_the_contract():
    broken(check_scan, Unsorted, "'scan'", "not sorted by id")
    broken(check_scan, NameAsId, "id '03a01Fa.wav' is not its path relative to the root ('wav/03a01Fa.wav')")
    broken(check_scan, Forgiving, "wav/recording 1.wav is not reported bad", "'not an EmoDB file name'")
    broken(check_scan, Elsewhere, "is not under the root")


def test_kit_names_the_file_whose_expectation_differs():
    files = {**EMODB, "wav/03a01Fa.wav": ("joy", "03")}
    broken(check_scan, EmoDB, "wav/03a01Fa.wav: label 'happiness', speaker '03'; expected label 'joy'", files=files)
    files = {**EMODB, "wav/recording 1.wav": "no such reason"}
    broken(check_scan, EmoDB, "wav/recording 1.wav is reported bad", "none containing 'no such reason'", files=files)
    files = {**EMODB, "wav/03a01Xa.wav": ("happiness", "03")}
    broken(check_scan, EmoDB, "wav/03a01Xa.wav is not found as an utterance", "reported bad: not an EmoDB", files=files)
    files = {k: v for k, v in EMODB.items() if k != "wav/08a01Ab.wav"}
    broken(check_scan, EmoDB, "wav/08a01Ab.wav is scanned as an utterance but is not listed", extra={"wav/08a01Ab.wav": b""}, files=files)


class Unmapped(EmoDB):
    name = "unmapped"
    label_map = {**EmoDB.label_map, "boredom": "tired"}


class Partial(RAVDESS):
    name = "partial"
    label_map = {k: v for k, v in RAVDESS.label_map.items() if k != "calm"}


class Loose(EmoDB):
    name = "loose"
    Options = dict  # not a pydantic model


def test_kit_catches_declarations_that_break_the_contract():
    broken(check_declaration, Unmapped, "'declaration'", "{'boredom': 'tired'} outside the unified classes")
    broken(check_declaration, Partial, "does not map the classes ['calm']", files=RAVDESS_FILES)
    broken(check_declaration, Loose, "`Options` must be a pydantic model")


class Lenient(EmoDB):
    """Returns an empty scan for a folder that is not EmoDB."""

    name = "lenient"

    def scan(self, root):
        if not (root / "wav").is_dir():
            return Scan([])
        return super().scan(root)


class Crashes(EmoDB):
    name = "crashes"

    def scan(self, root):
        if not (root / "wav").is_dir():
            raise FileNotFoundError(root / "wav")
        return super().scan(root)


class Vague(EmoDB):
    name = "vague"

    def scan(self, root):
        if not (root / "wav").is_dir():
            raise DataError("not an EmoDB folder")
        return super().scan(root)


def test_kit_catches_an_adapter_that_accepts_any_folder():
    broken(check_not_a_corpus, Lenient, "'not a corpus'", "returned 0 utterances instead of raising DataError")
    broken(check_not_a_corpus, Crashes, "raised FileNotFoundError", "not a DataError")
    broken(check_not_a_corpus, Vague, "does not name the folder")


class SourceOnly(EmoDB):
    name = "source-only"
    manifest = None


class Unpackaged(EmoDB):
    name = "unpackaged"
    manifest = "manifests/unpackaged.tsv"


class Mislisted(RAVDESS):
    """Scans EmoDB's layout but inherits RAVDESS's manifest: the names it lists are not EmoDB's."""

    name = "mislisted"
    classes, label_map, scan = EmoDB.classes, EmoDB.label_map, EmoDB.scan


def test_kit_catches_sources_without_a_usable_manifest():
    broken(check_source_and_manifest, SourceOnly, "declares a `source` but no `manifest`")
    broken(check_source_and_manifest, Unpackaged, "manifests/unpackaged.tsv", "holds no such file")
    broken(check_source_and_manifest, Mislisted, "raised DataError", "no wav/ sub-folder")


def test_source_declarations_are_checked_when_the_class_is_made():
    with pytest.raises(ValueError, match="templates containing"):
        Source("files", ("https://example.org/all.zip",), "CC0")
    with pytest.raises(ValueError, match="'archive' or 'files'"):
        Source("torrent", ("magnet:?",), "CC0")
    with pytest.raises(ValueError, match="archive_sha256 must be 64 hex digits"):
        Source("archive", "https://example.org/a.zip", "CC0", archive_sha256="abc")
    assert Source("archive", "https://example.org/a.zip", "CC0").urls == ("https://example.org/a.zip",)


class Undeclared(EmoDB):
    """Gives a label that is not one of its classes."""

    name = "undeclared"

    def scan(self, root):
        scan = super().scan(root)
        return Scan([replace(u, label="contempt") if u.id == "wav/03a01Fa.wav" else u for u in scan.utterances], scan.bad)


def test_check_adapter_runs_every_clause_and_rejects_a_malformed_listing():
    check_adapter(CremaD, CREMAD)
    with pytest.raises(AdapterContractError, match="breaks 'labels': wav/03a01Fa.wav: label 'contempt' is not one of"):
        check_adapter(Undeclared, {**EMODB, "wav/03a01Fa.wav": ("contempt", "03")})
    with pytest.raises(ValueError, match="plain paths relative"):
        check_adapter(EmoDB, {"/wav/03a01Fa.wav": ("happiness", "03")})
    with pytest.raises(ValueError, match="at least one file"):
        check_adapter(EmoDB, {"wav/x.wav": "not an EmoDB file name"})
    with pytest.raises(ValueError, match=r"\(label, speaker\)"):
        check_adapter(EmoDB, {"wav/03a01Fa.wav": ("happiness",)})
