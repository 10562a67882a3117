"""Normalization as the first layer of a model, so that models take [0, 1] inputs."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn


class Normalize(nn.Module):
    """``(x - mean) / std`` per channel, with mean and std stored as buffers."""

    mean: torch.Tensor
    std: torch.Tensor

    def __init__(self, mean: Sequence[float], std: Sequence[float]) -> None:
        super().__init__()
        if len(mean) != len(std) or any(s <= 0 for s in std):
            raise ValueError(f"mean and std must have equal lengths and std > 0, got {mean}, {std}")
        self.register_buffer("mean", torch.tensor(list(mean)).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(list(std)).view(1, -1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std

    def extra_repr(self) -> str:
        return f"mean={self.mean.flatten().tolist()}, std={self.std.flatten().tolist()}"


class Normalized(nn.Sequential):
    """``Normalize`` followed by a network: the form every registry model takes.

    ``input_shape`` is the per-example shape the network expects, ``(C, H, W)``, where known
    (the registry sets it). The module itself does not check it; ``evaluate``, the CLI and
    the trainers refuse inputs of another shape with both shapes named (ART's face checks
    ART's own ``input_shape``)."""

    def __init__(
        self,
        network: nn.Module,
        mean: Sequence[float],
        std: Sequence[float],
        *,
        input_shape: tuple[int, ...] | None = None,
    ) -> None:
        super().__init__()
        self.normalize = Normalize(mean, std)
        self.network = network
        self.input_shape = input_shape
