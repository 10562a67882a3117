"""DPGD as a torchattacks attack: a thin face over :func:`dard_plugin.attacks.dpgd.dpgd`."""

from __future__ import annotations

import torch
from torch import nn
from torchattacks.attack import Attack

from dard_plugin._validation import (
    check_bool,
    check_budget,
    check_choice,
    check_eps_plausible,
    check_int,
)
from dard_plugin.attacks.dpgd import DPGD_REDUCTIONS, dpgd


class DPGD(Attack):
    r"""Dice Projected Gradient Descent (L-inf), DARD's attack, for torchattacks.

    Distance Measure : Linf

    Arguments:
        model (nn.Module): model to attack; inputs in [0, 1] (or use
            ``set_normalization_used``, as with every torchattacks attack).
        eps (float): maximum perturbation. (Default: 8/255)
        alpha (float): step size. (Default: 2/255)
        steps (int): number of steps. (Default: 10)
        random_start (bool): start from a uniformly random point of the eps ball.
            (Default: False, as in the paper's scripts; note that ``torchattacks.PGD``
            defaults to True)
        reduction (str): ``"sample"`` (per-sample Dice: each image's result independent of
            its batch, so ``MultiAttack``, which re-attacks the images still robust, and
            ``save()``, which attacks loader batches, give what attacking each image alone
            gives) or ``"batch"`` (the paper's single Dice per set over the batch, for
            reproducing the paper). (Default: "sample")
        generator (torch.Generator, optional): random source of the random start.

    Shape:
        - images: (N, C, H, W) in [0, 1] (a rounding error outside, as torchattacks'
          inverse normalization leaves, is clipped).
        - labels: (N,) class indices (targets in targeted mode).
        - output: (N, C, H, W).

    Examples::
        >>> attack = dard_plugin.DPGD(model, eps=8/255, alpha=2/255, steps=10)
        >>> adv_images = attack(images, labels)
    """

    def __init__(
        self,
        model: nn.Module,
        eps: float = 8 / 255,
        alpha: float = 2 / 255,
        steps: int = 10,
        random_start: bool = False,
        reduction: str = "sample",
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__("DPGD", model)
        self.eps = check_budget("eps", eps, batch_size=None, positive=False)
        self.alpha = check_budget("alpha", alpha, batch_size=None, positive=True)
        check_eps_plausible(self.eps, (0.0, 1.0))  # torchattacks' inputs are in [0, 1]
        self.steps = check_int("steps", steps, minimum=1)
        self.random_start = check_bool("random_start", random_start)
        self.reduction = check_choice("reduction", reduction, DPGD_REDUCTIONS)
        self.generator = generator
        self.supported_mode = ["default", "targeted"]

    def forward(self, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        images = images.clone().detach().to(self.device)
        labels = labels.clone().detach().to(self.device)
        if self.targeted:
            labels = self.get_target_label(images, labels)
        return dpgd(
            self.get_logits,
            images,
            labels,
            eps=self.eps,
            alpha=self.alpha,
            steps=self.steps,
            random_start=self.random_start,
            reduction=self.reduction,
            targeted=self.targeted,
            generator=self.generator,
        )
