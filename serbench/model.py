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


class Standardize(nn.Module):
    """A fixed affine map ``(x - mean) / std``: the identity until ``set_statistics``.

    Pooled encoder features share a large common offset, which makes a linear head on
    raw features learn very slowly at the paper's learning rates; standardising with the
    training set's statistics (scikit-learn's ``StandardScaler``, as a layer) fixes that
    without adding trainable parameters.
    """

    def __init__(self, dim: int):
        super().__init__()
        self.register_buffer("mean", torch.zeros(dim))
        self.register_buffer("std", torch.ones(dim))

    def set_statistics(self, features: torch.Tensor) -> None:
        self.mean.copy_(features.mean(dim=0))
        self.std.copy_(features.std(dim=0, unbiased=False).clamp_min(1e-5))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std


class SERModel(nn.Module):
    """Subclasses implement ``_encode`` (batching and masking included) and
    ``encoder_modules``; ``feature_dim`` is the pooled vector's size. The head is
    ``Standardize`` followed by one linear layer."""

    def __init__(self, feature_dim: int, num_classes: int):
        super().__init__()
        self.feature_dim = feature_dim
        self.norm = Standardize(feature_dim)
        self.head = nn.Linear(feature_dim, num_classes)
        self.encoder_trainable = True
        self.encoder_pristine = True  # False once an optimiser step may have changed the encoder

    @abstractmethod
    def encoder_modules(self) -> Sequence[nn.Module]:
        """The modules holding the pre-trained encoder (not the head)."""

    @abstractmethod
    def _encode(self, waves: Sequence[np.ndarray]) -> torch.Tensor:
        """Pooled features ``(len(waves), feature_dim)`` of 16 kHz mono waveforms."""

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
        if not self.encoder_trainable:
            for module in self.encoder_modules():
                module.eval()  # a frozen encoder never runs dropout
        return self

    def encode(self, waves: Sequence[np.ndarray]) -> torch.Tensor:
        grad = torch.is_grad_enabled() and self.encoder_trainable
        with torch.set_grad_enabled(grad):
            return self._encode(waves)

    def classify(self, features: torch.Tensor) -> torch.Tensor:
        """Logits from pooled features."""
        return self.head(self.norm(features))

    def forward(self, waves: Sequence[np.ndarray]) -> torch.Tensor:
        return self.classify(self.encode(waves))
