"""ART's ``PyTorchClassifier`` seen from torch: what :class:`~dard_plugin.art.DicePGD`
needs of its estimator, without numpy round trips.

:class:`ClassifierLogits` is the estimator as a torch callable to logits (its
prediction-time preprocessing chain, then its model); :func:`clip_values_numpy` and
:func:`clip_values_torch` are its ``clip_values`` as numpy arrays and as the bounds of the
package's loop.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from art.defences.preprocessor.preprocessor import PreprocessorPyTorch
from art.estimators.classification.pytorch import PyTorchClassifier
from art.preprocessing.standardisation_mean_std.pytorch import StandardisationMeanStdPyTorch
from art.preprocessing.standardisation_mean_std.utils import broadcastable_mean_std


class Standardise:
    """``(x - mean) / std`` broadcast by ART's own rule, with the tensors made once."""

    def __init__(self, mean: np.ndarray, std: np.ndarray, device: torch.device) -> None:
        self.mean, self.std, self.device = mean, std, device
        self._tensors: tuple[torch.Tensor, torch.Tensor] | None = None

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if self._tensors is None:
            mean, std = broadcastable_mean_std(x, self.mean, self.std)
            self._tensors = (
                torch.as_tensor(mean, device=self.device),
                torch.as_tensor(std, device=self.device),
            )
        mean_t, std_t = self._tensors
        return (x - mean_t) / std_t


def _forward_only_x(operation: PreprocessorPyTorch, x: torch.Tensor) -> torch.Tensor:
    result: torch.Tensor = operation.forward(x, None)[0]
    return result


def preprocessing_chain(
    estimator: PyTorchClassifier,
) -> list[Callable[[torch.Tensor], torch.Tensor]]:
    """The estimator's prediction-time preprocessing as torch callables. Mean/std
    standardisation becomes two cached tensors (or nothing when it is the identity)
    instead of ART's per-call numpy-to-tensor conversion."""
    chain: list[Callable[[torch.Tensor], torch.Tensor]] = []
    for operation in estimator.preprocessing_operations:
        if not operation.apply_predict:
            continue
        if isinstance(operation, StandardisationMeanStdPyTorch):
            mean = np.asarray(operation.mean, dtype=np.float32)
            std = np.asarray(operation.std, dtype=np.float32)
            if np.all(mean == 0) and np.all(std == 1):
                continue
            chain.append(Standardise(mean, std, estimator.device))
        else:
            chain.append(functools.partial(_forward_only_x, operation))
    return chain


class ClassifierLogits:
    """The estimator's preprocessing chain, then its model, all in torch. A single output
    of a binary classifier becomes the two logits ``[0, z]`` (softmax of those is
    ``[1 - sigmoid(z), sigmoid(z)]``). The chain is read from the estimator when this is
    made (once per ``generate``)."""

    def __init__(self, estimator: PyTorchClassifier) -> None:
        self.estimator = estimator
        self.chain = preprocessing_chain(estimator)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        for step in self.chain:
            x = step(x)
        output: torch.Tensor = self.estimator.model(x)
        if output.ndim == 2 and output.shape[1] == 1 and self.estimator.nb_classes == 2:
            output = torch.cat([torch.zeros_like(output), output], dim=1)
        return output


def clip_values_numpy(estimator: PyTorchClassifier) -> tuple[np.ndarray, np.ndarray] | None:
    """The estimator's ``clip_values`` as two numpy arrays, or None when unbounded."""
    clip_values = estimator.clip_values
    if clip_values is None:
        return None
    return np.asarray(clip_values[0]), np.asarray(clip_values[1])


def clip_values_torch(estimator: PyTorchClassifier, batch: torch.Tensor) -> tuple[Any, Any] | None:
    """The estimator's ``clip_values`` as the loop's bounds: two numbers when they are
    scalars, else float32 tensors on the batch's device that broadcast against it."""
    bounds = clip_values_numpy(estimator)
    if bounds is None:
        return None
    low, high = bounds
    if low.size == 1 and high.size == 1:
        return float(low), float(high)
    shape = (1,) * (batch.ndim - low.ndim)
    return (
        torch.as_tensor(low.reshape(shape + low.shape), dtype=torch.float32, device=batch.device),
        torch.as_tensor(high.reshape(shape + high.shape), dtype=torch.float32, device=batch.device),
    )
