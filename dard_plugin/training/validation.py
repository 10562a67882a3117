"""Validation after each epoch: clean accuracy and accuracy under one attack of the
evaluation suite (PGD-10 or DPGD, ``SuiteAttack.run``) in the training norm, inside the
run's input bounds."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from dard_plugin._labels import ClassLabels, read_labels
from dard_plugin.attacks.pgd import eval_mode
from dard_plugin.evaluation.attacks import PGD10, SUITE, SuiteAttack, correct_predictions
from dard_plugin.training.batches import as_images

VALIDATION: dict[str, SuiteAttack] = {"pgd": PGD10, "dpgd": SUITE["dpgd"]}
EVAL_ATTACKS = tuple(VALIDATION)


def read_validation(
    validation_data: tuple[Any, Any] | None,
    eval_eps: float | None,
    eval_eps_missing: str,
    check_images: Callable[[str, torch.Tensor], None],
) -> tuple[torch.Tensor, ClassLabels] | None:
    """``fit``'s ``validation_data``: the images (checked by ``check_images``, the trainer's
    bounds check) and the labels (read by the label rule); ``None`` when not given. A
    validation needs ``eval_eps`` (``eval_eps_missing`` says how to set it)."""
    if validation_data is None:
        return None
    if eval_eps is None:
        raise ValueError(f"eval_eps must be given to validate: {eval_eps_missing}")
    if not isinstance(validation_data, (tuple, list)) or len(validation_data) != 2:
        raise ValueError(
            f"validation_data must be a pair (images, labels), got {type(validation_data).__name__}"
        )
    images = as_images(validation_data[0], "validation_data[0]")
    check_images("validation_data[0]", images)
    labels = read_labels("validation_data[1]", validation_data[1], num_examples=images.shape[0])
    return images, labels


def check_validation_shape(images: torch.Tensor, input_shape: tuple[int, ...]) -> None:
    """The validation images have the training images' per-example shape."""
    if tuple(images.shape[1:]) != input_shape:
        raise ValueError(
            f"validation_data[0] must hold images of the training images' shape "
            f"{input_shape}, got {tuple(images.shape)}: per-example shape "
            f"{tuple(images.shape[1:])}"
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
    generator = torch.Generator().manual_seed(seed)
    correct = {"clean": 0, attack: 0}
    with eval_mode(student):  # each module's flag given back (a frozen BatchNorm stays so)
        for start in range(0, images.shape[0], batch_size):
            x = images[start : start + batch_size].to(device)
            y = labels[start : start + batch_size].to(device)
            adversarial = VALIDATION[attack].run(student, x, y, eps, norm, generator, bounds=bounds)
            with torch.no_grad():
                # the suite's rule: a NaN row is wrong (argmax reads it as class 0)
                correct["clean"] += int(correct_predictions(student(x), y).sum())
                correct[attack] += int(correct_predictions(student(adversarial), y).sum())
    return {f"{name}_accuracy": count / images.shape[0] for name, count in correct.items()}
