"""The batch source: turns what a user trains on into :class:`Batch` es.

It adapts a loader from :func:`dard_plugin.data.make_loader` (whose images it knows, with
their indices, for cached teacher targets and the data fingerprint), a torch ``DataLoader``,
an ART ``DataGenerator`` or any iterable of ``(images, labels)`` pairs or dicts. It knows
whether the source can be replayed each epoch, and inspects the first batch without losing
it (a one-shot iterator keeps that batch for the first epoch).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from dard_plugin.data.loaders import (
    BatchAugment,
    EpochBatchSampler,
    TensorPairs,
    set_loader_epoch,
    unpack_batch,
)
from dard_plugin.training.fingerprints import tensor_digest


@dataclass
class Batch:
    """A training batch; ``indices`` into the training set when the loop knows them."""

    images: torch.Tensor
    labels: torch.Tensor
    indices: torch.Tensor | None = None


def as_tensors(x: Any, y: Any, x_name: str, y_name: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Float images and int64 class indices (one-hot rows become indices)."""
    images = torch.as_tensor(np.asarray(x) if not isinstance(x, torch.Tensor) else x)
    labels = torch.as_tensor(np.asarray(y) if not isinstance(y, torch.Tensor) else y)
    if not images.is_floating_point():
        raise TypeError(f"{x_name} must hold floating point images")
    images = images.float()
    if labels.ndim == 2:  # one-hot, as ART passes them
        labels = labels.argmax(dim=1)
    if labels.dtype.is_floating_point and not bool(torch.all(labels == labels.round())):
        raise ValueError(f"{y_name} must hold integer class indices or one-hot rows")
    labels = labels.long()
    if labels.shape != images.shape[:1]:
        raise ValueError(
            f"{y_name} must have one label per image: {images.shape[0]} images, "
            f"labels of shape {tuple(labels.shape)}"
        )
    return images, labels


class BatchSource:
    """Batches (on the CPU, as the source gives them) of one training source."""

    def __init__(self, source: Any, *, keys: Sequence[str] | None = None) -> None:
        from art.data_generators import DataGenerator

        self.keys = keys
        self._get_batch: Any = None  # an ART generator that only has get_batch()
        self._pending: Iterator[Batch] | None = None  # a one-shot source's first epoch
        self.length: int | None = None
        self.known: tuple[torch.Tensor, torch.Tensor] | None = None
        sampler, dataset = getattr(source, "sampler", None), getattr(source, "dataset", None)
        self._indexed = False
        if isinstance(sampler, EpochBatchSampler) and isinstance(dataset, TensorPairs):
            self._indexed = True
            self.known = (dataset.images, dataset.labels)
        self.source = source
        if isinstance(source, DataGenerator):
            if source.size is not None:
                self.length = math.ceil(source.size / source.batch_size)
            iterator = getattr(source, "iterator", None)
            if isinstance(iterator, Iterable) and not isinstance(iterator, Iterator):
                self.source = iterator
            else:
                if self.length is None:
                    raise ValueError(
                        "an ART DataGenerator without a replayable iterator needs its size "
                        "(DataGenerator(size=..., batch_size=...)), to know an epoch's length"
                    )
                self._get_batch = source.get_batch
        elif not isinstance(source, Iterable):
            raise TypeError(
                "the training data must be a DataLoader, an ART DataGenerator or an iterable "
                f"of (images, labels) batches, got {type(source).__name__}"
            )
        if self.length is None:
            try:
                self.length = len(source)
            except TypeError:
                self.length = None
        self.replayable = not isinstance(self.source, Iterator)
        self._first: Batch | None = None

    def check_epochs(self, nb_epochs: int) -> None:
        if nb_epochs > 1 and not self.replayable:
            raise ValueError(
                f"the training data is a one-shot iterator (e.g. a generator), which can be "
                f"read only once, so nb_epochs must be 1 (got nb_epochs={nb_epochs}); pass a "
                "DataLoader, a list of batches or another re-iterable source to train longer"
            )

    def first(self) -> Batch:
        """The first batch, without losing it for training."""
        if self._first is not None:
            return self._first
        iterator = self._raw()
        try:
            batch = next(iterator)
        except StopIteration:
            raise ValueError("the training data yielded no batch") from None
        if self._get_batch is not None or not self.replayable:
            self._pending = itertools.chain([batch], iterator)
        self._first = batch
        return batch

    def epoch(self, epoch: int) -> Iterator[Batch]:
        """One epoch's batches (seeded loaders are set to ``epoch`` first)."""
        set_loader_epoch(self.source, epoch)
        if self._pending is not None:
            pending, self._pending = self._pending, None
            if self._get_batch is not None:  # the first epoch's length still holds
                return itertools.islice(pending, self.length)
            return pending
        return self._raw()

    def fingerprint(self) -> dict[str, Any]:
        """What identifies the training data: every image and label when known (a loader
        from ``make_loader`` or over a ``TensorDataset``), else the kind of source and its
        number of batches."""
        augment = getattr(self.source, "collate_fn", None)
        found: dict[str, Any] = {
            "augment": repr(augment) if isinstance(augment, BatchAugment) else None
        }
        dataset = getattr(self.source, "dataset", None)
        if self.known is not None:
            images, labels = self.known
            found.update(n=int(images.shape[0]), sha256=tensor_digest(images, labels))
        elif isinstance(dataset, torch.utils.data.TensorDataset):
            found.update(n=len(dataset), sha256=tensor_digest(*dataset.tensors))
        else:
            found.update(source=type(self.source).__name__, batches=self.length)
        return found

    def _raw(self) -> Iterator[Batch]:
        if self._indexed:
            collate, dataset = self.source.collate_fn, self.source.dataset
            for indices in self.source.sampler:  # the DataLoader's own path, with indices
                images, labels = collate(dataset[indices])
                yield Batch(images, labels, indices)
            return
        if self._get_batch is not None:
            for _ in range(self.length or 0):
                yield self._to_batch(self._get_batch())
            return
        for item in self.source:
            yield self._to_batch(item)

    def _to_batch(self, item: Any) -> Batch:
        images, labels = as_tensors(*unpack_batch(item, self.keys), "images", "labels")
        return Batch(images, labels)
