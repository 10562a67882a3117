"""Shared by the examples: the ``--fast`` switch, a quickly trained Fashion-MNIST
classifier to attack, and torchrun's process group."""

from __future__ import annotations

import argparse
import contextlib
import os
from collections.abc import Iterator
from typing import Any

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from dard_plugin.data import get_loader, load_dataset, set_loader_epoch
from dard_plugin.models import create


def parse_args(parser: argparse.ArgumentParser, fast: dict[str, Any]) -> argparse.Namespace:
    """Parse the command line. ``--fast`` (what CI runs) replaces the defaults by ``fast``;
    options given on the command line still win."""
    parser.add_argument(
        "--fast",
        action="store_true",
        help="a smoke run of a few seconds (what the tests run); its numbers mean little",
    )
    args = parser.parse_args()
    if args.fast:
        parser.set_defaults(**fast)
        args = parser.parse_args()
    return args


def quick_model(n_train: int, epochs: int, seed: int = 0) -> nn.Module:
    """The registry's small CNN, trained normally (not robustly) on a Fashion-MNIST slice."""
    generator = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng():
        torch.manual_seed(int(torch.randint(0, 2**31, (1,), generator=generator)))
        model = create("small-cnn", num_classes=10)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    loader = get_loader("fashion-mnist", n_examples=n_train, batch_size=128, seed=seed)
    model.train()
    for epoch in range(epochs):
        set_loader_epoch(loader, epoch)
        for images, labels in loader:
            optimizer.zero_grad()
            F.cross_entropy(model(images), labels).backward()
            optimizer.step()
    return model.eval()


def test_slice(n_test: int) -> tuple[torch.Tensor, torch.Tensor]:
    return load_dataset("fashion-mnist", train=False, n_examples=n_test)


def accuracy(model: nn.Module, images: torch.Tensor, labels: torch.Tensor) -> float:
    with torch.no_grad():
        return float((model(images).argmax(1) == labels).float().mean())


@contextlib.contextmanager
def process_group(device: str) -> Iterator[tuple[int, int, str]]:
    """(world size, rank, this process's device) inside torchrun's process group, joined
    on entry (nccl on CUDA, one GPU per process; gloo on CPU) and left on exit; (1, 0,
    device) without torchrun."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        yield 1, 0, device
        return
    if device == "cuda":
        device = f"cuda:{os.environ['LOCAL_RANK']}"
        torch.cuda.set_device(device)
    dist.init_process_group("nccl" if device.startswith("cuda") else "gloo")
    try:
        yield dist.get_world_size(), dist.get_rank(), device
    finally:
        dist.destroy_process_group()
