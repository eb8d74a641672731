"""The example third-party engine package (examples/serbench-engine-example):
installed with pip like any package, found through the ``serbench`` entry-point group,
and keeping the engine contract (serbench.testing.engines)."""

from __future__ import annotations

import importlib
import json
import os
import shutil
import subprocess
import sys
from importlib.metadata import entry_points
from pathlib import Path

import pytest
import yaml

from serbench.spec import load_job
from serbench.testing.engines import check_engine

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "examples" / "serbench-engine-example"
DIST = "serbench-engine-example"


def pip(*args: str) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "--disable-pip-version-check", *args],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def cli(*args: str, cwd: Path = REPO) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if k not in ("SERBENCH_PLUGINS", "SERBENCH_DISABLE_PLUGINS")}
    return subprocess.run(
        [sys.executable, "-m", "serbench.cli", *args], capture_output=True, text=True, env=environ, cwd=cwd, timeout=120
    )


@pytest.fixture(scope="module")
def example_engine(tmp_path_factory):
    """The example installed (non-editable, from a copy so the checkout stays clean) into
    this environment for the module's tests, then uninstalled; yields its engine class,
    loaded through the entry point."""
    source = tmp_path_factory.mktemp("example") / EXAMPLE.name
    shutil.copytree(EXAMPLE, source, ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"))
    pip("install", "--no-deps", "--no-build-isolation", "--no-index", str(source))
    try:
        importlib.invalidate_caches()
        (point,) = [ep for ep in entry_points(group="serbench") if ep.name == "sobol"]
        assert point.dist.metadata["Name"] == DIST
        (engine_cls,) = point.load().serbench_engines()
        yield engine_cls
    finally:
        pip("uninstall", "--yes", DIST)
        for module in [m for m in sys.modules if m.startswith("serbench_engine_example")]:
            del sys.modules[module]


def test_example_is_listed_by_serbench_plugins(example_engine):
    proc = cli("plugins", "--json")
    assert proc.returncode == 0, proc.stderr
    engines = {entry["name"]: entry for entry in json.loads(proc.stdout)["engines"]}
    assert engines["sobol"] == {"name": "sobol", "plugin": "sobol", "package": DIST, "version": "0.1.0"}
    assert engines["random"]["package"] == "serbench"


def test_example_keeps_the_engine_contract(example_engine):
    check_engine(example_engine)
    check_engine(example_engine, {"start": 8})


def test_a_job_can_name_the_example_engine(example_engine, job_dict, tmp_path):
    job_dict["engine"] = {"name": "sobol", "options": {"start": 4}}
    job = tmp_path / "sobol_job.yaml"
    job.write_text(yaml.safe_dump(job_dict), encoding="utf-8")
    proc = cli("validate", str(job))
    assert proc.returncode == 0, proc.stderr
    assert "engine sobol" in proc.stdout

    job_dict["engine"]["options"] = {"begin": 4}
    job.write_text(yaml.safe_dump(job_dict), encoding="utf-8")
    proc = cli("validate", str(job))
    assert proc.returncode == 2 and "engine.options.begin" in proc.stderr, proc.stderr


def test_the_example_engine_runs_the_smoke_job(example_engine, tmp_path):
    """A real study (EmoDB subset, Whisper tiny.en) driven by the third-party engine."""
    spec = yaml.safe_load((REPO / "jobs" / "smoke_emodb.yaml").read_text(encoding="utf-8"))
    spec["name"] = "smoke_sobol"
    spec["engine"] = {"name": "sobol", "options": {"start": 4}}
    spec["budget"] = {"trials": 2}
    job = tmp_path / "smoke_sobol.yaml"
    job.write_text(yaml.safe_dump(spec), encoding="utf-8")
    environ = {k: v for k, v in os.environ.items() if k not in ("SERBENCH_PLUGINS", "SERBENCH_DISABLE_PLUGINS")}
    proc = subprocess.run(
        [sys.executable, "-m", "serbench.cli", "run", str(job), "--out", str(tmp_path / "results")],
        capture_output=True, text=True, env=environ, cwd=REPO, timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads((tmp_path / "results" / "smoke_sobol" / "result.json").read_text(encoding="utf-8"))
    assert result["status"] == "completed" and result["spec"]["engine"]["name"] == "sobol"
    assert result["versions"]["plugins"]["engine"]["package"] == DIST
    engine = example_engine(load_job(job).search_space, seed=0, options=example_engine.Options(start=4))
    asked = [engine.ask(n) for n in range(2)]
    assert [t["params"] for t in result["trials"]] == asked  # the study ran what the engine asked
    assert 0.0 <= result["test"]["bca"] <= 1.0 and result["best"]["val_bca"] > 0
