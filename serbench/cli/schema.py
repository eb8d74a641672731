"""``serbench schema job|result``: print the JSON Schema of a job spec
(:func:`serbench.spec.job_schema`) or of a ``result.json``
(:func:`serbench.results.schema.result_schema`) on stdout, indented. Exits 0."""

from __future__ import annotations

import argparse
import json
from typing import Any

NAME = "schema"


def add_parser(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(NAME, help="print the JSON Schema of a job spec or a result")
    parser.add_argument("which", choices=["job", "result"])


def run(args: argparse.Namespace) -> int:
    if args.which == "job":
        from serbench.spec import job_schema

        schema: dict[str, Any] = job_schema()
    else:
        from serbench.results.schema import result_schema

        schema = result_schema()
    print(json.dumps(schema, indent=2))
    return 0
