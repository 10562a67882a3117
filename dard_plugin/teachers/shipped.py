"""Teachers trained by this project and shipped inside the package (no download)."""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import torch
from torch import nn

from dard_plugin.teachers.checkpoints import load_checkpoint


@dataclass(frozen=True)
class ShippedTeacher:
    """A teacher in the package, with the accuracies measured on it (percent; the model
    card says how): ``clean_acc`` on the whole test set, ``autoattack_acc`` (standard
    version) on the first ``autoattack_examples`` test images, at L-inf ``eps``, where the
    clean accuracy is ``autoattack_clean_acc`` (the pair to compare)."""

    arch: str
    dataset: str
    num_classes: int
    filename: str
    card: str  # where its model card is
    threat_model: str
    eps: str
    clean_acc: float
    autoattack_acc: float
    autoattack_examples: int
    autoattack_clean_acc: float


SHIPPED_TEACHERS = {
    "dard-fmnist-teacher": ShippedTeacher(
        arch="teacher-cnn",
        dataset="fashion-mnist",
        num_classes=10,
        filename="dard-fmnist-teacher.pt",
        card="docs/teachers/dard-fmnist-teacher.md",
        # measured, docs/teachers/dard-fmnist-teacher.md: clean on all 10,000 test images,
        # AutoAttack standard (seed 0) on the first 200 (83.50% clean on those 200)
        threat_model="Linf",
        eps="0.1",
        clean_acc=81.20,
        autoattack_acc=73.00,
        autoattack_examples=200,
        autoattack_clean_acc=83.50,
    ),
    "dard-fmnist-teacher-strong": ShippedTeacher(
        arch="teacher-cnn",
        dataset="fashion-mnist",
        num_classes=10,
        filename="dard-fmnist-teacher-strong.pt",
        card="docs/teachers/dard-fmnist-teacher-strong.md",
        # measured, docs/teachers/dard-fmnist-teacher-strong.md (the study's teacher unit):
        # clean on all 10,000 test images, AutoAttack standard (seed 0) on the first 200
        threat_model="Linf",
        eps="0.1",
        clean_acc=82.54,
        autoattack_acc=74.50,
        autoattack_examples=200,
        autoattack_clean_acc=82.50,
    ),
    "dard-fmnist-teacher-natural": ShippedTeacher(
        arch="teacher-cnn",
        dataset="fashion-mnist",
        num_classes=10,
        filename="dard-fmnist-teacher-natural.pt",
        card="docs/teachers/dard-fmnist-teacher-natural.md",
        # naturally trained (no attack): MTARD's second teacher, not a robust one. Measured,
        # docs/teachers/dard-fmnist-teacher-natural.md: clean on all 10,000 test images,
        # AutoAttack standard (seed 0) on the first 200, at the other teachers' eps
        threat_model="Linf",
        eps="0.1",
        clean_acc=92.75,
        autoattack_acc=0.00,
        autoattack_examples=200,
        autoattack_clean_acc=94.00,
    ),
}


def shipped_weights(name: str) -> Path:
    return Path(
        str(resources.files("dard_plugin.teachers") / "weights" / SHIPPED_TEACHERS[name].filename)
    )


def load_shipped_teacher(
    name: str, *, dataset: str, device: str | torch.device | None = None
) -> nn.Module:
    teacher = SHIPPED_TEACHERS[name]
    if dataset != teacher.dataset:
        raise ValueError(
            f"dataset must be {teacher.dataset!r} for the shipped teacher {name!r}, got {dataset!r}"
        )
    path = shipped_weights(name)
    if not path.is_file():
        raise FileNotFoundError(
            f"the shipped teacher's weights are missing from the installation: {path}"
        )
    return load_checkpoint(path, teacher.arch, num_classes=teacher.num_classes, device=device)
