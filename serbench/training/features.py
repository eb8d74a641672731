"""Where frozen features live: a memory-bounded store that spills to a disk folder.

:class:`FeatureStore` maps a string key to a tensor. Entries stay in memory until their
total size reaches ``max_memory_mb``; later entries are written to ``folder`` and read back
from it on each access (the first entries stay in memory: epochs visit every clip in turn,
a pattern that would defeat least-recently-used eviction). With ``persistent`` set, every
entry is also written to the folder, and entries found there are served to later runs.

Writes are atomic (a temporary file in the same folder, then ``os.replace``), so
concurrent studies sharing a folder, or a study killed mid-write, never leave a partial
entry; an unreadable entry counts as missing and is recomputed.

Entries live under ``folder/<namespace>/``, the namespace a hash of what produced them
(the backbone's ``cache_key()``, torch's version and this format's version), so features
of another model, option or torch build are never read.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import torch

from serbench import atomic, env

FORMAT = 1
SPILL_FOLDER = ".feature-cache"  # under a study's output folder when no SERBENCH_CACHE


def namespace(producer: str) -> str:
    """The folder name for features produced by ``producer`` (a backbone's ``cache_key()``)."""
    text = json.dumps({"producer": producer, "torch": torch.__version__, "format": FORMAT}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:20]


class FeatureStore:
    """A key -> tensor store, at most ``max_memory_mb`` of it in memory.

    ``folder`` (created on first write) receives what does not fit, and everything when
    ``persistent``. Without a folder, nothing spills: the bound is then only a target.
    """

    def __init__(
        self,
        producer: str,
        max_memory_mb: float,
        folder: Path | None = None,
        persistent: bool = False,
    ):
        if persistent and folder is None:
            raise ValueError("a persistent feature store needs a folder")
        self.max_bytes = int(max_memory_mb * 2**20)
        self.folder = Path(folder) / namespace(producer) if folder is not None else None
        self.persistent = persistent
        self._producer = producer
        self._memory: dict[str, torch.Tensor] = {}
        self._disk: set[str] = set()  # keys known to be in the folder
        self.memory_bytes = 0
        self.disk_reads = 0
        self.disk_writes = 0

    def __len__(self) -> int:
        """Entries this store has served or stored (in memory or in its folder)."""
        return len(self._memory.keys() | self._disk)

    def get(self, key: str) -> torch.Tensor | None:
        """The stored tensor, or ``None``."""
        tensor = self._memory.get(key)
        if tensor is not None or self.folder is None:
            return tensor
        path = self._path(key)
        try:
            with open(path, "rb") as handle:
                tensor = torch.from_numpy(np.load(handle, allow_pickle=False))
        except (OSError, ValueError, EOFError):
            return None
        self.disk_reads += 1
        self._disk.add(key)
        if self.persistent and self.memory_bytes + tensor.nbytes <= self.max_bytes:
            self._keep(key, tensor)  # a persistent entry from an earlier run: promote it
        return tensor

    def put(self, key: str, tensor: torch.Tensor) -> None:
        """Store ``tensor`` (detached, contiguous, CPU) under ``key``."""
        tensor = tensor.detach().cpu().contiguous()
        fits = self.memory_bytes + tensor.nbytes <= self.max_bytes
        if fits or self.folder is None:
            self._keep(key, tensor)
        if self.folder is not None and (self.persistent or not fits):
            self._write(key, tensor)

    def _keep(self, key: str, tensor: torch.Tensor) -> None:
        old = self._memory.get(key)
        if old is not None:
            self.memory_bytes -= old.nbytes
        self._memory[key] = tensor
        self.memory_bytes += tensor.nbytes

    def _path(self, key: str) -> Path:
        assert self.folder is not None
        return self.folder / key[:2] / f"{key}.npy"

    def _write(self, key: str, tensor: torch.Tensor) -> None:
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        about = self.folder / "producer.json"
        if not about.exists():
            about_text = json.dumps({"producer": self._producer, "torch": torch.__version__})
            atomic.write_bytes(about, about_text.encode(), durable=False)
        with atomic.atomic_file(path, "wb", durable=False) as handle:
            np.save(handle, tensor.numpy(), allow_pickle=False)
        self.disk_writes += 1
        self._disk.add(key)


def memory_bound_mb(memory_gb: float | None) -> float:
    """The in-memory bound: ``$SERBENCH_CACHE_MB``, else a quarter of the job's memory
    (``resources.memory_gb``), else 1024 MB."""
    from serbench.errors import UserError

    text = env.get(env.CACHE_MB)
    if text:
        try:
            value = float(text)
        except ValueError:
            value = -1.0
        if value < 0:
            raise UserError(f"{env.CACHE_MB}: {text!r} is not a size in MB (a number >= 0)")
        return value
    return memory_gb * 1024 / 4 if memory_gb else 1024.0


def cache_folder(out_dir: Path) -> tuple[Path, bool]:
    """``($SERBENCH_CACHE, persistent)`` when set, else ``(<out_dir>/.feature-cache, spill
    only)``."""
    text = env.get(env.CACHE)
    if text:
        return Path(text).expanduser(), True
    return Path(out_dir) / SPILL_FOLDER, False
