"""Shared fixtures: small seeded models with known behaviour, and synthetic data.

Deliberately no ``tests/__init__.py``: robustbench installs a top-level ``tests`` package.
"""

from __future__ import annotations

import contextlib
import io
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

os.environ.setdefault("TQDM_DISABLE", "0")
REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))


class PrototypeLinear(nn.Module):
    """A linear classifier with a closed-form answer: class k scores the agreement of
    ``x - 0.5`` with the +-1 pattern of prototype k."""

    def __init__(self, prototypes: torch.Tensor, scale: float = 4.0) -> None:
        super().__init__()
        patterns = (2.0 * prototypes.flatten(1) - 1.0) * scale / prototypes[0].numel() ** 0.5
        self.linear = nn.Linear(patterns.shape[1], patterns.shape[0], bias=True)
        with torch.no_grad():
            self.linear.weight.copy_(patterns)
            self.linear.bias.copy_(-0.5 * patterns.sum(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x.flatten(1))


class TinyCNN(nn.Module):
    """Conv + BatchNorm + Dropout + Linear, for mode and buffer invariants."""

    def __init__(self, channels: int = 1, num_classes: int = 10, size: int = 8) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(channels, 6, 3, padding=1), nn.BatchNorm2d(6), nn.ReLU(), nn.Dropout(0.2)
        )
        self.head = nn.Linear(6 * size * size, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x).flatten(1))


def make_prototype_data(
    n: int = 64, num_classes: int = 10, size: int = 8, noise: float = 0.15, seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Images near one of ``num_classes`` binary prototypes, kept inside [0, 1]."""
    generator = torch.Generator().manual_seed(seed)
    prototypes = (torch.rand(num_classes, 1, size, size, generator=generator) > 0.5).float()
    labels = torch.randint(0, num_classes, (n,), generator=generator)
    images = 0.25 + 0.5 * prototypes[labels]
    images = images + noise * (2 * torch.rand(images.shape, generator=generator) - 1)
    return images.clamp(0, 1), labels, prototypes


@pytest.fixture
def prototype_data() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    return make_prototype_data()


@pytest.fixture
def prototype_model(prototype_data: tuple[torch.Tensor, torch.Tensor, torch.Tensor]) -> nn.Module:
    torch.manual_seed(0)
    return PrototypeLinear(prototype_data[2]).eval()


@pytest.fixture
def tiny_cnn() -> nn.Module:
    torch.manual_seed(0)
    model = TinyCNN()
    with torch.no_grad():  # non-trivial BatchNorm statistics
        model.features[1].running_mean.uniform_(-0.1, 0.1)
        model.features[1].running_var.uniform_(0.5, 1.5)
    return model


def state_snapshot(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def assert_state_equal(model: nn.Module, snapshot: dict[str, torch.Tensor]) -> None:
    current = model.state_dict()
    assert current.keys() == snapshot.keys()
    for key, value in snapshot.items():
        assert torch.equal(current[key], value), f"{key} changed"


def dard_in_process(*args: str) -> subprocess.CompletedProcess[str]:
    """``dard ARGS`` run by ``dard_plugin.cli.main`` in this process, its output captured: for
    refusals made before any work, whose subprocess would spend seconds importing torch.
    The same code path as the console script (``main`` turns an error into one line on
    stderr and exit status 2)."""
    from dard_plugin.cli.main import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(list(args))
        except SystemExit as exit_:  # argparse's own usage errors
            code = exit_.code if isinstance(exit_.code, int) else 1
    return subprocess.CompletedProcess(["dard", *args], code, out.getvalue(), err.getvalue())


def hold_lock(path: Path) -> int:
    """Another process's claim of a study unit: an exclusive ``flock`` on its lock file,
    through an open file of its own (which conflicts with the runner's claim in this
    process as another process's would). Close the descriptor to release it."""
    import fcntl
    import os

    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_CREAT | os.O_RDWR)
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    return fd
