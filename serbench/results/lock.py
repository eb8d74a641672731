"""One writer per job folder: the exclusive lock a run holds on ``<out>/<job>/`` for its
whole life, so a second driver on a folder in use is refused at once (exit 2) instead of
journalling every trial a second time.

The lock is an ``fcntl.flock(LOCK_EX | LOCK_NB)`` on ``<out>/<job>/run.lock``. The kernel
releases it when its holder exits, however it dies: a lock file left by a SIGKILLed run
is locked by nobody and never blocks ``--resume``. After locking, the holder writes its
pid, host name and start time into the file (in place: replacing the file would make a
new, unlocked inode); a refused driver reads them for its message. A clean release
removes the file while still holding the lock, and the folder (with any parent the lock
created) when nothing else is in it, so a run refused for bad input leaves nothing
behind; a driver that locked a file just removed that way sees the path no longer names
its inode and starts over.

Exactly one process holds the lock for one run, the outermost driver: ``serbench run``
itself, the supervisor under ``--isolate`` or in a container with a memory limit, or the
host's process under ``--executor docker``. Each of the latter sets ``$SERBENCH_LOCK_HELD``
for the processes it starts (the worker, the container), which then take no lock.

Across machines sharing the folder, flock is only as good as the file system: local
file systems and Docker bind mounts share the host kernel's locks; on NFS, Linux maps
flock onto NFS byte-range locks, which hold across clients with NFSv4 or with NFSv3 and
a running lock manager (``rpc.statd``/``lockd``), and never on a mount with ``nolock``
or ``local_lock=flock``/``all``, where each client only sees its own locks. A holder
whose NFS client dies keeps the lock until the server's lease expires (NFSv4: about 90
s). A file system that refuses locks is a one-line error, not a silent run unlocked.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import socket
import time
from datetime import datetime, timezone
from pathlib import Path

from serbench import env
from serbench.errors import FolderInUse, UserError

LOCK_FILE = "run.lock"
ATTEMPTS = 100  # to lock a file that is still there (holders remove it on release)
READ_ATTEMPTS = 25  # a refused driver may read the file between the holder's lock and write
READ_PAUSE_S = 0.02


class FolderLock:
    """The lock on one job folder: ``acquire()`` (raises :class:`FolderInUse`), ``release()``,
    or a ``with`` block. Under ``$SERBENCH_LOCK_HELD`` both do nothing: the driver that
    started this process holds it."""

    def __init__(self, folder: Path):
        self.folder = Path(folder)
        self.path = self.folder / LOCK_FILE
        self.fd: int | None = None
        self.created: list[Path] = []  # the folders acquire() made, innermost first

    @property
    def held(self) -> bool:
        return self.fd is not None

    def acquire(self) -> None:
        if self.fd is not None or env.get(env.LOCK_HELD):
            return
        for attempt in range(ATTEMPTS):
            self._make_folder()
            try:
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
            except FileNotFoundError:  # a holder's release removed the folder just now
                continue
            except OSError as exc:
                raise UserError(f"{self.folder}: cannot create its lock file {LOCK_FILE}: {exc.strerror}") from None
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as exc:
                os.close(fd)
                if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                    raise FolderInUse(
                        f"{self.folder} is in use by {describe_holder(self.path)}; "
                        "wait for it to finish or use another --out"
                    ) from None
                raise UserError(
                    f"{self.folder}: cannot lock {LOCK_FILE} ({exc.strerror}); serbench needs a file system "
                    "with flock (on NFS: v4, or v3 with lockd)"
                ) from None
            if _names(self.path, fd):
                break
            os.close(fd)  # locked a file a holder removed on release: start over
        else:
            raise UserError(f"{self.folder}: cannot lock {LOCK_FILE}: it keeps disappearing")
        self.fd = fd
        record = {"pid": os.getpid(), "host": socket.gethostname(), "since": _utc_now(), "command": "serbench run"}
        os.ftruncate(fd, 0)
        os.pwrite(fd, (json.dumps(record) + "\n").encode(), 0)

    def release(self) -> None:
        if self.fd is None:
            return
        fd, self.fd = self.fd, None
        try:
            self.path.unlink(missing_ok=True)  # under the lock: see the module docstring
            for folder in self.created:
                try:
                    folder.rmdir()  # only when empty
                except OSError:
                    break
        finally:
            os.close(fd)  # releases the lock
        self.created = []

    def __enter__(self) -> "FolderLock":
        self.acquire()
        return self

    def __exit__(self, *exc_info) -> None:
        self.release()

    def _make_folder(self) -> None:
        missing = [p for p in (self.folder, *self.folder.parents) if not p.exists()]
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise UserError(f"{self.folder}: cannot create the folder: {exc.strerror}") from None
        self.created += [p for p in missing if p not in self.created]


def describe_holder(path: Path) -> str:
    """``serbench run (pid 1234 on host x, since 2026-12-01T07:00:00Z)``, from the lock file."""
    for attempt in range(READ_ATTEMPTS):
        try:
            record = json.loads(path.read_text())
            return f"{record['command']} (pid {record['pid']} on host {record['host']}, since {record['since']})"
        except (OSError, ValueError, KeyError, TypeError):
            time.sleep(READ_PAUSE_S)
    return "another serbench run (its lock file does not say which)"


def _names(path: Path, fd: int) -> bool:
    """Whether ``path`` is still the file open as ``fd``."""
    try:
        named, opened = os.stat(path), os.fstat(fd)
    except FileNotFoundError:
        return False
    return (named.st_dev, named.st_ino) == (opened.st_dev, opened.st_ino)


def _utc_now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
