"""``distill(val_split=...)``: validation images come from the end of the training split,
never from the test split, and never overlap the training images."""

from __future__ import annotations

import pytest
import torch

from dard_plugin.data import load_dataset
from dard_plugin.recipes import _holdout_split


def test_holdout_split_is_disjoint_and_from_the_training_tail() -> None:
    x, y, x_val, y_val = _holdout_split("fashion-mnist", 1000, 300, 5000, None)
    train_images, train_labels = load_dataset("fashion-mnist")
    assert torch.equal(x, train_images[:1000]) and torch.equal(y, train_labels[:1000])
    assert torch.equal(x_val, train_images[55_000:55_300])
    assert torch.equal(y_val, train_labels[55_000:55_300])
    test_images, _ = load_dataset("fashion-mnist", train=False, n_examples=300)
    assert not torch.equal(x_val, test_images)


@pytest.mark.parametrize(
    ("n_train", "n_val", "val_split", "message"),
    [
        (None, 100, 0, "val_split"),
        (56_000, 100, 5000, "n_train must be at most 55000"),
        (100, 6000, 5000, "n_val must be at most val_split"),
        (100, 100, 60_000, "val_split must leave training images"),
    ],
)
def test_holdout_split_bad_sizes(
    n_train: int | None, n_val: int, val_split: int, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        _holdout_split("fashion-mnist", n_train, n_val, val_split, None)
