"""A small registry of student and teacher architectures, by name.

Every model built here takes inputs in [0, 1] and normalizes them itself (a ``Normalize``
first layer), as RobustBench and AutoAttack expect. Any plain ``nn.Module`` that maps
[0, 1] images to logits works everywhere in the package too.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from torch import nn

from dard_plugin._validation import check_choice, check_int
from dard_plugin.models.cnn import SmallCNN, TeacherCNN
from dard_plugin.models.mobilenet import MobileNetV2
from dard_plugin.models.normalize import Normalize, Normalized
from dard_plugin.models.resnet import preact_resnet18, resnet18, resnet56
from dard_plugin.models.wide_resnet import WideResNet

_CIFAR10_MEAN, _CIFAR10_STD = (0.4914, 0.4822, 0.4465), (0.2471, 0.2435, 0.2616)
_FMNIST_MEAN, _FMNIST_STD = (0.2860,), (0.3530,)


@dataclass(frozen=True)
class Architecture:
    build: Callable[..., nn.Module]
    description: str
    input_shape: tuple[int, int, int]
    mean: tuple[float, ...]
    std: tuple[float, ...]


def _cifar(build: Callable[..., nn.Module], description: str) -> Architecture:
    return Architecture(build, description, (3, 32, 32), _CIFAR10_MEAN, _CIFAR10_STD)


def _fmnist(build: Callable[..., nn.Module], description: str) -> Architecture:
    return Architecture(build, description, (1, 28, 28), _FMNIST_MEAN, _FMNIST_STD)


REGISTRY: dict[str, Architecture] = {
    "resnet18": _cifar(resnet18, "CIFAR ResNet-18 (11.2M parameters)"),
    "preact-resnet18": _cifar(preact_resnet18, "PreActResNet-18 (11.2M)"),
    "resnet56": _cifar(resnet56, "CIFAR ResNet-56, 16/32/64 channels (0.86M)"),
    "wide-resnet": _cifar(
        WideResNet, "WideResNet, depth and width configurable (default WRN-28-10, 36.5M)"
    ),
    "mobilenetv2": _cifar(MobileNetV2, "MobileNetV2, CIFAR variant (2.2M)"),
    "small-cnn": _fmnist(
        SmallCNN, "2 conv + 2 fc for 28x28 grey images (171k): a Fashion-MNIST student"
    ),
    "teacher-cnn": _fmnist(
        TeacherCNN, "4 conv + 2 fc for 28x28 grey images (695k): the Fashion-MNIST teacher"
    ),
}


def list_models() -> dict[str, str]:
    """Architecture names and one-line descriptions."""
    return {name: arch.description for name, arch in REGISTRY.items()}


def create(
    name: str,
    *,
    num_classes: int,
    in_channels: int | None = None,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    **kwargs: Any,
) -> nn.Module:
    """Build architecture ``name`` for inputs in [0, 1].

    Args:
        name: one of :func:`list_models`.
        num_classes: number of output logits.
        in_channels: input channels (default: the architecture's, 3 or 1).
        mean, std: per-channel normalization applied inside the model (default: CIFAR-10's
            statistics for CIFAR architectures, Fashion-MNIST's for the CNNs).
        kwargs: architecture options, e.g. ``depth=34, width=10`` for ``wide-resnet``.
    """
    architecture = REGISTRY[check_choice("name", name, list(REGISTRY))]
    num_classes = check_int("num_classes", num_classes, minimum=2)
    channels = architecture.input_shape[0] if in_channels is None else in_channels
    check_int("in_channels", channels, minimum=1)
    if mean is None or std is None:
        if channels != len(architecture.mean):
            raise ValueError(
                f"mean and std must be given for in_channels={channels} ({name} defaults to "
                f"{len(architecture.mean)}-channel statistics)"
            )
        mean, std = architecture.mean, architecture.std
    network = architecture.build(num_classes=num_classes, in_channels=channels, **kwargs)
    return Normalized(network, mean, std)


__all__ = ["REGISTRY", "Architecture", "Normalize", "Normalized", "create", "list_models"]
