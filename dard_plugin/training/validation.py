"""Validation after each epoch: clean accuracy and accuracy under one attack of the
evaluation suite (PGD-10 or DPGD), inside the run's input bounds."""

from __future__ import annotations

import torch
from torch import nn

from dard_plugin.attacks.pgd import projected_gradient_descent
from dard_plugin.evaluation.attacks import PGD10, SUITE, SuiteAttack

VALIDATION: dict[str, SuiteAttack] = {"pgd": PGD10, "dpgd": SUITE["dpgd"]}
EVAL_ATTACKS = tuple(VALIDATION)


def _attack(
    attack: SuiteAttack,
    model: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    eps: float,
    generator: torch.Generator,
    bounds: tuple[float, float],
    norm: str = "Linf",
) -> torch.Tensor:
    """The suite attack's run (``SuiteAttack.run``) in ``norm``, within ``bounds``."""
    start = None
    if attack.start == "gaussian":
        noise = torch.randn(images.shape, generator=generator).to(images.device)
        start = (images + 0.001 * noise).clamp(*bounds)
    return projected_gradient_descent(
        model,
        images,
        labels,
        attack.objective(model, images),
        norm=norm,
        eps=eps,
        alpha=eps * attack.step_fraction,
        steps=attack.steps,
        random_start=attack.start == "uniform",
        generator=generator,
        start=start,
        bounds=bounds,
    )


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
    was_training = student.training
    student.eval()
    generator = torch.Generator().manual_seed(seed)
    correct = {"clean": 0, attack: 0}
    try:
        for start in range(0, images.shape[0], batch_size):
            x = images[start : start + batch_size].to(device)
            y = labels[start : start + batch_size].to(device)
            adversarial = _attack(VALIDATION[attack], student, x, y, eps, generator, bounds, norm)
            with torch.no_grad():
                correct["clean"] += int((student(x).argmax(1) == y).sum())
                correct[attack] += int((student(adversarial).argmax(1) == y).sum())
    finally:
        student.train(was_training)
    return {f"{name}_accuracy": count / images.shape[0] for name, count in correct.items()}
