"""DPGD as torchattacks attacks: ``DPGD`` (L-inf, beside ``PGD``) and ``DPGDL2`` (L2,
beside ``PGDL2``), thin faces over :func:`~dard_plugin.attacks.dpgd.dpgd` and
:func:`~dard_plugin.attacks.dpgd.dpgd_l2`."""

from __future__ import annotations

from typing import Any

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
from dard_plugin.attacks._placement import model_dtype
from dard_plugin.attacks.dpgd import (
    DPGD_L2_EPS,
    DPGD_REDUCTIONS,
    dpgd,
    dpgd_l2,
    l2_default_step,
)
from dard_plugin.attacks.pgd import module_flags_kept


class _ModesKept(Attack):
    """torchattacks' ``__call__`` puts the whole model in train or eval mode and back, and
    on an error leaves it so: a frozen BatchNorm came back training, an MC-dropout layer
    evaluating. Every module's own flag is given back, also on an error."""

    def __call__(
        self, inputs: torch.Tensor, labels: torch.Tensor | None = None, *args: Any, **kwargs: Any
    ) -> torch.Tensor:
        with module_flags_kept(self.model):
            adversarial: torch.Tensor = super().__call__(inputs, labels, *args, **kwargs)
        return adversarial

    def get_logits(
        self, inputs: torch.Tensor, labels: Any = None, *args: Any, **kwargs: Any
    ) -> Any:
        """torchattacks' ``get_logits``, feeding the model its own floating dtype: the core
        attacks half-precision images in float32, and a float16 model refused them (the
        core casts for a model it is given, but it is given this callable)."""
        if self._normalization_applied is False:
            inputs = self.normalize(inputs)
        dtype = model_dtype(self.model)
        return self.model(inputs if dtype is None else inputs.to(dtype))


class DPGD(_ModesKept):
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
            gives, up to float32 rounding) or ``"batch"`` (the paper's single Dice per set
            over the batch, for reproducing the paper). (Default: "sample")
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
        # torchattacks' inputs are in [0, 1]
        check_eps_plausible(self.eps, (0.0, 1.0), l2_hint="dard_plugin.attacks.DPGDL2")
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


class DPGDL2(_ModesKept):
    r"""Dice Projected Gradient Descent (L2), for torchattacks, beside ``PGDL2``.

    Distance Measure : L2

    Arguments:
        model (nn.Module): model to attack; inputs in [0, 1] (or use
            ``set_normalization_used``, as with every torchattacks attack).
        eps (float): maximum L2 perturbation. (Default: 0.5, RobustBench's CIFAR-10 L2)
        alpha (float, optional): step size. (Default: None, giving eps/4)
        steps (int): number of steps. (Default: 10)
        random_start (bool): start from a point drawn uniformly in the L2 ball.
            (Default: False, as DPGD; ``torchattacks.PGDL2`` defaults to True)
        reduction (str): ``"sample"`` or ``"batch"``, as for :class:`DPGD`.
            (Default: "sample")
        generator (torch.Generator, optional): random source of the random start.

    Shape:
        - images: (N, C, H, W) in [0, 1].
        - labels: (N,) class indices (targets in targeted mode).
        - output: (N, C, H, W).

    Examples::
        >>> attack = dard_plugin.attacks.DPGDL2(model, eps=0.5, steps=10)
        >>> adv_images = attack(images, labels)
    """

    def __init__(
        self,
        model: nn.Module,
        eps: float = DPGD_L2_EPS,
        alpha: float | None = None,
        steps: int = 10,
        random_start: bool = False,
        reduction: str = "sample",
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__("DPGDL2", model)
        self.eps = check_budget("eps", eps, batch_size=None, positive=False)
        self.alpha = check_budget(
            "alpha",
            l2_default_step(self.eps) if alpha is None else alpha,
            batch_size=None,
            positive=True,
        )
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
        return dpgd_l2(
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
