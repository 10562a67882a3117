"""The batch source: turns what a user trains on into :class:`Batch` es.

It adapts a loader from :func:`dard_plugin.data.make_loader` (whose images it knows, with
their indices, for cached teacher targets and the data fingerprint), a torch ``DataLoader``,
an ART ``DataGenerator`` or any iterable of ``(images, labels)`` pairs or dicts. It knows
whether the source can be replayed each epoch, and inspects the first batch without losing
it (a one-shot iterator keeps that batch for the first epoch).

Labels follow the package's one rule (``dard_plugin/_labels.py``), batch by batch: the
first batch's, and all labels of a loader whose data are known, are checked against the
number of classes as soon as the trainer knows it (:meth:`BatchSource.set_num_classes`,
before any training step); a later batch of a generator is checked when it comes.
"""

from __future__ import annotations

import contextlib
import itertools
import math
import random
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from dard_plugin._labels import ClassLabels, read_labels
from dard_plugin.data.loaders import (
    BatchAugment,
    EpochBatchSampler,
    TensorPairs,
    set_loader_epoch,
    unpack_batch,
)
from dard_plugin.training.fingerprints import tensor_digest

_END = object()  # the end of a source's items


@dataclass
class Batch:
    """A training batch; ``indices`` into the training set when the loop knows them."""

    images: torch.Tensor
    labels: torch.Tensor
    indices: torch.Tensor | None = None


def as_images(x: Any, name: str) -> torch.Tensor:
    """Float images from an array or a tensor (their range is checked by the trainer)."""
    if not isinstance(x, torch.Tensor):  # a view with negative strides (x[..., ::-1]) too
        x = np.ascontiguousarray(x)
    images = torch.as_tensor(x.detach() if isinstance(x, torch.Tensor) else x)
    if not images.is_floating_point():
        raise TypeError(f"{name} must hold floating point images, got dtype {images.dtype}")
    return images.float()


@contextlib.contextmanager
def seeded_python_random(seed: int) -> Iterator[None]:
    """Python's ``random`` seeded with ``seed`` (a Dataset's augmentation may draw from
    it), and the caller's state given back afterwards, as ``torch.random.fork_rng`` does
    for torch's."""
    outside = random.getstate()
    random.seed(seed)
    try:
        yield
    finally:
        random.setstate(outside)


def _iterates_as_get_batch(generator: Any, iterator: Any, length: int | None) -> bool:
    """Whether iterating the ART ``generator``'s ``iterator`` gives an epoch of what ART's
    trainers take from it, ``ceil(size / batch_size)`` calls of ``get_batch``: ART's own
    PyTorch and NumPy generators over a re-iterable source of that many batches (which the
    loop then seeds per epoch). A subclass's own ``get_batch`` (a label map, a transform),
    or a ``size`` that is not the source's, is honoured by calling ``get_batch`` instead."""
    from art.data_generators import NumpyDataGenerator, PyTorchDataGenerator

    if not isinstance(iterator, Iterable) or isinstance(iterator, Iterator):
        return False
    stock = (PyTorchDataGenerator.get_batch, NumpyDataGenerator.get_batch)
    if type(generator).get_batch not in stock:
        return False
    if isinstance(generator, NumpyDataGenerator):
        # it iterates its own arrays, an epoch of batches_per_epoch: floor(size /
        # batch_size) with drop_remainder, one short of what ART's trainers take whenever
        # the size is not a multiple; such an epoch is read through get_batch instead
        return length is None or int(generator.batches_per_epoch) == length
    try:
        return length is None or len(iterator) == length  # type: ignore[arg-type]
    except TypeError:  # a source of unknown length: its size says how many batches
        return length is None


class BatchSource:
    """Batches (on the CPU, as the source gives them) of one training source."""

    def __init__(
        self,
        source: Any,
        *,
        keys: Sequence[str] | None = None,
        labels: ClassLabels | None = None,
    ) -> None:
        """``labels``: the labels already read of a loader from ``make_loader`` (``fit``'s
        ``y``), checked with the classes as the loader's would be."""
        from art.data_generators import DataGenerator

        self.keys = keys
        self.num_classes: int | None = None
        self._unchecked: list[ClassLabels] = []  # read before the classes were known
        self._get_batch: Any = None  # an ART generator that only has get_batch()
        self._pending: Iterator[Batch] | None = None  # a one-shot source's first epoch
        self.length: int | None = None
        self.known: tuple[torch.Tensor, torch.Tensor] | None = None
        sampler, dataset = getattr(source, "sampler", None), getattr(source, "dataset", None)
        self._indexed = False
        if isinstance(sampler, EpochBatchSampler) and isinstance(dataset, TensorPairs):
            self._indexed = True
            images = dataset.images
            whole = labels or read_labels(
                "the training loader's labels", dataset.labels, num_examples=images.shape[0]
            )
            self._unchecked.append(whole)
            self.known = (images, whole.indices)
        self.source = source
        self.given = source
        self._numpy_state: Any = None  # the source's own NumPy RNG state (seed_numpy)
        if isinstance(source, DataGenerator):
            if source.size is not None:
                self.length = math.ceil(source.size / source.batch_size)
            iterator = getattr(source, "iterator", None)
            if _iterates_as_get_batch(source, iterator, self.length):
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

    def set_num_classes(self, num_classes: int) -> None:
        """Check every label read so far (the first batch's, a known loader's) against the
        model's number of classes; later batches are checked as they come."""
        for labels in self._unchecked:
            labels.check_classes(num_classes)
        self._unchecked.clear()
        self.num_classes = num_classes

    def first(self, numpy_seed: int | None = None) -> Batch:
        """The first batch, without losing it for training (drawn as epoch 0's first, with
        ``numpy_seed`` as in :meth:`epoch`)."""
        if self._first is not None:
            return self._first
        self.seed_numpy(numpy_seed)
        iterator = self._raw()
        try:
            batch = next(iterator)
        except StopIteration:
            raise ValueError("the training data yielded no batch") from None
        if self._get_batch is not None or not self.replayable:
            self._pending = itertools.chain([batch], iterator)
        self._first = batch
        return batch

    def epoch(self, epoch: int, numpy_seed: int | None = None) -> Iterator[Batch]:
        """One epoch's batches (seeded loaders are set to ``epoch`` first). A source that
        draws from NumPy's global RNG (ART's ``NumpyDataGenerator(shuffle=True)``) draws
        from its own state seeded by ``numpy_seed`` instead, so that the run's seed fixes
        its order and the caller's NumPy RNG is left as found."""
        set_loader_epoch(self.source, epoch)
        if self._pending is not None:
            pending, self._pending = self._pending, None
            if self._get_batch is not None:  # the first epoch's length still holds
                return itertools.islice(pending, self.length)
            return pending
        self.seed_numpy(numpy_seed)
        return self._raw()

    def seed_numpy(self, seed: int | None) -> None:
        if seed is not None:
            self._numpy_state = np.random.RandomState(seed % 2**32).get_state()

    def _numpy_isolated(self, items: Iterator[Any]) -> Iterator[Any]:
        """``items``, each drawn with NumPy's global RNG set to this source's own state
        (then given back): see :meth:`epoch`."""
        while True:
            if self._numpy_state is None:
                item = next(items, _END)
            else:
                outside = np.random.get_state()
                np.random.set_state(self._numpy_state)
                try:
                    item = next(items, _END)
                finally:
                    self._numpy_state = np.random.get_state()
                    np.random.set_state(outside)
            if item is _END:
                return
            yield item

    def batching(self) -> dict[str, Any] | None:
        """How the source batches its data, where it says (batch size, order, a short last
        batch): ``fit_generator``'s part of the run's fingerprint (``fit`` records its own
        ``batch_size``), so that a resume with another loader is refused. None for a plain
        iterable, which says nothing of it."""
        from art.data_generators import DataGenerator

        found: dict[str, Any] = {}
        if isinstance(self.given, DataGenerator):
            found["generator"] = type(self.given).__name__
            found["batch_size"] = int(self.given.batch_size)
            for key in ("shuffle", "drop_remainder"):
                if isinstance(getattr(self.given, key, None), bool):
                    found[key] = getattr(self.given, key)
        loader = self.source
        if isinstance(loader, torch.utils.data.DataLoader):
            # the sampler that makes the batches: make_loader's EpochBatchSampler (given as
            # the sampler of a loader with batch_size=None), a batch_sampler, or torch's
            # BatchSampler over the loader's sampler
            sampler = loader.sampler
            if loader.batch_size is None and loader.batch_sampler is not None:
                sampler = loader.batch_sampler
            described: dict[str, Any] = {
                "batch_size": loader.batch_size,
                "drop_last": loader.drop_last,
                "sampler": type(sampler).__name__,
            }
            for key in ("batch_size", "drop_last", "shuffle", "seed"):
                value = getattr(sampler, key, None)
                if isinstance(value, (bool, int)):
                    described[key] = value
            inner = getattr(sampler, "sampler", None)  # a BatchSampler's own sampler
            if inner is not None and sampler is not loader.sampler:
                described["inner_sampler"] = type(inner).__name__
            found["loader"] = described
        return found or None

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
            # the DataLoader's own path, with indices
            for number, indices in enumerate(self.source.sampler, start=1):
                images, labels = collate(dataset[indices])
                yield Batch(images, self._labels(labels, images, number), indices)
            return

        def items() -> Iterator[Any]:  # made lazily: an iterator's creation may draw too
            if self._get_batch is not None:
                for _ in range(self.length or 0):
                    yield self._get_batch()
            else:
                yield from self.source

        for number, item in enumerate(self._numpy_isolated(items()), start=1):
            yield self._to_batch(item, number)

    def _to_batch(self, item: Any, number: int) -> Batch:
        x, y = unpack_batch(item, self.keys)
        images = as_images(x, f"the images of training batch {number}")
        return Batch(images, self._labels(y, images, number))

    def _labels(self, labels: Any, images: torch.Tensor, number: int) -> torch.Tensor:
        name = f"the labels of training batch {number}"
        read = read_labels(name, labels, num_examples=images.shape[0])
        if self.num_classes is None:
            self._unchecked.append(read)
            return read.indices
        return read.check_classes(self.num_classes)
