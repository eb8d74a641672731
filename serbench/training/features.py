"""The frozen-feature cache, all of it: what an entry is keyed on, the memory-bounded store
that spills to a disk folder, and where a study's cache lives.

While a model's encoder is frozen and has never been trained (``encoder_pristine``), its
pooled outputs for a clip never change: a :class:`FeatureCache` shared by all trials of a
study then serves them, so frozen epochs cost a head update, not an encoder pass. A model
that trains only the top of its encoder (e.g. Whisper's ``train_layers``) also has its
frozen prefix's outputs cached (``kind="prefix"``), so unfrozen epochs run only the layers
that train. A model whose pooling is learned (``SERModel.pool``: attention, part of the
head) has pooled vectors that change as it trains, so none are cached for it: its
encoder's output frames are (``kind="frames"``, keyed apart from pooled entries), and
every epoch pools them anew. Frames take far more room than pooled vectors (535 EmoDB
clips of up to 500 frames of 512 numbers: ~0.5 GB for whisper-base); what exceeds the
memory bound spills to the folder like any entry. :func:`encode_batched` computes what is
missing.

:class:`FeatureCache` keys an entry (see :meth:`FeatureCache.key`) and looks it up in a
:class:`FeatureStore`, which maps a string key to a tensor. Entries stay in memory until
their total size reaches ``max_memory_mb``; later entries are written to ``folder`` and
read back from it on each access (the first entries stay in memory: epochs visit every
clip in turn, a pattern that would defeat least-recently-used eviction). With
``persistent`` set, every entry is also written to the folder, and entries found there are
served to later runs.

Writes go through :mod:`serbench.atomic` (a temporary file in the same folder, then a
rename), so concurrent studies sharing a folder, or a study killed mid-write, never leave
a partial entry; an unreadable entry counts as missing and is recomputed.

Entries live under ``folder/<namespace>/``, the namespace a hash of what produced them
(the backbone's ``cache_key()``, torch's version and this format's version), so features
of another model, option or torch build are never read. A study's cache
(:func:`study_cache`) is ``$SERBENCH_CACHE`` (persistent) or ``<out_dir>/.feature-cache``
(spill only), bounded by :func:`memory_bound_mb`.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import numpy as np
import torch

from serbench import atomic, env

if TYPE_CHECKING:
    from serbench.backbones.model import SERModel
    from serbench.data.base import Clip

FORMAT = 1
SPILL_FOLDER = ".feature-cache"  # under a study's output folder when no SERBENCH_CACHE
EVAL_BATCH = 8  # clips per batch when encoding without gradients


# --- the study's cache: keys and lookups ------------------------------------------------


class FeatureCache:
    """Encoded features of one backbone configuration's pre-trained encoder, shared by
    the trials of a study. Valid only for models whose ``encoder_pristine`` is true.

    An entry is keyed by a hash of ``producer`` (the backbone's ``cache_key()``: name,
    source and options, so a changed ``layers``, ``pad`` or ``source`` never meets stale
    features), the clip's audio samples, and ``model.input_key(samples, maxlen)`` (the cut
    length, and for a backbone padding to ``maxlen`` that length too). Keying on the
    audio rather than the clip id keeps a persistent folder right when a corpus file
    changes, and lets trials with different ``maxlen`` share the clips shorter than both.

    Storage (:class:`FeatureStore`): ``max_memory_mb`` in memory, the rest in ``folder``;
    ``persistent`` writes everything there for later runs. A :meth:`sibling` (another
    configuration of the backbone, searched as ``backbone.<option>``) shares the bound.
    """

    def __init__(
        self,
        producer: str,
        max_memory_mb: float = 1024,
        folder: Path | None = None,
        persistent: bool = False,
        budget: MemoryBudget | None = None,
    ) -> None:
        self.store = FeatureStore(producer, max_memory_mb, folder, persistent, budget)
        self._producer = hashlib.blake2b(producer.encode(), digest_size=16).digest()
        self._audio: dict[str, tuple[np.ndarray, bytes]] = {}  # clip id -> (wave, digest)
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self.store)

    def sibling(self, producer: str) -> FeatureCache:
        """A cache for another producer's features (another backbone configuration) in the
        same folder, persistent alike, sharing this cache's memory bound: the study's
        configurations together hold at most ``max_memory_mb`` in memory."""
        store = self.store
        return FeatureCache(producer, 0, store.base_folder, store.persistent, store.budget)

    def key(self, model: SERModel, clip: Clip, maxlen: int, kind: str = "features") -> str:
        """The entry key of ``clip`` cut to ``maxlen`` (its audio is hashed once per clip);
        ``kind``: ``features`` (pooled), ``prefix`` (a frozen prefix's output) or
        ``frames`` (the encoder's output frames, for a learned pooling)."""
        known = self._audio.get(clip.id)
        if known is None or known[0] is not clip.wave:
            wave = np.ascontiguousarray(clip.wave)
            digest = hashlib.blake2b(wave.tobytes(), digest_size=16)
            digest.update(f"{wave.dtype}{wave.shape}".encode())
            known = (clip.wave, digest.digest())
            self._audio[clip.id] = known
        hasher = hashlib.blake2b(self._producer + known[1], digest_size=16)
        hasher.update(repr(model.input_key(len(clip.wave), maxlen)).encode())
        if kind != "features":
            hasher.update(kind.encode())
        return hasher.hexdigest()

    def features(self, model: SERModel, clips: Sequence[Clip], maxlen: int) -> torch.Tensor:
        """Pooled features of ``clips`` from the pristine encoder (stacked, in order);
        missing ones are encoded in eval mode, in length-sorted batches, and stored."""
        return torch.stack(self._lookup(model, clips, maxlen, "features"))

    def prefix_states(self, model: SERModel, clips: Sequence[Clip], maxlen: int) -> list[torch.Tensor]:
        """The frozen prefix's outputs for ``clips`` (in order; see ``SERModel``): valid
        whatever the trained layers above it have become."""
        return self._lookup(model, clips, maxlen, "prefix")

    def frames(self, model: SERModel, clips: Sequence[Clip], maxlen: int) -> list[torch.Tensor]:
        """The pristine encoder's output frames for ``clips`` (in order), as the model's
        learned pooling pools them (``SERModel.encode_frames``)."""
        return self._lookup(model, clips, maxlen, "frames")

    def _lookup(self, model: SERModel, clips: Sequence[Clip], maxlen: int, kind: str) -> list[torch.Tensor]:
        keys = [self.key(model, c, maxlen, kind) for c in clips]
        found: dict[str, torch.Tensor] = {}
        missing: dict[str, Clip] = {}
        for clip, key in zip(clips, keys):
            if key in found or key in missing:
                continue
            tensor = self.store.get(key)
            if tensor is None:
                missing[key] = clip
            else:
                found[key] = tensor
        self.hits += len(clips) - len(missing)
        self.misses += len(missing)
        # Stored batch by batch: a persistent folder keeps the work of an interrupted run.
        pending = sorted(missing.items(), key=lambda item: min(len(item[1].wave), maxlen))
        for start in range(0, len(pending), EVAL_BATCH):
            chunk = pending[start : start + EVAL_BATCH]
            encoded = encode_batched(model, [c for _, c in chunk], maxlen, kind=kind)
            for (key, _), tensor in zip(chunk, encoded):
                self.store.put(key, tensor)
                found[key] = tensor
        return [found[k] for k in keys]


def study_cache(producer: str, out_dir: Path, memory_gb: float | None) -> FeatureCache:
    """A study's cache: ``$SERBENCH_CACHE`` (persistent) or ``<out_dir>/.feature-cache``
    (spill only, created when needed), bounded by ``$SERBENCH_CACHE_MB`` or a quarter of
    the job's memory."""
    folder, persistent = cache_folder(out_dir)
    return FeatureCache(producer, memory_bound_mb(memory_gb), folder, persistent)


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


def encode_batched(
    model: SERModel, clips: Sequence[Clip], maxlen: int, size: int = EVAL_BATCH, kind: str = "features"
) -> list[torch.Tensor]:
    """Features of ``clips`` (in their order): :func:`encode_waves` of their waves."""
    return encode_waves(model, [clip.wave for clip in clips], maxlen, size, kind)


def encode_waves(
    model: SERModel, waves: Sequence[np.ndarray], maxlen: int, size: int = EVAL_BATCH, kind: str = "features"
) -> list[torch.Tensor]:
    """Features of ``waves`` (in their order, each cut to ``maxlen``), computed in eval mode
    without gradients, in batches of similar length; the model's train/eval mode is restored
    afterwards. ``kind``: ``features`` (``SERModel.encode``), ``prefix`` (the frozen prefix's
    states, ``SERModel.encode_prefix``) or ``frames`` (``SERModel.encode_frames``)."""
    encoders = {"features": model.encode, "prefix": model.encode_prefix, "frames": model.encode_frames}
    was_training = model.training
    model.eval()
    by_index: dict[int, torch.Tensor] = {}
    order = sorted(range(len(waves)), key=lambda i: min(len(waves[i]), maxlen))
    with torch.no_grad():
        for start in range(0, len(order), size):
            indices = order[start : start + size]
            encoded = encoders[kind]([waves[i][:maxlen] for i in indices], maxlen)
            for i, vector in zip(indices, encoded):
                by_index[i] = vector.clone()
    model.train(was_training)
    return [by_index[i] for i in range(len(waves))]


# --- the store: memory, then a folder ---------------------------------------------------


def namespace(producer: str) -> str:
    """The folder name for features produced by ``producer`` (a backbone's ``cache_key()``)."""
    text = json.dumps({"producer": producer, "torch": torch.__version__, "format": FORMAT}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:20]


class MemoryBudget:
    """Bytes that stores sharing it may keep in memory together (``limit``), and how many
    they keep (``used``)."""

    def __init__(self, limit: int):
        self.limit = limit
        self.used = 0

    def fits(self, nbytes: int) -> bool:
        return self.used + nbytes <= self.limit


class FeatureStore:
    """A key -> tensor store, at most ``max_memory_mb`` of it in memory -- or, given a
    ``budget``, at most what that budget, shared with other stores, has left.

    ``folder`` (created on first write) receives what does not fit, and everything when
    ``persistent``; entries go under ``folder/<namespace(producer)>``. Without a folder,
    nothing spills: the bound is then only a target.
    """

    def __init__(
        self,
        producer: str,
        max_memory_mb: float,
        folder: Path | None = None,
        persistent: bool = False,
        budget: MemoryBudget | None = None,
    ):
        if persistent and folder is None:
            raise ValueError("a persistent feature store needs a folder")
        self.budget = budget if budget is not None else MemoryBudget(int(max_memory_mb * 2**20))
        self.base_folder = Path(folder) if folder is not None else None
        self.folder = Path(folder) / namespace(producer) if folder is not None else None
        self.persistent = persistent
        self._producer = producer
        self._memory: dict[str, torch.Tensor] = {}
        self._disk: set[str] = set()  # keys known to be in the folder
        self.memory_bytes = 0  # this store's share of the budget
        self.disk_reads = 0
        self.disk_writes = 0

    @property
    def max_bytes(self) -> int:
        return self.budget.limit

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
        if self.persistent and self.budget.fits(tensor.nbytes):
            self._keep(key, tensor)  # a persistent entry from an earlier run: promote it
        return tensor

    def put(self, key: str, tensor: torch.Tensor) -> None:
        """Store ``tensor`` (detached, contiguous, CPU) under ``key``."""
        tensor = tensor.detach().cpu().contiguous()
        fits = self.budget.fits(tensor.nbytes)
        if fits or self.folder is None:
            self._keep(key, tensor)
        if self.folder is not None and (self.persistent or not fits):
            self._write(key, tensor)

    def _keep(self, key: str, tensor: torch.Tensor) -> None:
        old = self._memory.get(key)
        if old is not None:
            self.memory_bytes -= old.nbytes
            self.budget.used -= old.nbytes
        self._memory[key] = tensor
        self.memory_bytes += tensor.nbytes
        self.budget.used += tensor.nbytes

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
