"""``SERModel``: a speech encoder, pooled to one vector per utterance, and a linear head.

Freezing is real: while the encoder is frozen it runs in eval mode under
``torch.no_grad()`` and its parameters do not require gradients; ``set_encoder_trainable
(True)`` turns all three back on, so the next optimiser step really changes the encoder.
"""

from __future__ import annotations

from abc import abstractmethod
from typing import Iterator, Sequence

import numpy as np
import torch
from torch import nn

from serbench.errors import ModelError


class Standardize(nn.Module):
    """A fixed affine map ``(x - mean) / std``: the identity until ``set_statistics``.

    Pooled encoder features share a large common offset, which makes a linear head on
    raw features learn very slowly at the paper's learning rates; standardising with the
    training set's statistics (scikit-learn's ``StandardScaler``, as a layer) fixes that
    without adding trainable parameters. Under a learned pooling (``SERModel.pool``) the
    pooled vectors change as it trains: ``fit`` then refits these statistics each epoch.
    """

    def __init__(self, dim: int):
        super().__init__()
        self.register_buffer("mean", torch.zeros(dim))
        self.register_buffer("std", torch.ones(dim))

    @staticmethod
    def statistics(features: torch.Tensor) -> dict[str, torch.Tensor]:
        """The statistics of ``features`` ``(N, D)``, by buffer name."""
        return {"mean": features.mean(dim=0), "std": features.std(dim=0, unbiased=False).clamp_min(1e-5)}

    def set_statistics(self, features: torch.Tensor) -> None:
        set_buffers(self, self.statistics(features))

    def forward(self, x: torch.Tensor, statistics: dict[str, torch.Tensor] | None = None) -> torch.Tensor:
        """``x`` standardised with this layer's statistics, or with ``statistics`` (as
        :meth:`statistics` returns them) when given."""
        stats = statistics or {"mean": self.mean, "std": self.std}
        return (x - stats["mean"]) / stats["std"]


class LayerMix(nn.Module):
    """A learned softmax-weighted sum of per-layer pooled vectors ``(B, L, D) -> (B, D)``,
    standardised like :class:`Standardize` once ``set_statistics`` has run.

    The weights start equal (the mean of the layers) and belong to the head: they train in
    every epoch, frozen encoder or not, after the feature cache. The standardisation is
    exact for whatever weights: the training set's per-layer means ``(L, D)`` and, per
    feature, the covariance across layers ``(D, L, L)`` give the mix's mean ``w @ mean``
    and variance ``w @ cov_d @ w``. (Standardising each layer before mixing would shrink
    the mix's spread as the layers average out, and slow the head down.)
    """

    def __init__(self, layers: int, dim: int):
        super().__init__()
        self.logits = nn.Parameter(torch.zeros(layers))
        self.register_buffer("mean", torch.zeros(layers, dim))
        self.register_buffer("cov", torch.zeros(dim, layers, layers))
        self.register_buffer("fitted", torch.tensor(False))

    def weights(self) -> torch.Tensor:
        return torch.softmax(self.logits, dim=0)

    @staticmethod
    def statistics(features: torch.Tensor) -> dict[str, torch.Tensor]:
        """The statistics of ``features`` ``(N, L, D)``, by buffer name."""
        mean = features.mean(dim=0)
        centred = features - mean
        cov = torch.einsum("nld,nmd->dlm", centred, centred) / len(features)
        return {"mean": mean, "cov": cov, "fitted": torch.tensor(True)}

    def set_statistics(self, features: torch.Tensor) -> None:
        set_buffers(self, self.statistics(features))

    def forward(self, x: torch.Tensor, statistics: dict[str, torch.Tensor] | None = None) -> torch.Tensor:
        """The mix of ``x``, standardised with this layer's statistics or with
        ``statistics`` (as :meth:`statistics` returns them) when given; the learned
        weights are this layer's either way."""
        stats = statistics or {"mean": self.mean, "cov": self.cov, "fitted": self.fitted}
        w = self.weights()
        mixed = torch.einsum("bld,l->bd", x, w)
        variance = torch.einsum("dlm,l,m->d", stats["cov"], w, w)
        standardised = (mixed - w @ stats["mean"]) / variance.clamp_min(1e-10).sqrt()
        # A select, not a Python branch on the buffer, so that torch.export can trace it
        # (ONNX export); the value and gradient are those of the branch taken.
        return torch.where(stats["fitted"], standardised, mixed)


class AttentionPool(nn.Module):
    """A learned attention over a clip's valid frames, ``(B, T, D)`` and ``valid`` ``(B, T)``
    to ``(B, D)``: weights ``softmax_t(v^T tanh(W h_t + b))`` over the valid frames only
    (padding gets weight zero), the weighted mean; with ``std`` also the weighted standard
    deviation, ``(B, 2 D)`` (attentive statistics pooling, Okabe et al. 2018).

    ``v`` starts at zero, so every score is zero and the weights start uniform: the
    pooling starts as the plain mean (and standard deviation) over the valid frames. Its
    parameters belong to the head: they train in every epoch, frozen encoder or not.
    """

    def __init__(self, dim: int, hidden: int = 64, std: bool = False):
        super().__init__()
        self.std = std
        self.project = nn.Linear(dim, hidden)
        self.score = nn.Linear(hidden, 1, bias=False)
        nn.init.zeros_(self.score.weight)

    def weights(self, h: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        """``(B, T)`` attention weights, zero on invalid frames, each row summing to one."""
        scores = self.score(torch.tanh(self.project(h)))[..., 0]
        scores = scores.masked_fill(~valid, torch.finfo(scores.dtype).min)
        return torch.softmax(scores, dim=1) * valid.to(h.dtype)

    def forward(self, h: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        weights = self.weights(h, valid)[:, :, None]
        mean = (h * weights).sum(dim=1)
        if not self.std:
            return mean
        variance = (((h - mean[:, None, :]) ** 2) * weights).sum(dim=1)
        return torch.cat([mean, variance.clamp_min(1e-12).sqrt()], dim=1)


ENROLMENT = "enrolment/"  # trained_state names of enrolled speakers' statistics: enrolment/<speaker>/<stat>


def enrolment_name(speaker: str, stat: str) -> str:
    """The :meth:`SERModel.trained_state` name of an enrolled ``speaker``'s statistic."""
    return f"{ENROLMENT}{speaker}/{stat}"


def split_enrolment(state: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], dict[str, dict[str, torch.Tensor]]]:
    """``state`` without its enrolment entries, and those as speaker -> statistics."""
    rest, enrolment = {}, {}
    for name, value in state.items():
        if name.startswith(ENROLMENT):
            speaker, stat = name[len(ENROLMENT):].rsplit("/", 1)
            enrolment.setdefault(speaker, {})[stat] = value
        else:
            rest[name] = value
    return rest, enrolment


def set_buffers(module: nn.Module, values: dict[str, torch.Tensor]) -> None:
    """Copy ``values`` into ``module``'s buffers of the same names."""
    for name, value in values.items():
        getattr(module, name).copy_(value)


class SERModel(nn.Module):
    """Subclasses implement ``_encode`` (batching and masking included) and
    ``encoder_modules``; ``feature_dim`` is the pooled vector's size.

    A backbone that trains only the top of its encoder may also split it: a *frozen
    prefix* (``frozen_modules``, never trained, always in eval mode) whose per-clip output
    ``_prefix_states`` a feature cache keeps for the whole study, and the rest, run by
    ``_encode_from_prefix``. It then sets ``prefix_rows`` (not ``None``), and unfrozen
    epochs cost only the trained layers.

    Encoded features are what a feature cache stores: ``(B, feature_dim)``, or with
    ``feature_layers`` set, one pooled vector per layer, ``(B, feature_layers,
    feature_dim)``. The head (``norm`` then ``head``) is :class:`Standardize`, or with
    layers a :class:`LayerMix`, followed by one linear layer.

    A model whose pooling is learned (``pool``, e.g. an :class:`AttentionPool`; ``None``
    for a fixed pooling such as the mean) pools as part of the head. It implements
    ``_frames``: per clip, the encoder's output frames ``(T, feature_frame_dim)`` after
    layer selection, the valid frames only. ``encode_frames`` gives them (gradients only
    while the encoder trains), ``pool_frames`` pools them (gradients in every epoch), and
    ``encode`` is the two in turn. While the encoder is frozen and pristine a feature
    cache keeps the frames (``kind="frames"``), never the pooled vectors: those change
    as ``pool`` trains.
    """

    HEAD_PARTS = ("pool", "norm", "head")  # what trains in every epoch; names in trained_state

    def __init__(self, feature_dim: int, num_classes: int, feature_layers: int | None = None):
        super().__init__()
        self.feature_dim = feature_dim
        self.feature_layers = feature_layers
        self.norm = LayerMix(feature_layers, feature_dim) if feature_layers else Standardize(feature_dim)
        self.head = nn.Linear(feature_dim, num_classes)
        self.dropout = nn.Dropout(0.0)  # before the head; ``fit`` sets its rate per run
        self.encoder_trainable = True
        self.encoder_pristine = True  # False once an optimiser step may have changed the encoder
        self.prefix_rows: int | None = None  # set by models with a cacheable frozen prefix
        self.pool: nn.Module | None = None  # a learned pooling, part of the head (see the class)
        # speaker -> its training utterances' ``norm`` statistics, as the trained model encodes
        # them (``fit`` with ``speaker_enrolment``); saved in ``trained_state``
        self.enrolment: dict = {}

    def head_modules(self) -> list[nn.Module]:
        """The head's modules (``pool`` when learned, ``norm``, ``head``)."""
        return [m for m in (getattr(self, part) for part in self.HEAD_PARTS) if m is not None]

    @abstractmethod
    def encoder_modules(self) -> Sequence[nn.Module]:
        """The modules holding the pre-trained encoder (not the head)."""

    @abstractmethod
    def _encode(self, waves: Sequence[np.ndarray]) -> torch.Tensor:
        """Encoded features of 16 kHz mono waveforms, one row per wave (see the class)."""

    def frozen_modules(self) -> Sequence[nn.Module]:
        """Encoder modules that never train (the frozen prefix, if any)."""
        return []

    def _prefix_states(self, waves: Sequence[np.ndarray], maxlen: int) -> list[torch.Tensor]:
        """Per clip (already cut to ``maxlen``), the frozen prefix's output as one tensor."""
        raise NotImplementedError(f"{type(self).__name__} has no cacheable frozen prefix")

    def _encode_from_prefix(self, states: Sequence[torch.Tensor], samples: Sequence[int]) -> torch.Tensor:
        """Features from ``_prefix_states`` of clips of ``samples`` samples (as cut)."""
        raise NotImplementedError(f"{type(self).__name__} has no cacheable frozen prefix")

    def encode_prefix(self, waves: Sequence[np.ndarray], maxlen: int) -> list[torch.Tensor]:
        """The frozen prefix's per-clip outputs (no gradients: the prefix never trains)."""
        with torch.no_grad():
            return self._prefix_states(waves, maxlen)

    def encode_from_prefix(self, states: Sequence[torch.Tensor], samples: Sequence[int]) -> torch.Tensor:
        """Features from cached prefix states, with gradients only while the encoder trains;
        equal to ``encode`` of the same clips."""
        grad = torch.is_grad_enabled() and self.encoder_trainable
        with torch.set_grad_enabled(grad):
            return self._encode_from_prefix(states, samples)

    def _frames(self, waves: Sequence[np.ndarray], maxlen: int | None) -> list[torch.Tensor]:
        """Per clip (already cut to ``maxlen``), the encoder's valid output frames, as a
        learned ``pool`` pools them (see the class)."""
        raise NotImplementedError(f"{type(self).__name__} has no learned pooling")

    def encode_frames(self, waves: Sequence[np.ndarray], maxlen: int | None = None) -> list[torch.Tensor]:
        """``_frames`` of the waves, with gradients only while the encoder trains."""
        grad = torch.is_grad_enabled() and self.encoder_trainable
        with torch.set_grad_enabled(grad):
            return self._frames(waves, maxlen)

    def pool_frames(self, frames: Sequence[torch.Tensor]) -> torch.Tensor:
        """Features ``(B, feature_dim)`` of per-clip frames ``(T_i, D)`` through ``pool``
        (gradients whenever enabled: ``pool`` is the head's). Clips are zero-padded to the
        longest and the padding masked, so a clip pools the same alone or batched."""
        lengths = torch.tensor([len(f) for f in frames])
        x = torch.zeros(len(frames), int(lengths.max()), frames[0].shape[1], dtype=frames[0].dtype)
        for i, f in enumerate(frames):
            x[i, : len(f)] = f
        valid = torch.arange(x.shape[1])[None, :] < lengths[:, None]
        return self.pool(x, valid)

    def fixed_parameters(self) -> list[nn.Parameter]:
        """Encoder parameters that are never trained (e.g. a fixed position table)."""
        return []

    def encoder_parameters(self) -> Iterator[nn.Parameter]:
        """The encoder's trainable parameters."""
        fixed = {id(p) for p in self.fixed_parameters()}
        for module in self.encoder_modules():
            yield from (p for p in module.parameters() if id(p) not in fixed)

    def trainable_parameters(self) -> list[nn.Parameter]:
        """Head and encoder parameters, the ones an optimiser should hold."""
        fixed = {id(p) for p in self.fixed_parameters()}
        return [p for p in self.parameters() if id(p) not in fixed]

    def set_encoder_trainable(self, trainable: bool) -> None:
        self.encoder_trainable = trainable
        for param in self.encoder_parameters():
            param.requires_grad_(trainable)
        self.train(self.training)

    def train(self, mode: bool = True) -> "SERModel":
        super().train(mode)
        frozen = list(self.frozen_modules())
        if not self.encoder_trainable:
            frozen += list(self.encoder_modules())
        for module in frozen:
            module.eval()  # a frozen encoder never runs dropout
        return self

    def _encode_cut(self, waves: Sequence[np.ndarray], maxlen: int) -> torch.Tensor:
        """Like ``_encode``, for clips already cut to ``maxlen`` samples. Override when the
        features depend on ``maxlen`` itself (e.g. a backbone that pads to it)."""
        return self._encode(waves)

    def input_key(self, samples: int, maxlen: int) -> tuple[int, ...]:
        """What, besides the audio, a clip's features depend on when it has ``samples``
        samples and is cut to ``maxlen``: by default only the cut length. A feature cache
        keys on it, so clips shorter than every ``maxlen`` are encoded once per study."""
        return (min(samples, maxlen),)

    def encode(self, waves: Sequence[np.ndarray], maxlen: int | None = None) -> torch.Tensor:
        """Features (see the class docstring) of 16 kHz waveforms, with gradients only
        while the encoder trains. ``maxlen``: the length the clips were cut to."""
        if self.pool is not None:
            return self.pool_frames(self.encode_frames(waves, maxlen))
        grad = torch.is_grad_enabled() and self.encoder_trainable
        with torch.set_grad_enabled(grad):
            return self._encode(waves) if maxlen is None else self._encode_cut(waves, maxlen)

    def trained_state(self) -> dict[str, torch.Tensor]:
        """What training changed, by ``state_dict`` name: the head's parameters and
        statistics (``pool.*`` when the pooling is learned, ``norm.*``, ``head.*``) and, once the encoder has trained
        (``encoder_pristine`` False), its trainable parameters -- the unfrozen top layers,
        or the whole encoder -- but never a frozen prefix or fixed parameters; and each
        enrolled speaker's statistics (``enrolment/<speaker>/<stat>``). A model
        built afresh by the same backbone from the same pre-trained weights equals this
        one after ``load_trained_state`` of it."""
        names = {id(param): name for name, param in self.named_parameters()}
        state = {}
        for part in self.HEAD_PARTS:
            module = getattr(self, part)
            if module is not None:
                state.update({f"{part}.{k}": v for k, v in module.state_dict().items()})
        if not self.encoder_pristine:
            state.update({names[id(param)]: param for param in self.encoder_parameters()})
        for speaker, statistics in self.enrolment.items():
            state.update({enrolment_name(speaker, stat): value for stat, value in statistics.items()})
        return {name: tensor.detach().contiguous() for name, tensor in state.items()}

    def load_trained_state(self, state: dict[str, torch.Tensor]) -> None:
        """Put back what :meth:`trained_state` returned (every name must be this model's,
        or an enrolled speaker's statistics)."""
        state, self.enrolment = split_enrolment(state)
        own = self.state_dict()
        unknown = sorted(set(state) - set(own))
        if unknown:
            raise KeyError(f"not weights of this model: {', '.join(unknown[:3])}")
        self.load_state_dict(state, strict=False)
        head = tuple(f"{part}." for part in self.HEAD_PARTS)
        self.encoder_pristine = all(name.startswith(head) for name in state)

    # -- ONNX export (serbench.deploy.onnx_export) ---------------------------------------
    #
    # A backbone that can run as one ONNX graph splits its encoding in two: numpy inputs of
    # one clip (``onnx_inputs``, e.g. a log-mel, computed outside the graph) and a module
    # that maps them, as tensors with a batch of one, to the clip's features
    # (``onnx_module``). The exporter appends ``classify`` and a softmax; the graph's
    # inputs are named and ordered as ``onnx_inputs``'s keys, and of each input with two
    # or more axes the last (time) may change length from clip to clip, the rest are
    # fixed. ``onnx_module()(*map(torch.from_numpy, onnx_inputs(wave, maxlen).values()))``
    # must equal ``encode([wave], maxlen)`` for a wave of at most ``maxlen`` samples, and
    # trace under ``torch.export`` (no Python branch on tensor values). A backbone whose
    # inputs need no weights says so in ``Backbone.onnx_front_end``. The defaults raise
    # ``ModelError``: the backbone has no ONNX export.

    def onnx_inputs(self, wave: np.ndarray, maxlen: int) -> dict[str, np.ndarray]:
        """The graph's inputs for one 16 kHz clip of at most ``maxlen`` samples, by name,
        each with a leading batch axis of one."""
        raise ModelError(f"the {type(self).__name__} backbone has no ONNX export (it defines no onnx_inputs)")

    def onnx_module(self) -> nn.Module:
        """A module in eval mode mapping ``onnx_inputs``'s tensors (positional, in its key
        order) to the features ``encode`` gives: ``(1, feature_dim)``, or ``(1,
        feature_layers, feature_dim)``. It runs only what inference needs (e.g. the layers
        up to the one pooled) and shares this model's parameters."""
        raise ModelError(f"the {type(self).__name__} backbone has no ONNX export (it defines no onnx_module)")

    def classify(self, features: torch.Tensor, statistics: dict[str, torch.Tensor] | None = None) -> torch.Tensor:
        """Logits from encoded features, standardised by ``norm`` with its own statistics
        or with ``statistics`` (``norm.statistics`` of some features: e.g. a speaker's);
        ``dropout`` acts in training mode only."""
        return self.head(self.dropout(self.norm(features, statistics)))

    def forward(self, waves: Sequence[np.ndarray]) -> torch.Tensor:
        return self.classify(self.encode(waves))
