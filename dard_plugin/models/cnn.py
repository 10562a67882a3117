"""Compact CNNs sized for 28x28 grey images (Fashion-MNIST): students and a teacher."""

from __future__ import annotations

import torch
from torch import nn


class SmallCNN(nn.Module):
    """2 conv + 2 fully connected layers (171k parameters at 28x28, 10 classes): a student."""

    def __init__(
        self, *, num_classes: int = 10, in_channels: int = 1, input_size: int = 28
    ) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, 16, 5, padding=2),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(16, 32, 5, padding=2),
            nn.ReLU(),
            nn.MaxPool2d(2),
        )
        flat = 32 * (input_size // 4) ** 2
        self.classifier = nn.Sequential(
            nn.Flatten(), nn.Linear(flat, 100), nn.ReLU(), nn.Linear(100, num_classes)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


class TinyCNN(nn.Module):
    """SmallCNN's shape at an eighth of its size (2 conv of 8 and 16 channels, a hidden
    layer of 24; 22.5k parameters at 28x28, against 171k): the student much smaller than
    its teacher that robust distillation is meant for."""

    def __init__(
        self, *, num_classes: int = 10, in_channels: int = 1, input_size: int = 28
    ) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, 8, 5, padding=2),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(8, 16, 5, padding=2),
            nn.ReLU(),
            nn.MaxPool2d(2),
        )
        flat = 16 * (input_size // 4) ** 2
        self.classifier = nn.Sequential(
            nn.Flatten(), nn.Linear(flat, 24), nn.ReLU(), nn.Linear(24, num_classes)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


class TeacherCNN(nn.Module):
    """4 conv (with BatchNorm) + 2 fully connected layers (about 700k parameters at
    28x28, mostly in the first fully connected layer): the larger Fashion-MNIST
    architecture, used for the shipped teacher."""

    def __init__(
        self, *, num_classes: int = 10, in_channels: int = 1, input_size: int = 28
    ) -> None:
        super().__init__()

        def conv(cin: int, cout: int) -> list[nn.Module]:
            return [nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU()]

        self.features = nn.Sequential(
            *conv(in_channels, 32),
            *conv(32, 32),
            nn.MaxPool2d(2),
            *conv(32, 64),
            *conv(64, 64),
            nn.MaxPool2d(2),
        )
        flat = 64 * (input_size // 4) ** 2
        self.classifier = nn.Sequential(
            nn.Flatten(), nn.Linear(flat, 200), nn.ReLU(), nn.Linear(200, num_classes)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))
