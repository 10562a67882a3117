"""Datasets by name, as (images, labels) tensors in [0, 1], and fast DataLoaders.

``cifar10`` and ``cifar100`` come from torchvision (downloaded when online, from ``root``
otherwise); ``fashion-mnist`` is read from IDX files: from ``root`` alone when it is given
(downloaded there when online), else from the Debian package's
``/usr/share/datasets/fashion-mnist`` or ``./data``, else downloaded into ``./data`` when
online (and read from there afterwards).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch.utils.data import DataLoader

from dard_plugin._validation import MAX_SEED, check_bool, check_choice, check_int
from dard_plugin.data.cifar import load_cifar
from dard_plugin.data.fashion_mnist import DatasetNotFoundError, load_fashion_mnist, read_idx
from dard_plugin.data.loaders import (
    BatchAugment,
    EpochBatchSampler,
    make_loader,
    set_loader_epoch,
    unpack_batch,
)


@dataclass(frozen=True)
class DatasetInfo:
    num_classes: int
    input_shape: tuple[int, int, int]
    crop_padding: int
    flip: bool
    mean: tuple[float, ...]
    std: tuple[float, ...]
    train_size: int = 50_000  # images in the training split, for checks before loading
    test_size: int = 10_000


DATASETS: dict[str, DatasetInfo] = {
    "cifar10": DatasetInfo(
        10, (3, 32, 32), 4, True, (0.4914, 0.4822, 0.4465), (0.2471, 0.2435, 0.2616)
    ),
    "cifar100": DatasetInfo(
        100, (3, 32, 32), 4, True, (0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)
    ),
    "fashion-mnist": DatasetInfo(
        10, (1, 28, 28), 2, False, (0.2860,), (0.3530,), train_size=60_000
    ),
}


def dataset_info(name: str) -> DatasetInfo:
    return DATASETS[check_choice("dataset", name, list(DATASETS))]


def check_n_examples(name: str, n_examples: int, *, train: bool, argument: str) -> int:
    """``n_examples`` as ``argument`` (``"n_examples"``, ``"--n-eval"``...) checked against
    the size of ``name``'s split, before anything is loaded."""
    check_int(argument, n_examples, minimum=1)
    info = dataset_info(name)
    size = info.train_size if train else info.test_size
    if n_examples > size:
        split = "training" if train else "test"
        raise ValueError(
            f"{argument} must be at most {size} (the size of the {name} {split} split), "
            f"got {n_examples}"
        )
    return n_examples


def load_dataset(
    name: str,
    *,
    train: bool = True,
    root: str | Path | None = None,
    n_examples: int | None = None,
    download: bool = True,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(images, labels)``: float32 (N, C, H, W) in [0, 1] and int64 (N,).

    ``n_examples`` keeps the first N examples of the split (deterministic). Raises
    :class:`DatasetNotFoundError` when the files are nowhere and cannot be downloaded.
    """
    dataset_info(name)
    check_bool("train", train)  # "False" or "test" would read the training split
    check_bool("download", download)
    if n_examples is not None:
        check_int("n_examples", n_examples, minimum=1)
    if name == "fashion-mnist":
        images, labels = load_fashion_mnist(train=train, root=root, download=download)
    else:
        images, labels = load_cifar(name, train=train, root=root, download=download)
    if n_examples is not None:
        if n_examples > images.shape[0]:
            split = "train" if train else "test"
            raise ValueError(
                f"n_examples must be at most {images.shape[0]} (the size of the {name} "
                f"{split} split), got {n_examples}"
            )
        images, labels = images[:n_examples].clone(), labels[:n_examples].clone()
    return images, labels


def standard_augment(name: str, *, seed: int | None = None) -> BatchAugment:
    """The usual training augmentation: crop with padding (+ flip for CIFAR); ``seed=None``
    takes the seed of the loader or trainer that uses it (:class:`BatchAugment`)."""
    info = dataset_info(name)
    return BatchAugment(padding=info.crop_padding, flip=info.flip, seed=seed)


def get_loader(
    name: str,
    *,
    train: bool = True,
    root: str | Path | None = None,
    n_examples: int | None = None,
    batch_size: int = 128,
    shuffle: bool | None = None,
    augment: bool | None = None,
    seed: int = 0,
    download: bool = True,
) -> DataLoader:
    """A DataLoader for a named dataset. For the training split, shuffling and the
    standard augmentation are on unless turned off; for the test split, off.

    Shuffling and augmentation depend on ``(seed, epoch)`` only, as with torch's
    ``DistributedSampler``: the trainers set the epoch themselves, but a loop of your own
    must call ``dard_plugin.data.set_loader_epoch(loader, epoch)`` at each epoch's start,
    or every epoch replays the first one's order (unlike ``shuffle=True``), while the crops
    go on drawing from where the last pass left them (those of no ``(seed, epoch)``)."""
    check_int("seed", seed, minimum=0, maximum=MAX_SEED)  # before the data loads
    images, labels = load_dataset(
        name, train=train, root=root, n_examples=n_examples, download=download
    )
    shuffle = train if shuffle is None else shuffle
    augment = train if augment is None else augment
    return make_loader(
        images,
        labels,
        batch_size=batch_size,
        shuffle=shuffle,
        seed=seed,
        augment=standard_augment(name, seed=seed) if augment else None,
    )


__all__ = [
    "DATASETS",
    "BatchAugment",
    "DatasetInfo",
    "DatasetNotFoundError",
    "EpochBatchSampler",
    "dataset_info",
    "get_loader",
    "load_dataset",
    "make_loader",
    "read_idx",
    "set_loader_epoch",
    "standard_augment",
    "unpack_batch",
]
