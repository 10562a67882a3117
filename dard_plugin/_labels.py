"""The one label rule of the package, shared by the trainers' ``fit`` and ``fit_generator``
(per batch), their per-epoch validation and :func:`~dard_plugin.evaluation.evaluate`.

For N examples and a model with K outputs, labels are accepted in three forms, all read as
the class indices they mean:

- class indices of shape (N,): an integer dtype, or floats holding whole numbers (as label
  files read by numpy often do), each in [0, K - 1];
- class indices of shape (N, 1): the same, one per row (a column of indices, which ART
  accepts too);
- one-hot rows of shape (N, K): every value exactly 0 or 1 and exactly one 1 per row, with
  one column per class of the model (K, not fewer, not more).

Anything else is refused with a ``ValueError`` (or ``TypeError`` for the kind of object or
dtype) that names the argument, shows the shape or the values found and says what is
accepted: probability rows or other soft labels (no silent ``argmax``), one-hot rows of
another width, indices out of range, fractional or non-finite values, boolean labels, more
dimensions, another number of labels than examples.

The check comes in two parts, because the number of classes is often known only once the
model has run: :func:`read_labels` checks everything but the classes and gives the indices;
:meth:`ClassLabels.check_classes` then checks them against the model's K.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

ACCEPTED = (
    "class indices of shape (N,) or (N, 1), or one-hot rows of shape (N, num_classes) "
    "(values 0 and 1, one 1 per row)"
)


def _shown(values: torch.Tensor, count: int = 6) -> str:
    shown = ", ".join(f"{float(v):.4g}" for v in values.flatten()[:count])
    return f"[{shown}{', ...' if values.numel() > count else ''}]"


@dataclass(frozen=True)
class ClassLabels:
    """Labels read by the rule: the class indices and, for one-hot rows, their width."""

    name: str
    indices: torch.Tensor  # int64, shape (N,)
    one_hot_width: int | None = None

    def check_classes(self, num_classes: int) -> torch.Tensor:
        """The indices, once checked against a model with ``num_classes`` outputs."""
        name = self.name
        if self.one_hot_width is not None and self.one_hot_width != num_classes:
            raise ValueError(
                f"{name} has one-hot rows of width {self.one_hot_width}, but the model has "
                f"{num_classes} outputs: one-hot labels need one column per class, shape "
                f"(N, {num_classes}); or pass class indices of shape (N,)"
            )
        indices = self.indices
        if indices.numel() and (int(indices.min()) < 0 or int(indices.max()) >= num_classes):
            raise ValueError(
                f"{name} must be class indices in [0, {num_classes - 1}] for a model with "
                f"{num_classes} outputs, got values in [{int(indices.min())}, "
                f"{int(indices.max())}]"
            )
        return indices


def read_labels(name: str, labels: object, *, num_examples: int) -> ClassLabels:
    """``labels`` for ``num_examples`` examples, read by the rule (module docstring); the
    classes are checked later, by :meth:`ClassLabels.check_classes`."""
    if isinstance(labels, np.ndarray):
        if labels.dtype.kind not in "biufc":
            raise TypeError(f"{name} must hold numbers ({ACCEPTED}), got dtype {labels.dtype}")
        labels = torch.from_numpy(np.ascontiguousarray(labels))
    if not isinstance(labels, torch.Tensor):
        raise TypeError(
            f"{name} must be a torch.Tensor or a numpy array ({ACCEPTED}), got "
            f"{type(labels).__name__}"
        )
    if labels.dtype == torch.bool or labels.dtype.is_complex:
        raise TypeError(
            f"{name} must hold integer class indices or 0/1 one-hot rows, got dtype {labels.dtype}"
        )
    shape = tuple(labels.shape)
    n = num_examples
    if labels.ndim not in (1, 2) or shape[0] != n:
        raise ValueError(
            f"{name} must have shape ({n},) or ({n}, 1) (class indices) or ({n}, num_classes) "
            f"(one-hot rows): one label per example, {n} examples; got shape {shape}"
        )
    labels = labels.detach().cpu()
    if labels.ndim == 2 and shape[1] > 1:
        return ClassLabels(name, _one_hot_indices(name, labels), one_hot_width=shape[1])
    labels = labels.reshape(n)
    if labels.dtype.is_floating_point:
        fractional = ~torch.isfinite(labels) | (labels != labels.round())
        if bool(fractional.any()):
            raise ValueError(
                f"{name} must hold whole-number class indices ({ACCEPTED}), got values such "
                f"as {_shown(labels[fractional])}"
            )
    return ClassLabels(name, labels.long())


def _one_hot_indices(name: str, rows: torch.Tensor) -> torch.Tensor:
    valued = (rows == 0) | (rows == 1)
    ones = (rows == 1).sum(dim=1)
    bad = ~valued.all(dim=1) | (ones != 1)
    if bool(bad.any()):
        row = int(bad.nonzero()[0])
        soft = not bool(valued.all())
        hint = (
            f"probabilities or other soft labels are not labels: pass hard labels, e.g. "
            f"{name}.argmax(1), if that is what you mean"
            if soft
            else "exactly one 1 per row is needed"
        )
        raise ValueError(
            f"{name} of shape {tuple(rows.shape)} must be one-hot rows (every value 0 or 1, "
            f"one 1 per row) or class indices of shape (N,) or (N, 1); row {row} is "
            f"{_shown(rows[row].float())}: {hint}"
        )
    return (rows == 1).to(torch.uint8).argmax(dim=1).long()  # any dtype (argmax has no uint64)


def class_indices(
    name: str, labels: object, *, num_examples: int, num_classes: int
) -> torch.Tensor:
    """``labels`` as int64 class indices of shape (N,), checked in full by the rule."""
    return read_labels(name, labels, num_examples=num_examples).check_classes(num_classes)
