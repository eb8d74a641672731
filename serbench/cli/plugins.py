"""``serbench plugins [--json]``: list the installed plugins of every kind (engines,
dataset adapters, backbones, execution backends, pruners), each with its name, providing
package and version, and plugin (its entry-point name).

A rich table on stdout, or with ``--json`` the registry's JSON
(:meth:`serbench.plugin.registry.Registry.as_json`). Exits 0; a plugin that fails to load
or clashes with another is bad input (exit 2, one line).
"""

from __future__ import annotations

import argparse
import json

NAME = "plugins"


def add_parser(commands: argparse._SubParsersAction) -> None:
    from serbench.plugin.kinds import PLUGIN_KINDS

    parser = commands.add_parser(NAME, help="list installed " + ", ".join(kind.key for kind in PLUGIN_KINDS))
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")


def run(args: argparse.Namespace) -> int:
    from serbench.plugin.kinds import KINDS
    from serbench.plugin.registry import registry

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
