"""``serbench run JOB --executor docker``: the same study in a container, under the job's
limits, through the Docker SDK for Python (``pip install 'serbench[docker]'``).

The container runs the image's ``serbench`` (the project's Dockerfile) with:

- ``nano_cpus`` = ``resources.cpus`` x 1e9 and ``mem_limit`` = ``memswap_limit`` =
  ``resources.memory_gb`` GiB (no swap beyond the limit), so the kernel enforces both;
- the job file read-only at ``/job/<file name>``, the ``--out`` folder at ``/results``,
  the data root (``--data-root``, else ``$SERBENCH_DATA``) read-only at ``/data``,
  ``$SERBENCH_MODELS`` read-only at ``/models`` and ``$SERBENCH_CACHE`` at ``/feature-cache``
  when set, with the matching environment variables;
- the caller's uid and gid, so the results belong to the caller.

This process locks the job folder ``<out>/<job>/`` before the container starts and holds
the lock until the container is gone (:mod:`serbench.results.lock`: a folder in use is
refused at once, exit 2); ``$SERBENCH_LOCK_HELD`` tells the container's ``serbench run``
not to take it. Inside, ``serbench run`` sees a cgroup memory limit and supervises itself
(:mod:`serbench.execution.supervisor`): a trial killed by the OOM killer is journalled as failed
(``oom``) and the study goes on. Logs stream to this terminal; the exit code is the
container's (0, 1, 2 or 130; anything else is reported on one line and returns 1).
Ctrl-C or SIGTERM stop the container with SIGTERM, so the study stops like an
interrupted run.

A missing SDK, an unreachable daemon, a missing image, or limits the Docker host cannot
give are one-line errors (exit 2).
"""

from __future__ import annotations

import os
import sys
import threading
from pathlib import Path
from typing import Any, Mapping, Sequence

from serbench.errors import UserError
from serbench.execution.limits import GIB
from serbench.execution.worker import run_arguments
from serbench.results.lock import FolderLock
from serbench.spec import JobSpec
from serbench import env

DEFAULT_IMAGE = "serbench:latest"
CONTAINER_OUT = "/results"
CONTAINER_DATA = "/data"
CONTAINER_MODELS = "/models"
CONTAINER_CACHE = "/feature-cache"  # the image keeps its hub cache in /cache
PASSTHROUGH = tuple(variable.name for variable in env.VARIABLES if variable.to_containers)
STOP_TIMEOUT_S = 60


def container_run_kwargs(
    spec: JobSpec,
    job: Path,
    out: Path,
    data_root: Path,
    image: str = DEFAULT_IMAGE,
    *,
    models: Path | None = None,
    cache: Path | None = None,
    again: str | None = None,
    user: str | None = None,
    environ: Mapping[str, str] | None = None,
    extra: Sequence[str] = (),
) -> dict[str, Any]:
    """The keyword arguments of ``docker.from_env().containers.run`` for one job.

    ``job``, ``out``, ``data_root``, ``models`` and ``cache`` are host paths and must be
    absolute; ``again`` is ``--force``, ``--resume`` or None; ``user`` is ``uid:gid``;
    the variables of ``PASSTHROUGH`` found in ``environ`` are passed on; ``extra`` are
    more ``serbench run`` options (``--no-model``). Raises
    ``UserError`` when the job names an absolute corpus root, which the container cannot
    see (name it relative to the data root instead).
    """
    for field, root in [("dataset.root", spec.dataset.root)] + [
        (f"transfer.{i}.root", t.root) for i, t in enumerate(spec.transfer)
    ]:
        if root is not None and Path(root).is_absolute():
            raise UserError(
                f"{field}: {root} is a path on this machine, which the container cannot see; with --executor "
                "docker, name corpus roots relative to --data-root (mounted at /data)"
            )
    for name, path in (("job", job), ("out", out), ("data root", data_root), ("models", models), ("cache", cache)):
        if path is not None and not Path(path).is_absolute():
            raise ValueError(f"{name} must be an absolute path, got {path}")
    container_job = f"/job/{job.name}"
    command = run_arguments(container_job, CONTAINER_OUT, None, again, extra)  # the data root is mounted at /data
    environment = {k: v for k, v in (environ or {}).items() if k in PASSTHROUGH}
    environment.update(
        {
            env.DATA.name: CONTAINER_DATA, env.EXECUTOR.name: "docker", env.LOCK_HELD.name: "1",  # run_in_docker holds it
            "HOME": "/tmp", "PYTHONUNBUFFERED": "1",
        }
    )
    volumes = {
        str(job): {"bind": container_job, "mode": "ro"},
        str(out): {"bind": CONTAINER_OUT, "mode": "rw"},
        str(data_root): {"bind": CONTAINER_DATA, "mode": "ro"},
    }
    if models is not None:
        volumes[str(models)] = {"bind": CONTAINER_MODELS, "mode": "ro"}
        environment[env.MODELS.name] = CONTAINER_MODELS
    if cache is not None:
        volumes[str(cache)] = {"bind": CONTAINER_CACHE, "mode": "rw"}
        environment[env.CACHE.name] = CONTAINER_CACHE
    memory = int(spec.resources.memory_gb * GIB)
    kwargs: dict[str, Any] = {
        "image": image,
        "entrypoint": ["serbench"],
        "command": command,
        "environment": environment,
        "volumes": volumes,
        "nano_cpus": int(round(spec.resources.cpus * 1e9)),
        "mem_limit": memory,
        "memswap_limit": memory,
        "labels": {"serbench.job": spec.name},
        "detach": True,
    }
    if user:
        kwargs["user"] = user
    return kwargs


def run_in_docker(
    spec: JobSpec, job: Path, out: Path, data_root: Path | None, image: str, again: str | None, extra: Sequence[str] = ()
) -> int:
    """Run the job in a container (see the module docstring); return its exit code."""
    try:
        import docker
        import docker.errors
    except ImportError:
        raise UserError("--executor docker needs the Docker SDK for Python: pip install 'serbench[docker]'") from None
    from serbench.data.base import default_data_home

    data = (data_root or default_data_home()).expanduser().resolve()
    if not data.is_dir():
        raise UserError(f"--executor docker: data root {data} is not a folder; pass --data-root DIR or set $SERBENCH_DATA")
    models = _folder_from_env(env.MODELS.name)
    cache = _folder_from_env(env.CACHE.name, create=True)
    out = out.expanduser().resolve()
    out.mkdir(parents=True, exist_ok=True)
    with FolderLock(out / spec.name):  # until the container is gone; FolderInUse: exit 2 before Docker is asked
        return _run_container(docker, spec, job, out, data, models, cache, image, again, extra)


def _run_container(
    docker, spec: JobSpec, job: Path, out: Path, data: Path, models: Path | None, cache: Path | None, image: str,
    again: str | None, extra: Sequence[str] = (),
) -> int:
    """Start the container, follow it, return its exit code (the caller holds the folder's lock)."""
    errors = docker.errors
    kwargs = container_run_kwargs(
        spec, job.expanduser().resolve(), out, data, image, models=models, cache=cache, again=again,
        user=f"{os.getuid()}:{os.getgid()}", environ=os.environ, extra=extra,
    )
    where = os.environ.get("DOCKER_HOST") or "the default socket"
    try:
        client = docker.from_env()
        info = client.info()
    except errors.DockerException as exc:
        raise UserError(f"--executor docker: cannot reach the Docker daemon at {where}: {_first_line(exc)}") from None
    host_cpus, host_memory = info.get("NCPU"), info.get("MemTotal")
    if host_cpus and spec.resources.cpus > host_cpus:
        raise UserError(f"resources.cpus: the job asks for {spec.resources.cpus:g} CPUs; the Docker host has {host_cpus}")
    if host_memory and kwargs["mem_limit"] > host_memory:
        raise UserError(
            f"resources.memory_gb: the job asks for {spec.resources.memory_gb:g} GB; "
            f"the Docker host has {host_memory / GIB:.1f} GB"
        )
    try:
        container = client.containers.run(**kwargs)
    except errors.ImageNotFound:
        raise UserError(f"--image {image}: no such image; build it first: docker build -t {image} .") from None
    except errors.DockerException as exc:
        raise UserError(f"--executor docker: the daemon did not start the container: {_first_line(exc)}") from None
    try:
        code = _follow(container)
    except KeyboardInterrupt:
        container.stop(timeout=STOP_TIMEOUT_S)  # SIGTERM: the study stops as if interrupted
        container.wait()
        _remove(container)
        raise
    oom = bool(container.attrs.get("State", {}).get("OOMKilled")) if _reload(container) else False
    _remove(container)
    if code in (0, 1, 2, 130):
        return code
    detail = f"killed by signal {code - 128}" if code > 128 else f"exit status {code}"
    if oom:
        detail += ", out of memory"
    print(f"serbench: error: the container stopped with status {code} ({detail}); finished trials are kept "
          f"in {out / spec.name / 'trials.jsonl'}", file=sys.stderr)
    return 1


def _follow(container) -> int:
    """Copy the container's stdout and stderr here until it exits; its exit code."""

    def copy(stdout: bool) -> None:
        target = sys.stdout if stdout else sys.stderr
        for chunk in container.logs(stream=True, follow=True, stdout=stdout, stderr=not stdout):
            target.write(chunk.decode("utf-8", "replace"))
            target.flush()

    errors = threading.Thread(target=copy, args=(False,), daemon=True)
    errors.start()
    copy(True)
    status = container.wait()
    errors.join(timeout=5)
    return int(status.get("StatusCode", 1))


def _folder_from_env(name: str, create: bool = False) -> Path | None:
    value = os.environ.get(name)
    if not value:
        return None
    path = Path(value).expanduser().resolve()
    if create:
        path.mkdir(parents=True, exist_ok=True)
    return path if path.is_dir() else None


def _reload(container) -> bool:
    try:
        container.reload()
        return True
    except Exception:
        return False


def _remove(container) -> None:
    try:
        container.remove(v=True, force=True)  # with the image's anonymous volumes
    except Exception:
        pass


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip() or exc.__class__.__name__
    return text.splitlines()[0]
