"""Provenance in result.json: serbench's git commit (and whether the tree was dirty) and
the versions of the libraries the job's engine is built on."""

import json
import shutil
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

import jsonschema

import serbench
from serbench.leaderboard.board import load_results
from serbench.plugin.registry import registry
from serbench.results.provenance import distribution_version, git_checkout, plugin_library, serbench_checkout
from serbench.results.schema import result_schema

REPO = Path(__file__).resolve().parents[2]
PACKAGE = Path(serbench.__file__).resolve().parent
GIT = ["git", "-c", "user.name=serbench tests", "-c", "user.email=tests@serbench.invalid", "-c", "commit.gpgsign=false"]


def git(directory: Path, *args: str) -> str:
    return subprocess.run([*GIT, "-C", str(directory), *args], capture_output=True, text=True, check=True).stdout


def head_and_dirty(directory: Path) -> tuple[str, bool]:
    return git(directory, "rev-parse", "HEAD").strip(), bool(git(directory, "status", "--porcelain", "--untracked-files=no").strip())


def test_this_checkout_gives_its_head_and_its_status():
    before = head_and_dirty(REPO)  # other people edit and commit in this checkout meanwhile
    found = git_checkout(PACKAGE)
    after = head_and_dirty(REPO)
    assert PACKAGE.parent == REPO
    assert (found.commit, found.dirty) in {before, after}
    assert len(found.commit) == 40


def test_a_study_records_the_commit_and_the_engine_library(cli, job_dict, write_job, tmp_path):
    job_dict["engine"] = {"name": "optuna"}
    job_dict["budget"]["trials"] = 1
    serbench_checkout.cache_clear()
    before = head_and_dirty(REPO)
    code, _, err = cli("run", write_job(job_dict), "--out", tmp_path)
    after = head_and_dirty(REPO)
    assert code == 0, err
    result = json.loads((tmp_path / "test_job" / "result.json").read_text())
    jsonschema.validate(result, result_schema())
    versions = result["versions"]
    assert (versions["commit"], versions["dirty"]) in {before, after}
    assert versions["serbench"] == version("serbench")
    assert versions["torch"] == version("torch")
    assert versions["transformers"] == version("transformers")
    assert versions["python"] == ".".join(map(str, sys.version_info[:3]))
    # the engine declares optuna, the whisper backbone transformers; the emodb adapter nothing
    assert versions["libraries"] == {
        "engine": {"name": "optuna", "version": version("optuna")},
        "backbone": {"name": "transformers", "version": version("transformers")},
    }


def test_the_checkout_is_found_from_the_package_not_the_working_directory(tmp_path):
    copy = tmp_path / "site" / "serbench"
    shutil.copytree(PACKAGE, copy, ignore=shutil.ignore_patterns("__pycache__"))
    probe = (
        "import json, serbench; from serbench.results.provenance import serbench_checkout; "
        "print(json.dumps([serbench.__file__, vars(serbench_checkout())]))"
    )
    done = subprocess.run(
        [sys.executable, "-P", "-c", probe],  # -P: the working directory is not on sys.path
        cwd=REPO / "docs",  # inside this checkout's work tree
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(copy.parent), "GIT_CEILING_DIRECTORIES": str(tmp_path)},
        capture_output=True,
        text=True,
        check=True,
    )
    imported, checkout = json.loads(done.stdout)
    assert Path(imported).resolve() == (copy / "__init__.py").resolve()
    assert checkout == {"commit": None, "dirty": None}


def test_only_a_tracked_package_gets_a_commit_and_only_tracked_changes_make_it_dirty(tmp_path):
    repo = tmp_path / "repo"
    package = repo / "pkg"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("VALUE = 1\n")
    (repo / "README").write_text("a repository\n")
    git(repo, "init", "-q")
    assert git_checkout(package).commit is None  # not a commit yet
    git(repo, "add", "README")
    git(repo, "commit", "-q", "-m", "readme")
    assert git_checkout(package).commit is None  # inside the work tree, but untracked (an ignored .venv)
    git(repo, "add", "pkg")
    git(repo, "commit", "-q", "-m", "package")
    head = git(repo, "rev-parse", "HEAD").strip()
    assert vars(git_checkout(package)) == {"commit": head, "dirty": False}
    (repo / "results").mkdir()
    (repo / "results" / "result.json").write_text("{}\n")
    assert git_checkout(package).dirty is False  # untracked files do not count
    (repo / "README").write_text("edited outside the package\n")
    assert vars(git_checkout(package)) == {"commit": head, "dirty": True}
    git(repo, "add", "README")  # staged counts too
    assert git_checkout(package).dirty is True
    assert vars(git_checkout(tmp_path / "missing")) == {"commit": None, "dirty": None}


def test_every_built_in_engine_declares_an_installed_library():
    built_in = [entry for entry in registry().entries("engine") if entry.package == "serbench"]
    assert {entry.name for entry in built_in} >= {"random", "grid", "optuna", "hyperopt", "ax"}
    for entry in built_in:
        library = plugin_library(entry.cls)
        assert library is not None, entry.name
        assert distribution_version(library) == version(library), entry.name
    assert distribution_version("no-such-distribution-serbench") is None


def test_the_schema_documents_the_provenance_and_old_results_still_load():
    versions = result_schema()["$defs"]["Versions"]
    assert {"commit", "dirty", "libraries"} <= set(versions["properties"])
    assert "commit" not in versions.get("required", [])  # results written before still validate
    published = load_results(REPO / "docs" / "results")
    assert published.runs and not published.skipped
    # a result.json as serbench wrote it before provenance (a hyperopt study of 2026-11-27)
    old = load_results(Path(__file__).parent / "fixtures" / "pre_provenance")
    assert len(old.runs) == 1 and not old.skipped
    (run,) = old.runs
    assert run.result.versions.commit is None and run.result.versions.libraries == {}
