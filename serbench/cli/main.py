"""The ``serbench`` command.

Exit codes: 0 success; 2 bad input (one line on stderr, no traceback); 1 internal error;
130 interrupted by Ctrl-C or SIGTERM (finished trials stay in ``trials.jsonl``).
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, Sequence

from serbench.cli.data import add_data_parser, cmd_data
from serbench.cli.leaderboard import add_leaderboard_parser, cmd_leaderboard
from serbench.errors import UserError
from serbench import env



class OneLineParser(argparse.ArgumentParser):
    """argparse, but usage errors are one line and exit 2 like every other bad input."""

    def error(self, message: str):  # type: ignore[override]
        raise UserError(f"{self.prog}: {message}")


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog="serbench", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="store_true", help="print the version and exit")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=OneLineParser)

    validate = commands.add_parser("validate", help="check a job spec, its plugins and its data root")
    validate.add_argument("job", type=Path)
    validate.add_argument("--data-root", type=Path, help="folder holding the corpora (default $SERBENCH_DATA)")

    run = commands.add_parser("run", help="run a job: search, final training, result.json")
    run.add_argument("job", type=Path)
    run.add_argument("--out", type=Path, default=Path("results"), help="results folder (default ./results)")
    run.add_argument("--data-root", type=Path, help="folder holding the corpora (default $SERBENCH_DATA)")
    again = run.add_mutually_exclusive_group()
    again.add_argument("--force", action="store_true", help="replace earlier results of the same job")
    again.add_argument(
        "--resume", action="store_true", help="continue an interrupted study from its trials.jsonl"
    )
    run.add_argument(
        "--isolate",
        action="store_true",
        help="run the study in a worker process held to the job's resources (a cgroup, else CPU affinity "
        "and an RSS guard); a trial killed for memory is recorded as failed (oom) and the study goes on",
    )
    run.add_argument(
        "--isolate-with",
        choices=["auto", "cgroup", "guard"],
        help="how --isolate holds the limits (implies --isolate): auto (default: a cgroup v2 group where "
        "one can be made, else the guard), cgroup (v2, else v1), guard (CPU affinity + RSS guard)",
    )
    run.add_argument(
        "--executor",
        choices=["local", "docker"],
        default="local",
        help="local (default) or docker: run the study in a container with the job's CPU and memory limits",
    )
    run.add_argument("--image", default=None, help="the image for --executor docker (default serbench:latest)")

    plugins = commands.add_parser("plugins", help="list installed engines, datasets and backbones")
    plugins.add_argument("--json", action="store_true", help="print JSON instead of a table")

    schema = commands.add_parser("schema", help="print the JSON Schema of a job spec or a result")
    schema.add_argument("which", choices=["job", "result"])

    doctor = commands.add_parser("doctor", help="check the installation (and --fix what can be fixed)")
    doctor.add_argument("--fix", action="store_true", help="remove torchaudio's unloadable compiled extension")

    add_data_parser(commands)
    add_leaderboard_parser(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    try:
        return _dispatch(build_parser().parse_args(argv))
    except UserError as exc:
        _error(str(exc))
        return exc.exit_code
    except KeyboardInterrupt:
        _error("interrupted; finished trials are kept in trials.jsonl")
        return 130
    except Exception as exc:
        if env.get(env.DEBUG):
            raise
        _error(f"internal error: {exc.__class__.__name__}: {exc} (set {env.DEBUG}=1 for the traceback)")
        return 1


def _error(message: str) -> None:
    print(f"serbench: error: {' '.join(message.split())}", file=sys.stderr)


def _dispatch(args: argparse.Namespace) -> int:
    if args.version:
        from serbench import __version__

        print(__version__)
        return 0
    handlers = {
        "validate": cmd_validate,
        "run": cmd_run,
        "plugins": cmd_plugins,
        "schema": cmd_schema,
        "doctor": cmd_doctor,
        "data": cmd_data,
        "leaderboard": cmd_leaderboard,
    }
    if args.command is None:
        raise UserError("serbench: name a command (validate, run, plugins, schema, doctor, data, leaderboard); see serbench --help")
    return handlers[args.command](args)


@contextmanager
def about(job: Path) -> Iterator[None]:
    """Prefix bad-input messages with the job file they are about."""
    try:
        yield
    except UserError as exc:
        message = str(exc)
        if not message.startswith(str(job)):
            message = f"{job}: {message}"
        raise type(exc)(message) from None


def cmd_validate(args: argparse.Namespace) -> int:
    """Everything that can be checked without loading audio or weights, nor touching the
    network: the spec, its plugins and their options, the corpus root, the backbone source."""
    from serbench.spec import load_job, plugin_options
    from serbench.study.study import corpus_root, resolve_plugins

    spec = load_job(args.job)
    with about(args.job):
        plugins = resolve_plugins(spec)
        root = corpus_root(spec, plugins.dataset.cls, args.data_root)
        backbone_cls = plugins.backbone.cls
        options = plugin_options(backbone_cls.Options, spec.backbone.options, "backbone.options")
        source = backbone_cls(spec.backbone.source, options).check_source()
    print(
        f"{args.job}: ok -- job {spec.name!r}: engine {spec.engine.name}, dataset {spec.dataset.name} "
        f"at {root}, backbone {spec.backbone.name} from {source}, {len(spec.search_space)} hyperparameters, "
        f"{spec.budget.trials} trials"
    )
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    """Run a job here, in a supervised worker (``--isolate``, or under a cgroup memory
    limit), or in a container (``--executor docker``). See :mod:`serbench.execution.supervisor`."""
    from serbench.execution.limits import check_fits, memory_limit_bytes, worker_context
    from serbench.spec import load_job

    spec = load_job(args.job)
    isolate = args.isolate or args.isolate_with is not None
    again = "--force" if args.force else "--resume" if args.resume else None
    if args.executor == "docker":
        if isolate:
            raise UserError("--isolate and --executor docker: choose one; the container holds the limits")
        from serbench.execution.docker import DEFAULT_IMAGE, run_in_docker

        with about(args.job), _interrupt_on_sigterm():
            return run_in_docker(spec, args.job, args.out, args.data_root, args.image or DEFAULT_IMAGE, again)
    if args.image is not None:
        raise UserError("--image: only with --executor docker")
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
        study = Study(spec, out_dir, data_home=args.data_root, events=events)
        with events.preparing():
            study.prepare(force=args.force, resume=args.resume)
    with events:
        result = study.run()
    print_summary(result, out_dir)
    if result.status != "completed":
        _error(f"{result.status}: some folds had no finished trial; see {out_dir / 'trials.jsonl'}")
        return 1
    return 0


def cmd_plugins(args: argparse.Namespace) -> int:
    from serbench.plugin.registry import KINDS, registry

    reg = registry()
    if args.json:
        print(json.dumps(reg.as_json(), indent=2))
        return 0
    from rich.console import Console
    from rich.table import Table

    table = Table(title="serbench plugins")
    for column in ("kind", "name", "package", "version", "plugin"):
        table.add_column(column)
    for kind in KINDS:
        for entry in reg.entries(kind):
            table.add_row(kind, entry.name, entry.package, entry.version, entry.plugin)
    Console().print(table)
    return 0


def cmd_schema(args: argparse.Namespace) -> int:
    if args.which == "job":
        from serbench.spec import job_schema

        schema: dict[str, Any] = job_schema()
    else:
        from serbench.results.schema import result_schema

        schema = result_schema()
    print(json.dumps(schema, indent=2))
    return 0


def cmd_doctor(args: argparse.Namespace) -> int:
    from serbench.cli.doctor import report

    return report(fix=args.fix)
