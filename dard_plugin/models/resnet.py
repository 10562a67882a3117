"""CIFAR ResNets: ResNet-18 (He et al. 2016, CIFAR stem), PreActResNet-18 (He et al.
2016b) and the thin CIFAR ResNet-56 (16/32/64 channels, the paper's teacher)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class BasicBlock(nn.Module):
    def __init__(self, in_planes: int, planes: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_planes != planes:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_planes, planes, 1, stride, bias=False), nn.BatchNorm2d(planes)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class PreActBlock(nn.Module):
    """Pre-activation block (also WideResNet's, with dropout between the convolutions)."""

    def __init__(self, in_planes: int, planes: int, stride: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_planes)
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.shortcut: nn.Module | None = None
        if stride != 1 or in_planes != planes:
            self.shortcut = nn.Conv2d(in_planes, planes, 1, stride, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(x))
        shortcut = self.shortcut(out) if self.shortcut is not None else x
        out = self.conv1(out)
        out = self.conv2(self.dropout(F.relu(self.bn2(out))))
        return out + shortcut


class ResNet(nn.Module):
    """A CIFAR ResNet: 3x3 stem, no max-pool, stages of blocks, global average pooling."""

    def __init__(
        self,
        block: type[BasicBlock] | type[PreActBlock],
        blocks_per_stage: list[int],
        widths: list[int],
        *,
        num_classes: int,
        in_channels: int = 3,
    ) -> None:
        super().__init__()
        self.preact = block is PreActBlock
        self.conv1 = nn.Conv2d(in_channels, widths[0], 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(widths[0]) if not self.preact else nn.Identity()
        stages: list[nn.Module] = []
        in_planes = widths[0]
        for index, (count, width) in enumerate(zip(blocks_per_stage, widths, strict=True)):
            for position in range(count):
                stride = 2 if index > 0 and position == 0 else 1
                stages.append(block(in_planes, width, stride))
                in_planes = width
        self.layers = nn.Sequential(*stages)
        self.final_bn = nn.BatchNorm2d(in_planes) if self.preact else nn.Identity()
        self.linear = nn.Linear(in_planes, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv1(x)
        out = out if self.preact else F.relu(self.bn1(out))
        out = self.layers(out)
        if self.preact:
            out = F.relu(self.final_bn(out))
        out = F.adaptive_avg_pool2d(out, 1).flatten(1)
        return self.linear(out)


def resnet18(*, num_classes: int, in_channels: int = 3) -> ResNet:
    return ResNet(
        BasicBlock,
        [2, 2, 2, 2],
        [64, 128, 256, 512],
        num_classes=num_classes,
        in_channels=in_channels,
    )


def preact_resnet18(*, num_classes: int, in_channels: int = 3) -> ResNet:
    return ResNet(
        PreActBlock,
        [2, 2, 2, 2],
        [64, 128, 256, 512],
        num_classes=num_classes,
        in_channels=in_channels,
    )


def resnet56(*, num_classes: int, in_channels: int = 3) -> ResNet:
    return ResNet(
        BasicBlock, [9, 9, 9], [16, 32, 64], num_classes=num_classes, in_channels=in_channels
    )
