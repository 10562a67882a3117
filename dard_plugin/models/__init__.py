"""A small registry of student and teacher architectures, by name.

Every model built here takes inputs in [0, 1] and normalizes them itself (a ``Normalize``
first layer), as RobustBench and AutoAttack expect. Any plain ``nn.Module`` that maps
[0, 1] images to logits works everywhere in the package too.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from dard_plugin._validation import check_choice, check_int
from dard_plugin.models.cnn import SmallCNN, TeacherCNN, TinyCNN
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
    "tiny-cnn": _fmnist(
        TinyCNN,
        "small-cnn at 1/8 of its size (22.5k): a Fashion-MNIST student far below its teacher",
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
    num_classes: int | None = None,
    dataset: str | None = None,
    in_channels: int | None = None,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    **kwargs: Any,
) -> nn.Module:
    """Build architecture ``name`` for inputs in [0, 1].

    Args:
        name: one of :func:`list_models`.
        num_classes: number of output logits (default: the dataset's).
        dataset: a registry dataset (:data:`dard_plugin.data.DATASETS`): the model
            normalizes with its mean and std (``DatasetInfo``) and, unless given, has its
            number of classes and channels: ``create("resnet18", dataset="cifar100")``.
        in_channels: input channels (default: the dataset's, else the architecture's).
        mean, std: per-channel normalization applied inside the model (default: the
            dataset's statistics; without a dataset, CIFAR-10's for CIFAR architectures and
            Fashion-MNIST's for the CNNs).
        kwargs: architecture options, e.g. ``depth=34, width=10`` for ``wide-resnet``.
    The model's ``input_shape`` is the (C, H, W) it expects.
    """
    architecture = REGISTRY[check_choice("name", name, list(REGISTRY))]
    default_shape = architecture.input_shape
    default_mean, default_std = architecture.mean, architecture.std
    if dataset is not None:
        from dard_plugin.data import dataset_info

        info = dataset_info(dataset)
        default_shape, default_mean, default_std = info.input_shape, info.mean, info.std
        num_classes = info.num_classes if num_classes is None else num_classes
    if num_classes is None:
        raise ValueError(f"num_classes must be given for {name} (or a dataset to take it from)")
    num_classes = check_int("num_classes", num_classes, minimum=2)
    channels = default_shape[0] if in_channels is None else in_channels
    check_int("in_channels", channels, minimum=1)
    if (mean is None) != (std is None):
        raise ValueError(
            f"mean and std must be given together ({'mean' if std is None else 'std'} alone "
            f"would be replaced by the default statistics), got mean={mean}, std={std}"
        )
    if mean is None or std is None:
        if channels != len(default_mean):
            raise ValueError(
                f"mean and std must be given for in_channels={channels} ({name} defaults to "
                f"{len(default_mean)}-channel statistics)"
            )
        mean, std = default_mean, default_std
    network = architecture.build(num_classes=num_classes, in_channels=channels, **kwargs)
    # the registry's networks are built for their own image size (fixed-size heads), or
    # the ``input_size`` given to one that takes it
    size = kwargs.get("input_size")
    shape = (channels, *((size, size) if size is not None else architecture.input_shape[1:]))
    if size is None and dataset is not None and default_shape[1:] != shape[1:]:
        # a network with global pooling takes the dataset's images (a CIFAR ResNet on
        # Fashion-MNIST's 28x28): it declares their shape, which it was once refused
        dataset_shape = (channels, *default_shape[1:])
        shape = dataset_shape if _accepts(network, dataset_shape) else shape
    return Normalized(network, mean, std, input_shape=shape)


def _accepts(network: nn.Module, shape: tuple[int, ...]) -> bool:
    """Whether ``network`` runs on one input of ``shape`` (eval mode, no gradient: no
    BatchNorm statistic moves; its mode is restored)."""
    was_training = network.training
    network.eval()
    try:
        with torch.no_grad():
            network(torch.zeros(1, *shape))
        return True
    except RuntimeError:
        return False
    finally:
        network.train(was_training)


__all__ = ["REGISTRY", "Architecture", "Normalize", "Normalized", "create", "list_models"]
