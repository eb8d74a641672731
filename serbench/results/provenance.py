"""Where the code that made a result came from: serbench's git commit and the versions
of the libraries the job's plugins are built on (``result.json``'s ``versions``).

Nothing here can fail a study: a missing ``git``, a wheel install, a container image
without ``.git``, a slow disk or a repository git refuses to read (another owner) all
give ``None``.
"""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from functools import cache
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

GIT_TIMEOUT_S = 10.0

# Variables that would point git at another repository than the one holding the package
# (set, for instance, when serbench runs from a git hook).
_REPOSITORY_VARIABLES = (
    "GIT_DIR",
    "GIT_WORK_TREE",
    "GIT_INDEX_FILE",
    "GIT_COMMON_DIR",
    "GIT_OBJECT_DIRECTORY",
    "GIT_ALTERNATE_OBJECT_DIRECTORIES",
    "GIT_NAMESPACE",
)


@dataclass(frozen=True)
class Checkout:
    """The git commit a package was imported from, and whether its work tree differed.

    ``commit`` is the full sha of ``HEAD``; ``dirty`` is True when a tracked file of the
    work tree (anywhere in it, not only the package) has changes, staged or not, against
    that commit. Untracked files do not count (``git status --untracked-files=no``):
    results, caches and scratch files written into a checkout leave it clean, and a new
    file only changes what runs once it is added. Both are None when the package is not
    a tracked part of a git work tree.
    """

    commit: str | None = None
    dirty: bool | None = None


def _git(directory: Path, *args: str) -> str | None:
    """``git -C directory args...``'s stdout, or None when git is missing, fails or hangs."""
    env = {key: value for key, value in os.environ.items() if key not in _REPOSITORY_VARIABLES}
    env["GIT_OPTIONAL_LOCKS"] = "0"  # git status must not take the index lock of a checkout in use
    env["LC_ALL"] = "C"
    try:
        done = subprocess.run(
            ["git", "-C", str(directory), *args],
            capture_output=True,
            text=True,
            timeout=GIT_TIMEOUT_S,
            stdin=subprocess.DEVNULL,
            env=env,
        )
    except (OSError, subprocess.SubprocessError, ValueError):
        return None
    return done.stdout if done.returncode == 0 else None


def git_checkout(package_dir: Path) -> Checkout:
    """The :class:`Checkout` of the package whose folder is ``package_dir``.

    The package must be tracked where it lies: a package installed into an ignored
    ``.venv`` (or copied) inside some other repository's work tree is not that
    repository's code, and gives no commit.
    """
    package_dir = Path(package_dir)
    if not package_dir.is_dir():
        return Checkout()
    tracked = _git(package_dir, "ls-files", "--", ".")
    if not tracked or not tracked.strip():
        return Checkout()
    head = _git(package_dir, "rev-parse", "--verify", "HEAD")
    commit = head.strip() if head else ""
    if len(commit) < 40:  # no commit yet, or an unexpected answer
        return Checkout()
    status = _git(package_dir, "status", "--porcelain", "--untracked-files=no")
    return Checkout(commit=commit, dirty=None if status is None else bool(status.strip()))


@cache
def serbench_checkout() -> Checkout:
    """The :class:`Checkout` serbench itself was imported from, found from the package's
    own folder (never the working directory). Computed once per process: the code a
    process runs is the code it imported, whatever is committed or edited afterwards, so
    a study asks for it when it starts."""
    import serbench

    return git_checkout(Path(serbench.__file__).resolve().parent)


def distribution_version(name: str) -> str | None:
    """The installed version of the distribution ``name`` (what pip installs, e.g.
    ``ax-platform``), or None when no such distribution is installed."""
    try:
        return version(name)
    except (PackageNotFoundError, ValueError):
        return None


def plugin_library(cls: type) -> str | None:
    """The distribution a plugin class declares it is built on (its ``library``), if any."""
    library = getattr(cls, "library", None)
    return library if isinstance(library, str) and library.strip() else None
