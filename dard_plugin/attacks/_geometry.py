"""The geometry of the projected gradient loop (``attacks/pgd.py``): where a perturbation
may go and how it moves, for the L-inf and the L2 ball.

The norm decides three small hooks, each written once here: the ascent direction
(:func:`ascent_direction`: the gradient's sign for L-inf, the gradient over its L2 norm for
L2), the projection onto the ball then into the bounds (:func:`project`), and the random
start, uniform in the ball (:func:`random_in_ball`). The other helpers put a budget, the
bounds and a mask into shapes that broadcast against the images.
"""

from __future__ import annotations

import torch

from dard_plugin._validation import Bounds

# numbers stay numbers; per-feature bounds are tensors on the images' device
PlacedBounds = tuple[torch.Tensor, torch.Tensor] | tuple[float, float]
_DIVISION_EPS = 1e-10  # torchattacks' PGDL2 guard against a zero gradient norm


def check_mask(mask: object, images: torch.Tensor) -> torch.Tensor:
    """A mask broadcasting against ``images``, bool or non-negative floating (ART's rule)."""
    if not isinstance(mask, torch.Tensor):
        raise TypeError(f"mask must be a torch.Tensor or None, got {type(mask).__name__}")
    if mask.ndim > images.ndim:
        raise ValueError(
            f"mask must broadcast against the images {tuple(images.shape)}, "
            f"got shape {tuple(mask.shape)}"
        )
    try:
        torch.broadcast_shapes(mask.shape, images.shape)
    except RuntimeError:
        raise ValueError(
            f"mask must broadcast against the images {tuple(images.shape)}, "
            f"got shape {tuple(mask.shape)}"
        ) from None
    if mask.dtype != torch.bool and not mask.is_floating_point():
        raise TypeError(f"mask must be a bool or floating tensor, got {mask.dtype}")
    if mask.is_floating_point() and bool((mask < 0).any()):
        raise ValueError("mask must be non-negative (0 where a feature must not move)")
    return mask


def broadcastable(value: float | torch.Tensor, like: torch.Tensor) -> torch.Tensor | float:
    """A number stays a number; a (B,) tensor becomes (B, 1, ..., 1); a tensor with the
    images' number of dimensions is used as it is (it broadcasts)."""
    if isinstance(value, torch.Tensor):
        value = value.detach().to(device=like.device, dtype=like.dtype)
        if value.ndim == 1:
            return value.reshape((like.shape[0],) + (1,) * (like.ndim - 1))
        return value
    return value


def bounds_on(bounds: Bounds | None, like: torch.Tensor) -> PlacedBounds | None:
    """Numbers stay numbers; per-feature bounds become tensors on the images' device."""
    if bounds is None:
        return None
    low, high = bounds
    if not isinstance(low, torch.Tensor) and not isinstance(high, torch.Tensor):
        return (float(low), float(high))
    return (
        torch.as_tensor(low, device=like.device, dtype=like.dtype),
        torch.as_tensor(high, device=like.device, dtype=like.dtype),
    )


def sample_norms(values: torch.Tensor, p: float) -> torch.Tensor:
    """The L_p norm of each sample, shaped (B, 1, ..., 1) to broadcast."""
    norms = torch.linalg.vector_norm(values.flatten(1), ord=p, dim=1)
    return norms.reshape((values.shape[0],) + (1,) * (values.ndim - 1))


def ascent_direction(gradient: torch.Tensor, norm: str) -> torch.Tensor:
    """The steepest-ascent direction of unit norm: the sign (L-inf) or g / ||g||_2 (L2)."""
    if norm == "Linf":
        return gradient.sign()
    return gradient / (sample_norms(gradient, 2.0) + _DIVISION_EPS)


def random_in_ball(
    like: torch.Tensor,
    eps: torch.Tensor | float,
    norm: str,
    generator: torch.Generator | None,
) -> torch.Tensor:
    """A point uniformly distributed in the ball of radius ``eps`` around 0, per sample,
    drawn on the generator's own device."""
    device = generator.device if generator is not None else like.device
    if norm == "Linf":
        noise = torch.rand(like.shape, generator=generator, device=device, dtype=like.dtype)
        return (2.0 * noise - 1.0).to(like.device) * eps
    # L2: a Gaussian direction (uniform on the sphere) and radius eps * U^(1/d)
    features = like[0].numel()
    direction = torch.randn(like.shape, generator=generator, device=device, dtype=like.dtype)
    radius = torch.rand((like.shape[0],), generator=generator, device=device, dtype=like.dtype) ** (
        1.0 / features
    )
    direction, radius = direction.to(like.device), radius.to(like.device)
    unit = direction / sample_norms(direction, 2.0).clamp_min(1e-12)
    return unit * radius.reshape((-1,) + (1,) * (like.ndim - 1)) * eps


def project(
    adversarial: torch.Tensor,
    clean: torch.Tensor,
    eps: torch.Tensor | float,
    bounds: PlacedBounds | None,
    norm: str,
) -> torch.Tensor:
    """Onto the eps ball around ``clean``, then into the bounds (which keeps it in the
    ball: clipping only moves a feature towards the clean value, itself inside)."""
    delta = adversarial - clean
    if norm == "Linf":
        if isinstance(eps, torch.Tensor):
            delta = torch.maximum(torch.minimum(delta, eps), -eps)
        else:
            delta = delta.clamp(-eps, eps)
    else:
        norms = sample_norms(delta, 2.0)
        factor = torch.where(norms > 0, eps / norms, torch.ones_like(norms))
        delta = delta * factor.clamp(max=1.0)
    projected = clean + delta
    if bounds is not None:
        low, high = bounds
        if isinstance(low, torch.Tensor) or isinstance(high, torch.Tensor):
            projected = torch.maximum(torch.minimum(projected, high), low)  # type: ignore[arg-type]
        else:
            projected = projected.clamp(low, high)
    return projected
