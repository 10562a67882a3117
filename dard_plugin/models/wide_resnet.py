"""WideResNet-depth-width (Zagoruyko & Komodakis 2016), the usual robust-teacher family."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from dard_plugin.models.resnet import PreActBlock


class WideResNet(nn.Module):
    def __init__(
        self,
        *,
        depth: int = 28,
        width: int = 10,
        num_classes: int,
        in_channels: int = 3,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        if depth < 10 or (depth - 4) % 6 != 0:
            raise ValueError(f"depth must be 6n + 4 with n >= 1 (e.g. 16, 28, 34), got {depth}")
        if width < 1:
            raise ValueError(f"width must be >= 1, got {width}")
        blocks = (depth - 4) // 6
        widths = [16, 16 * width, 32 * width, 64 * width]
        self.conv1 = nn.Conv2d(in_channels, widths[0], 3, 1, 1, bias=False)
        layers: list[nn.Module] = []
        in_planes = widths[0]
        for stage, planes in enumerate(widths[1:]):
            for position in range(blocks):
                stride = 2 if stage > 0 and position == 0 else 1
                layers.append(PreActBlock(in_planes, planes, stride, dropout))
                in_planes = planes
        self.layers = nn.Sequential(*layers)
        self.bn = nn.BatchNorm2d(in_planes)
        self.linear = nn.Linear(in_planes, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn(self.layers(self.conv1(x))))
        return self.linear(F.adaptive_avg_pool2d(out, 1).flatten(1))
