"""DPGD: Dice Projected Gradient Descent (METHOD.md §1), the typed torch core.

DPGD is the loop of ``attacks/pgd.py`` (:func:`dpgd`: L-inf; :func:`dpgd_l2`: L2;
:func:`dpgd_l1`: L1) driven
by ``losses.dpgd_loss``: at step t the loss is
``(1 - t/2T) * Dice(still correct) + t/2T * Dice(already fooled)``. The torchattacks
classes (``attacks/torchattacks_dpgd.py``) and the ART attack (``dard_plugin.art``) are
thin faces over them.
"""

from __future__ import annotations

import functools

import torch

from dard_plugin._validation import check_bool, check_budget, check_choice, check_real
from dard_plugin.attacks.pgd import Model, Objective, pgd_l1, pgd_l2, pgd_linf
from dard_plugin.losses.dpgd import dpgd_loss

DPGD_REDUCTIONS = ("batch", "sample")


def dpgd_objective(
    reduction: str = "batch", smooth: float = 1e-5, *, targeted: bool = False
) -> Objective:
    """The DPGD loss as an objective for :func:`~dard_plugin.attacks.pgd.pgd_linf` (and
    ``pgd_l2``). ``targeted`` picks the targeted schedule (METHOD.md §1 "Targeted mode"):
    pass the same flag as to the loop."""
    check_choice("reduction", reduction, DPGD_REDUCTIONS)
    check_real("smooth", smooth, low=0.0, low_inclusive=False)
    check_bool("targeted", targeted)
    return functools.partial(dpgd_loss, reduction=reduction, smooth=smooth, targeted=targeted)


def dpgd(
    model: Model,
    images: torch.Tensor,
    labels: torch.Tensor,
    *,
    eps: float | torch.Tensor = 8 / 255,
    alpha: float | torch.Tensor = 2 / 255,
    steps: int = 10,
    random_start: bool = False,
    reduction: str = "batch",
    targeted: bool = False,
    generator: torch.Generator | None = None,
    bounds: tuple[float, float] | None = (0.0, 1.0),
) -> torch.Tensor:
    """Dice Projected Gradient Descent, L-inf.

    Args:
        model: maps inputs in ``bounds`` to logits (B, K); normalization belongs inside it.
            Its train/eval mode, parameters and ``.grad`` are left exactly as found.
        images: (B, ...) floating tensor in ``bounds`` (default [0, 1]); not modified.
        labels: (B,) integer labels; the target classes when ``targeted``.
        eps: L-inf budget (default 8/255), a number or a (B,) tensor.
        alpha: step size (default 2/255), a number or a (B,) tensor.
        steps: number of steps T (default 10).
        random_start: start at ``images + U(-eps, eps)`` (off in the paper's scripts).
        reduction: ``"batch"``: one Dice per set over the whole batch, as in the paper
            (an image's result can depend on its batch); ``"sample"``: the mean of per-sample
            Dice values (each image's result independent of its batch).
        targeted: descend the Dice loss towards ``labels`` (the targets). The early weight
            ``1 - lambda_t`` then goes to the samples not yet at their target and
            ``lambda_t`` to those already there (METHOD.md §1 "Targeted mode").
        generator: random source of the random start.
        bounds: valid input range, or None for unbounded inputs.

    Returns:
        Adversarial images with the dtype and device of ``images``.

    Works under an outer ``torch.no_grad()``; gradients are taken with respect to the
    inputs only, so no parameter gradient is computed or accumulated.
    """
    return pgd_linf(
        model,
        images,
        labels,
        dpgd_objective(reduction, targeted=targeted),
        eps=eps,
        alpha=alpha,
        steps=steps,
        random_start=random_start,
        targeted=targeted,
        bounds=bounds,
        generator=generator,
    )


DPGD_L2_EPS = 0.5  # RobustBench's CIFAR-10 L2 budget


def l2_default_step(eps: float | torch.Tensor) -> float | torch.Tensor:
    """``eps / 4``; a zero budget (nothing may move) gets step 1, which its ball absorbs."""
    if isinstance(eps, torch.Tensor):
        return torch.where(eps > 0, eps / 4, torch.ones_like(eps))
    return eps / 4 if eps > 0 else 1.0


def dpgd_l2(
    model: Model,
    images: torch.Tensor,
    labels: torch.Tensor,
    *,
    eps: float | torch.Tensor = DPGD_L2_EPS,
    alpha: float | torch.Tensor | None = None,
    steps: int = 10,
    random_start: bool = False,
    reduction: str = "batch",
    targeted: bool = False,
    generator: torch.Generator | None = None,
    bounds: tuple[float, float] | None = (0.0, 1.0),
) -> torch.Tensor:
    """Dice Projected Gradient Descent, L2: the DPGD objective on :func:`pgd_l2`.

    Each step moves ``alpha`` along the Dice gradient normalized to unit L2 norm, then
    projects onto the L2 ball of radius ``eps`` and clips to ``bounds``.

    Args:
        eps: L2 budget (default 0.5, RobustBench's CIFAR-10 L2 track), a number or a (B,)
            tensor.
        alpha: step size; None (default) gives ``eps / 4``: the L-inf default's 2/255 : 8/255
            ratio, and the ``2.5 * eps / steps`` rule of Madry et al.'s robustness library
            at 10 steps.
        random_start: start uniformly in the L2 ball (then clipped).
        The rest as :func:`dpgd`.
    """
    eps = check_budget("eps", eps, batch_size=None, positive=False)
    if alpha is None:
        alpha = l2_default_step(eps)
    return pgd_l2(
        model,
        images,
        labels,
        dpgd_objective(reduction, targeted=targeted),
        eps=eps,
        alpha=alpha,
        steps=steps,
        random_start=random_start,
        targeted=targeted,
        bounds=bounds,
        generator=generator,
    )


def dpgd_l1(
    model: Model,
    images: torch.Tensor,
    labels: torch.Tensor,
    *,
    eps: float | torch.Tensor,
    alpha: float | torch.Tensor,
    steps: int = 10,
    random_start: bool = False,
    reduction: str = "batch",
    targeted: bool = False,
    generator: torch.Generator | None = None,
    bounds: tuple[float, float] | None = (0.0, 1.0),
) -> torch.Tensor:
    """Dice Projected Gradient Descent, L1: the DPGD objective on :func:`pgd_l1`, with
    ART's L1 geometry (one feature moved by ``alpha`` per step, clip, rescale onto the L1
    ball).

    Args:
        eps: L1 budget, a number or a (B,) tensor; no default (no L1 budget is standard
            for this geometry).
        alpha: step size: how far the one feature of largest gradient magnitude moves per
            step; no default.
        random_start: start uniformly in the L1 ball (then clipped).
        The rest as :func:`dpgd`.
    """
    return pgd_l1(
        model,
        images,
        labels,
        dpgd_objective(reduction, targeted=targeted),
        eps=eps,
        alpha=alpha,
        steps=steps,
        random_start=random_start,
        targeted=targeted,
        bounds=bounds,
        generator=generator,
    )
