"""Shared fixtures. The suite runs on real data and real weights, found through
``SERBENCH_DATA`` and ``SERBENCH_MODELS`` (default: ``../shared/data`` and
``../shared/models`` beside the checkout). Missing data fails the run; it never skips."""

from __future__ import annotations

import copy
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("SERBENCH_DATA") or REPO.parent / "shared" / "data").resolve()
MODELS = Path(os.environ.get("SERBENCH_MODELS") or REPO.parent / "shared" / "models").resolve()
REQUIRED = [DATA / "emodb" / "wav", DATA / "ravdess-mini", DATA / "manifests", MODELS / "whisper-tiny.en", MODELS / "whisper-base"]


def pytest_sessionstart(session: pytest.Session) -> None:
    missing = [str(p) for p in REQUIRED if not p.is_dir()]
    if missing:
        pytest.exit(
            "test data missing: " + ", ".join(missing) + " (set SERBENCH_DATA / SERBENCH_MODELS)",
            returncode=3,
        )
    os.environ["SERBENCH_DATA"] = str(DATA)
    os.environ["SERBENCH_MODELS"] = str(MODELS)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")


@pytest.fixture(scope="session")
def emodb_root() -> Path:
    return DATA / "emodb"


@pytest.fixture(scope="session")
def ravdess_mini_root() -> Path:
    return DATA / "ravdess-mini"


@pytest.fixture(scope="session")
def tiny_whisper() -> Path:
    return MODELS / "whisper-tiny.en"


SMOKE_JOB: dict[str, Any] = {
    "name": "test_job",
    "seed": 0,
    "dataset": {
        "name": "emodb",
        "protocol": {"name": "holdout", "test_fraction": 0.2, "val_fraction": 0.25},
        "subset": {"per_class": 5},
    },
    "backbone": {"name": "whisper", "source": "openai/whisper-tiny.en", "options": {"layers": "mean"}},
    "training": {"batch_size": 4},
    "search_space": {
        "lr": {"type": "float", "low": 1e-4, "high": 3e-3, "log": True},
        "epochs": {"type": "int", "low": 1, "high": 2},
        "unfreeze": {"type": "int", "low": 2, "high": 3},
        "maxlen": {"type": "choice", "values": [16000, 24000]},
    },
    "engine": {"name": "random"},
    "budget": {"trials": 2},
    "resources": {"cpus": 2, "memory_gb": 4},
}


@pytest.fixture
def job_dict() -> dict[str, Any]:
    """A valid, fast job (frozen-encoder trials on 35 EmoDB utterances) to modify."""
    return copy.deepcopy(SMOKE_JOB)


@pytest.fixture
def write_job(tmp_path: Path):
    """Write a job mapping (or raw text) to a YAML file and return its path."""

    def write(job: dict[str, Any] | str, name: str = "job.yaml") -> Path:
        path = tmp_path / name
        path.write_text(job if isinstance(job, str) else yaml.safe_dump(job), encoding="utf-8")
        return path

    return write


@pytest.fixture
def cli(capsys):
    """Run ``serbench`` in-process; return (exit code, stdout, stderr)."""
    from serbench.cli.main import main

    def run(*args: str) -> tuple[int, str, str]:
        code = main([str(a) for a in args])
        captured = capsys.readouterr()
        return code, captured.out, captured.err

    return run


def assert_one_line_error(code: int, err: str, *needles: str) -> str:
    """The CLI's contract for bad input; returns the message for further checks."""
    assert code == 2, err
    line = err.strip()
    assert line, "nothing on stderr"
    assert "\n" not in line, err
    assert line.startswith("serbench: error:"), line
    assert "Traceback" not in err
    for needle in needles:
        assert needle in line, f"{needle!r} not in {line!r}"
    return line


def sigint_as_at_a_terminal() -> None:
    """``preexec_fn`` for a child a test interrupts with SIGINT as Ctrl-C would: SIGINT at
    its default in the child, whatever this process inherited. A shell that starts pytest
    with ``&`` (as CI may be started) leaves SIGINT ignored, and exec keeps it ignored."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def run_serbench(*args: object, site: Path | None = None, cwd: Path = REPO, **env: str) -> "subprocess.CompletedProcess[str]":
    """The CLI in a fresh interpreter (``python -m serbench.cli``) that also sees the plugin
    packages written to ``site``, with no plugin filter from the caller's environment."""
    environ = {k: v for k, v in os.environ.items() if k not in ("SERBENCH_PLUGINS", "SERBENCH_DISABLE_PLUGINS")}
    if site is not None:
        environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(site), os.environ.get("PYTHONPATH")]))
    environ.update(env)
    return subprocess.run(
        [sys.executable, "-m", "serbench.cli", *map(str, args)],
        capture_output=True, text=True, env=environ, cwd=cwd, timeout=120,
    )


@pytest.fixture(scope="session")
def speechbrain_checkpoint(tmp_path_factory):
    """A folder laid out like speechbrain/emotion-recognition-wav2vec2-IEMOCAP, with a tiny
    random wav2vec2 (see tests/backbones/speechbrain_checkpoint.py); tests must not write into it."""
    from speechbrain_checkpoint import write_checkpoint  # tests/backbones/, on the path of its tests

    return write_checkpoint(tmp_path_factory.mktemp("sb") / "emotion-recognition-wav2vec2-IEMOCAP")


class FunctionWorker:
    """A slot worker whose trials are a plain function ``run_trial(number, params) ->
    record fields`` (exceptions become failed trials, as in a study's worker)."""

    def __init__(self, run_trial):
        self.run_trial = run_trial

    def trial(self, fold: int, number: int, params: dict[str, Any]) -> dict[str, Any]:
        from serbench.errors import UserError
        from serbench.study.search import failure_fields

        try:
            return self.run_trial(number, params)
        except UserError:
            raise
        except Exception as exc:
            return failure_fields(exc)


def run_search(search, run_trial):
    """Drive one fold's search to its end through the real scheduler on the local
    backend, with ``run_trial`` as each trial; (its trials, what stopped it)."""
    from serbench.execution.local_backend import LocalBackend
    from serbench.spec import Resources
    from serbench.study.events import StudyEvents
    from serbench.study.scheduler import Scheduler

    with LocalBackend().open(1, Resources(), lambda slot: FunctionWorker(run_trial)) as pool:
        Scheduler(pool, [search], StudyEvents(), finals=False).run()
    return search.trials, search.stop_reason


@pytest.fixture(scope="module")
def ray_cluster():
    """A real two-node Ray cluster (one CPU and 3 GB of Ray memory per node) in a network
    namespace of its own, one per test module (see tests/ray_cluster.py); drivers run in
    the namespace through ``ray_cluster.driver``/``run``. Fails, never skips, without
    ``ip netns``."""
    from ray_cluster import RayCluster  # tests/, on the path of every test

    with RayCluster(nodes=2, cpus=1, memory_gb=3) as cluster:
        yield cluster
