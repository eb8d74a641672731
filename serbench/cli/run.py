"""``serbench run JOB [--out DIR] [--data-root DIR] [--force|--resume] [--isolate[-with HOW]]
[--executor local|docker [--image IMAGE]] [--no-model] [--backend NAME] [--parallel N]
[--ray-address ADDR]``: run a job (search, final training, result.json, the saved model in
``DIR/<job>/model/`` unless ``--no-model``).

``--backend``, ``--parallel`` and ``--ray-address`` override the job's ``execution``
(where trials run and how many at once), which is not part of the study's fingerprint:
a study started with one backend can be resumed with another.

Runs the job here, in a supervised worker (``--isolate``, or whenever a cgroup memory
limit is set), or in a container (``--executor docker``); see
:mod:`serbench.execution.supervisor`. Results go to ``DIR/<job name>/``; earlier results
of the same job are refused unless ``--force`` (replace) or ``--resume`` (continue from
``trials.jsonl``), and a folder another run is writing is refused whatever the flags
(:mod:`serbench.results.lock`). Exits 0 when the study completed, 1 when some fold had no finished
trial (one line on stderr), 2 on bad input before any output, 130 on Ctrl-C or SIGTERM
(SIGTERM stops a run like Ctrl-C; finished trials stay in ``trials.jsonl``).

A run started with SIGINT ignored (under ``nohup``, or by ``&`` in a non-interactive
shell, which is how such a shell keeps Ctrl-C at the terminal away from its background
jobs) keeps ignoring SIGINT, as Python and every Unix program do; SIGTERM stops it.
"""

from __future__ import annotations

import argparse
import signal
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from serbench import env
from serbench.cli.messages import about, error
from serbench.errors import UserError

NAME = "run"


def add_parser(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(NAME, help="run a job: search, final training, result.json")
    parser.add_argument("job", type=Path)
    parser.add_argument("--out", type=Path, default=Path("results"), help="results folder (default ./results)")
    parser.add_argument("--data-root", type=Path, help="folder holding the corpora (default $SERBENCH_DATA)")
    again = parser.add_mutually_exclusive_group()
    again.add_argument("--force", action="store_true", help="replace earlier results of the same job")
    again.add_argument(
        "--resume", action="store_true", help="continue an interrupted study from its trials.jsonl"
    )
    parser.add_argument(
        "--isolate",
        action="store_true",
        help="run the study in a worker process held to the job's resources (a cgroup, else CPU affinity "
        "and an RSS guard); a trial killed for memory is recorded as failed (oom) and the study goes on",
    )
    parser.add_argument(
        "--isolate-with",
        choices=["auto", "cgroup", "guard"],
        help="how --isolate holds the limits (implies --isolate): auto (default: a cgroup v2 group where "
        "one can be made, else the guard), cgroup (v2, else v1), guard (CPU affinity + RSS guard)",
    )
    parser.add_argument(
        "--executor",
        choices=["local", "docker"],
        default="local",
        help="local (default) or docker: run the study in a container with the job's CPU and memory limits",
    )
    parser.add_argument("--image", default=None, help="the image for --executor docker (default serbench:latest)")
    parser.add_argument(
        "--no-model",
        action="store_true",
        help="do not save the final model (by default its weights, model.json and model card go to DIR/<job>/model/)",
    )
    parser.add_argument(
        "--backend", help="execution backend for the trials (overrides execution.backend): local, ray, or a plugin's"
    )
    parser.add_argument(
        "--parallel", type=_positive, metavar="N", help="trials in flight at once (overrides execution.parallel)"
    )
    parser.add_argument(
        "--ray-address",
        metavar="ADDR",
        help="the ray backend's cluster (overrides execution.options.address): local (a private Ray instance on "
        "this machine), auto (the cluster `ray start` joined here, or $RAY_ADDRESS), or HOST:PORT",
    )


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} is not 1 or more")
    return value


def execution_arguments(args: argparse.Namespace) -> list[str]:
    """The ``--backend/--parallel/--ray-address`` and ``--no-model`` given, to pass on to a
    worker process."""
    given = ["--no-model"] if getattr(args, "no_model", False) else []
    for flag, value in (("--backend", args.backend), ("--parallel", args.parallel), ("--ray-address", args.ray_address)):
        if value is not None:
            given += [flag, str(value)]
    return given


def with_execution_overrides(spec, args: argparse.Namespace):
    """The job spec with the command line's execution options applied."""
    options = None
    if args.ray_address is not None:
        backend = args.backend or spec.execution.backend
        if backend != "ray":
            raise UserError(f"--ray-address: only with the ray backend (this run uses {backend!r}); add --backend ray")
        options = {"address": args.ray_address}
    return spec.with_execution(args.backend, args.parallel, options)


def run(args: argparse.Namespace) -> int:
    from serbench.execution.limits import check_fits, memory_limit_bytes, worker_context
    from serbench.spec import load_job

    spec = load_job(args.job)
    with about(args.job):
        spec = with_execution_overrides(spec, args)
    isolate = args.isolate or args.isolate_with is not None
    again = "--force" if args.force else "--resume" if args.resume else None
    local = spec.execution.backend == "local"
    if isolate and not local:
        raise UserError(
            f"--isolate holds the local backend's process to the job's resources; the {spec.execution.backend} "
            "backend holds each of its slots to them itself: drop --isolate"
        )
    if args.executor == "docker":
        if isolate:
            raise UserError("--isolate and --executor docker: choose one; the container holds the limits")
        if not local:
            raise UserError(
                f"--executor docker runs the study in one container; for the {spec.execution.backend} backend "
                "run the driver there yourself (see the README, Containers: the ray-head and ray-worker services)"
            )
        from serbench.execution.docker import DEFAULT_IMAGE, run_in_docker

        with about(args.job), _interrupt_on_sigterm():
            return run_in_docker(
                spec, args.job, args.out, args.data_root, args.image or DEFAULT_IMAGE, again, execution_arguments(args)
            )
    if args.image is not None:
        raise UserError("--image: only with --executor docker")
    if local:  # other backends check that a slot fits on one of their nodes
        with about(args.job):
            check_fits(spec.resources.cpus, spec.resources.memory_gb)
    if not worker_context() and (isolate or memory_limit_bytes() is not None):
        from serbench.execution import isolate as isolation
        from serbench.execution.supervisor import Supervisor

        if isolate:
            how = isolation.choose(spec.resources.cpus, spec.resources.memory_gb, args.isolate_with or "auto")
        else:  # limits set by whoever started us (a container): watch for OOM kills only
            how = isolation.inherited()
        supervisor = Supervisor(
            args.job, args.out, args.out / spec.name, how,
            executor=env.get(env.EXECUTOR), data_root=args.data_root, again=again,
            extra=execution_arguments(args),
        )
        return supervisor.run()
    with _interrupt_on_sigterm():
        return _run_here(spec, args)


@contextmanager
def _interrupt_on_sigterm() -> Iterator[None]:
    """SIGTERM (``docker stop``, a supervisor passing it on) stops a run like Ctrl-C."""

    def interrupt(signum, frame):
        raise KeyboardInterrupt

    try:
        previous = signal.signal(signal.SIGTERM, interrupt)
    except ValueError:  # not the main thread
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _run_here(spec, args: argparse.Namespace) -> int:
    from serbench.cli.console import RichEvents, print_summary
    from serbench.study.study import Study

    out_dir = args.out / spec.name
    events = RichEvents()
    with about(args.job):
        study = Study(spec, out_dir, data_home=args.data_root, events=events, save_model=not args.no_model)
        with events.preparing():
            study.prepare(force=args.force, resume=args.resume)
    with events:
        result = study.run()
    print_summary(result, out_dir)
    if result.status != "completed":
        error(f"{result.status}: some folds had no finished trial; see {out_dir / 'trials.jsonl'}")
        return 1
    return 0
