"""An ART ``PyTorchClassifier`` seen as the torch module its ``predict`` computes: its model
behind its mean/std standardisation (:class:`Standardised`), with the checks that refuse
what a torch module cannot follow (other preprocessing, postprocessing, per-feature
``clip_values``) and the warning for a loss the trainers do not use. Shared by the
trainers (student and teacher) and by :func:`~dard_plugin.evaluation.evaluate`."""

from __future__ import annotations

import warnings
from typing import Any

import torch
from torch import nn

from dard_plugin._validation import _caller_stacklevel
from dard_plugin.evaluation._checks import expected_input_shape


def module_device(model: nn.Module) -> torch.device:
    for tensor in (*model.parameters(), *model.buffers()):
        return tensor.device
    return torch.device("cpu")


class Standardised(nn.Module):
    """An ART classifier's mean/std standardisation, then its model, as one module: what
    the classifier's ``predict`` computes, so that training, its attacks and validation see
    the inputs that ``predict`` and ART's attacks see. The mean and std are buffers outside
    the state dict (a checkpoint holds the model's weights under ``model.``)."""

    mean: torch.Tensor
    std: torch.Tensor

    def __init__(self, model: nn.Module, mean: torch.Tensor, std: torch.Tensor) -> None:
        super().__init__()
        self.model = model
        self.register_buffer("mean", mean, persistent=False)
        self.register_buffer("std", std, persistent=False)
        self.training = model.training  # the wrapper is in the model's mode
        shape = expected_input_shape(model)
        if shape is not None:  # the wrapper takes what its model takes
            self.input_shape = shape

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        output: torch.Tensor = self.model((x - self.mean) / self.std)
        return output


def art_module(classifier: Any, argument: str) -> nn.Module:
    """The module an ART ``PyTorchClassifier`` predicts with: its model, behind its mean/std
    standardisation when it has one (``preprocessing=(mean, std)``). Other preprocessing
    (a preprocessing defence, a non-torch step) and postprocessing defences are refused,
    naming ``argument`` (``"model"``: evaluate's): the trainers and ``evaluate``
    differentiate through the model in torch and would silently skip them."""
    import numpy as np
    from art.preprocessing.standardisation_mean_std.pytorch import StandardisationMeanStdPyTorch
    from art.preprocessing.standardisation_mean_std.utils import broadcastable_mean_std

    model: nn.Module = classifier.model
    done, runs = (
        ("evaluated", "evaluate runs") if argument == "model" else ("trained", "the trainers run")
    )
    if classifier.postprocessing_defences:
        names = [type(defence).__name__ for defence in classifier.postprocessing_defences]
        raise ValueError(
            f"{argument}: an ART classifier with postprocessing defences {names} cannot be "
            f"{done} here ({runs} the model's logits in torch, which would skip them); pass "
            "a classifier without them, or the nn.Module"
        )
    standardisations = []
    for operation in classifier.preprocessing_operations:
        if not isinstance(operation, StandardisationMeanStdPyTorch):
            raise ValueError(
                f"{argument}: an ART classifier with preprocessing {type(operation).__name__} "
                f"cannot be {done} here ({runs} the model in torch and support only "
                "mean/std standardisation, preprocessing=(mean, std)); fold the step into the "
                "model, or pass the nn.Module"
            )
        mean = np.asarray(operation.mean, dtype=np.float32)
        std = np.asarray(operation.std, dtype=np.float32)
        if np.all(mean == 0) and np.all(std == 1):
            continue  # ART's default: the identity
        if not (operation.apply_fit and operation.apply_predict):
            raise ValueError(
                f"{argument}: a standardisation applied only at "
                f"{'fit' if operation.apply_fit else 'predict'} time cannot be {done} here"
            )
        standardisations.append((mean, std))
    if not standardisations:
        return model
    if len(standardisations) > 1:
        raise ValueError(f"{argument}: more than one standardisation step is not supported")
    mean, std = standardisations[0]
    probe = np.zeros((1, *classifier.input_shape), dtype=np.float32)
    mean, std = broadcastable_mean_std(probe, mean, std)
    device = module_device(model)
    return Standardised(
        model,
        torch.as_tensor(np.asarray(mean, dtype=np.float32), device=device),
        torch.as_tensor(np.asarray(std, dtype=np.float32), device=device),
    )


def warn_if_own_loss(classifier: Any) -> None:
    """Each method trains on its own loss (SAT: cross-entropy; the distillation methods:
    their KL and cross-entropy terms), not an ART classifier's ``loss``, which ART's own
    trainers use through ``classifier.fit``: a warning where that loss is anything but
    plain cross-entropy, which would otherwise be dropped without a word."""
    loss = classifier.loss
    plain = (
        type(loss) is nn.CrossEntropyLoss  # a subclass may compute something else
        and loss.weight is None
        and loss.label_smoothing == 0.0
        and loss.ignore_index == -100
        and loss.reduction == "mean"
    )
    if not plain:
        shown = repr(loss)
        if isinstance(loss, nn.CrossEntropyLoss):  # its repr does not show its settings
            weight = "given" if loss.weight is not None else None
            shown = (
                f"{type(loss).__name__}(weight={weight}, label_smoothing="
                f"{loss.label_smoothing}, ignore_index={loss.ignore_index}, "
                f"reduction={loss.reduction!r})"
            )
        warnings.warn(
            f"the classifier's loss {shown} is not used: each method trains on its own loss "
            "(SAT: cross-entropy; the distillation methods: their KL and cross-entropy "
            "terms); build the method's loss into a trainer subclass's compute_loss to change it",
            UserWarning,
            stacklevel=_caller_stacklevel(),
        )


def scalar_clip_values(classifier: Any, argument: str) -> tuple[float, float] | None:
    """An ART classifier's ``clip_values`` as one ``(low, high)`` pair (None when it has
    none); per-feature arrays are refused unless uniform: the trainers' and evaluate's
    attacks and checks take one range."""
    import numpy as np

    if classifier.clip_values is None:
        return None
    low, high = (np.asarray(bound, dtype=np.float64) for bound in classifier.clip_values)
    if low.size == 0 or high.size == 0 or np.ptp(low) != 0 or np.ptp(high) != 0:
        raise ValueError(
            f"{argument}: {'evaluate takes' if argument == 'model' else 'the trainers take'} one "
            "input range, clip_values=(low, high) as two "
            f"numbers; this ART classifier's clip_values are per-feature arrays of shapes "
            f"{low.shape} and {high.shape} with different values"
        )
    return float(low.flat[0]), float(high.flat[0])
