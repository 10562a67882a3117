"""What the method tests share: the methods added after DARD's baselines, a short attack,
deterministic students and teachers, and a trainer of any method on them."""

from __future__ import annotations

import sys
from pathlib import Path

import torch
from conftest import PrototypeLinear, make_prototype_data
from torch import nn

from dard_plugin.training import METHODS, build_trainer

NEW_METHODS = ["iad", "adaad", "adaad-igdm", "mtard"]
ATTACK = {"eps": 0.1, "alpha": 0.05, "steps": 2}
REPO = Path(__file__).resolve().parents[1]
DARD_CLI = [sys.executable, "-m", "dard_plugin"]


def random_logits(seed: int, batch: int = 6, classes: int = 10) -> list[torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return [3 * torch.randn(batch, classes, generator=generator) for _ in range(4)]


class Linear(nn.Module):
    """A deterministic student (no dropout, no BatchNorm), so that two forwards agree."""

    def __init__(self, seed: int) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.linear = nn.Linear(64, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x.flatten(1))


def teachers() -> tuple[nn.Module, nn.Module]:
    _, _, prototypes = make_prototype_data()
    return PrototypeLinear(prototypes).eval(), PrototypeLinear(1.0 - prototypes, scale=2.0).eval()


def new_trainer(method: str, student: nn.Module, **kwargs):
    adversarial, natural = teachers()
    options = {"optimizer": torch.optim.SGD(student.parameters(), lr=0.05), "verbose": False}
    options.update(kwargs)
    options.setdefault("attack", ATTACK)
    if METHODS[method].needs_natural_teacher:
        options["natural_teacher"] = natural
    return build_trainer(method, student, adversarial, **options)
