"""Trained weights pinned: the trainer's refactors must not change what any method computes.
Each method trains a tiny model for 2 epochs (3 batches each, augmentation, a scheduler, a
fixed seed) on one thread; its final state_dict is compared with the stored one
(``tests/data/training_identity.pt``).

History: for the split of issue 10 the weights were pinned bit for bit (SHA-256) on commit
6ff17f4, the trainer before the split, and the split left them bit-identical on that
machine. Bits depend on the CPU's kernels, though: on the next machine (AMD EPYC, AVX-512)
the same code gave other hashes. So the weights are stored and compared to a tolerance
(``ATOL`` = 1e-5) that sits between the two: another summation order (two threads instead
of one) moves them by about 1e-7, a 1% change of the learning rate by 6.6e-4 to 1.6e-3,
more than 50x ``ATOL`` (both checked below). The stored weights were
written on that machine (torch 2.14.1+cu130, one thread) by
``PYTHONPATH=.:tests python tests/test_training_identity.py --write``, on commit bcf8a07,
whose training code is the code whose hashes CI had passed (the only change since is the
per-epoch validation, which these runs do not use).
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch
from conftest import PrototypeLinear, TinyCNN, make_prototype_data

from dard_plugin.data import BatchAugment
from dard_plugin.training import TRAINERS

ATTACK = {"eps": 0.1, "alpha": 0.05, "steps": 2}
RUNS = {
    "sat": ("sat", {}),
    "ard": ("ard", {}),
    "rslad": ("rslad", {}),
    "dard-online": ("dard", {"teacher_targets": "online"}),
    "dard-cached": ("dard", {"teacher_targets": "cached"}),
}
STORED = Path(__file__).with_name("data") / "training_identity.pt"
ATOL = 1e-5  # another summation order (2 threads instead of 1) moves them by about 1e-7


def train(run: str, lr: float = 0.05, threads: int = 1) -> dict[str, torch.Tensor]:
    method, options = RUNS[run]
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        x, y, prototypes = make_prototype_data(n=48)
        torch.manual_seed(0)
        student = TinyCNN()
        optimizer = torch.optim.SGD(student.parameters(), lr=lr, momentum=0.9, weight_decay=5e-4)
        scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, [1], gamma=0.1)
        teacher = None if method == "sat" else PrototypeLinear(prototypes).eval()
        args = (student,) if teacher is None else (student, teacher)
        trainer = TRAINERS[method](
            *args, optimizer=optimizer, attack=ATTACK, seed=3, verbose=False, **options
        )
        trainer.fit(
            x,
            y,
            batch_size=16,
            nb_epochs=2,
            scheduler=scheduler,
            augment=BatchAugment(padding=1, flip=True, seed=3),
        )
        return {k: v.detach().clone() for k, v in student.state_dict().items()}
    finally:
        torch.set_num_threads(previous)


def largest_difference(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    assert sorted(a) == sorted(b)
    return max(
        float((a[k].double() - b[k].double()).abs().max()) if a[k].numel() else 0.0 for k in a
    )


@pytest.fixture(scope="module")
def stored() -> dict[str, dict[str, torch.Tensor]]:
    weights: dict[str, dict[str, torch.Tensor]] = torch.load(STORED, weights_only=True)
    return weights


@pytest.mark.parametrize("run", sorted(RUNS))
def test_trained_weights_equal_the_stored_ones(run: str, stored) -> None:
    trained = train(run)
    assert largest_difference(trained, stored[run]) <= ATOL
    for key, value in trained.items():
        assert value.dtype == stored[run][key].dtype and value.shape == stored[run][key].shape


@pytest.mark.parametrize("run", ["sat", "dard-cached"])
def test_the_tolerance_is_far_below_what_a_change_moves(run: str, stored) -> None:
    """The test can fail: a learning rate 1% off moves the weights by more than 50 ATOL;
    another summation order (two threads) stays within ATOL."""
    assert largest_difference(train(run, lr=0.0505), stored[run]) > 50 * ATOL
    assert largest_difference(train(run, threads=2), stored[run]) <= ATOL


if __name__ == "__main__":  # --write: store the weights (see the module docstring)
    if sys.argv[1:] != ["--write"]:
        raise SystemExit("usage: PYTHONPATH=.:tests python tests/test_training_identity.py --write")
    STORED.parent.mkdir(exist_ok=True)
    torch.save({name: train(name) for name in RUNS}, STORED)
