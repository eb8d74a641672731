"""``serbench run --executor docker``: the container's arguments (a pure function of the
job and the host paths), and one-line errors when Docker cannot be used. No Docker
daemon runs during these tests: a real container needs one (and the project's image)."""

import subprocess
import sys
from pathlib import Path

import pytest

from serbench.execution.docker import container_run_kwargs
from serbench.errors import UserError
from serbench.spec import load_job, parse_job

REPO = Path(__file__).resolve().parents[2]


def test_container_arguments_carry_the_job_limits_and_mounts(tmp_path):
    spec = load_job(REPO / "jobs" / "oom_smoke_emodb.yaml")
    job = REPO / "jobs" / "oom_smoke_emodb.yaml"
    kwargs = container_run_kwargs(
        spec, job, tmp_path / "results", tmp_path / "data", "serbench:test",
        models=tmp_path / "models", again="--resume", user="1000:1000",
        environ={"HF_HUB_OFFLINE": "1", "PATH": "/usr/bin", "SERBENCH_DEBUG": "1"},
    )
    assert kwargs["image"] == "serbench:test"
    assert kwargs["entrypoint"] == ["serbench"]
    assert kwargs["command"] == ["run", "/job/oom_smoke_emodb.yaml", "--out", "/results", "--resume"]
    assert kwargs["nano_cpus"] == 1_000_000_000
    assert kwargs["mem_limit"] == kwargs["memswap_limit"] == 2 * 2**30
    assert kwargs["volumes"] == {
        str(job): {"bind": "/job/oom_smoke_emodb.yaml", "mode": "ro"},
        str(tmp_path / "results"): {"bind": "/results", "mode": "rw"},
        str(tmp_path / "data"): {"bind": "/data", "mode": "ro"},
        str(tmp_path / "models"): {"bind": "/models", "mode": "ro"},
    }
    env = kwargs["environment"]
    assert env["SERBENCH_DATA"] == "/data" and env["SERBENCH_MODELS"] == "/models"
    assert env["SERBENCH_EXECUTOR"] == "docker" and env["HF_HUB_OFFLINE"] == "1" and env["SERBENCH_DEBUG"] == "1"
    assert env["SERBENCH_LOCK_HELD"] == "1"  # the host's serbench holds the job folder's lock
    assert "PATH" not in env
    assert kwargs["user"] == "1000:1000" and kwargs["detach"] is True


def test_fractional_cpus_and_no_models(job_dict, tmp_path):
    job_dict["resources"] = {"cpus": 1.5, "memory_gb": 0.5}
    kwargs = container_run_kwargs(parse_job(job_dict), tmp_path / "job.yaml", tmp_path, tmp_path / "data")
    assert kwargs["nano_cpus"] == 1_500_000_000 and kwargs["mem_limit"] == 2**29
    assert "SERBENCH_MODELS" not in kwargs["environment"] and len(kwargs["volumes"]) == 3
    assert kwargs["command"] == ["run", "/job/job.yaml", "--out", "/results"]


def test_an_absolute_corpus_root_is_refused(job_dict, tmp_path):
    job_dict["dataset"]["root"] = str(tmp_path / "emodb")
    with pytest.raises(UserError, match="dataset.root: .* the container cannot see"):
        container_run_kwargs(parse_job(job_dict), tmp_path / "job.yaml", tmp_path, tmp_path)


def one_line_error(err: str) -> str:
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    return err


def test_an_unreachable_daemon_is_one_line(job_dict, write_job, tmp_path, cli, monkeypatch):
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/no-such-docker.sock")
    code, _, err = cli("run", write_job(job_dict), "--executor", "docker", "--out", tmp_path / "out")
    assert code == 2
    assert "cannot reach the Docker daemon at unix://" in one_line_error(err)


def test_a_missing_sdk_is_one_line(job_dict, write_job, tmp_path):
    job = write_job(job_dict)
    code = (
        "import sys; sys.modules['docker'] = None\n"  # as if the [docker] extra were not installed
        "from serbench.cli.main import main\n"
        f"sys.exit(main(['run', {str(job)!r}, '--executor', 'docker', '--out', {str(tmp_path)!r}]))"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 2
    assert "pip install 'serbench[docker]'" in one_line_error(proc.stderr)


@pytest.mark.parametrize(
    "args, message",
    [(["--executor", "docker", "--isolate"], "choose one"), (["--image", "x"], "only with --executor docker")],
)
def test_option_conflicts_are_one_line(job_dict, write_job, tmp_path, cli, args, message):
    code, _, err = cli("run", write_job(job_dict), "--out", tmp_path, *args)
    assert code == 2 and message in one_line_error(err)
