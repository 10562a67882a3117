"""The geometry of the projected gradient loop (``attacks/pgd.py``): where a perturbation
may go and how it moves, for the L-inf, the L2 and the L1 ball.

The norm decides three small hooks, each written once here: the ascent direction
(:func:`ascent_direction`: the gradient's sign for L-inf, the gradient over its L2 norm for
L2, one signed coordinate for L1), the projection onto the ball and into the bounds
(:func:`project`), and the random start, uniform in the ball (:func:`random_in_ball`). The
other helpers put a budget, the bounds and a mask into shapes that broadcast against the
images.

L1 is ART 1.20.1's geometry (``ProjectedGradientDescentPyTorch._compute_perturbation_pytorch``
with ``norm=1``, ``_apply_perturbation_pytorch`` and ``_projection``; ``art.utils.projection``
and ``art.utils.random_sphere`` in numpy): the step moves the one feature of largest
gradient magnitude by ``alpha`` (first one on ties), the iterate is clipped into the
bounds, and the perturbation is then rescaled onto the L1 ball (ART's default
``suboptimal=True`` projection: ``delta * min(1, eps / ||delta||_1)``, not the exact
Euclidean projection onto the L1 ball). The random start is uniform in the L1 ball, built
as ART's ``random_sphere(norm=1)`` builds it.
"""

from __future__ import annotations

import torch

from dard_plugin._validation import Bounds

# numbers stay numbers; per-feature bounds are tensors on the images' device
PlacedBounds = tuple[torch.Tensor, torch.Tensor] | tuple[float, float]


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
    """The steepest-ascent direction of unit norm: the sign (L-inf), g / ||g||_2 (L2), or
    for L1 ``sign(g_i) e_i`` at the feature ``i`` of largest ``|g_i|`` (the first on ties;
    no move where the gradient is zero), per sample."""
    if norm == "Linf":
        return gradient.sign()
    if norm == "L2":  # a zero gradient does not move (ART's rule; torchattacks adds 1e-10 to
        # the norm, which shrank the step of a confident sample's tiny Dice gradient, more
        # so in a larger batch: the result depended on the batch)
        norms = sample_norms(gradient, 2.0)
        return torch.where(norms > 0, gradient / norms, torch.zeros_like(gradient))
    flat = gradient.flatten(1)
    largest = flat.abs().argmax(dim=1, keepdim=True)
    direction = torch.zeros_like(flat).scatter_(1, largest, flat.gather(1, largest).sign())
    return direction.reshape(gradient.shape)


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
    if norm == "L1":
        return _random_in_l1_ball(like, generator, device) * eps
    # L2: a Gaussian direction (uniform on the sphere) and radius eps * U^(1/d)
    features = like[0].numel()
    direction = torch.randn(like.shape, generator=generator, device=device, dtype=like.dtype)
    radius = torch.rand((like.shape[0],), generator=generator, device=device, dtype=like.dtype) ** (
        1.0 / features
    )
    direction, radius = direction.to(like.device), radius.to(like.device)
    unit = direction / sample_norms(direction, 2.0).clamp_min(1e-12)
    return unit * radius.reshape((-1,) + (1,) * (like.ndim - 1)) * eps


def _random_in_l1_ball(
    like: torch.Tensor, generator: torch.Generator | None, device: torch.device
) -> torch.Tensor:
    """Uniform in the unit L1 ball, per sample: the gaps between d sorted uniforms (the
    first d of d + 1 Dirichlet(1, ..., 1) weights, uniform on the solid simplex) with random
    signs, as ART's ``random_sphere(norm=1)``."""
    shape = (like.shape[0], like[0].numel())
    uniform = torch.rand(shape, generator=generator, device=device, dtype=like.dtype)
    ordered = uniform.sort(dim=1).values
    gaps = torch.diff(ordered, dim=1, prepend=torch.zeros_like(ordered[:, :1]))
    coin = torch.rand(shape, generator=generator, device=device, dtype=like.dtype)
    signs = torch.where(coin < 0.5, -1.0, 1.0).to(like.dtype)
    return (gaps * signs).reshape(like.shape).to(like.device)


def project(
    adversarial: torch.Tensor,
    clean: torch.Tensor,
    eps: torch.Tensor | float,
    bounds: PlacedBounds | None,
    norm: str,
) -> torch.Tensor:
    """Into the eps ball around ``clean`` and into the bounds.

    L-inf and L2 project onto the ball, then clip (clipping only moves a feature towards
    the clean value, itself inside, so the result stays in the ball); L1 clips, then
    rescales (ART's order; a rescaling towards ``clean`` stays in the box)."""
    if norm == "L1":
        delta = clip_to_bounds(adversarial, bounds) - clean
        return clean + delta * _shrink_factor(sample_norms(delta, 1.0), eps)
    delta = adversarial - clean
    if norm == "Linf":
        if isinstance(eps, torch.Tensor):
            delta = torch.maximum(torch.minimum(delta, eps), -eps)
        else:
            delta = delta.clamp(-eps, eps)
    else:
        delta = delta * _shrink_factor(sample_norms(delta, 2.0), eps)
    return clip_to_bounds(clean + delta, bounds)


def _shrink_factor(norms: torch.Tensor, eps: torch.Tensor | float) -> torch.Tensor:
    """``min(1, eps / norm)`` per sample, 1 where the perturbation is zero."""
    factor = torch.where(norms > 0, eps / norms, torch.ones_like(norms))
    return factor.clamp(max=1.0)


def clip_to_bounds(values: torch.Tensor, bounds: PlacedBounds | None) -> torch.Tensor:
    """Into ``bounds`` (numbers or per-feature tensors); unchanged when None."""
    if bounds is None:
        return values
    low, high = bounds
    if isinstance(low, torch.Tensor) or isinstance(high, torch.Tensor):
        return torch.maximum(torch.minimum(values, high), low)  # type: ignore[arg-type]
    return values.clamp(low, high)
