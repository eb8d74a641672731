"""The torch side of the SpeechBrain wav2vec2 backbone (imported only when a model is built).

:func:`load_checkpoint` runs SpeechBrain's own loader for hub ids and local folders alike;
:class:`SpeechBrainWav2Vec2SER` runs the loaded encoder batched, with padding masked, so a
clip gets the same pooled features alone or in a batch.
"""

from __future__ import annotations

import contextlib
import logging
import warnings
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np
import torch
import yaml
from torch import nn
from torch.nn import functional as F

from serbench.backbones.base import resolve_source
from serbench.errors import DataError, ModelError
from serbench.backbones.model import SERModel
from serbench.backbones.speechbrain_wav2vec2 import HPARAMS, collect_dir

LAYOUT_HINT = "see the README's speechbrain-wav2vec2 section for the folder layout"


def load_checkpoint(source: str, savedir: str | None = None) -> nn.Module:
    """The checkpoint's wav2vec2 lobe, with the fine-tuned weights of ``wav2vec2.ckpt``.

    ``source`` is a local folder (read in place, nothing written) or a hub id (files
    collected under ``savedir/<owner>--<name>``). Either way the same SpeechBrain call
    loads it, ``EncoderClassifier.from_hparams`` with overrides that point the checkpoint
    files at ``source`` itself and the wav2vec2 config (``wav2vec2_hub``) at a local copy
    when there is one: ``<folder>/<last part of wav2vec2_hub>``, else a folder found by
    :func:`resolve_source`. Raises ``ModelError`` with a one-line message.
    """
    local = Path(source).is_dir()
    if not local and (source.startswith(("/", ".", "~")) or source.count("/") > 1):
        raise ModelError(f"SpeechBrain checkpoint folder {source!r} does not exist")
    collect = None  # SpeechBrain then reads a local folder in place
    if not local:
        collect = collect_dir(source, savedir)
    try:
        with _quiet():
            from speechbrain.inference.classifiers import EncoderClassifier
            from speechbrain.utils.fetching import fetch

            hparams_file = fetch(HPARAMS, source=source, savedir=collect)
            overrides = _overrides(source, local, Path(hparams_file), collect)
            classifier = EncoderClassifier.from_hparams(
                source=source, savedir=collect, overrides=overrides, run_opts={"device": "cpu"}
            )
            lobe = _lobe(classifier)
            _check_loaded(lobe, classifier)
    except ModelError as exc:
        raise ModelError(f"SpeechBrain checkpoint {source!r}: {exc}") from None
    except Exception as exc:  # a user-named source: whatever breaks, it is the source
        text = str(exc).strip()
        first = text.splitlines()[0] if text else exc.__class__.__name__
        hint = LAYOUT_HINT
        if not local:
            hint = f"name a local folder, a folder under $SERBENCH_MODELS, or a hub id reachable from here; {hint}"
        raise ModelError(f"cannot load SpeechBrain checkpoint {source!r}: {first} ({hint})") from None
    return lobe


def _overrides(source: str, local: bool, hparams_file: Path, collect: Path | None) -> dict[str, Any]:
    declared = _top_level_keys(hparams_file)
    overrides: dict[str, Any] = {}
    if "pretrained_path" in declared:
        overrides["pretrained_path"] = source  # the checkpoint files come from the named source only
    hub = declared.get("wav2vec2_hub")
    if isinstance(hub, str):
        candidates = [Path(source) / Path(hub).name] if local else []
        candidates.append(Path(resolve_source(hub)))
        found = next((c for c in candidates if c.is_dir()), None)
        if found is not None:
            overrides["wav2vec2_hub"] = str(found)
        elif local:
            raise ModelError(f"built on {hub!r}, but {candidates[0]} holds no copy of it ({LAYOUT_HINT})")
        lobe = declared.get("wav2vec2")
        if isinstance(lobe, dict) and "save_path" in lobe:
            # The published value is relative: the lobe would make it in the working directory.
            save_path = found if found is not None else collect / "wav2vec2_checkpoints"
            overrides["wav2vec2"] = {"save_path": str(save_path)}
    return overrides


class _IgnoreTags(yaml.SafeLoader):
    """Reads a hyperparams file's plain values; tagged nodes (``!new:``, ``!ref``) are
    kept as plain mappings, lists or ``None`` and never constructed."""


def _untagged(loader: yaml.SafeLoader, suffix: str, node: yaml.Node) -> Any:
    if isinstance(node, yaml.MappingNode):
        return loader.construct_mapping(node, deep=True)
    if isinstance(node, yaml.SequenceNode):
        return loader.construct_sequence(node, deep=True)
    return None


_IgnoreTags.add_multi_constructor("!", _untagged)


def _top_level_keys(hparams_file: Path) -> dict[str, Any]:
    data = yaml.load(hparams_file.read_text(encoding="utf-8"), Loader=_IgnoreTags)
    if not isinstance(data, dict):
        raise ModelError(f"{hparams_file.name} is not a SpeechBrain hyperparams file")
    return data


def _lobe(classifier) -> nn.Module:
    lobe = getattr(classifier.hparams, "wav2vec2", None)
    model = getattr(lobe, "model", None)
    if not all(hasattr(model, a) for a in ("feature_extractor", "feature_projection", "encoder")) or not all(
        hasattr(lobe, a) for a in ("freeze", "output_norm", "normalize_wav")
    ):
        raise ModelError("not a wav2vec2 checkpoint: hyperparams.yaml builds no wav2vec2 lobe named 'wav2vec2'")
    if getattr(lobe, "output_all_hiddens", False):
        raise ModelError("output_all_hiddens: True is not supported")
    if model.config.apply_spec_augment or getattr(model, "adapter", None) is not None:
        raise ModelError("wav2vec2 with SpecAugment or an adapter is not supported")
    pool = getattr(classifier.hparams, "avg_pool", None)
    if not (getattr(pool, "return_mean", False) and not getattr(pool, "return_std", True)):
        raise ModelError("the checkpoint's avg_pool is not a mean over time (StatisticsPooling, return_std: False)")
    return lobe


def _check_loaded(lobe: nn.Module, classifier) -> None:
    """SpeechBrain transfers parameters non-strictly, logging what it could not match; an
    encoder left partly at its hub initialisation is refused here instead."""
    pretrainer = getattr(classifier.hparams, "pretrainer", None)
    path = getattr(pretrainer, "paths", {}).get("wav2vec2")
    if path is None:
        raise ModelError("its pretrainer loads no wav2vec2.ckpt: the encoder would not be the fine-tuned one")
    from speechbrain.utils.checkpoints import torch_patched_state_dict_load

    missing = lobe.load_state_dict(torch_patched_state_dict_load(path, "cpu"), strict=False).missing_keys
    if missing:
        raise ModelError(f"{Path(path).name} lacks {len(missing)} of the encoder's parameters (first: {missing[0]})")


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Silences SpeechBrain's logging, deprecation warnings and transformers' progress bars
    while loading (the "frozen" and "redirecting" notices are expected)."""
    import transformers

    sb_logger = logging.getLogger("speechbrain")
    handlers, propagate = sb_logger.handlers[:], sb_logger.propagate
    verbosity, bars = transformers.logging.get_verbosity(), transformers.logging.is_progress_bar_enabled()
    sb_logger.handlers, sb_logger.propagate = [logging.NullHandler()], False
    transformers.logging.set_verbosity_error()
    transformers.logging.disable_progress_bar()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        sb_logger.handlers, sb_logger.propagate = handlers, propagate
        transformers.logging.set_verbosity(verbosity)
        if bars:
            transformers.logging.enable_progress_bar()


class SpeechBrainWav2Vec2SER(SERModel):
    """The checkpoint's wav2vec2 encoder, mean-pooled over time, and serbench's head.

    Per clip, the features equal the lobe's own forward (waveform normalisation if the
    feature extractor asks for it, wav2vec2, ``output_norm`` over the clip's frames) then
    the checkpoint's mean over time, without ``StatisticsPooling``'s random jitter of
    1e-5..9e-5 (frozen features must be deterministic to be cached). In a batch, the CNN
    runs per clip (wav2vec2-base's first GroupNorm normalises over time, so padding would
    change it), padded frames are masked out of attention, ``output_norm`` and the mean.
    """

    def __init__(self, wav2vec2: nn.Module, num_classes: int, freeze_feature_extractor: bool = True):
        super().__init__(wav2vec2.model.config.hidden_size, num_classes)
        self.wav2vec2 = wav2vec2
        self.freeze_feature_extractor = freeze_feature_extractor
        wav2vec2.freeze_feature_extractor = freeze_feature_extractor
        if freeze_feature_extractor:
            wav2vec2.model.freeze_feature_encoder()
        config = wav2vec2.model.config
        self.min_samples = 1
        for kernel, stride in reversed(list(zip(config.conv_kernel, config.conv_stride))):
            self.min_samples = (self.min_samples - 1) * stride + kernel
        self.set_encoder_trainable(True)  # SERModel's initial state; fit() sets it per epoch

    def encoder_modules(self):
        return [self.wav2vec2]

    def fixed_parameters(self):
        if self.freeze_feature_extractor:
            return list(self.wav2vec2.model.feature_extractor.parameters())
        return []

    def set_encoder_trainable(self, trainable: bool) -> None:
        # The lobe's forward runs under torch.no_grad() while `freeze` is set, and so does
        # _encode: flipping requires_grad alone would leave the encoder frozen.
        self.wav2vec2.freeze = not trainable
        super().set_encoder_trainable(trainable)

    def train(self, mode: bool = True) -> "SpeechBrainWav2Vec2SER":
        super().train(mode)
        if self.freeze_feature_extractor:
            self.wav2vec2.model.feature_extractor.eval()
        return self

    def _conv_features(self, wave: np.ndarray) -> torch.Tensor:
        """``(frames, conv_dim)`` of one unpadded clip."""
        if len(wave) < self.min_samples:
            raise DataError(f"a clip of {len(wave)} samples is too short for wav2vec2 (needs {self.min_samples})")
        x = torch.as_tensor(np.asarray(wave, dtype=np.float32))[None]
        if self.wav2vec2.normalize_wav:
            x = F.layer_norm(x, x.shape[1:])
        with torch.set_grad_enabled(torch.is_grad_enabled() and not self.freeze_feature_extractor):
            return self.wav2vec2.model.feature_extractor(x)[0].transpose(0, 1)

    def _encode(self, waves: Sequence[np.ndarray]) -> torch.Tensor:
        lobe = self.wav2vec2
        model = lobe.model
        with torch.set_grad_enabled(torch.is_grad_enabled() and not lobe.freeze):
            convs = [self._conv_features(w) for w in waves]
            frames = torch.tensor([c.shape[0] for c in convs])
            batch = nn.utils.rnn.pad_sequence(convs, batch_first=True)
            valid = torch.arange(batch.shape[1])[None, :] < frames[:, None]  # (B, T)
            hidden, _ = model.feature_projection(batch)
            mask = None if bool(valid.all()) else valid
            hidden = model.encoder(hidden, attention_mask=mask).last_hidden_state
            weights = valid.to(hidden.dtype)[:, :, None]
            if lobe.output_norm:  # F.layer_norm over each clip's (frames, channels), padding excluded
                count = (frames * hidden.shape[2]).to(hidden.dtype)[:, None, None]
                mean = (hidden * weights).sum(dim=(1, 2), keepdim=True) / count
                var = (((hidden - mean) * weights) ** 2).sum(dim=(1, 2), keepdim=True) / count
                hidden = (hidden - mean) / torch.sqrt(var + 1e-5)
            return (hidden * weights).sum(dim=1) / frames[:, None].to(hidden.dtype)
