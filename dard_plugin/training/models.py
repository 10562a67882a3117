"""The student and the teacher: taken from what the user passes, checked against the first
batch before any training step (the student first: its number of classes checks the labels
before the teacher runs), and put in channels-last format where both can run it. A frozen
teacher is queried through a copy with its BatchNorm layers folded into the layers before
them (:func:`fold_batch_norm`)."""

from __future__ import annotations

import logging
import warnings
from typing import Any

import torch
from torch import nn

from dard_plugin._validation import check_images
from dard_plugin.attacks._placement import model_dtype
from dard_plugin.attacks.pgd import eval_mode
from dard_plugin.evaluation._checks import check_declared_shape
from dard_plugin.training._checks import same_range
from dard_plugin.training.art_classifiers import (
    Standardised,
    art_module,
    module_device,
    scalar_clip_values,
    warn_if_own_loss,
)

logger = logging.getLogger(__name__)


def unpack_student(
    classifier: Any, optimizer: Any
) -> tuple[nn.Module, torch.optim.Optimizer, tuple[float, float] | None]:
    """``(model, optimizer, ART clip_values or None)``; an ART classifier's model comes
    behind its mean/std standardisation (:func:`art_module`)."""
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
        model = art_module(classifier, "classifier")
        warn_if_own_loss(classifier)
        optimizer = optimizer if optimizer is not None else classifier.optimizer
        if optimizer is None:
            raise ValueError("the ART classifier has no optimizer: pass optimizer=")
        clip_values = scalar_clip_values(classifier, "classifier")
    if not isinstance(optimizer, torch.optim.Optimizer):
        raise TypeError(f"optimizer must be a torch.optim.Optimizer, got {type(optimizer)}")
    return model, optimizer, clip_values


def unpack_teacher(
    teacher: Any, student_source: Any, owner: str, bounds: tuple[float, float] | None = None
) -> nn.Module:
    """The teacher's module, in eval mode (with a warning if it was training). An ART
    classifier's ``clip_values`` must be the run's ``bounds``: the teacher sees the
    student's inputs, in the student's range."""
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
    if not isinstance(teacher, nn.Module):  # an ART classifier: what its predict computes
        clip_values = scalar_clip_values(teacher, "teacher")
        if bounds is not None and clip_values is not None and not same_range(clip_values, bounds):
            raise ValueError(
                f"{owner}: the teacher's clip_values {clip_values} differ from the run's "
                f"bounds {tuple(bounds)}; the teacher is queried on the student's inputs, in "
                "that range: give a teacher classifier for inputs in it"
            )
        model = art_module(teacher, "teacher")
    return frozen_in_eval(model, "teacher", stacklevel=5)


def frozen_in_eval(model: nn.Module, name: str, stacklevel: int = 4) -> nn.Module:
    """``model`` in eval mode; where any of its modules was in train mode (a teacher trained
    after the trainer was built), with a warning: a frozen model's BatchNorm statistics
    and dropout would otherwise move in its soft labels."""
    if any(module.training for module in model.modules()):
        warnings.warn(
            f"the {name} was in train mode; it is put in eval mode (a teacher is frozen)",
            UserWarning,
            stacklevel=stacklevel,
        )
    return model.eval()


def _inputs(model: nn.Module, shape: tuple[int, ...]) -> str:
    """What a model that failed on the training inputs was given: their dtype where its
    weights have another (the trainers feed float32 images), else their shape."""
    dtype = model_dtype(model)
    if dtype is not None and dtype != torch.float32:
        return (
            f"the float32 training inputs: its weights are {dtype} (convert it with .float(); "
            "amp=True computes in bf16 on CUDA)"
        )
    return f"the training inputs of shape {shape}"


def student_classes(student: nn.Module, images: torch.Tensor, bounds: tuple[float, float]) -> int:
    """The student's number of classes, from its logits on two images of the first batch
    (eval mode, no gradient, its mode restored): the labels are checked against it before
    the teacher runs or any training step."""
    check_images("images", images, bounds)
    shape = tuple(images.shape[1:])
    check_declared_shape("student", student, shape, channels_only=True)
    sample = images[:2].to(module_device(student))
    try:
        with eval_mode(student), torch.no_grad():
            student_out = student(sample)
    except RuntimeError as error:
        raise ValueError(f"the student cannot take {_inputs(student, shape)}: {error}") from None
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
    check_declared_shape(name, teacher, shape)
    sample = images[:2].to(next(iter(teacher.parameters()), images).device)
    with torch.no_grad():
        try:
            teacher_out = teacher(sample)
        except RuntimeError as error:
            raise ValueError(f"the {name} cannot take {_inputs(teacher, shape)}: {error}") from None
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
                with eval_mode(model):
                    model(sample)
    except RuntimeError as error:
        logger.info("channels-last format off (a model cannot run it: %s)", error)
        for model in models:
            model.to(memory_format=torch.contiguous_format)
        return False
    return True


# modules whose forward is known to be pure tensor code (no Python side effects, which a
# torch.fx trace would drop): torch.nn's layers, this package's architectures and wrappers
PURE_MODULE_PACKAGES = ("torch.nn.", "dard_plugin.models.", "dard_plugin.training.models")
_HOOKS = (
    "_forward_hooks",
    "_forward_pre_hooks",
    "_backward_hooks",
    "_backward_pre_hooks",
)


def pure_modules(model: nn.Module) -> bool:
    """Whether every module in ``model`` is one of ``PURE_MODULE_PACKAGES``' classes: the
    teachers this package ships or builds, which ``fold_teacher=None`` folds. A user's own
    module class may count its calls or keep features in ``forward``; a folded (traced)
    copy would not, so by default it is queried as given."""
    return all(type(m).__module__.startswith(PURE_MODULE_PACKAGES) for m in model.modules())


def _hooked(model: nn.Module) -> bool:
    """Hooks (on any module, or global ones) or a ``forward`` set on an instance: a traced
    copy would drop them."""
    from torch.nn.modules import module as module_globals

    if any(
        getattr(module_globals, name, None)
        for name in (
            "_global_forward_hooks",
            "_global_forward_pre_hooks",
            "_global_backward_hooks",
            "_global_backward_pre_hooks",
        )
    ):
        return True
    return any(
        any(getattr(m, name, None) for name in _HOOKS) or "forward" in vars(m)
        for m in model.modules()
    )


def _batch_norms(model: nn.Module) -> int:
    return sum(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())


def fold_batch_norm(model: nn.Module, sample: torch.Tensor | None = None) -> nn.Module:
    """A copy of the frozen, eval-mode ``model`` in which every BatchNorm that directly
    follows a convolution or linear layer is folded into that layer (``torch.fx``'s
    ``fuse``): the same function up to float rounding, for less time per teacher query
    (0.82x for a forward and input-gradient pass of ``dard-fmnist-teacher`` on one CPU
    thread, 0.77x for an AdaAD epoch of ``tiny-cnn``; ``benchmarks/teacher_folding.py``).

    ``model`` itself, untouched, when it is training, has nothing to fold (a pre-activation
    network's BatchNorms precede their convolutions), cannot be traced, calls one layer
    more than once (a shared layer would be folded with two BatchNorms), carries hooks or
    an instance-level ``forward`` (a traced copy drops them), or, given a ``sample`` batch,
    computes other logits on it than ``model`` does (beyond 1e-3 of their scale: a
    linear layer on 3-D inputs, say)."""
    if model.training or _batch_norms(model) == 0 or _hooked(model):
        return model
    from torch import fx
    from torch.fx.experimental.optimization import fuse

    try:
        traced = fx.symbolic_trace(model)  # shares the caller's layers: fuse copies it
        calls = [n.target for n in traced.graph.nodes if n.op == "call_module"]
        if len(calls) != len(set(calls)):
            logger.info("teacher queried as given: it calls a layer more than once")
            return model
        folded = fuse(traced, no_trace=True)  # a deep copy: the caller's teacher is not changed
    except Exception as error:  # control flow on tensors, untraceable calls: keep it as is
        logger.info("teacher queried as given: it cannot be traced to fold BatchNorm (%s)", error)
        return model
    before, after = _batch_norms(model), _batch_norms(folded)
    if after == before:
        return model
    folded.eval()
    if sample is not None:
        with torch.no_grad():
            expected, found = model(sample), folded(sample)
        scale = float(expected.abs().max()) + 1e-6
        if expected.shape != found.shape or float((found - expected).abs().max()) > 1e-3 * scale:
            logger.info("teacher queried as given: its folded copy computed other logits")
            return model
    logger.info("teacher queried with %d of its %d BatchNorm layers folded", before - after, before)
    return folded


class StudentAndTeacher(nn.Module):
    """Student and teacher logits side by side: AdaAD's attack model, compilable (a module)."""

    def __init__(self, student: nn.Module, teacher: nn.Module) -> None:
        super().__init__()
        self.student, self.teacher = student, teacher

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.student(images), self.teacher(images)], dim=1)


def kept_in_eval(student: nn.Module) -> list[nn.Module]:
    """The submodules the caller put in eval mode inside a student in train mode (a frozen
    BatchNorm): they stay in eval mode while the student trains. A student given wholly in
    eval mode (as loaded) trains in train mode, as ART's ``fit`` does: none is kept. An ART
    classifier's standardisation wrapper is not the caller's: its model's mode decides
    (ART's ``predict`` leaves the model, not the wrapper, in eval mode)."""
    root = student.model if isinstance(student, Standardised) else student
    return [m for m in root.modules() if not m.training] if root.training else []


def train_mode(student: nn.Module, kept: list[nn.Module]) -> None:
    """The student in train mode, but for the submodules ``kept`` in eval mode."""
    student.train()
    for module in kept:
        module.eval()


def art_classifier(
    student: nn.Module,
    optimizer: torch.optim.Optimizer,
    input_shape: tuple[int, ...],
    nb_classes: int,
    bounds: tuple[float, float],
    device: torch.device,
) -> Any:
    """An ART ``PyTorchClassifier`` over the trained ``student`` (cross-entropy loss, its
    optimizer, ``clip_values=bounds``) on ``device``'s type."""
    from art.estimators.classification import PyTorchClassifier

    return PyTorchClassifier(
        model=student,
        loss=nn.CrossEntropyLoss(),
        optimizer=optimizer,
        input_shape=input_shape,
        nb_classes=nb_classes,
        clip_values=bounds,
        device_type="gpu" if device.type == "cuda" else "cpu",
    )
