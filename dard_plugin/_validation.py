"""Argument checks shared by every face of the package.

Each check raises a ``ValueError`` or ``TypeError`` whose message names the argument and
the value it expects, so that bad input fails before any work is done.
"""

from __future__ import annotations

import math
import numbers
import warnings
from collections.abc import Sequence

import torch

Bounds = tuple[float, float]


def check_choice(name: str, value: object, choices: Sequence[str]) -> str:
    if not isinstance(value, str) or value not in choices:
        raise ValueError(f"{name} must be one of {list(choices)}, got {value!r}")
    return value


def check_int(name: str, value: object, *, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an int >= {minimum}, got {type(value).__name__}")
    if int(value) < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {value}")
    return int(value)


def check_bool(name: str, value: object) -> bool:
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be a bool, got {type(value).__name__}")
    return value


def check_real(
    name: str,
    value: object,
    *,
    low: float | None = None,
    high: float | None = None,
    low_inclusive: bool = True,
    high_inclusive: bool = True,
) -> float:
    """A finite real number inside [low, high] (bounds optionally exclusive)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__}")
    number = float(value)
    lo = "[" if low_inclusive else "("
    hi = "]" if high_inclusive else ")"
    expected = f"{lo}{'-inf' if low is None else low}, {'inf' if high is None else high}{hi}"
    too_low = low is not None and (number < low or (not low_inclusive and number == low))
    too_high = high is not None and (number > high or (not high_inclusive and number == high))
    if not math.isfinite(number) or too_low or too_high:
        raise ValueError(f"{name} must be a finite number in {expected}, got {value}")
    return number


def check_budget(
    name: str, value: float | torch.Tensor, *, batch_size: int | None, positive: bool
) -> float | torch.Tensor:
    """A perturbation budget or step size: a number, or one value per sample (shape (B,))."""
    rule = "> 0" if positive else ">= 0"
    if isinstance(value, torch.Tensor):
        if value.ndim == 0:
            return check_budget(name, float(value), batch_size=batch_size, positive=positive)
        if value.ndim != 1 or (batch_size is not None and value.shape[0] != batch_size):
            raise ValueError(
                f"{name} as a tensor must have shape (batch_size,) = ({batch_size},), "
                f"got {tuple(value.shape)}"
            )
        if not value.is_floating_point():
            raise TypeError(f"{name} as a tensor must be floating point, got {value.dtype}")
        bad = ~torch.isfinite(value) | ((value <= 0) if positive else (value < 0))
        if bool(bad.any()):
            raise ValueError(f"every {name} must be finite and {rule}, got {value.tolist()}")
        return value
    if positive:
        return check_real(name, value, low=0.0, low_inclusive=False)
    return check_real(name, value, low=0.0)


def check_bounds(name: str, bounds: object) -> Bounds | None:
    if bounds is None:
        return None
    if not isinstance(bounds, (tuple, list)) or len(bounds) != 2:
        raise ValueError(f"{name} must be None or a pair (low, high), got {bounds!r}")
    low = check_real(f"{name}[0]", bounds[0])
    high = check_real(f"{name}[1]", bounds[1])
    if not low < high:
        raise ValueError(f"{name} must satisfy low < high, got {bounds!r}")
    return (low, high)


def check_images(name: str, images: object, bounds: Bounds | None) -> torch.Tensor:
    if not isinstance(images, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(images).__name__}")
    if not images.is_floating_point():
        raise TypeError(f"{name} must be a floating point tensor, got dtype {images.dtype}")
    if images.ndim < 2:
        raise ValueError(f"{name} must have shape (batch_size, ...), got {tuple(images.shape)}")
    if images.shape[0] == 0:
        raise ValueError(f"{name} must hold at least one example, got batch size 0")
    if not bool(torch.isfinite(images).all()):
        raise ValueError(f"{name} must not contain NaN or inf values")
    if bounds is not None:
        low, high = bounds
        found_low, found_high = float(images.min()), float(images.max())
        if found_low < low or found_high > high:
            raise ValueError(
                f"{name} must lie in [{low}, {high}] (normalization belongs inside the model), "
                f"got values in [{found_low:.4g}, {found_high:.4g}]"
            )
    return images


def check_labels(
    name: str, labels: object, batch_size: int, num_classes: int | None = None
) -> torch.Tensor:
    if not isinstance(labels, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(labels).__name__}")
    if labels.dtype.is_floating_point or labels.dtype.is_complex or labels.dtype == torch.bool:
        raise TypeError(f"{name} must be an integer tensor of class indices, got {labels.dtype}")
    if labels.shape != (batch_size,):
        raise ValueError(
            f"{name} must have shape (batch_size,) = ({batch_size},), got {tuple(labels.shape)}"
        )
    if num_classes is not None:
        check_label_range(name, labels, num_classes)
    return labels


def check_label_range(name: str, labels: torch.Tensor, num_classes: int) -> None:
    if labels.numel() and (int(labels.min()) < 0 or int(labels.max()) >= num_classes):
        raise ValueError(
            f"{name} must be class indices in [0, {num_classes - 1}] for a model with "
            f"{num_classes} outputs, got values in [{int(labels.min())}, {int(labels.max())}]"
        )


def check_logits(logits: object, batch_size: int) -> torch.Tensor:
    """The model's output must be a (B, K) tensor of logits; warn on probabilities."""
    if not isinstance(logits, torch.Tensor):
        raise TypeError(f"model must return a torch.Tensor, got {type(logits).__name__}")
    if logits.ndim != 2 or logits.shape[0] != batch_size or logits.shape[1] < 2:
        raise ValueError(
            f"model must return logits of shape (batch_size, num_classes) = ({batch_size}, K) "
            f"with K >= 2, got {tuple(logits.shape)}"
        )
    warn_if_probabilities(logits)
    return logits


def warn_if_probabilities(outputs: torch.Tensor) -> None:
    """AutoAttack's check: rows that are non-negative and sum to one are not logits."""
    with torch.no_grad():
        detached = outputs.detach().float()
        sums = detached.sum(dim=1)
        if bool((detached >= 0).all()) and bool(torch.allclose(sums, torch.ones_like(sums))):
            warnings.warn(
                "the model's outputs look like probabilities (non-negative rows summing to 1); "
                "attacks and losses here expect logits, so gradients may vanish",
                UserWarning,
                stacklevel=4,
            )
