"""``serbench validate JOB [--data-root DIR]``: check a job without running it.

Checks everything that can be checked without loading audio or weights, nor touching
the network: the spec, its plugins and their options, the corpus root, the backbone
source. Prints one ``JOB: ok -- ...`` line and exits 0; bad input is one line on stderr
prefixed with the job file, exit 2.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from serbench.cli.messages import about

NAME = "validate"


def add_parser(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(NAME, help="check a job spec, its plugins and its data root")
    parser.add_argument("job", type=Path)
    parser.add_argument("--data-root", type=Path, help="folder holding the corpora (default $SERBENCH_DATA)")


def run(args: argparse.Namespace) -> int:
    from serbench.spec import load_job
    from serbench.study.resolve import corpus_root, make_backbone, resolve_plugins

    spec = load_job(args.job)
    with about(args.job):
        plugins = resolve_plugins(spec)
        root = corpus_root(spec, plugins.dataset.cls, args.data_root)
        source = make_backbone(spec, plugins).check_source()
    print(
        f"{args.job}: ok -- job {spec.name!r}: engine {spec.engine.name}, dataset {spec.dataset.name} "
        f"at {root}, backbone {spec.backbone.name} from {source}, {len(spec.search_space)} hyperparameters, "
        f"{spec.budget.trials} trials"
        + (f", pruner {spec.pruner.name}" + (" (by the engine)" if spec.pruner.by == "engine" else "")
           if spec.pruner.name != "none" else "")
    )
    return 0
