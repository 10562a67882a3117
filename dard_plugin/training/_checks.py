"""Checks the training side adds to :mod:`dard_plugin._validation`: output locations, the
input bounds, the scheduler, and teacher options given to a method without a teacher."""

from __future__ import annotations

import inspect
import math
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from dard_plugin._validation import check_bounds


def _existing_ancestor(path: Path) -> Path:
    probe = path
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    return probe


def _probe_writable(name: str, path: Path, folder: Path) -> None:
    """Create and remove a temporary file in ``folder`` (``os.access`` says yes to root
    even on a read-only mount)."""
    try:
        handle, temporary = tempfile.mkstemp(prefix=".dard-write-probe.", dir=folder)
    except OSError as error:
        raise ValueError(f"{name} {path} cannot be written ({folder}: {error.strerror})") from None
    os.close(handle)
    os.unlink(temporary)


def check_writable_dir(name: str, path: str | Path) -> Path:
    """``path`` is, or can be created as, a writable folder; nothing is created."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise ValueError(f"{name} {path} is a file, not a directory")
    ancestor = _existing_ancestor(path)
    if not ancestor.is_dir():
        raise ValueError(f"{name} {path} cannot be created: {ancestor} is not a directory")
    _probe_writable(name, path, ancestor)
    return path


def check_writable_file(name: str, path: str | Path) -> Path:
    """``path`` is, or can be created as, a writable file; nothing is created."""
    path = Path(path)
    if path.is_dir():
        raise ValueError(f"{name} {path} is a directory, not a file")
    check_writable_dir(f"{name} {path}: its folder", path.parent)
    return path


def check_no_teacher_options(
    trainer: str,
    *,
    teacher_targets: str,
    cache_refresh_epochs: int | None,
    teacher_batch_size: int | None,
) -> None:
    """A trainer without a teacher refuses the teacher's options, which would change
    nothing but its fingerprint (``teacher_targets`` other than the default ``"online"``,
    ``cache_refresh_epochs``, ``teacher_batch_size``)."""
    given = {
        "teacher_targets": None if teacher_targets == "online" else teacher_targets,
        "cache_refresh_epochs": cache_refresh_epochs,
        "teacher_batch_size": teacher_batch_size,
    }
    for option, value in given.items():
        if value is not None:
            raise ValueError(
                f"{option}={value!r} does not apply to {trainer}, which trains without a teacher"
            )


def training_bounds(bounds: object, clip_values: tuple[float, float] | None) -> tuple[float, float]:
    """The run's input range: ``bounds`` (a pair of numbers; it must agree with the ART
    classifier's ``clip_values`` where both are given), else ``clip_values``, else (0, 1)."""
    given = check_bounds("bounds", bounds)
    if given is None:
        return clip_values or (0.0, 1.0)
    if not all(isinstance(b, float) for b in given):
        raise ValueError(
            f"bounds must be a pair of numbers (low, high) for training, got {bounds!r}"
        )
    if clip_values is not None and not same_range(given, clip_values):
        raise ValueError(f"bounds {given} differ from the classifier's clip_values {clip_values}")
    return float(given[0]), float(given[1])


def same_range(first: Sequence[Any], second: Sequence[Any]) -> bool:
    """Two ``(low, high)`` ranges equal at float32 precision (ART stores ``clip_values``
    as float32: ``(-0.4242, 2.8215)`` comes back as ``(-0.42419999837875366, ...)``)."""
    return all(
        math.isclose(float(a), float(b), rel_tol=1e-6, abs_tol=1e-7)
        for a, b in zip(first, second, strict=True)
    )


def check_scheduler(scheduler: object, optimizer: object) -> None:
    """``scheduler`` is None or steps once per epoch with no argument (``StepLR``,
    ``MultiStepLR``, ``OneCycleLR``, ...) the trainer's ``optimizer``; one whose ``step``
    needs an argument (``ReduceLROnPlateau``'s metric), or one built on another optimizer
    (it would step an lr nothing uses), is refused before any work."""
    if scheduler is None:
        return
    own = getattr(scheduler, "optimizer", optimizer)
    if own is not optimizer:
        raise ValueError(
            f"scheduler {type(scheduler).__name__} was built on another optimizer than the "
            "trainer's: it would change a learning rate nothing trains with; build it on "
            "the trainer's optimizer (trainer.optimizer)"
        )
    step = getattr(scheduler, "step", None)
    if not callable(step):
        raise ValueError(
            f"scheduler must have a step() method (a torch.optim.lr_scheduler), got "
            f"{type(scheduler).__name__}"
        )
    try:
        required = [
            p.name
            for p in inspect.signature(step).parameters.values()
            if p.default is p.empty and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
        ]
    except (TypeError, ValueError):  # no signature to read: let it run
        return
    if required:
        raise ValueError(
            f"scheduler {type(scheduler).__name__}.step needs {', '.join(required)}: the "
            "trainers step the scheduler once per epoch with no argument (a "
            "ReduceLROnPlateau needs a metric); use an epoch-based scheduler"
        )


def check_continuation(trainer: str, earlier: int, schedule_spans_run: bool) -> None:
    """A later ``fit`` continues the run, except for a method whose schedule is a fraction
    of one run: refused before any work, naming the ways out."""
    if earlier and schedule_spans_run:
        raise ValueError(
            f"{trainer} already trained {earlier} epochs, and its schedule is a fraction "
            "of one run (IAD's start epoch, IGDM's weight): a second fit cannot continue "
            "it. Train the run in one fit call (validation_data= gives per-epoch numbers), "
            "build a new trainer for a new run, or interrupt and continue a run with "
            "checkpoint_dir= and resume=True"
        )


def warn_if_nothing_to_resume(resume: bool, trained: int, done: int, nb_epochs: int) -> None:
    """With ``resume=True`` ``nb_epochs`` is the run's length: a trainer that has trained
    in this process and calls ``fit(nb_epochs=1)`` again (ART's habit) trains nothing. Said
    with a warning (a resumed finished run otherwise returns quietly, as intended)."""
    if resume and trained and done >= nb_epochs:
        import warnings

        warnings.warn(
            f"nothing trained: with resume=True, nb_epochs={nb_epochs} is the run's length "
            f"and its checkpoint has {done} epochs; pass nb_epochs={done + 1} or more to "
            "train on (a later fit without resume=True continues the run by nb_epochs)",
            UserWarning,
            stacklevel=4,
        )


class TrainingDivergedError(FloatingPointError):
    """Training produced a non-finite loss or student weights. Raised at the end of the
    epoch where it happened, before that epoch is checkpointed: the run's checkpoint (if
    any) still holds the last finite epoch. ``history`` holds the epochs trained before it,
    ``record`` the diverged epoch's averaged loss terms."""

    def __init__(self, message: str, history: list[dict[str, Any]], record: dict[str, Any]):
        super().__init__(message)
        self.history = history
        self.record = record


def end_epoch(loop: Any, epoch: int, record: dict[str, Any], world: int) -> None:
    """The end of an epoch, before validation and the checkpoint: stop a diverged run
    (:func:`check_finite_epoch`), then, under torchrun, give every rank rank 0's buffers.
    DDP keeps the parameters equal; BatchNorm's running statistics are rank 0's at each
    forward's start but each rank's last batch updates its own, so the ranks would end the
    run holding different students (the saved one being rank 0's)."""
    check_finite_epoch(loop, epoch, record, world)
    if world > 1:
        for buffer in loop.student.buffers():
            torch.distributed.broadcast(buffer, src=0)


def check_finite_epoch(loop: Any, epoch: int, record: dict[str, Any], world: int) -> None:
    """Raise :class:`TrainingDivergedError` when the epoch's loss terms or the student's
    parameters and buffers are not finite (on any rank, so that every rank stops)."""
    terms = [k for k, v in record.items() if isinstance(v, float) and not math.isfinite(v)]
    tensors = [
        name
        for name, t in [*loop.student.named_parameters(), *loop.student.named_buffers()]
        if t.is_floating_point() and not bool(torch.isfinite(t).all())
    ]
    flag = torch.tensor([float(bool(terms or tensors))], device=loop.device)
    if world > 1:
        torch.distributed.all_reduce(flag, op=torch.distributed.ReduceOp.MAX)
    if not flag.item():
        return
    where = ", ".join(f"{k}={record[k]}" for k in terms) or "finite losses on this rank"
    held = f"{len(tensors)} of the student's tensors (first: {tensors[0]})" if tensors else "none"
    kept = (
        "no checkpoint was written (checkpoint_dir=None)"
        if loop.checkpoint_dir is None
        else f"the checkpoint of epoch {epoch} is kept"
        if epoch > 0
        else "nothing was checkpointed"
    )
    raise TrainingDivergedError(
        f"{loop.method} epoch {epoch + 1}: training diverged ({where}; NaN or inf in {held}) "
        f"at lr={record['lr']:.4g}; {kept}. Lower the learning rate or the attack's step.",
        list(loop.history),
        dict(record),
    )


def check_last_batch(
    student: Any, images: torch.Tensor, batch_size: int, kept: list[Any], world: int = 1
) -> None:
    """A last batch of one image fails in a BatchNorm that sees one value per channel in
    train mode (torch: "Expected more than 1 value per channel"), after the epoch's other
    batches have trained: refused before any work, naming ``batch_size``. Probed on a copy
    of the student in its training mode (``kept``: the modules it keeps in eval), the
    caller's RNG left as found; under ``world`` processes each rank's share (``ceil(N /
    world)`` images, as the loaders give) is what counts. Any other failure of the probe is
    left to the later checks, which name it."""
    import copy

    from torch.nn.modules.batchnorm import _BatchNorm

    n = -(-int(images.shape[0]) // world)
    if n % batch_size != 1:
        return
    batchnorms = [m for m in student.modules() if isinstance(m, _BatchNorm) and m not in kept]
    if not batchnorms:
        return
    probe = copy.deepcopy(student)
    frozen = {name for name, module in student.named_modules() if module in kept}
    probe.train()
    for name, module in probe.named_modules():
        if name in frozen:
            module.eval()
    device = next((p.device for p in student.parameters()), images.device)
    try:
        with torch.no_grad(), torch.random.fork_rng(devices=[]):
            probe(images[:1].to(device))
    except Exception as error:  # only BatchNorm's is this check's to name
        if "more than 1 value per channel" not in str(error):
            return
        share = "" if world == 1 else f" of each of the {world} processes' shares"
        raise ValueError(
            f"batch_size={batch_size} leaves a last batch of 1 of the {n} images{share}, "
            f"which the student's BatchNorm cannot train on ({error}); choose a batch_size "
            "that leaves none or more"
        ) from None


def check_augment_layout(augment: object, classifier: object) -> None:
    """``augment`` crops and flips (N, C, H, W) images: refused for an ART student of
    ``channels_first=False``, whose width it would crop and channels it would flip."""
    if augment is not None and getattr(classifier, "channels_first", True) is False:
        raise ValueError(
            "augment crops and flips (N, C, H, W) images, and the student classifier has "
            "channels_first=False: it would crop the width and flip the channels; give "
            "channels-first images, or augment them before fit"
        )
