"""DPGD as an ART evasion attack: a thin face over :func:`dard_plugin.attacks.dpgd.dpgd`.

Numpy in, numpy out, as every ART attack; inside, each batch stays in torch for all its
steps (no per-step numpy round trip) and only input gradients are computed, so the
estimator's parameters and their ``.grad`` are never touched.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from art.attacks.attack import EvasionAttack
from art.defences.preprocessor.preprocessor import PreprocessorPyTorch
from art.estimators.classification.pytorch import PyTorchClassifier
from art.preprocessing.standardisation_mean_std.pytorch import StandardisationMeanStdPyTorch
from art.preprocessing.standardisation_mean_std.utils import broadcastable_mean_std
from tqdm.auto import tqdm

from dard_plugin._validation import check_bool, check_choice, check_int, check_real
from dard_plugin.attacks.dpgd import DPGD_REDUCTIONS, dpgd

logger = logging.getLogger(__name__)


class _Standardise:
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


class DicePGD(EvasionAttack):
    """Dice Projected Gradient Descent (L-inf) for ART's ``PyTorchClassifier``.

    :param estimator: a ``PyTorchClassifier`` returning logits; its ``preprocessing``
        (e.g. mean/std standardisation) and ``clip_values`` are honoured.
    :param eps: maximum perturbation (L-inf).
    :param eps_step: step size per iteration.
    :param max_iter: number of iterations.
    :param targeted: descend the Dice loss towards the labels ``y`` given to ``generate``.
    :param num_random_init: number of random restarts (0: start at ``x``, no restart). With
        several, a sample keeps the first restart that fools the model, as ART's PGD does.
    :param batch_size: number of samples attacked together.
    :param reduction: ``"batch"`` (the paper's Dice over the batch) or ``"sample"``.
    :param verbose: show a progress bar over batches.
    :param generator: random source of the random starts (the global one if None).
    """

    attack_params = [  # noqa: RUF012  (ART's own convention: a class-level list)
        *EvasionAttack.attack_params,
        "eps",
        "eps_step",
        "max_iter",
        "targeted",
        "num_random_init",
        "batch_size",
        "reduction",
        "verbose",
    ]
    _estimator_requirements = (PyTorchClassifier,)

    def __init__(
        self,
        estimator: PyTorchClassifier,
        eps: float = 8 / 255,
        eps_step: float = 2 / 255,
        max_iter: int = 10,
        targeted: bool = False,
        num_random_init: int = 0,
        batch_size: int = 128,
        reduction: str = "batch",
        verbose: bool = True,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__(estimator=estimator)
        self.eps = eps
        self.eps_step = eps_step
        self.max_iter = max_iter
        self._targeted = targeted
        self.num_random_init = num_random_init
        self.batch_size = batch_size
        self.reduction = reduction
        self.verbose = verbose
        self.generator = generator
        self._check_params()

    def _check_params(self) -> None:
        super()._check_params()
        check_real("eps", self.eps, low=0.0)
        check_real("eps_step", self.eps_step, low=0.0, low_inclusive=False)
        check_int("max_iter", self.max_iter, minimum=1)
        check_bool("targeted", self.targeted)
        check_int("num_random_init", self.num_random_init, minimum=0)
        check_int("batch_size", self.batch_size, minimum=1)
        check_choice("reduction", self.reduction, DPGD_REDUCTIONS)
        check_bool("verbose", self.verbose)
        if self.generator is not None and not isinstance(self.generator, torch.Generator):
            raise TypeError(f"generator must be a torch.Generator or None, got {self.generator!r}")
        for operation in self.estimator.preprocessing_operations:
            if not isinstance(operation, PreprocessorPyTorch):
                raise ValueError(
                    "estimator preprocessing must be PyTorch-native (PreprocessorPyTorch) so "
                    f"the attack can stay in torch, got {type(operation).__name__}"
                )
        self._bounds()  # fails early on per-feature clip values

    def _bounds(self) -> tuple[float, float] | None:
        clip_values = self.estimator.clip_values
        if clip_values is None:
            return None
        low, high = np.asarray(clip_values[0]), np.asarray(clip_values[1])
        if low.size != 1 or high.size != 1:
            raise ValueError(
                "estimator clip_values must be scalars (low, high) for DicePGD, "
                f"got arrays of shapes {low.shape} and {high.shape}"
            )
        return float(low), float(high)

    def _preprocessing_chain(self) -> list[Callable[[torch.Tensor], torch.Tensor]]:
        """The estimator's prediction-time preprocessing as torch callables. Mean/std
        standardisation becomes two cached tensors (or nothing when it is the identity)
        instead of ART's per-call numpy-to-tensor conversion."""
        chain: list[Callable[[torch.Tensor], torch.Tensor]] = []
        for operation in self.estimator.preprocessing_operations:
            if not operation.apply_predict:
                continue
            if isinstance(operation, StandardisationMeanStdPyTorch):
                mean = np.asarray(operation.mean, dtype=np.float32)
                std = np.asarray(operation.std, dtype=np.float32)
                if np.all(mean == 0) and np.all(std == 1):
                    continue
                chain.append(_Standardise(mean, std, self.estimator.device))
            else:
                chain.append(functools.partial(_forward_only_x, operation))
        return chain

    def _logits(self, x: torch.Tensor) -> torch.Tensor:
        """The estimator's preprocessing chain, then its model, all in torch."""
        for step in self._chain:
            x = step(x)
        output: torch.Tensor = self.estimator.model(x)
        return output

    def generate(self, x: np.ndarray, y: np.ndarray | None = None, **kwargs: Any) -> np.ndarray:
        """Adversarial examples for ``x``.

        :param x: inputs, inside the estimator's ``clip_values``.
        :param y: labels, as indices (N,) or one-hot (N, K); the targets when ``targeted``.
            If None (untargeted only), the estimator's own predictions are used, as in ART.
        :return: adversarial examples, same shape and dtype as ``x``.
        """
        if kwargs:
            raise ValueError(f"DicePGD.generate takes no extra arguments, got {sorted(kwargs)}")
        if not isinstance(x, np.ndarray):
            raise TypeError(f"x must be a numpy array, got {type(x).__name__}")
        if x.shape[0] == 0:
            raise ValueError("x must hold at least one example, got 0")
        if self.targeted and y is None:
            raise ValueError("y (the target labels) must be given for a targeted attack")
        labels = None if y is None else self._label_indices(y, x.shape[0])

        device = self.estimator.device
        self._chain = self._preprocessing_chain()
        model = self.estimator.model
        was_training = model.training
        model.eval()  # ART attacks run the estimator in inference mode
        try:
            x_all = torch.from_numpy(np.ascontiguousarray(x)).to(torch.float32)
            adversarial = torch.empty_like(x_all)
            starts = range(0, x.shape[0], self.batch_size)
            for start in tqdm(starts, desc="DicePGD", disable=not self.verbose):
                batch = x_all[start : start + self.batch_size].to(device)
                if labels is None:
                    with torch.no_grad():
                        batch_labels = self._logits(batch).argmax(dim=1)
                else:
                    batch_labels = labels[start : start + self.batch_size].to(device)
                adversarial[start : start + self.batch_size] = self._attack_batch(
                    batch, batch_labels
                ).cpu()
        finally:
            model.train(was_training)
        return adversarial.numpy().astype(x.dtype, copy=False)

    def _attack_batch(self, batch: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        best: torch.Tensor | None = None
        for _ in range(max(1, self.num_random_init)):
            candidate = dpgd(
                self._logits,
                batch,
                labels,
                eps=self.eps,
                alpha=self.eps_step,
                steps=self.max_iter,
                random_start=self.num_random_init > 0,
                reduction=self.reduction,
                targeted=self.targeted,
                generator=self.generator,
                bounds=self._bounds(),
            )
            if best is None:
                best = candidate
                continue
            with torch.no_grad():
                best_success = self._success(best, labels)
                candidate_success = self._success(candidate, labels)
            replace = ~best_success & candidate_success
            best[replace] = candidate[replace]
        assert best is not None
        return best

    def _success(self, x_adv: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        predictions = self._logits(x_adv).argmax(dim=1)
        return predictions == labels if self.targeted else predictions != labels

    def _label_indices(self, y: np.ndarray, n: int) -> torch.Tensor:
        y = np.asarray(y)
        if y.ndim == 2:
            y = y.argmax(axis=1)
        if y.ndim != 1 or y.shape[0] != n:
            raise ValueError(
                f"y must have shape ({n},) (indices) or ({n}, nb_classes) (one-hot), "
                f"got {np.asarray(y).shape}"
            )
        if not np.issubdtype(y.dtype, np.integer) and not np.all(np.equal(np.mod(y, 1), 0)):
            raise ValueError("y must hold integer class indices or one-hot rows")
        return torch.from_numpy(y.astype(np.int64))
