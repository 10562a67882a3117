"""The student and the teacher: taken from what the user passes, checked against the first
batch before any training step (the student first: its number of classes checks the labels
before the teacher runs), and put in channels-last format where both can run it."""

from __future__ import annotations

import logging
import warnings
from typing import Any

import torch
from torch import nn

from dard_plugin._validation import check_images

logger = logging.getLogger(__name__)


def module_device(model: nn.Module) -> torch.device:
    for tensor in (*model.parameters(), *model.buffers()):
        return tensor.device
    return torch.device("cpu")


def unpack_student(
    classifier: Any, optimizer: Any
) -> tuple[nn.Module, torch.optim.Optimizer, tuple[float, float] | None]:
    """``(model, optimizer, ART clip_values or None)``."""
    clip_values = None
    if isinstance(classifier, nn.Module):
        if optimizer is None:
            raise ValueError("optimizer must be given when classifier is a plain nn.Module")
        model = classifier
    else:
        from art.estimators.classification.pytorch import PyTorchClassifier

        if not isinstance(classifier, PyTorchClassifier):
            raise TypeError(
                "classifier must be an ART PyTorchClassifier or an nn.Module, got "
                f"{type(classifier).__name__}"
            )
        model = classifier.model
        optimizer = optimizer if optimizer is not None else classifier.optimizer
        if optimizer is None:
            raise ValueError("the ART classifier has no optimizer: pass optimizer=")
        if classifier.clip_values is not None:
            low, high = classifier.clip_values
            clip_values = (float(low), float(high))
    if not isinstance(optimizer, torch.optim.Optimizer):
        raise TypeError(f"optimizer must be a torch.optim.Optimizer, got {type(optimizer)}")
    return model, optimizer, clip_values


def unpack_teacher(teacher: Any, student_source: Any, owner: str) -> nn.Module:
    """The teacher's module, in eval mode (with a warning if it was training)."""
    if teacher is None:
        raise ValueError(f"{owner} needs a teacher")
    model = teacher if isinstance(teacher, nn.Module) else getattr(teacher, "model", None)
    if not isinstance(model, nn.Module):
        raise TypeError(
            f"teacher must be an nn.Module or an ART PyTorchClassifier, got "
            f"{type(teacher).__name__}"
        )
    if model is student_source or model is getattr(student_source, "model", None):
        raise ValueError("teacher and student must be different models")
    if model.training:
        warnings.warn(
            "the teacher was in train mode; it is put in eval mode (a teacher is frozen)",
            UserWarning,
            stacklevel=4,
        )
    return model.eval()


def student_classes(student: nn.Module, images: torch.Tensor, bounds: tuple[float, float]) -> int:
    """The student's number of classes, from its logits on two images of the first batch
    (eval mode, no gradient, its mode restored): the labels are checked against it before
    the teacher runs or any training step."""
    check_images("images", images, bounds)
    shape = tuple(images.shape[1:])
    sample = images[:2].to(module_device(student))
    was_training = student.training
    student.eval()
    try:
        with torch.no_grad():
            student_out = student(sample)
    except RuntimeError as error:
        raise ValueError(f"the student cannot take inputs of shape {shape}: {error}") from None
    finally:
        student.train(was_training)
    if student_out.ndim != 2:
        raise ValueError(
            f"the student must return (batch, classes) logits, got {tuple(student_out.shape)}"
        )
    return int(student_out.shape[1])


def check_teacher(
    teacher: nn.Module, images: torch.Tensor, num_classes: int, name: str = "teacher"
) -> None:
    """The teacher (``name``: which one) takes the training inputs and has the student's
    number of classes."""
    shape = tuple(images.shape[1:])
    sample = images[:2].to(next(iter(teacher.parameters()), images).device)
    with torch.no_grad():
        try:
            teacher_out = teacher(sample)
        except RuntimeError as error:
            raise ValueError(
                f"the {name} cannot take the training inputs of shape {shape}: {error}"
            ) from None
    if teacher_out.ndim != 2 or teacher_out.shape[1] != num_classes:
        raise ValueError(
            f"{name} and student disagree on the number of classes: {name} "
            f"{teacher_out.shape[1] if teacher_out.ndim == 2 else tuple(teacher_out.shape)}, "
            f"student {num_classes}"
        )


def settle_memory_format(
    models: list[nn.Module], images: torch.Tensor, device: torch.device, request: bool | None
) -> bool:
    """Put the models in channels-last format when asked, or, by default, when all run a
    channels-last batch (eval mode, no gradient: nothing changes). Returns whether on."""
    wanted = images.ndim == 4 if request is None else request
    if not wanted:
        return False
    for model in models:
        model.to(memory_format=torch.channels_last)
    if request is not None:
        return True
    sample = images[:2].to(device).contiguous(memory_format=torch.channels_last)
    try:
        with torch.no_grad():
            for model in models:
                was_training = model.training
                model.eval()
                try:
                    model(sample)
                finally:
                    model.train(was_training)
    except RuntimeError as error:
        logger.info("channels-last format off (a model cannot run it: %s)", error)
        for model in models:
            model.to(memory_format=torch.contiguous_format)
        return False
    return True
