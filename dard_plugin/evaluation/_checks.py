"""Checks of an evaluation's inputs that the shared ones (``dard_plugin/_validation.py``,
where the budget check ``check_eps_plausible`` lives) do not make: the model's declared
input shape (and the trainers' form of that check)."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn


def expected_input_shape(model: nn.Module) -> tuple[int, ...] | None:
    """The per-example input shape a model declares (``model.input_shape``, set by the
    registry and by the teacher loaders), or None when it declares none."""
    shape = getattr(model, "input_shape", None)
    if isinstance(shape, tuple) and all(isinstance(d, int) for d in shape):
        return shape
    return None


def check_input_shape(name: str, model: nn.Module, images: torch.Tensor) -> None:
    """The images must have the per-example shape the model declares."""
    expected = expected_input_shape(model)
    given = tuple(images.shape[1:])
    if expected is not None and given != expected:
        raise ValueError(
            f"{name} must have shape (N, {', '.join(map(str, expected))}) for this model "
            f"(it expects inputs of shape {expected}), got {tuple(images.shape)}: per-example "
            f"shape {given}"
        )


def check_declared_shape(
    name: str, model: nn.Module, shape: tuple[int, ...], channels_only: bool = False
) -> None:
    """The trainers' twin of :func:`check_input_shape`: a model that declares its input
    shape (``input_shape``: the registry, the teacher loaders, an ART classifier's
    standardisation wrapper) is given training images of that shape. A CIFAR teacher's
    3-channel normalisation broadcasts a grey 28x28 batch and its global pooling takes it,
    so without this check a Fashion-MNIST student was distilled from a network that never
    saw such images.
    ``channels_only``: the student, whose global pooling may be trained on another size
    (a registry ResNet-18 on 64x64), and only its channels must agree."""
    expected = expected_input_shape(model)
    if expected is None or (channels_only and expected[:1] == shape[:1]):
        return
    if expected != shape:
        what = f"{expected[0]}-channel inputs" if channels_only else f"inputs of shape {expected}"
        raise ValueError(
            f"the {name} expects {what} (it declares {expected}), and the training images "
            f"have shape {shape}: give a {name} built for these images"
        )


def evaluation_model(model: Any) -> nn.Module:
    """The module to evaluate: ``model`` itself, or an ART ``PyTorchClassifier``'s model
    behind its mean/std ``preprocessing`` (what its ``predict`` computes; its ``.model``
    alone skips the standardisation). Such a classifier's ``clip_values`` must be the
    evaluation's [0, 1] (or absent)."""
    if isinstance(model, nn.Module):
        return model
    try:
        from art.estimators.classification.pytorch import PyTorchClassifier
    except ImportError:  # pragma: no cover - ART is a dependency
        PyTorchClassifier = ()  # noqa: N806
    if not isinstance(model, PyTorchClassifier):
        raise TypeError(
            f"model must be an nn.Module or an ART PyTorchClassifier, got {type(model).__name__}"
        )
    from dard_plugin.training.art_classifiers import art_module, scalar_clip_values

    bounds = scalar_clip_values(model, "model")
    if bounds is not None and bounds != (0.0, 1.0):
        raise ValueError(
            f"model: an ART classifier with clip_values {bounds} is evaluated on images in "
            "[0, 1]; give a classifier with clip_values=(0, 1), scaling the images inside "
            "its model or preprocessing"
        )
    return art_module(model, "model")
