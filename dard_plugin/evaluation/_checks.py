"""Checks of an evaluation's inputs that the shared ones do not make yet.

``check_eps_scale`` is this package's private stand-in for the shared budget check another
branch adds to ``dard_plugin/_validation.py``; it is meant to be replaced by that at merge.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence

import torch
from torch import nn

# the largest L-inf budget in common use (MNIST's 0.3 on [0, 1] inputs)
LARGEST_COMMON_LINF = 0.3


def check_eps_scale(
    name: str,
    eps: float,
    *,
    norm: str,
    input_shape: Sequence[int],
    bounds: tuple[float, float] = (0.0, 1.0),
) -> None:
    """An ``eps`` that covers the whole input range (every image can become any image:
    accuracy 0 says nothing) is an error; an L-inf one above 0.3 a warning. For L2 the
    whole range is the box's diagonal, ``(high - low) * sqrt(numel)``."""
    span = bounds[1] - bounds[0]
    if norm == "Linf":
        if eps >= span:
            raise ValueError(
                f"{name} must be smaller than the input range {span:g} (inputs in "
                f"[{bounds[0]:g}, {bounds[1]:g}]), got {eps:g}: a budget that covers the "
                f"whole range lets any image become any other. Budgets are in [0, 1] pixel "
                f"units: did you mean {eps:g}/255 (e.g. 8/255 = {8 / 255:.4f})?"
            )
        if eps > LARGEST_COMMON_LINF * span:
            warnings.warn(
                f"{name} = {eps:g} is above {LARGEST_COMMON_LINF} (the largest L-inf budget "
                "in common use, MNIST's): robust accuracy will be near 0; budgets are in "
                "[0, 1] pixel units (8/255 for CIFAR-10)",
                UserWarning,
                stacklevel=3,
            )
        return
    diagonal = span * math.sqrt(math.prod(input_shape))
    if eps >= diagonal:
        raise ValueError(
            f"{name} must be smaller than {diagonal:.4g}, the L2 diameter of the input range "
            f"for inputs of shape {tuple(input_shape)}, got {eps:g} (CIFAR-10's L2 budget "
            "is 0.5)"
        )


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
