"""The objectives PGD ascends, besides DPGD's Dice (``attacks/dpgd.py``): an objective is
``objective(logits, labels, step, steps)``, the scalar to ascend (to descend when the attack
is targeted)."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

__all__ = ["Objective", "cross_entropy_objective", "kl_objective"]

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
