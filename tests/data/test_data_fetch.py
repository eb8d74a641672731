"""``serbench data fetch`` against a file server on 127.0.0.1 (a thread, an ephemeral
port) serving archives and files built in each test from genuine EmoDB recordings.
Nothing leaves the machine: every URL is given with ``--url``."""

from __future__ import annotations

import hashlib
import http.server
import socket
import threading
import zipfile
from functools import partial
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from serbench.data.adapters.cremad import CremaD
from serbench.data.adapters.emodb import EmoDB
from serbench.data.adapters.ravdess import RAVDESS
from serbench.data.download import download
from serbench.errors import NetworkError
from serbench.data.fetch import DOWNLOAD_DIR
from serbench.data.manifest import sha256_file, shipped
from conftest import assert_one_line_error

EMODB_FILES = ["03a01Fa.wav", "03a01Nc.wav", "08a01Ab.wav", "10a02Wa.wav", "16b10Wb.wav", "13a05Tc.wav"]


class RangeHandler(http.server.SimpleHTTPRequestHandler):
    """Serves a folder, honours ``Range: bytes=N-``, and records each request."""

    def log_message(self, *args):  # keep pytest's output clean
        pass

    def do_GET(self):
        self.server.requests.append((self.path, self.headers.get("Range")))
        path = Path(self.translate_path(self.path))
        if not path.is_file():
            self.send_error(404, "Not Found")
            return
        data = path.read_bytes()
        start = 0
        if (spec := self.headers.get("Range")) and spec.startswith("bytes="):
            start = int(spec[6:].split("-")[0])
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        else:
            self.send_response(200)
        self.send_header("Content-Length", str(len(data) - start))
        self.end_headers()
        self.wfile.write(data[start:])


@pytest.fixture
def server(tmp_path):
    """(base URL, served folder, list of (path, Range) requests)."""
    served = tmp_path / "served"
    served.mkdir()
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), partial(RangeHandler, directory=str(served)))
    httpd.requests = []
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}", served, httpd.requests
    finally:
        httpd.shutdown()
        httpd.server_close()


def make_zip(path: Path, members: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return path


def emodb_members(emodb_root: Path, prefix: str = "") -> dict[str, bytes]:
    members = {f"{prefix}wav/{name}": (emodb_root / "wav" / name).read_bytes() for name in EMODB_FILES}
    members[f"{prefix}erklaerung.txt"] = b"not listed: unpacked, not verified"
    return members


def subset_manifest(tmp_path: Path, name: str, paths: list[str]) -> Path:
    """The shipped manifest's own lines for ``paths``: a subset of the genuine hashes."""
    adapter = {cls.name: cls for cls in (EmoDB, RAVDESS, CremaD)}[name]
    entries = shipped(adapter).entries
    lines = [f"{entries[p].sha256}\t{entries[p].size}\t{p}" for p in paths]
    out = tmp_path / f"{name}-subset.tsv"
    out.write_text("# subset of the shipped manifest\n" + "\n".join(lines) + "\n")
    return out


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_fetch_emodb_archive_unpacks_and_verifies(cli, server, tmp_path, emodb_root):
    base, served, requests = server
    make_zip(served / "download.zip", emodb_members(emodb_root))
    manifest = subset_manifest(tmp_path, "emodb", [f"wav/{n}" for n in EMODB_FILES])
    root = tmp_path / "emodb"
    code, out, err = cli("data", "fetch", "emodb", "--root", root, "--url", f"{base}/download.zip", "--manifest", manifest)
    assert code == 0, err
    assert err == ""
    assert "6 files" in out and "match the manifest" in out
    for name in EMODB_FILES:  # the genuine files' hashes are the shipped manifest's
        assert sha256_file(root / "wav" / name) == shipped(EmoDB).entries[f"wav/{name}"].sha256
    assert (root / "erklaerung.txt").is_file()
    assert not (root / DOWNLOAD_DIR).exists()
    assert requests == [("/download.zip", None)]

    code, out, _ = cli("data", "fetch", "emodb", "--root", root, "--url", f"{base}/download.zip", "--manifest", manifest)
    assert code == 0 and "already complete" in out
    assert len(requests) == 1  # nothing downloaded again

    code, out, err = cli("data", "check", "emodb", "--root", root)
    assert code == 0, err
    assert "6 utterances" in out and "6 ok" in out and "529 listed but absent" in out


def test_fetch_finds_the_corpus_inside_a_wrapping_folder(cli, server, tmp_path, emodb_root):
    base, served, _ = server
    make_zip(served / "mirror.zip", emodb_members(emodb_root, prefix="EmoDB-copy/"))
    manifest = subset_manifest(tmp_path, "emodb", [f"wav/{n}" for n in EMODB_FILES])
    root = tmp_path / "emodb"
    code, _, err = cli("data", "fetch", "emodb", "--root", root, "--url", f"{base}/mirror.zip", "--manifest", manifest)
    assert code == 0, err
    assert sorted(p.name for p in (root / "wav").iterdir()) == sorted(EMODB_FILES)
    assert not (root / "EmoDB-copy").exists()


def test_fetch_from_a_local_archive(cli, tmp_path, emodb_root):
    archive = make_zip(tmp_path / "download.zip", emodb_members(emodb_root))
    manifest = subset_manifest(tmp_path, "emodb", [f"wav/{n}" for n in EMODB_FILES])
    code, _, err = cli("data", "fetch", "emodb", "--root", tmp_path / "e", "--archive", archive, "--manifest", manifest)
    assert code == 0, err
    assert archive.is_file()  # the user's file is left alone


def test_fetch_checksum_mismatch_names_the_file(cli, server, tmp_path, emodb_root):
    base, served, _ = server
    members = emodb_members(emodb_root)
    members["wav/08a01Ab.wav"] = (emodb_root / "wav" / "08a01Na.wav").read_bytes()  # real audio, wrong file
    make_zip(served / "download.zip", members)
    manifest = subset_manifest(tmp_path, "emodb", [f"wav/{n}" for n in EMODB_FILES])
    code, _, err = cli("data", "fetch", "emodb", "--root", tmp_path / "e", "--url", f"{base}/download.zip", "--manifest", manifest)
    assert_one_line_error(code, err, "wav/08a01Ab.wav", "differ from the manifest")


def test_fetch_with_the_shipped_manifest_reports_missing_files(cli, server, tmp_path, emodb_root):
    """An archive holding 6 of EmoDB's 535 files is not EmoDB."""
    base, served, _ = server
    make_zip(served / "download.zip", emodb_members(emodb_root))
    code, _, err = cli("data", "fetch", "emodb", "--root", tmp_path / "e", "--url", f"{base}/download.zip")
    assert_one_line_error(code, err, "529 of 535 files", "missing", "wav/03a01Wa.wav")


def test_fetch_unreachable_host_is_one_line(cli, tmp_path):
    url = f"http://127.0.0.1:{closed_port()}/download.zip"
    code, out, err = cli("data", "fetch", "emodb", "--root", tmp_path / "e", "--url", url)
    assert_one_line_error(code, err, url, "connection refused")
    assert out == ""


def test_fetch_http_error_is_one_line(cli, server, tmp_path):
    base, _, _ = server
    code, _, err = cli("data", "fetch", "ravdess", "--root", tmp_path / "r", "--url", f"{base}/gone.zip")
    assert_one_line_error(code, err, "gone.zip", "HTTP 404")


def test_fetch_rejects_a_file_that_is_not_a_zip(cli, server, tmp_path):
    base, served, _ = server
    (served / "download.zip").write_text("<html>maintenance</html>")
    code, _, err = cli("data", "fetch", "emodb", "--root", tmp_path / "e", "--url", f"{base}/download.zip")
    assert_one_line_error(code, err, "download.zip", "not a zip archive")


def test_fetch_rejects_an_archive_of_another_corpus(cli, tmp_path, emodb_root):
    archive = make_zip(tmp_path / "other.zip", {"Actor_01/x.wav": b"RIFF"})
    code, _, err = cli("data", "fetch", "emodb", "--root", tmp_path / "e", "--archive", archive)
    assert_one_line_error(code, err, "other.zip", "holds none of the 535 files")


def test_fetch_refuses_members_that_escape_the_root(cli, tmp_path, emodb_root):
    members = emodb_members(emodb_root)
    members["../../escaped.txt"] = b"zip slip"
    archive = make_zip(tmp_path / "evil.zip", members)
    code, _, err = cli("data", "fetch", "emodb", "--root", tmp_path / "deep" / "e", "--archive", archive)
    assert_one_line_error(code, err, "evil.zip", "outside the corpus folder")
    assert not (tmp_path / "escaped.txt").exists()


@pytest.mark.parametrize("path", ["../escaped.wav", "/etc/escaped.wav", "AudioWAV/../../escaped.wav", "AudioWAV//x.wav"])
def test_manifest_paths_must_stay_under_the_root(cli, tmp_path, path):
    """A per-file source writes each listed path under the root: a manifest (a plugin's,
    or --manifest FILE) whose path would leave it is refused before anything is fetched."""
    manifest = tmp_path / "evil.tsv"
    manifest.write_text(f"{'0' * 64}\t1\t{path}\n")
    code, _, err = cli("data", "fetch", "cremad", "--root", tmp_path / "c", "--url", "http://127.0.0.1:9/{path}", "--manifest", manifest)
    assert_one_line_error(code, err, "evil.tsv: line 1", "not a plain path relative to the corpus root")
    assert not (tmp_path / "c").exists()


def test_fetch_unknown_corpus_lists_the_sources(cli, tmp_path):
    """The list is the registered adapters that declare a source (sorted), so not ``folder``."""
    code, _, err = cli("data", "fetch", "iemocap", "--root", tmp_path)
    line = assert_one_line_error(code, err, "iemocap", "available: cremad, emodb, ravdess")
    assert "folder" not in line
    code, _, err = cli("data", "fetch", "folder", "--root", tmp_path)
    assert_one_line_error(code, err, "no download source for 'folder'")


def test_download_resumes_a_partial_file(server, tmp_path, emodb_root):
    base, served, requests = server
    data = (emodb_root / "wav" / "03a01Fa.wav").read_bytes()
    (served / "a.wav").write_bytes(data)
    dest = tmp_path / "a.wav"
    (tmp_path / "a.wav.part").write_bytes(data[:1000])
    seen = []
    download(f"{base}/a.wav", dest, on_start=seen.append)
    assert dest.read_bytes() == data
    assert requests == [("/a.wav", "bytes=1000-")]
    assert seen == [len(data)]
    assert not (tmp_path / "a.wav.part").exists()


def test_download_error_is_a_network_error(tmp_path):
    with pytest.raises(NetworkError, match="connection refused"):
        download(f"http://127.0.0.1:{closed_port()}/x", tmp_path / "x")


# --- per-file sources (CREMA-D) --------------------------------------------------------


@pytest.fixture
def cremad_files(tmp_path) -> tuple[dict[str, bytes], Path]:
    """Three genuine-format CREMA-D files (16 kHz mono WAV) and a manifest of them."""
    files = {}
    for i, name in enumerate(["1001_DFA_ANG_XX.wav", "1001_IEO_HAP_HI.wav", "1002_TIE_NEU_XX.wav"]):
        path = tmp_path / "gen" / name
        path.parent.mkdir(exist_ok=True)
        t = np.arange(16_000) / 16_000
        sf.write(path, (0.2 * np.sin(2 * np.pi * (200 + 50 * i) * t)).astype(np.float32), 16_000, subtype="PCM_16")
        files[f"AudioWAV/{name}"] = path.read_bytes()
    manifest = tmp_path / "cremad-subset.tsv"
    manifest.write_text(
        "".join(f"{hashlib.sha256(b).hexdigest()}\t{len(b)}\t{p}\n" for p, b in files.items())
    )
    return files, manifest


def serve(folder: Path, files: dict[str, bytes]) -> None:
    for rel, data in files.items():
        (folder / rel).parent.mkdir(parents=True, exist_ok=True)
        (folder / rel).write_bytes(data)


def test_fetch_cremad_file_by_file(cli, server, tmp_path, cremad_files):
    base, served, requests = server
    files, manifest = cremad_files
    serve(served / "media", files)
    root = tmp_path / "cremad"
    code, out, err = cli("data", "fetch", "cremad", "--root", root, "--url", f"{base}/media/{{path}}", "--manifest", manifest)
    assert code == 0, err
    assert all((root / rel).read_bytes() == data for rel, data in files.items())
    assert sorted(p for p, _ in requests) == sorted(f"/media/{rel}" for rel in files)
    code, out, err = cli("data", "check", "cremad", "--root", root, "--manifest", manifest)
    assert code == 0, err
    assert "3 utterances" in out and "3 ok" in out
    # Generated files are not CREMA-D's: against the shipped manifest they are flagged.
    code, out, err = cli("data", "check", "cremad", "--root", root)
    assert_one_line_error(code, err, "checksum mismatch", "1001_DFA_ANG_XX.wav")


def test_fetch_cremad_falls_back_when_lfs_serves_pointers(server, tmp_path, cremad_files):
    """GitHub answers with LFS pointer stubs when the repository's LFS budget is used up;
    the next URL template (a mirror) is then tried for every file."""
    from serbench.data.sources import Source
    from serbench.data.fetch import fetch
    from serbench.data.manifest import load

    base, served, requests = server
    files, manifest = cremad_files
    serve(served / "mirror", files)
    serve(served / "github", {rel: b"version https://git-lfs.github.com/spec/v1\noid sha256:0\nsize 1\n" for rel in files})
    source = Source("files", (f"{base}/github/{{path}}", f"{base}/mirror/{{path}}"), "test", "test")
    done = fetch(source, tmp_path / "c", load(manifest), name="cremad")
    assert done.files == 3 and not done.already
    assert all((tmp_path / "c" / rel).read_bytes() == data for rel, data in files.items())
    # the first file found the mirror; the others went there directly
    assert sum(path.startswith("/github/") for path, _ in requests) == 1


def test_fetch_cremad_pointer_everywhere_is_one_line(cli, server, tmp_path, cremad_files):
    base, served, _ = server
    files, manifest = cremad_files
    serve(served, {rel: b"version https://git-lfs.github.com/spec/v1\n" for rel in files})
    code, _, err = cli("data", "fetch", "cremad", "--root", tmp_path / "c", "--url", f"{base}/{{path}}", "--manifest", manifest)
    assert_one_line_error(code, err, "Git LFS pointer")


def test_fetch_cremad_url_must_be_a_template(cli, tmp_path, cremad_files):
    _, manifest = cremad_files
    code, _, err = cli("data", "fetch", "cremad", "--root", tmp_path / "c", "--url", "http://127.0.0.1:9/x.zip", "--manifest", manifest)
    assert_one_line_error(code, err, "{path}")


def test_fetch_cremad_unreachable_fails_once(cli, tmp_path, cremad_files):
    _, manifest = cremad_files
    url = f"http://127.0.0.1:{closed_port()}/{{path}}"
    code, _, err = cli("data", "fetch", "cremad", "--root", tmp_path / "c", "--url", url, "--manifest", manifest)
    assert_one_line_error(code, err, "connection refused", "1001_DFA_ANG_XX.wav")


def test_shipped_sources_name_the_official_distributions():
    """Each built-in adapter declares its corpus's official distribution itself."""
    assert EmoDB.source.urls == ("http://emodb.bilderbar.info/download/download.zip",)
    assert RAVDESS.source.urls[0].startswith("https://zenodo.org/records/1188976/files/Audio_Speech_Actors_01-24.zip")
    assert RAVDESS.source.archive_md5 == "bc696df654c87fed845eb13823edef8a"
    assert CremaD.source.urls[0].startswith("https://media.githubusercontent.com/media/CheyneyComputerScience/CREMA-D/")
    assert CremaD.source.kind == "files" and all("{path}" in url for url in CremaD.source.urls)
