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


# ---------------------------------------------------------------------------------------
# The Ray services: a cluster on one machine (README, Containers; .ci/container runs it)

RAY_SERVICES = ("ray-head", "ray-worker", "ray-job")


def flag(argv: list[str], name: str) -> str:
    """The value after ``name`` in a command line (``--name VALUE`` or ``--name=VALUE``)."""
    for i, arg in enumerate(argv):
        if arg == name:
            return argv[i + 1]
        if arg.startswith(name + "="):
            return arg.split("=", 1)[1]
    raise AssertionError(f"{name} not in {argv}")


def test_ray_head_starts_a_head_on_6379_without_dashboard(command, tmp_path):
    head = resolved(command, tmp_path)["services"]["ray-head"]
    argv = head["entrypoint"]
    assert argv[:4] == ["ray", "start", "--head", "--block"], argv
    assert flag(argv, "--port") == "6379"
    assert flag(argv, "--include-dashboard") == "false"
    assert flag(argv, "--num-cpus") == "2"
    assert head["build"]["target"] == "runtime"
    assert head["healthcheck"]["test"][-2:] == ["--address", "127.0.0.1:6379"]


def test_ray_workers_join_the_head_in_its_network_namespace(command, tmp_path):
    """Several raylets in one network namespace: every port Ray fixes by default on every
    node is set to 0 (random); the head's own ports (6379, the dashboard's) are the head's."""
    config = resolved(command, tmp_path)["services"]
    worker = config["ray-worker"]
    argv = worker["entrypoint"]
    assert argv[:2] == ["ray", "start"] and "--block" in argv and "--head" not in argv, argv
    assert flag(argv, "--address") == "127.0.0.1:6379"
    assert worker["network_mode"] == "service:ray-head"
    assert "container_name" not in worker  # scalable
    import ray._private.ray_constants as ray_constants

    per_node_defaults = {"--dashboard-agent-listen-port": ray_constants.DEFAULT_DASHBOARD_AGENT_LISTEN_PORT}
    for name, default in per_node_defaults.items():
        assert default, f"Ray no longer fixes {name}: update compose.yaml and this test"
        for service in ("ray-head", "ray-worker"):
            assert flag(config[service]["entrypoint"], name) == "0", (service, name)


def test_ray_job_is_the_driver_in_the_heads_namespaces(command, tmp_path):
    config = resolved(command, tmp_path)["services"]
    driver = config["ray-job"]
    assert driver["network_mode"] == "service:ray-head"
    assert driver["pid"] == "service:ray-head"  # a Ray driver looks for its raylet among its processes
    environment = driver["environment"]
    if isinstance(environment, list):
        environment = dict(item.partition("=")[::2] for item in environment)
    assert environment["SERBENCH_RAY_ADDRESS"] == "127.0.0.1:6379"
    assert environment["RAY_AUTH_MODE"] == "disabled"
    args = build_parser().parse_args([*driver["entrypoint"][1:], "--parallel", "2", "jobs/smoke_emodb.yaml"])
    assert (args.command, args.backend, args.ray_address, args.parallel, str(args.out)) == (
        "run", "ray", "127.0.0.1:6379", 2, "/results"
    )
    default = build_parser().parse_args([*driver["entrypoint"][1:], *driver["command"]])
    assert (REPO / default.job).is_file()
    # Ray's temporary folder (its sockets) is the head's and the driver's; a worker keeps its own.
    assert mounts(config["ray-head"])["/tmp/ray"][0].endswith("ray-tmp")
    assert mounts(driver)["/tmp/ray"][0].endswith("ray-tmp")
    assert "/tmp/ray" not in mounts(config["ray-worker"])
    # `run job` stays a job of its own: it never starts the Ray head.
    assert "network_mode" not in config["job"] and "depends_on" not in config["job"]


@pytest.mark.parametrize("service", RAY_SERVICES)
def test_ray_services_mount_what_job_mounts_at_the_same_paths(command, tmp_path, service):
    config = resolved(command, tmp_path)["services"]
    job = mounts(config["job"])
    found = mounts(config[service])
    for target in ("/app/jobs", "/data", "/models", "/results", "/cache"):
        assert found[target] == job[target], (service, target)


def test_ray_node_limits_follow_the_environment(command, tmp_path):
    default = resolved(command, tmp_path)["services"]
    changed = resolved(command, tmp_path, SERBENCH_RAY_CPUS="1", SERBENCH_RAY_MEMORY="3g", SERBENCH_MEMORY="4g")["services"]
    for service in ("ray-head", "ray-worker"):
        assert float(default[service]["cpus"]) == 2 and size_bytes(default[service]["mem_limit"]) == 8 * GIB
        assert flag(changed[service]["entrypoint"], "--num-cpus") == "1"
        assert float(changed[service]["cpus"]) == 1
        assert size_bytes(changed[service]["mem_limit"]) == 3 * GIB
        assert size_bytes(changed[service]["memswap_limit"]) == 3 * GIB
    assert size_bytes(changed["ray-job"]["mem_limit"]) == 4 * GIB  # the driver: the job container's limits
    assert "ray-tmp" in resolved(command, tmp_path)["volumes"]
