"""Validation after each epoch: clean accuracy and accuracy under one attack of the
evaluation suite (PGD-10 or DPGD, ``SuiteAttack.run``) in the training norm, inside the
run's input bounds."""

from __future__ import annotations

import torch
from torch import nn

from dard_plugin.attacks.pgd import eval_mode
from dard_plugin.evaluation.attacks import PGD10, SUITE, SuiteAttack

VALIDATION: dict[str, SuiteAttack] = {"pgd": PGD10, "dpgd": SUITE["dpgd"]}
EVAL_ATTACKS = tuple(VALIDATION)


def validate(
    student: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    *,
    attack: str,
    eps: float,
    batch_size: int,
    device: torch.device,
    seed: int,
    bounds: tuple[float, float],
    norm: str = "Linf",
) -> dict[str, float]:
    """``{"clean_accuracy": ..., "<attack>_accuracy": ...}`` under ``attack`` in ``norm``
    (the training attack's); the student's mode is kept."""
    generator = torch.Generator().manual_seed(seed)
    correct = {"clean": 0, attack: 0}
    with eval_mode(student):  # each module's flag given back (a frozen BatchNorm stays so)
        for start in range(0, images.shape[0], batch_size):
            x = images[start : start + batch_size].to(device)
            y = labels[start : start + batch_size].to(device)
            adversarial = VALIDATION[attack].run(student, x, y, eps, norm, generator, bounds=bounds)
            with torch.no_grad():
                correct["clean"] += int((student(x).argmax(1) == y).sum())
                correct[attack] += int((student(adversarial).argmax(1) == y).sum())
    return {f"{name}_accuracy": count / images.shape[0] for name, count in correct.items()}
