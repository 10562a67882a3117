"""The L-inf projected sign-gradient loop every attack of this package runs.

An attack is this loop plus an objective: ``objective(logits, labels, step, steps)`` returns
the scalar to ascend (to descend when ``targeted``). DPGD (``attacks/dpgd.py``) plugs in the
Dice objective; PGD plugs in cross-entropy.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from dard_plugin._validation import (
    check_bool,
    check_bounds,
    check_budget,
    check_images,
    check_int,
    check_label_range,
    check_labels,
    check_logits,
)

Model = Callable[[torch.Tensor], torch.Tensor]
Objective = Callable[[torch.Tensor, torch.Tensor, int, int], torch.Tensor]


def cross_entropy_objective(
    logits: torch.Tensor, labels: torch.Tensor, step: int, steps: int
) -> torch.Tensor:
    """Madry et al.'s PGD objective: the mean cross-entropy of the batch."""
    del step, steps
    return F.cross_entropy(logits, labels)


def kl_objective(target_probs: torch.Tensor) -> Objective:
    """``KL(target || softmax(logits))`` summed over the batch: the TRADES / RSLAD inner
    maximisation, pulling the prediction away from ``target_probs``."""

    def objective(
        logits: torch.Tensor, labels: torch.Tensor, step: int, steps: int
    ) -> torch.Tensor:
        del labels, step, steps
        log_probs = F.log_softmax(logits.float(), dim=1)
        return F.kl_div(log_probs, target_probs, reduction="sum")

    return objective


def pgd_linf(
    model: Model,
    images: torch.Tensor,
    labels: torch.Tensor,
    objective: Objective,
    *,
    eps: float | torch.Tensor,
    alpha: float | torch.Tensor,
    steps: int,
    random_start: bool = False,
    targeted: bool = False,
    bounds: tuple[float, float] | None = (0.0, 1.0),
    generator: torch.Generator | None = None,
    start: torch.Tensor | None = None,
) -> torch.Tensor:
    """Projected sign-gradient steps inside the L-inf ball of radius ``eps`` around ``images``.

    ``x_{t+1} = clip_bounds(x + clip_[-eps, eps](x_t + alpha * sign(grad L(x_t)) - x))``.

    Args:
        model: maps a batch to logits of shape (B, K); an ``nn.Module`` or any callable.
            It is run in whatever train/eval mode it is in; parameters, buffers' values
            (in eval mode) and ``.grad`` are left untouched.
        images: (B, ...) inputs inside ``bounds``; never modified.
        labels: (B,) integer class indices (target classes when ``targeted``).
        objective: ``objective(logits, labels, step, steps) -> scalar``.
        eps, alpha: the budget and the step size, a number or one value per sample (B,).
        steps: number of gradient steps (>= 1).
        random_start: start from ``images + U(-eps, eps)`` (clipped) instead of ``images``.
        targeted: descend the objective instead of ascending it.
        bounds: the valid input range (None for unbounded inputs).
        generator: the random source of the random start (the global one if None).
        start: an explicit starting point (projected onto the ball first), e.g. RSLAD's
            ``images + 0.001 * N(0, 1)``; exclusive with ``random_start``.

    Returns:
        The adversarial images, detached, with the dtype and device of ``images``.
    """
    bounds = check_bounds("bounds", bounds)
    images = check_images("images", images, bounds)
    batch_size = images.shape[0]
    labels = check_labels("labels", labels, batch_size)
    eps = check_budget("eps", eps, batch_size=batch_size, positive=False)
    alpha = check_budget("alpha", alpha, batch_size=batch_size, positive=True)
    steps = check_int("steps", steps, minimum=1)
    check_bool("random_start", random_start)
    check_bool("targeted", targeted)
    if generator is not None and not isinstance(generator, torch.Generator):
        raise TypeError(f"generator must be a torch.Generator or None, got {type(generator)}")

    device, model_dtype = _placement(model, images)
    # The perturbed images stay in the input's dtype; only the model sees its own dtype.
    # That keeps the projection exact for bf16/fp16 models.
    clean = images.detach().to(device)
    labels = labels.to(device)
    eps_col = _per_sample(eps, clean)
    alpha_col = _per_sample(alpha, clean)
    direction = -1.0 if targeted else 1.0

    adversarial = clean.clone()
    if start is not None:
        if random_start:
            raise ValueError("start and random_start=True are exclusive: pass one of them")
        if not isinstance(start, torch.Tensor) or start.shape != images.shape:
            raise ValueError(f"start must be a tensor of shape {tuple(images.shape)}")
        adversarial = _project(start.detach().to(clean), clean, eps_col, bounds)
    elif random_start:
        adversarial = _project(
            clean + _uniform_noise(clean, generator) * eps_col, clean, eps_col, bounds
        )

    with torch.enable_grad():
        for step in range(steps):
            adversarial.requires_grad_(True)
            logits = model(adversarial.to(model_dtype))
            if step == 0:
                check_logits(logits, batch_size)
                check_label_range("labels", labels, logits.shape[1])
            loss = objective(logits, labels, step, steps)
            (gradient,) = torch.autograd.grad(loss, adversarial)
            adversarial = adversarial.detach() + direction * alpha_col * gradient.sign()
            adversarial = _project(adversarial, clean, eps_col, bounds)
    return adversarial.detach().to(images.device)


def _placement(model: Model, images: torch.Tensor) -> tuple[torch.device, torch.dtype]:
    """The device and floating dtype of the model's weights (the images' when it has none)."""
    if isinstance(model, nn.Module):
        for tensor in (*model.parameters(), *model.buffers()):
            if tensor.is_floating_point():
                return tensor.device, tensor.dtype
    return images.device, images.dtype


def _per_sample(value: float | torch.Tensor, like: torch.Tensor) -> torch.Tensor | float:
    """A number stays a number; a (B,) tensor becomes (B, 1, ..., 1) to broadcast."""
    if isinstance(value, torch.Tensor):
        shape = (like.shape[0],) + (1,) * (like.ndim - 1)
        return value.detach().to(device=like.device, dtype=like.dtype).reshape(shape)
    return value


def _uniform_noise(like: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    """U(-1, 1) noise shaped like ``like``, drawn on the generator's own device."""
    device = generator.device if generator is not None else like.device
    noise = torch.rand(like.shape, generator=generator, device=device, dtype=like.dtype)
    return (2.0 * noise - 1.0).to(like.device)


def _project(
    adversarial: torch.Tensor,
    clean: torch.Tensor,
    eps: torch.Tensor | float,
    bounds: tuple[float, float] | None,
) -> torch.Tensor:
    if isinstance(eps, torch.Tensor):
        delta = torch.maximum(torch.minimum(adversarial - clean, eps), -eps)
    else:
        delta = (adversarial - clean).clamp(-eps, eps)
    projected = clean + delta
    if bounds is not None:
        projected = projected.clamp(bounds[0], bounds[1])
    return projected
