"""MobileNetV2 (Sandler et al. 2018), CIFAR variant: stride 1 in the stem and the first
down-sampling stage, so 32x32 inputs end at 4x4 before pooling."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

# (expansion, output channels, blocks, stride) per stage
_CIFAR_STAGES = [
    (1, 16, 1, 1),
    (6, 24, 2, 1),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
]


class InvertedResidual(nn.Module):
    def __init__(self, in_planes: int, planes: int, expansion: int, stride: int) -> None:
        super().__init__()
        hidden = in_planes * expansion
        self.use_residual = stride == 1 and in_planes == planes
        self.block = nn.Sequential(
            nn.Conv2d(in_planes, hidden, 1, bias=False),
            nn.BatchNorm2d(hidden),
            nn.ReLU6(),
            nn.Conv2d(hidden, hidden, 3, stride, 1, groups=hidden, bias=False),
            nn.BatchNorm2d(hidden),
            nn.ReLU6(),
            nn.Conv2d(hidden, planes, 1, bias=False),
            nn.BatchNorm2d(planes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.block(x)
        return x + out if self.use_residual else out


class MobileNetV2(nn.Module):
    def __init__(self, *, num_classes: int, in_channels: int = 3) -> None:
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, 32, 3, 1, 1, bias=False), nn.BatchNorm2d(32), nn.ReLU6()
        )
        layers: list[nn.Module] = []
        in_planes = 32
        for expansion, planes, blocks, stride in _CIFAR_STAGES:
            for position in range(blocks):
                layers.append(
                    InvertedResidual(in_planes, planes, expansion, stride if position == 0 else 1)
                )
                in_planes = planes
        self.layers = nn.Sequential(*layers)
        self.head = nn.Sequential(
            nn.Conv2d(in_planes, 1280, 1, bias=False), nn.BatchNorm2d(1280), nn.ReLU6()
        )
        self.linear = nn.Linear(1280, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.head(self.layers(self.stem(x)))
        return self.linear(F.adaptive_avg_pool2d(out, 1).flatten(1))
