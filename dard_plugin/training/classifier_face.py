"""ART's trainer face over a trained student: ``get_classifier`` and ``predict``."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from dard_plugin.attacks.pgd import eval_mode
from dard_plugin.training import models
from dard_plugin.training.batches import as_images


class ClassifierFace:
    """``get_classifier`` and ``predict`` as ART's trainers have them, for a trainer that
    holds ``_classifier`` (the ART classifier or module it was given) and its student."""

    _classifier: Any
    _classifier_wrapper: Any
    _input_shape: tuple[int, ...] | None
    _num_classes: int
    student: nn.Module
    optimizer: torch.optim.Optimizer
    bounds: tuple[float, float]
    device: torch.device

    def _check_images(self, name: str, images: torch.Tensor) -> None:
        raise NotImplementedError

    def get_classifier(self) -> Any:
        """The trained classifier: the ART classifier given, or one wrapping the module."""
        if not isinstance(self._classifier, nn.Module):
            return self._classifier
        if self._classifier_wrapper is None:
            if self._input_shape is None:
                raise RuntimeError("get_classifier needs fit() to have seen the data first")
            self._classifier_wrapper = self._wrapped(self._input_shape, self._num_classes)
        return self._classifier_wrapper

    def predict(self, x: np.ndarray | torch.Tensor, **kwargs: Any) -> np.ndarray:
        """The student's logits on ``x`` (N, C, H, W), as ART's trainers' ``predict``: the
        classifier's ``predict`` (``batch_size=`` passes through), the student's train/eval
        flags and torch's global RNG restored. Before ``fit``, a module is wrapped for this
        call at ``x``'s shape."""
        images = as_images(x, "x")
        self._check_images("x", images)
        classifier = self._classifier
        if isinstance(classifier, nn.Module):
            if self._input_shape is not None:
                classifier = self.get_classifier()
            else:
                classes = models.student_classes(self.student, images, self.bounds)
                classifier = self._wrapped(tuple(images.shape[1:]), classes)
        # ART's predict iterates a DataLoader, whose iterator draws a seed from torch's
        # global RNG: forked, so that predicting leaves the caller's random stream alone
        with eval_mode(self.student), torch.random.fork_rng(devices=[]):
            return np.asarray(classifier.predict(images.cpu().numpy(), **kwargs))

    def _wrapped(self, input_shape: tuple[int, ...], classes: int) -> Any:
        return models.art_classifier(
            self.student, self.optimizer, input_shape, classes, self.bounds, self.device
        )
