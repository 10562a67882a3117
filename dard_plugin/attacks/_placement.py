"""Where and in which floating dtype a model computes: the attacks feed it its own dtype
on its own device, and ``evaluate`` and the trainers name a model of another precision."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

Model = Callable[[torch.Tensor], torch.Tensor]


def _floating_weight(model: Model) -> torch.Tensor | None:
    """The model's first floating parameter or buffer (None for a plain callable)."""
    if not isinstance(model, nn.Module):
        return None
    return next((t for t in (*model.parameters(), *model.buffers()) if t.is_floating_point()), None)


def model_dtype(model: Model) -> torch.dtype | None:
    """The floating dtype the model computes in (the one the attacks feed it)."""
    weight = _floating_weight(model)
    return None if weight is None else weight.dtype


def placement(model: Model, images: torch.Tensor) -> tuple[torch.device, torch.dtype]:
    """The device and floating dtype of the model's weights (the images' when it has none)."""
    weight = _floating_weight(model)
    return (images.device, images.dtype) if weight is None else (weight.device, weight.dtype)
