"""``serbench doctor [--fix]``: what this installation has, and one fix.

Prints a check list on stdout: Python and torch versions, whether torchaudio imports,
the CPUs and memory limit available, the data home and the models folder. Exits 0 when
everything serbench needs works, else 1.

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

NAME = "doctor"


def add_parser(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(NAME, help="check the installation (and --fix what can be fixed)")
    parser.add_argument("--fix", action="store_true", help="remove torchaudio's unloadable compiled extension")


def run(args: argparse.Namespace) -> int:
    return report(fix=args.fix)


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
