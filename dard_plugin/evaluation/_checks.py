"""Checks of an evaluation's inputs that the shared ones (``dard_plugin/_validation.py``,
where the budget check ``check_eps_plausible`` lives) do not make: the model's declared
input shape."""

from __future__ import annotations

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
