"""Fast tensor DataLoaders: whole batches indexed and augmented at once, never per image
through PIL. Shuffling and augmentation are seeded per epoch (``set_epoch``, as
``DistributedSampler``), so a run resumed at an epoch boundary sees the same batches."""

from __future__ import annotations

import copy
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset, Sampler

from dard_plugin._validation import MAX_SEED, check_bool, check_int


def _epoch_generator(seed: int, epoch: int, stream: int, rank: int = 0) -> torch.Generator:
    # torch's CPU generator keeps a seed's low 32 bits: a rank moves those (rank 0: none)
    value = (seed * 1_000_003 + epoch) * 8 + stream + rank * 0x9E3779B1
    return torch.Generator().manual_seed(value)


class BatchAugment:
    """Random crop after zero padding, then an optional horizontal flip, for a (B, C, H, W)
    batch; ``(images, labels) -> (images, labels)`` so it serves as a ``collate_fn``.

    ``seed=None`` (default): the seed of the loader that uses it (:func:`make_loader`'s, so
    a trainer's ``fit`` seeds it with the trainer's ``seed``; 0 when used alone); a seed
    given is kept wherever it is used."""

    def __init__(self, *, padding: int = 4, flip: bool = True, seed: int | None = None) -> None:
        self.padding = check_int("padding", padding, minimum=0)
        self.flip = check_bool("flip", flip)
        if seed is not None:
            seed = check_int("seed", seed, minimum=0, maximum=MAX_SEED)
        self.seed = seed
        self.rank = 0  # a process of a multi-process run draws its own crops and flips
        self.set_epoch(0)

    def seeded(self, seed: int) -> BatchAugment:
        """This augmentation with ``seed`` where it has none of its own (else itself)."""
        if self.seed is not None:
            return self
        own = copy.copy(self)  # a subclass stays itself
        own.seed = check_int("seed", seed, minimum=0, maximum=MAX_SEED)
        own.set_epoch(0)
        return own

    def on_rank(self, rank: int) -> BatchAugment:
        """The same augmentation for process ``rank`` of a multi-process run: its own
        stream of crops and flips (every rank once drew the same sequence), rank 0's the
        single process's."""
        ranked = copy.copy(self)  # a subclass stays itself
        ranked.rank = check_int("rank", rank, minimum=0)
        ranked.set_epoch(0)
        return ranked

    def set_epoch(self, epoch: int) -> None:
        seed = 0 if self.seed is None else self.seed
        self._generator = _epoch_generator(seed, epoch, stream=1, rank=self.rank)

    def __call__(
        self, batch: tuple[torch.Tensor, torch.Tensor]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        images, labels = batch
        n, _, height, width = images.shape
        if self.padding:
            pad = self.padding
            padded = F.pad(images, (pad, pad, pad, pad))
            top = torch.randint(0, 2 * pad + 1, (n,), generator=self._generator)
            left = torch.randint(0, 2 * pad + 1, (n,), generator=self._generator)
            rows = (top[:, None] + torch.arange(height)[None, :])[:, None, :, None]
            cols = (left[:, None] + torch.arange(width)[None, :])[:, None, None, :]
            channels = torch.arange(images.shape[1])[None, :, None, None]
            images = padded[torch.arange(n)[:, None, None, None], channels, rows, cols]
        if self.flip:
            flip = torch.rand(n, generator=self._generator) < 0.5
            images = torch.where(flip[:, None, None, None], images.flip(-1), images)
        return images, labels

    def __repr__(self) -> str:
        seed = 0 if self.seed is None else self.seed  # the seed it draws with
        return f"BatchAugment(padding={self.padding}, flip={self.flip}, seed={seed})"


class EpochBatchSampler(Sampler[torch.Tensor]):
    """Yields index tensors of whole batches; the order depends only on (seed, epoch).

    With ``num_replicas > 1`` each rank takes a disjoint, equally long share of every
    epoch's permutation (padded by wrapping around, as ``DistributedSampler`` does).
    """

    def __init__(
        self,
        n: int,
        batch_size: int,
        *,
        shuffle: bool = True,
        seed: int = 0,
        drop_last: bool = False,
        num_replicas: int = 1,
        rank: int = 0,
    ) -> None:
        self.n = check_int("n", n, minimum=1)
        self.batch_size = check_int("batch_size", batch_size, minimum=1)
        self.shuffle = check_bool("shuffle", shuffle)
        self.seed = check_int("seed", seed, minimum=0, maximum=MAX_SEED)
        self.drop_last = check_bool("drop_last", drop_last)
        self.num_replicas = check_int("num_replicas", num_replicas, minimum=1)
        self.rank = check_int("rank", rank, minimum=0)
        if rank >= num_replicas:
            raise ValueError(f"rank must be in [0, {num_replicas - 1}], got {rank}")
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _indices(self) -> torch.Tensor:
        if self.shuffle:
            order = torch.randperm(self.n, generator=_epoch_generator(self.seed, self.epoch, 0))
        else:
            order = torch.arange(self.n)
        per_rank = -(-self.n // self.num_replicas)
        total = per_rank * self.num_replicas
        if total > self.n:
            order = torch.cat([order, order[: total - self.n]])
        return order[self.rank : total : self.num_replicas]

    def __iter__(self) -> Iterator[torch.Tensor]:
        indices = self._indices()
        for start in range(0, len(indices), self.batch_size):
            batch = indices[start : start + self.batch_size]
            if self.drop_last and len(batch) < self.batch_size:
                return
            yield batch

    def __len__(self) -> int:
        per_rank = -(-self.n // self.num_replicas)
        if self.drop_last:
            return per_rank // self.batch_size
        return -(-per_rank // self.batch_size)


class TensorPairs(Dataset[tuple[torch.Tensor, torch.Tensor]]):
    """Images and labels indexed by a whole tensor of indices at once."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor) -> None:
        if images.shape[0] != labels.shape[0]:
            raise ValueError(
                f"images and labels must have the same length, got {images.shape[0]} and "
                f"{labels.shape[0]}"
            )
        self.images, self.labels = images, labels

    def __getitem__(self, index: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.images[index], self.labels[index]

    def __len__(self) -> int:
        return int(self.images.shape[0])


def _identity(batch: tuple[torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    return batch


def make_loader(
    images: torch.Tensor,
    labels: torch.Tensor,
    *,
    batch_size: int = 128,
    shuffle: bool = True,
    augment: BatchAugment | None = None,
    seed: int = 0,
    drop_last: bool = False,
    num_replicas: int = 1,
    rank: int = 0,
) -> DataLoader:
    """A ``DataLoader`` over in-memory tensors yielding ``(images, labels)`` batches; with
    ``num_replicas > 1``, ``augment`` draws rank ``rank``'s own crops and flips. A
    :class:`BatchAugment` without a seed of its own takes ``seed``."""
    if isinstance(augment, BatchAugment):
        augment = augment.seeded(seed)
    if augment is not None and num_replicas > 1 and hasattr(augment, "on_rank"):
        augment = augment.on_rank(rank)  # a plain callable is used as it is
    sampler = EpochBatchSampler(
        images.shape[0],
        batch_size,
        shuffle=shuffle,
        seed=seed,
        drop_last=drop_last,
        num_replicas=num_replicas,
        rank=rank,
    )
    return DataLoader(
        TensorPairs(images, labels),
        sampler=sampler,
        batch_size=None,
        # batch_size=None: each "sample" is a whole batch, so collate_fn sees the batch
        collate_fn=augment if augment is not None else _identity,  # type: ignore[arg-type]
        # DataLoader draws a base seed for its workers at every epoch; its own generator
        # keeps that draw off the global RNG
        generator=torch.Generator().manual_seed(seed),
    )


def set_loader_epoch(loader: object, epoch: int) -> None:
    """Call ``set_epoch`` on whatever part of a loader has one (sampler, batch sampler,
    augmentation), as a training loop does at the start of every epoch."""
    parts = (
        getattr(loader, "sampler", None),
        getattr(loader, "batch_sampler", None),
        getattr(loader, "collate_fn", None),
    )
    for part in parts:
        set_epoch = getattr(part, "set_epoch", None)
        if callable(set_epoch):
            set_epoch(epoch)


IMAGE_KEYS = ("image", "images")
LABEL_KEYS = ("label", "labels")


def unpack_batch(batch: object, keys: Sequence[str] | None = None) -> tuple[Any, Any]:
    """``(images, labels)`` of one batch: a pair ``(images, labels)`` (tuple or list), or a
    dict holding them under ``keys = (image_key, label_key)``. Without ``keys`` a dict is
    read under ``"image"``/``"label"`` or ``"images"``/``"labels"`` (the Hugging Face
    datasets habit); other names need ``keys``."""
    if isinstance(batch, Mapping):
        if keys is not None:
            if len(keys) != 2 or not all(isinstance(k, str) for k in keys):
                raise ValueError(f"batch_keys must be (image_key, label_key), got {keys!r}")
            candidates = [(keys[0], keys[1])]
        else:
            candidates = list(zip(IMAGE_KEYS, LABEL_KEYS, strict=True))
        for image_key, label_key in candidates:
            if image_key in batch and label_key in batch:
                return batch[image_key], batch[label_key]
        accepted = " or ".join(f"{i!r}/{label!r}" for i, label in candidates)
        raise ValueError(
            f"a dict batch must hold its images and labels under the keys {accepted}; this "
            f"one has the keys {sorted(map(str, batch))}: name them, (image_key, label_key), "
            "as the trainer's batch_keys= or unpack_batch's keys="
        )
    if isinstance(batch, (tuple, list)) and len(batch) == 2:
        return batch[0], batch[1]
    raise TypeError(
        "a training batch must be a pair (images, labels) or a dict of images and labels, "
        f"got {type(batch).__name__}"
        + (f" of length {len(batch)}" if isinstance(batch, (tuple, list)) else "")
    )
