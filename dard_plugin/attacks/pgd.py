"""The projected gradient loop every attack of this package runs, for L-inf, L2 and L1.

An attack is this loop plus an objective: ``objective(logits, labels, step, steps)`` returns
the scalar to ascend (to descend when ``targeted``). DPGD (``attacks/dpgd.py``) plugs in the
Dice objective; PGD plugs in cross-entropy. The norm decides three small hooks, each written
once in ``attacks/_geometry.py``: the ascent direction (the gradient's sign for L-inf, the
gradient over its L2 norm for L2, one signed coordinate for L1), the projection onto the
ball, and the random start (uniform in the ball).
:func:`pgd_linf`, :func:`pgd_l2` and :func:`pgd_l1` are the public doors to the one loop.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

import torch
from torch import nn

from dard_plugin._validation import (
    Bounds,
    check_bool,
    check_bounds,
    check_budget,
    check_choice,
    check_eps_plausible,
    check_images,
    check_int,
    check_label_range,
    check_labels,
    check_logits,
    check_not_inference_mode,
    check_real,
)
from dard_plugin.attacks import _fast
from dard_plugin.attacks._geometry import (
    ascent_direction,
    bounds_on,
    broadcastable,
    check_mask,
    project,
    random_in_ball,
    sample_norms,
)
from dard_plugin.attacks._placement import placement
from dard_plugin.attacks.objectives import Objective, cross_entropy_objective, kl_objective

Model = Callable[[torch.Tensor], torch.Tensor]
# on_step(step, current adversarial images, gradient of the loss being ascended)
StepCallback = Callable[[int, torch.Tensor, torch.Tensor], None]
# the threat models of the package's training and evaluation
NORMS = ("Linf", "L2")
# the norms the loop itself runs: L1 too, with ART's geometry (ART's PGD takes norm=1)
LOOP_NORMS = ("Linf", "L2", "L1")


@contextlib.contextmanager
def eval_mode(model: Model) -> Iterator[None]:
    """Run ``model`` in eval mode inside the block and give every submodule back the
    train/eval flag it had (not one flag for all, as ``model.train(flag)`` would).

    Eval mode is how the attacks of this package leave a model exactly as found: BatchNorm
    does not update its running statistics and dropout is off, so the attack is also
    deterministic. torchattacks attacks in eval mode by default, ART's estimators predict in
    it. A plain callable (not an ``nn.Module``) is left alone.
    """
    if not isinstance(model, nn.Module):
        yield
        return
    with module_flags_kept(model):
        model.eval()
        yield


@contextlib.contextmanager
def module_flags_kept(model: nn.Module) -> Iterator[None]:
    """Every submodule's train/eval flag given back on leaving the block, also on an error."""
    flags = [(module, module.training) for module in model.modules()]
    try:
        yield
    finally:
        for module, flag in flags:
            module.training = flag


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
    bounds: Bounds | None = (0.0, 1.0),
    generator: torch.Generator | None = None,
    start: torch.Tensor | None = None,
    mask: torch.Tensor | None = None,
    decay: float | None = None,
    on_step: StepCallback | None = None,
) -> torch.Tensor:
    """Projected sign-gradient steps inside the L-inf ball of radius ``eps`` around ``images``.

    ``x_{t+1} = clip_bounds(x + clip_[-eps, eps](x_t + alpha * sign(grad L(x_t)) - x))``.

    Args:
        model: maps a batch to logits of shape (B, K); an ``nn.Module`` or any callable.
            A module is run in eval mode and every submodule gets its train/eval flag back
            (:func:`eval_mode`), so parameters, buffers (BatchNorm statistics) and ``.grad``
            are left exactly as found; a plain callable is run as it is.
        images: (B, ...) inputs inside ``bounds``; never modified. Values outside by a
            rounding error (about 1e-6 of the range) are clipped; further out is an error.
        labels: (B,) integer class indices (target classes when ``targeted``).
        objective: ``objective(logits, labels, step, steps) -> scalar``.
        eps, alpha: the budget and the step size: a number, one value per sample (B,), or a
            tensor with the images' number of dimensions that broadcasts against them (per
            sample and per feature, as ART's array ``eps``).
        steps: number of gradient steps (>= 1).
        random_start: start from ``images + U(-eps, eps)`` (clipped) instead of ``images``.
        targeted: descend the objective instead of ascending it.
        bounds: the valid input range: numbers, per-feature tensors, or None (unbounded).
        generator: the random source of the random start (the global one if None).
        start: an explicit starting point (projected onto the ball first), e.g. RSLAD's
            ``images + 0.001 * N(0, 1)``; exclusive with ``random_start``.
        mask: optional tensor broadcasting against ``images``: features where it is 0 are
            never perturbed (ART's ``mask``); the random start is multiplied by it.
        decay: momentum (MI-FGSM, ART's ``decay``): the step follows
            ``g_t = decay * g_{t-1} + grad / ||grad||_1`` instead of the raw gradient.
        on_step: called as ``on_step(step, x_t, gradient)`` at every step, before the
            update (the gradient of the loss being ascended, i.e. negated when ``targeted``).

    Returns:
        The adversarial images, detached, with the dtype and device of ``images``.
    """
    return projected_gradient_descent(
        model,
        images,
        labels,
        objective,
        norm="Linf",
        eps=eps,
        alpha=alpha,
        steps=steps,
        random_start=random_start,
        targeted=targeted,
        bounds=bounds,
        generator=generator,
        start=start,
        mask=mask,
        decay=decay,
        on_step=on_step,
    )


def pgd_l2(
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
    bounds: Bounds | None = (0.0, 1.0),
    generator: torch.Generator | None = None,
    start: torch.Tensor | None = None,
    mask: torch.Tensor | None = None,
    decay: float | None = None,
    on_step: StepCallback | None = None,
) -> torch.Tensor:
    """Projected normalized-gradient steps inside the L2 ball of radius ``eps``.

    ``x_{t+1} = clip_bounds(x + P_eps(x_t + alpha * g / ||g||_2 - x))`` with ``g`` the
    gradient of the objective and ``P_eps(d) = d * min(1, eps / ||d||_2)``, per sample: the
    update of torchattacks' ``PGDL2`` (step, project, clip). The random start is uniform in
    the L2 ball (direction uniform on the sphere, radius ``eps * U^(1/d)``), then clipped.

    Arguments as :func:`pgd_linf`, except that ``eps`` and ``alpha`` are a number or one
    value per sample (B,) (a per-feature L2 budget has no meaning), and ``mask`` zeroes the
    gradient before it is normalized.
    """
    return projected_gradient_descent(
        model,
        images,
        labels,
        objective,
        norm="L2",
        eps=eps,
        alpha=alpha,
        steps=steps,
        random_start=random_start,
        targeted=targeted,
        bounds=bounds,
        generator=generator,
        start=start,
        mask=mask,
        decay=decay,
        on_step=on_step,
    )


def pgd_l1(
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
    bounds: Bounds | None = (0.0, 1.0),
    generator: torch.Generator | None = None,
    start: torch.Tensor | None = None,
    mask: torch.Tensor | None = None,
    decay: float | None = None,
    on_step: StepCallback | None = None,
) -> torch.Tensor:
    """Projected steps inside the L1 ball of radius ``eps``, with ART's L1 geometry.

    Each step moves the one feature of largest gradient magnitude by ``alpha`` in the
    direction of its gradient sign, clips into the bounds, then rescales the perturbation
    ``d`` onto the ball, ``d * min(1, eps / ||d||_1)`` per sample: ART 1.20.1's
    ``ProjectedGradientDescent`` with ``norm=1`` (its default rescaling projection, not the
    exact Euclidean one). The random start is uniform in the L1 ball, then clipped.

    Arguments as :func:`pgd_l2` (``eps`` and ``alpha`` a number or one value per sample).
    """
    return projected_gradient_descent(
        model,
        images,
        labels,
        objective,
        norm="L1",
        eps=eps,
        alpha=alpha,
        steps=steps,
        random_start=random_start,
        targeted=targeted,
        bounds=bounds,
        generator=generator,
        start=start,
        mask=mask,
        decay=decay,
        on_step=on_step,
    )


def projected_gradient_descent(
    model: Model,
    images: torch.Tensor,
    labels: torch.Tensor,
    objective: Objective,
    *,
    norm: str,
    eps: float | torch.Tensor,
    alpha: float | torch.Tensor,
    steps: int,
    random_start: bool = False,
    targeted: bool = False,
    bounds: Bounds | None = (0.0, 1.0),
    generator: torch.Generator | None = None,
    start: torch.Tensor | None = None,
    mask: torch.Tensor | None = None,
    decay: float | None = None,
    on_step: StepCallback | None = None,
) -> torch.Tensor:
    """The one loop behind :func:`pgd_linf` (``norm="Linf"``), :func:`pgd_l2`
    (``norm="L2"``) and :func:`pgd_l1` (``norm="L1"``); see those for the arguments."""
    check_choice("norm", norm, LOOP_NORMS)
    check_not_inference_mode("the attack")
    bounds = check_bounds("bounds", bounds)
    images = check_images("images", images, bounds).detach()
    if images.dtype in (torch.float16, torch.bfloat16):  # attacked and returned in float32:
        images = images.float()  # the ball's projection rounded in 16 bits left it (as ART)
    batch_size = images.shape[0]
    labels = check_labels("labels", labels, batch_size)
    image_ndim = images.ndim if norm == "Linf" else None
    eps = check_budget("eps", eps, batch_size=batch_size, positive=False, image_ndim=image_ndim)
    alpha = check_budget(
        "alpha", alpha, batch_size=batch_size, positive=True, image_ndim=image_ndim
    )
    check_eps_plausible(eps, bounds, norm=norm, num_features=images[0].numel())
    steps = check_int("steps", steps, minimum=1)
    check_bool("random_start", random_start)
    check_bool("targeted", targeted)
    if generator is not None and not isinstance(generator, torch.Generator):
        raise TypeError(f"generator must be a torch.Generator or None, got {type(generator)}")
    if decay is not None:
        decay = check_real("decay", decay, low=0.0)
    if mask is not None:
        mask = check_mask(mask, images)
    if start is not None:
        if random_start:
            raise ValueError("start and random_start=True are exclusive: pass one of them")
        if not isinstance(start, torch.Tensor) or start.shape != images.shape:
            raise ValueError(f"start must be a tensor of shape {tuple(images.shape)}")

    device, model_dtype = placement(model, images)
    # The perturbed images stay in the input's dtype; only the model sees its own dtype.
    # That keeps the projection exact for bf16/fp16 models.
    clean = images.detach().to(device)
    labels = labels.to(device)
    eps_b = broadcastable(eps, clean)
    alpha_b = broadcastable(alpha, clean)
    bounds_b = bounds_on(bounds, clean)
    mask_b = None if mask is None else mask.to(device=device, dtype=clean.dtype)
    direction = -1.0 if targeted else 1.0

    adversarial = clean.clone()
    if start is not None:
        adversarial = project(start.detach().to(clean), clean, eps_b, bounds_b, norm)
        if mask_b is not None:  # masked features are never perturbed, from a start too
            adversarial = torch.where(mask_b == 0, clean, adversarial)
    elif random_start:
        noise = random_in_ball(clean, eps_b, norm, generator)
        if mask_b is not None:
            noise = noise * mask_b
        adversarial = project(clean + noise, clean, eps_b, bounds_b, norm)

    momentum = torch.zeros_like(clean) if decay is not None else None
    gradient_at = _fast.gradient_function(_loss_gradient, model)  # compiled when asked

    def check(logits: torch.Tensor) -> None:
        check_logits(logits, batch_size)
        check_label_range("labels", labels, logits.shape[1])

    with eval_mode(model), torch.enable_grad():
        for step in range(steps):
            adversarial.requires_grad_(True)
            _, gradient = gradient_at(
                model,
                objective,
                adversarial,
                labels,
                step,
                steps,
                model_dtype,
                check if step == 0 else None,
            )
            adversarial = adversarial.detach()
            # a NaN entry (a model not differentiable at this input) moves nothing, as in
            # ART: left in, it makes the sample NaN (L2) or freezes it (L1, momentum)
            gradient = torch.where(gradient.isnan(), 0.0, gradient)
            if mask_b is not None:
                gradient = torch.where(mask_b == 0, torch.zeros_like(gradient), gradient)
            if on_step is not None:
                on_step(step, adversarial, direction * gradient)
            if momentum is not None:
                assert decay is not None
                # ART's (and MI-FGSM's) accumulation of L1-normalized gradients
                l1 = sample_norms(gradient, 1.0)
                momentum.mul_(decay).add_(gradient / torch.where(l1 == 0, 1.0, l1))
                gradient = momentum
            adversarial = adversarial + direction * alpha_b * ascent_direction(gradient, norm)
            adversarial = project(adversarial, clean, eps_b, bounds_b, norm)
    return adversarial.detach().to(images.device)


def _loss_gradient(
    model: Model,
    objective: Objective,
    adversarial: torch.Tensor,
    labels: torch.Tensor,
    step: int,
    steps: int,
    model_dtype: torch.dtype,
    check: Callable[[torch.Tensor], None] | None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The logits at ``adversarial`` and the objective's gradient there: the model's part
    of a step, which ``attacks/_fast.py`` may compile (``check``: the first step's checks
    of the model's output, before the objective sees it)."""
    logits = model(adversarial.to(model_dtype))
    if check is not None:
        check(logits)
    loss = objective(logits, labels, step, steps)
    (gradient,) = torch.autograd.grad(loss, adversarial)
    return logits.detach(), gradient


__all__ = [
    "LOOP_NORMS",
    "NORMS",
    "Model",
    "Objective",
    "StepCallback",
    "cross_entropy_objective",
    "eval_mode",
    "kl_objective",
    "module_flags_kept",
    "pgd_l1",
    "pgd_l2",
    "pgd_linf",
    "projected_gradient_descent",
]
