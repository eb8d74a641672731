"""compose.yaml as Docker Compose itself reads it.

``docker-compose config`` (Debian's docker-compose 1.x, which CI installs) must accept the
file and resolve it to the services the README documents; so must ``docker compose config``
where the v2 plugin is installed. Without docker-compose the tests fail, never skip.
The resolved command lines are parsed by serbench's own argument parser.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from serbench.cli.main import build_parser

REPO = Path(__file__).resolve().parents[2]
COMPOSE_FILE = REPO / "compose.yaml"
GIB = 2**30


def _v2_plugin() -> list[str]:
    docker = shutil.which("docker")
    if docker is None:
        return []
    probe = subprocess.run([docker, "compose", "version"], capture_output=True, text=True)
    return [docker, "compose"] if probe.returncode == 0 else []


# Debian's docker-compose always; the v2 plugin only where it is installed.
COMPOSE_COMMANDS = {"docker-compose": ["docker-compose"]}
if _v2_plugin():
    COMPOSE_COMMANDS["docker compose"] = _v2_plugin()


def compose(command: list[str], *args: str, env: dict[str, str] | None = None, tmp_path: Path) -> str:
    if shutil.which(command[0]) is None:
        pytest.fail(
            f"{command[0]} not found: install Debian's docker-compose (apt-get install -y docker-compose); "
            ".ci/run installs it"
        )
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("SERBENCH_", "COMPOSE_", "DOCKER_"))}
    clean.update(env or {})
    empty_env_file = tmp_path / "empty.env"  # a developer's .env must not change the defaults
    empty_env_file.write_text("")
    done = subprocess.run(
        [*command, "--env-file", str(empty_env_file), "-f", str(COMPOSE_FILE), *args],
        capture_output=True,
        text=True,
        env=clean,
        cwd=tmp_path,
        timeout=120,
    )
    assert done.returncode == 0, f"{' '.join(command)} {' '.join(args)} failed:\n{done.stderr}"
    assert "WARN" not in done.stderr.upper(), done.stderr
    return done.stdout


def resolved(command: list[str], tmp_path: Path, **env: str) -> dict:
    return yaml.safe_load(compose(command, "config", env=env, tmp_path=tmp_path))


def size_bytes(value) -> int:
    """Compose 1.x keeps "32g"; Compose 2 writes bytes."""
    text = str(value).strip().lower().removesuffix("b")
    units = {"k": 2**10, "m": 2**20, "g": 2**30}
    if text and text[-1] in units:
        return int(float(text[:-1]) * units[text[-1]])
    return int(text)


def mounts(service: dict) -> dict[str, tuple[str, bool]]:
    """target -> (source, read-only), from the short ("src:dst:mode") or long syntax."""
    found = {}
    for volume in service.get("volumes", []):
        if isinstance(volume, str):
            parts = volume.split(":")
            mode = parts[2] if len(parts) > 2 else "rw"
            found[parts[1]] = (parts[0], "ro" in mode.split(","))
        else:
            found[volume["target"]] = (volume["source"], bool(volume.get("read_only", False)))
    return found


@pytest.fixture(params=sorted(COMPOSE_COMMANDS))
def command(request) -> list[str]:
    return COMPOSE_COMMANDS[request.param]


def test_docker_compose_is_installed():
    assert shutil.which("docker-compose"), (
        "docker-compose not found: install Debian's docker-compose (apt-get install -y docker-compose)"
    )


def test_config_is_valid(command, tmp_path):
    assert compose(command, "config", "-q", tmp_path=tmp_path) == ""


def test_job_service_runs_the_named_job_into_results(command, tmp_path):
    job = resolved(command, tmp_path)["services"]["job"]
    assert job["entrypoint"] == ["serbench", "run", "--out", "/results"]
    # `docker compose run job FILE` replaces the command with FILE: serbench run --out /results FILE
    args = build_parser().parse_args([*job["entrypoint"][1:], "jobs/ax_emodb.yaml"])
    assert (args.command, str(args.job), str(args.out)) == ("run", "jobs/ax_emodb.yaml", "/results")
    default = build_parser().parse_args([*job["entrypoint"][1:], *job["command"]])
    assert (REPO / default.job).is_file(), f"the default command names a missing job: {default.job}"


def test_job_limits_default_to_values_that_start_anywhere(command, tmp_path):
    """No CPU quota by default (a quota above the host's CPUs keeps Docker from starting the
    container); memory 8 GiB with no swap on top."""
    job = resolved(command, tmp_path)["services"]["job"]
    assert float(job["cpus"]) == 0
    assert size_bytes(job["mem_limit"]) == 8 * GIB
    assert size_bytes(job["memswap_limit"]) == 8 * GIB  # no swap on top of the limit


def test_every_shipped_job_fits_the_default_memory_limit(command, tmp_path):
    """serbench refuses a job whose resources ask for more than its container has: every
    job in jobs/ must be accepted under the defaults (CPUs are the host's own)."""
    limit = size_bytes(resolved(command, tmp_path)["services"]["job"]["mem_limit"])
    for path in sorted((REPO / "jobs").glob("*.yaml")):
        resources = yaml.safe_load(path.read_text())["resources"]
        assert resources["memory_gb"] * GIB <= limit, f"{path.name} asks for {resources['memory_gb']} GB"


def test_job_limits_follow_the_environment(command, tmp_path):
    job = resolved(command, tmp_path, SERBENCH_CPUS="1.5", SERBENCH_MEMORY="3g")["services"]["job"]
    assert float(job["cpus"]) == 1.5
    assert size_bytes(job["mem_limit"]) == 3 * GIB
    assert size_bytes(job["memswap_limit"]) == 3 * GIB


def test_job_mounts(command, tmp_path):
    job = resolved(command, tmp_path)["services"]["job"]
    found = mounts(job)
    assert found["/app/jobs"] == (str(REPO / "jobs"), True)
    assert found["/data"] == (str(REPO / "data"), True)
    assert found["/models"] == (str(REPO / "models"), True)
    assert found["/results"] == (str(REPO / "results"), False)
    assert found["/cache"][1] is False and found["/cache"][0].endswith("model-cache")

    data, models, results = tmp_path / "corpora", tmp_path / "weights", tmp_path / "out"
    job = resolved(
        command, tmp_path, SERBENCH_DATA_DIR=str(data), SERBENCH_MODELS_DIR=str(models), SERBENCH_RESULTS_DIR=str(results)
    )["services"]["job"]
    found = mounts(job)
    assert found["/data"] == (str(data), True)
    assert found["/models"] == (str(models), True)
    assert found["/results"] == (str(results), False)


def test_model_cache_is_a_named_volume(command, tmp_path):
    config = resolved(command, tmp_path)
    assert "model-cache" in config["volumes"]
    for name in ("job", "test"):
        assert mounts(config["services"][name])["/cache"][0].endswith("model-cache")


def test_leaderboard_service_writes_html_into_results(command, tmp_path):
    board = resolved(command, tmp_path)["services"]["leaderboard"]
    argv = [*board["entrypoint"], *board["command"]]
    assert argv[0] == "serbench"
    args = build_parser().parse_args(argv[1:])
    assert (args.command, str(args.results), args.format, str(args.output)) == (
        "leaderboard", "/results", "html", "/results/leaderboard.html"
    )
    assert mounts(board)["/results"] == (str(REPO / "results"), False)


def test_test_service_builds_the_test_stage_with_data_and_models(command, tmp_path):
    config = resolved(command, tmp_path)["services"]
    test = config["test"]
    assert test["build"]["target"] == "test"
    assert config["job"]["build"]["target"] == "runtime"
    found = mounts(test)
    assert found["/data"] == (str(REPO / "data"), True)
    assert found["/models"] == (str(REPO / "models"), True)
    stages = [line.split()[-1] for line in (REPO / "Dockerfile").read_text().splitlines() if line.startswith("FROM ")]
    assert {"runtime", "test"} <= set(stages), stages
