"""``serbench doctor [--fix] [--backend local|ray] [--ray-address ADDR]``: what this
installation has, and one fix; with ``--backend ray``, what every node of a Ray cluster has.

Prints a check list on stdout: Python and torch versions, whether torchaudio imports,
the CPUs and memory limit available, the data home and the models folder. Exits 0 when
everything serbench needs works, else 1.

``--backend ray`` then connects to the cluster ``run`` would use (``--ray-address``, else
``$SERBENCH_RAY_ADDRESS``, else ``local``) and checks, on every alive node, what a slot
needs there (:mod:`serbench.execution.nodes`): serbench at this version, torch at this
version, and this process's data home, ``$SERBENCH_MODELS`` and ``$SERBENCH_CACHE`` (writable)
at the same paths. One line per node (address, CPUs, memory, ``OK`` or what is missing);
exit 0 when every node has everything, 1 when one lacks something (its line names the node
and what), 2 with one line on stderr when the cluster cannot be reached.

torchaudio's wheels on PyPI are built against CUDA torch; beside a CPU build of torch
their compiled extension cannot load and ``import torchaudio`` fails, although the parts
serbench uses (resampling, Kaldi fbank) are pure Python. ``--fix`` removes that
extension (``torchaudio/lib/*.so``) when, and only when, it fails to load.
"""

from __future__ import annotations

import argparse
import importlib.util
import subprocess
import sys
from pathlib import Path

from serbench import env
from serbench.errors import UserError

NAME = "doctor"


def add_parser(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(NAME, help="check the installation (and --fix what can be fixed)")
    parser.add_argument("--fix", action="store_true", help="remove torchaudio's unloadable compiled extension")
    parser.add_argument(
        "--backend",
        default="local",
        help="local (default: this installation) or ray: also check every node of the Ray cluster",
    )
    parser.add_argument(
        "--ray-address",
        metavar="ADDR",
        help="the cluster --backend ray checks: local, auto or HOST:PORT (default $SERBENCH_RAY_ADDRESS, else local)",
    )


def run(args: argparse.Namespace) -> int:
    if args.backend not in ("local", "ray"):
        raise UserError(f"doctor --backend: {args.backend!r}; doctor checks local (this installation) or ray (a cluster)")
    if args.ray_address is not None and args.backend != "ray":
        raise UserError("--ray-address: only with --backend ray")
    if args.backend == "local":
        return report(fix=args.fix)
    from serbench.execution.ray_connect import address_in_force

    address = address_in_force(args.ray_address)  # bad input fails before anything is printed
    status = report(fix=args.fix)
    return max(status, report_cluster(address))


def report_cluster(address: str) -> int:
    """Check every node of the Ray cluster at ``address``; 0 when each can run a slot."""
    from serbench.execution.nodes import check_cluster, wanted_here

    wanted = wanted_here()
    print(f"ray: connecting to {address} ...", flush=True)
    cluster = check_cluster(address, wanted)
    print(f"ray cluster at {cluster.where}: {len(cluster.nodes)} node{'' if len(cluster.nodes) == 1 else 's'} alive; "
          f"each needs serbench {wanted.serbench}, torch {wanted.torch}, "
          + ", ".join(f"{label} {path or '(unset: its default)'}{' (writable)' if label in wanted.writable else ''}"
                     for label, path in wanted.folders.items()))
    for node in cluster.nodes:
        print(node.line())
    if cluster.ok:
        print("ray: every node has what a slot needs")
        return 0
    if not cluster.nodes:
        print("ray: no node is alive")
        return 1
    lacking = [node for node in cluster.nodes if not node.ok]
    print(f"ray: {len(lacking)} of {len(cluster.nodes)} nodes lack what a slot needs (above)")
    return 1


def torchaudio_imports() -> tuple[bool, str]:
    """Whether ``import torchaudio`` works, tried in a child process."""
    probe = subprocess.run(
        [sys.executable, "-c", "import torchaudio.functional"], capture_output=True, text=True
    )
    last = (probe.stderr.strip().splitlines() or [""])[-1]
    return probe.returncode == 0, last


def torchaudio_extension_files() -> list[Path]:
    spec = importlib.util.find_spec("torchaudio")  # does not import it
    if spec is None or not spec.submodule_search_locations:
        return []
    return sorted(Path(next(iter(spec.submodule_search_locations)), "lib").glob("*.so"))


def report(fix: bool = False) -> int:
    """Print a check list; return 0 when everything serbench needs works."""
    import torch

    from serbench.data.base import default_data_home
    from serbench.execution.limits import cpu_limit, memory_limit_bytes

    ok = True
    print(f"python {sys.version.split()[0]}, torch {torch.__version__}")
    works, detail = torchaudio_imports()
    if not works and fix and "Could not load this library" in detail:
        for path in torchaudio_extension_files():
            path.unlink()
        print("removed torchaudio's compiled extension, which cannot load beside this torch build")
        works, detail = torchaudio_imports()
    if works:
        print("torchaudio: ok")
    else:
        ok = False
        hint = " (run: serbench doctor --fix)" if "Could not load this library" in detail else ""
        print(f"torchaudio: FAILS: {detail}{hint}")
    cpus = cpu_limit()
    memory = memory_limit_bytes()
    print(f"cpus available: {cpus.cpus:g} (from {cpus.source}); memory limit: "
          + (f"{memory / 2**30:.1f} GiB" if memory else "none"))
    print(f"data home: {default_data_home()} (${env.DATA})")
    print(f"models: {env.get(env.MODELS) or 'hub ids only'} (${env.MODELS})")
    return 0 if ok else 1
