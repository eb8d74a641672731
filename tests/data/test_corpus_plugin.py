"""A third-party corpus plugin, installed for the test (a package and its dist-info in a
tmp folder on ``PYTHONPATH``, registered through the ``serbench`` entry-point group): its
adapter declares a download source and ships a checksum manifest beside its module, and
``serbench data fetch`` / ``data check`` work for it exactly as for a built-in. Its
source is an archive on the loopback file server of test_data_fetch.py."""

from __future__ import annotations

import hashlib
import importlib
import json
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from conftest import assert_one_line_error, run_serbench

from serbench.testing.datasets import check_adapter, write_corpus
from test_data_fetch import server  # noqa: F401  (the loopback file server fixture)

REPO = Path(__file__).resolve().parents[2]

ACME = '''
"""Acme Speech: ``<root>/clips/<speaker>_<emotion>_<take>.wav``."""

import re

import serbench
from serbench.data import BadFile, DatasetAdapter, Scan, Source, Utterance
from serbench.errors import DataError

FILENAME = re.compile(r"^(s\\d\\d)_(joy|rage)_(\\d)\\.wav$")


class AcmeSpeech(DatasetAdapter):
    name = "acme"
    corpus_dir = "acme"
    classes = ("joy", "rage")
    label_map = {"joy": "happiness", "rage": "anger"}
    source = Source(
        kind="archive",
        urls=(@URLS@),
        license="CC0 1.0 (Acme Speech Lab)",
        archive_sha256="@SHA256@",
    )
    manifest = "manifests/acme.tsv"

    def scan(self, root):
        clips = root / "clips"
        if not clips.is_dir():
            raise DataError(f"{root}: not an Acme Speech folder (no clips/)")
        utterances, bad = [], []
        for path in sorted(clips.iterdir()):
            if path.suffix != ".wav":
                continue
            match = FILENAME.match(path.name)
            if match is None:
                bad.append(BadFile(path, "not an Acme file name (expected sNN_joy|rage_N.wav)"))
                continue
            utterances.append(Utterance(f"clips/{path.name}", path, match[2], match[1]))
        if not utterances and not bad:
            raise DataError(f"{clips}: holds no .wav files")
        return Scan(utterances, bad)


@serbench.hookimpl
def serbench_datasets():
    return [AcmeSpeech]
'''

FILES = {
    "clips/s01_joy_1.wav": ("joy", "s01"),
    "clips/s01_rage_1.wav": ("rage", "s01"),
    "clips/s02_joy_1.wav": ("joy", "s02"),
    "clips/s02_rage_2.wav": ("rage", "s02"),
}


@pytest.fixture
def acme(tmp_path, server):  # noqa: F811
    """The corpus (4 generated recordings), its archive served under a wrapping folder
    (``acme-speech-1.0/clips/...``), and the plugin installed in ``site`` whose source is
    that archive (a URL that answers 404 first: mirrors are tried in order)."""
    base, served, requests = server
    corpus = write_corpus(tmp_path / "original", FILES)
    data = {rel: (corpus / rel).read_bytes() for rel in FILES}
    archive = served / "acme-speech-1.0.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for rel, content in data.items():
            zf.writestr(f"acme-speech-1.0/{rel}", content)
        zf.writestr("acme-speech-1.0/LICENSE.txt", "CC0 1.0\n")
    urls = f'"{base}/gone/acme.zip", "{base}/acme-speech-1.0.zip"'
    site = tmp_path / "site"
    package = site / "acme_corpus"
    (package / "manifests").mkdir(parents=True)
    source = ACME.replace("@URLS@", urls).replace("@SHA256@", hashlib.sha256(archive.read_bytes()).hexdigest())
    (package / "__init__.py").write_text(source, encoding="utf-8")
    (package / "manifests" / "acme.tsv").write_text(
        "# Acme Speech 1.0\n"
        + "".join(f"{hashlib.sha256(b).hexdigest()}\t{len(b)}\t{rel}\n" for rel, b in data.items()),
        encoding="utf-8",
    )
    info = site / "acme_corpus-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: acme-corpus\nVersion: 1.0\n", encoding="utf-8")
    (info / "entry_points.txt").write_text("[serbench]\nacme = acme_corpus\n", encoding="utf-8")
    return site, served, requests


def serbench(site: Path, *args: object) -> subprocess.CompletedProcess[str]:
    return run_serbench(*args, site=site)


def one_line_error(proc: subprocess.CompletedProcess[str], *needles: str) -> str:
    return assert_one_line_error(proc.returncode, proc.stderr, *needles)


def test_third_party_corpus_is_fetched_and_checked(acme, tmp_path):
    site, served, requests = acme
    root = tmp_path / "data" / "acme"
    proc = serbench(site, "data", "fetch", "acme", "--root", root)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == [
        f"acme: fetched, 4 files ({sum((root / r).stat().st_size for r in FILES) / 1e6:.1f} MB) in {root} match the manifest",
        "license: CC0 1.0 (Acme Speech Lab)",
    ]
    assert [path for path, _ in requests] == ["/gone/acme.zip", "/acme-speech-1.0.zip"]
    assert sorted(p.name for p in (root / "clips").iterdir()) == sorted(Path(r).name for r in FILES)
    assert (root / "LICENSE.txt").is_file() and not (root / "acme-speech-1.0").exists()

    proc = serbench(site, "data", "check", "acme", "--root", root, "--json")
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["clean"] and report["utterances"] == 4
    assert report["classes"] == {"joy": 2, "rage": 2}
    assert report["mapped"] == {"anger": 2, "happiness": 2}
    assert report["speakers"] == {"s01": 2, "s02": 2}
    assert report["checksums"] == {
        "manifest": "acme_corpus/manifests/acme.tsv", "ok": 4, "mismatch": [], "unlisted": 0, "absent": 0,
    }

    # A recording replaced by another (still valid audio): only the shipped checksums tell.
    (root / "clips" / "s02_joy_1.wav").write_bytes((root / "clips" / "s01_joy_1.wav").read_bytes())
    proc = serbench(site, "data", "check", "acme", "--root", root)
    one_line_error(proc, "acme at", "1 checksum mismatch", "s02_joy_1.wav", "acme_corpus/manifests/acme.tsv")
    assert f"checksum mismatch: {root / 'clips' / 's02_joy_1.wav'}" in proc.stdout
    assert "3 ok, 1 mismatch, 0 unlisted, 0 listed but absent (acme_corpus/manifests/acme.tsv)" in proc.stdout

    proc = serbench(site, "data", "fetch", "acme", "--root", root)  # repairs the copy from the source
    assert proc.returncode == 0, proc.stderr
    assert "acme: fetched, 4 files" in proc.stdout


def test_third_party_archive_checksum_is_checked(acme, tmp_path):
    """The archive's published sha256 is what the adapter declares: another zip is refused."""
    site, served, _ = acme
    with zipfile.ZipFile(served / "acme-speech-1.0.zip", "a") as zf:
        zf.writestr("acme-speech-1.0/extra.txt", "tampered\n")
    proc = serbench(site, "data", "fetch", "acme", "--root", tmp_path / "acme")
    one_line_error(proc, "acme-speech-1.0.zip: sha256", "is not the published", "has been deleted")
    proc = serbench(site, "data", "fetch", "nope", "--root", tmp_path / "x")
    one_line_error(proc, "no download source for 'nope'", "available: acme, cremad, emodb, ravdess")


def test_third_party_manifest_missing_from_the_package_is_named(acme, tmp_path):
    """A manifest the adapter declares but its package lacks is the plugin's error, not a
    silently unverified copy."""
    site, _, _ = acme
    (site / "acme_corpus" / "manifests" / "acme.tsv").unlink()
    write_corpus(tmp_path / "acme", FILES)
    proc = serbench(site, "data", "check", "acme", "--root", tmp_path / "acme")
    one_line_error(proc, "dataset adapter 'acme' declares the manifest manifests/acme.tsv", "acme_corpus holds no such file")


def test_third_party_adapter_keeps_the_contract(acme):
    site, _, _ = acme
    sys.path.insert(0, str(site))
    try:
        module = importlib.import_module("acme_corpus")
        check_adapter(module.AcmeSpeech, {**FILES, "clips/s03_calm_1.wav": "not an Acme file name"})
    finally:
        sys.path.remove(str(site))
        sys.modules.pop("acme_corpus", None)
