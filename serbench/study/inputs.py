"""What a study works on, loaded once before any trial: torch threads, the backbone (its
source checked, its weights loaded), the corpus cut into folds, the transfer targets and
the feature cache -- one :class:`Inputs`, made by :func:`load_inputs`.

The order is the one that fails soonest on bad input: the backbone's source is checked
before any audio is read, and the weights are loaded after the audio.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from serbench.backbones.base import Backbone
from serbench.data.base import DatasetAdapter, resolve_root
from serbench.data.corpus import LoadedCorpus, load_corpus
from serbench.data.folds import Fold, make_folds
from serbench.data.labels import class_order
from serbench.errors import DataError
from serbench.execution.limits import CpuLimit, configure_torch_threads
from serbench.plugin.registry import Registry
from serbench.spec import JobSpec, TransferTarget, plugin_options
from serbench.study.resolve import Plugins, corpus_root, make_backbone

if TYPE_CHECKING:
    from serbench.data.base import Clip
    from serbench.training.features import FeatureCache

Step = Callable[[str], None]


@dataclass(frozen=True)
class Data:
    """The job's corpus (labels in the model's classes) and its folds."""

    corpus: LoadedCorpus
    classes: list[str]  # the model's classes, in output order
    folds: list[Fold]

    @property
    def clips(self) -> dict[str, Clip]:
        return self.corpus.clips


@dataclass(frozen=True)
class Inputs:
    threads: int  # torch threads in force
    available: CpuLimit  # the CPUs the study may use, and where that figure comes from
    backbone: Backbone
    data: Data
    targets: list[tuple[TransferTarget, LoadedCorpus]]  # labels indexed by ``data.classes``
    cache: FeatureCache | None  # frozen encoder features across trials
    model_load_seconds: float
    _variants: dict[str, tuple[Backbone, FeatureCache | None]] = field(default_factory=dict, repr=False)

    def variant(self, overrides: dict[str, Any]) -> tuple[Backbone, FeatureCache | None]:
        """The backbone with a trial's searched options (``JobSpec.backbone_overrides``)
        merged over the job's, and its feature cache: ``(backbone, cache)`` itself for
        none; else one variant per distinct configuration, made on first use, sharing the
        loaded weights and the cache's memory bound (:meth:`FeatureCache.sibling`)."""
        if not overrides:
            return self.backbone, self.cache
        key = json.dumps(overrides, sort_keys=True, default=str)
        if key not in self._variants:
            backbone = self.backbone.with_options(overrides)
            cache = self.cache
            if backbone is not self.backbone and cache is not None:
                cache = cache.sibling(backbone.cache_key())
            self._variants[key] = (backbone, cache)
        return self._variants[key]


def load_inputs(
    spec: JobSpec, plugins: Plugins, reg: Registry, data_home: Path | None, out_dir: Path, step: Step
) -> Inputs:
    threads, available = configure_torch_threads(spec.resources.cpus)
    backbone = make_backbone(spec, plugins)
    backbone.check_source()  # a bad source fails before any audio is read
    data = load_data(spec, plugins, data_home, step)
    targets = load_targets(spec, reg, data.classes, data_home, step)
    model_load_seconds = load_weights(backbone, len(data.classes), step)
    from serbench.training.features import study_cache  # here: importing this module needs no torch

    # Frozen features: $SERBENCH_CACHE (persistent) or spilled to <out>/.feature-cache.
    cache = study_cache(backbone.cache_key(), out_dir, spec.resources.memory_gb)
    return Inputs(threads, available, backbone, data, targets, cache, model_load_seconds)


def load_data(spec: JobSpec, plugins: Plugins, data_home: Path | None, step: Step = lambda message: None) -> Data:
    """Load the corpus and cut it into folds."""
    adapter_cls: type[DatasetAdapter] = plugins.dataset.cls
    options = plugin_options(adapter_cls.Options, spec.dataset.options, "dataset.options")
    corpus = load_corpus(
        adapter_cls(options),
        corpus_root(spec, adapter_cls, data_home),
        spec.dataset.label_map,
        spec.dataset.subset,
        spec.seed,
        spec.dataset.skip_bad_files,
        step,
    )
    classes = class_order({u.label for u in corpus.utterances})
    if len(classes) < 2:
        raise DataError(f"{corpus.root}: needs at least two classes, found {classes}")
    corpus.set_class_indices(classes)
    return Data(corpus, classes, make_folds(corpus.utterances, spec.dataset.protocol, spec.seed))


def load_targets(
    spec: JobSpec, reg: Registry, classes: list[str], data_home: Path | None, step: Step
) -> list[tuple[TransferTarget, LoadedCorpus]]:
    """Each transfer target's corpus, its labels indexed by the model's ``classes``."""
    targets = []
    for target in spec.transfer:
        adapter_cls = reg.get("dataset", target.name).cls
        root = resolve_root(adapter_cls, target.root, data_home)
        options = plugin_options(adapter_cls.Options, target.options, "transfer.options")
        corpus = load_corpus(
            adapter_cls(options), root, target.label_map, target.subset, spec.seed,
            spec.dataset.skip_bad_files, step,
        )
        corpus.set_class_indices(classes)
        targets.append((target, corpus))
    return targets


def transfer_runs(targets: list[tuple[TransferTarget, LoadedCorpus]]) -> list[tuple[str, TransferTarget, LoadedCorpus, str]]:
    """Each scored transfer result, in the order a final model scores them (the job's
    targets, each in its ``adapt`` modes' order): its key in ``result.transfer``
    (:func:`serbench.training.adapt.result_key`), the target, its corpus and the mode."""
    from serbench.training.adapt import result_key

    return [(result_key(t.name, mode), t, corpus, mode) for t, corpus in targets for mode in t.adapt]


def load_weights(backbone: Backbone, classes: int, step: Step) -> float:
    """Build the model once (fail now, not in every trial); the seconds it took."""
    step(f"loading backbone {backbone.name} from {backbone.source}")
    started = time.perf_counter()
    backbone.build(classes)
    return time.perf_counter() - started
