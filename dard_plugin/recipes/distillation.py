"""The distillation recipe behind ``dard distill`` and ``dard train-teacher``: a student
trained by any method of the registry, its files written to a folder."""

from __future__ import annotations

import functools
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from dard_plugin._validation import MAX_SEED, check_int
from dard_plugin.data import dataset_info, load_dataset, standard_augment
from dard_plugin.models import create
from dard_plugin.recipes.model_files import save_model
from dard_plugin.recipes.settings import (
    RUN_FILES,
    WRITTEN_BY_DISTILL,
    check_distill_settings,
    choose_validation,
    default_lr,
    remove_run,
)
from dard_plugin.training.checkpointing import write_json
from dard_plugin.training.fingerprints import model_fingerprint
from dard_plugin.training.loop import distributed
from dard_plugin.training.registry import METHODS, build_trainer

logger = logging.getLogger(__name__)


@dataclass
class DistillationResult:
    student: nn.Module
    history: list[dict[str, Any]]
    out_dir: Path | None
    seconds: float
    files: dict[str, str] = field(default_factory=dict)
    epochs_run: int = 0  # 0: resumed a run that had already finished, with the same settings
    # the trainer's settings as they ran (defaults resolved: alpha, temperature, the attack;
    # for natural training, which runs no attack, the validation's as "validation_attack")
    config: dict[str, Any] = field(default_factory=dict)
    n_train: int = 0  # the training images used (``n_train=None``: all, resolved)
    # the teachers' classes and weight digests, as the checkpoint's fingerprint has them
    teacher_weights: str | None = None


def distill(
    *,
    method: str = "dard",
    dataset: str = "fashion-mnist",
    teacher: nn.Module | None = None,
    natural_teacher: nn.Module | None = None,
    student_arch: str = "small-cnn",
    n_train: int | None = None,
    n_val: int = 1000,
    val_split: int | None = None,
    validate_on_test: bool = False,
    epochs: int = 10,
    batch_size: int = 128,
    lr: float | None = None,
    eps: float | None = None,
    step_size: float | None = None,
    steps: int = 10,
    norm: str = "Linf",
    seed: int = 0,
    device: str | None = None,
    out_dir: str | Path | None = None,
    resume: bool = False,
    overwrite: bool = False,
    data_root: str | Path | None = None,
    verbose: bool = True,
    attack_kind: str | None = None,
    eps_warmup_epochs: int | None = None,
    **method_kwargs: Any,
) -> DistillationResult:
    """Train ``student_arch`` on ``dataset`` with ``method`` (a name in
    :data:`dard_plugin.training.registry.METHODS`: ``sat``, ``ard``, ``rslad``, ``dard``,
    ``iad``, ``adaad``, ``adaad-igdm``, ``mtard``, or ``natural``: standard training, no
    attack, no teacher; MTARD also takes ``natural_teacher``).

    SGD (momentum 0.9, weight decay 5e-4), learning rate x0.1 at 60% and 80% of the epochs,
    standard augmentation, attack step ``eps / 4`` unless given; ``attack_kind``
    (``"dpgd"`` or ``"pgd"``) replaces the method's own attack; ``eps_warmup_epochs`` ramps
    the student's attack budget (and step) linearly over the first ``k`` epochs
    (``docs/training.md``). ``norm`` (``"Linf"`` or ``"L2"``) is the threat model of the
    training attack, DARD's teacher DPGD and the per-epoch validation; ``eps`` defaults to
    :func:`default_eps` (Fashion-MNIST: 0.1 for L-inf, 1.5 for L2; CIFAR: 8/255 and 0.5).
    The default learning rate is 0.05 for SAT and natural training and 0.01 for the
    distillation methods, whose KL terms are scaled by ``a * tau^2`` (6.3 for DARD's
    defaults): at 0.05 a small CNN student diverged on Fashion-MNIST in a 2-epoch check
    (loss 6.3, chance accuracy; 0.01 reached 55% clean). The learning rate matters for the
    comparison: in ``experiments/fashion_mnist.py`` (10,000 images, 5 epochs) DARD at 0.02
    beat 0.01 and 0.05, and SAT at 0.05 beat 0.01; see ``docs/results.md`` before comparing
    methods at their defaults.

    Per-epoch validation (clean and PGD-10 on ``n_val`` images) runs on held-out training
    images (:func:`choose_validation`): the last ``val_split`` training images
    (:data:`DEFAULT_VAL_SPLIT`, 5,000, or ``n_val`` if larger, when None) are held out,
    validation uses the first ``n_val`` of them, and training draws its ``n_train`` images
    (all the rest when None) from the rest, so that choices made on the history never see
    a test image. ``validate_on_test=True`` validates on the first ``n_val`` test images
    instead and holds nothing out (the behaviour before 2026-12-03; watch that curve, do
    not choose settings on it).

    With ``out_dir``: ``checkpoint/`` (resumable), ``history.json``, ``student.pt`` and a
    training-curve plot ``training.png``. An ``out_dir`` that already holds a run is
    refused unless ``resume`` (continue it; a finished run with the same settings trains
    nothing; fewer ``epochs`` than the run has trained is refused) or ``overwrite`` (delete
    the run's files first).

    Every setting is checked (:func:`check_distill_settings`) before any data is loaded.
    """
    val_split = choose_validation(val_split, n_val, validate_on_test)
    check_int("seed", seed, minimum=0, maximum=MAX_SEED)
    eps = check_distill_settings(
        method=method,
        dataset=dataset,
        student_arch=student_arch,
        n_train=n_train,
        n_val=n_val,
        val_split=val_split,
        epochs=epochs,
        batch_size=batch_size,
        lr=lr,
        eps=eps,
        step_size=step_size,
        steps=steps,
        norm=norm,
        out_dir=out_dir,
        resume=resume,
        overwrite=overwrite,
    )
    info = dataset_info(dataset)
    if eps_warmup_epochs is not None:
        check_int("eps_warmup_epochs", eps_warmup_epochs, minimum=1)
        if eps_warmup_epochs > epochs:
            raise ValueError(
                f"eps_warmup_epochs must be at most epochs ({epochs}), got {eps_warmup_epochs}: "
                f"the run would end before its attack reaches eps={eps}"
            )
    spec = METHODS[method]
    if spec.needs_teacher and teacher is None:
        raise ValueError(f"method {method!r} needs a teacher")
    if not spec.needs_teacher and teacher is not None:
        raise ValueError(
            f"method {method!r} trains without a teacher, got teacher={type(teacher).__name__}: "
            "drop it, or choose a distillation method"
        )
    if spec.needs_natural_teacher and natural_teacher is None:
        raise ValueError(f"method {method!r} needs natural_teacher (a naturally trained model)")
    if not spec.needs_natural_teacher and natural_teacher is not None:
        raise ValueError(f"method {method!r} takes no natural_teacher")
    out = Path(out_dir) if out_dir is not None else None
    if val_split is None:
        x, y = load_dataset(dataset, n_examples=n_train, root=data_root)
        x_val, y_val = load_dataset(dataset, train=False, n_examples=n_val, root=data_root)
    else:
        x, y, x_val, y_val = _holdout_split(dataset, n_train, n_val, val_split, data_root)
    generator = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng():
        torch.manual_seed(int(torch.randint(0, 2**31, (1,), generator=generator)))
        student = create(student_arch, num_classes=info.num_classes, dataset=dataset)
    if lr is None:
        lr = default_lr(method)
    optimizer = torch.optim.SGD(student.parameters(), lr=lr, momentum=0.9, weight_decay=5e-4)
    milestones = sorted({max(1, int(epochs * 0.6)), max(1, int(epochs * 0.8))})
    scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones, gamma=0.1)
    attack: dict[str, Any] = {"norm": norm, "eps": eps}  # natural training: validation's only
    if spec.adversarial:
        attack.update(alpha=step_size if step_size is not None else eps / 4, steps=steps)
    if attack_kind is not None:
        attack["kind"] = attack_kind
    trainer = build_trainer(
        method,
        student,
        teacher if spec.needs_teacher else None,
        natural_teacher=natural_teacher,
        optimizer=optimizer,
        attack=attack,
        seed=seed,
        device=device,
        checkpoint_dir=out / "checkpoint" if out else None,
        resume=resume,
        verbose=verbose,
        eps_warmup_epochs=eps_warmup_epochs,
        **method_kwargs,
    )
    if out is not None and overwrite and distributed()[1] == 0:
        # the old run goes once fit's checks (teacher, budgets, validation, the folder's
        # writability) have passed, as the method's options did when the trainer was built
        trainer.before_training = functools.partial(remove_run, out)
    started = time.perf_counter()
    history = trainer.fit(
        x,
        y,
        validation_data=(x_val, y_val),
        batch_size=batch_size,
        nb_epochs=epochs,
        scheduler=scheduler,
        augment=standard_augment(dataset, seed=seed),
    )
    result = DistillationResult(
        student.eval(),
        history,
        out,
        time.perf_counter() - started,
        epochs_run=trainer.epochs_run,
        config=_as_ran(trainer.config(), spec.needs_teacher, spec.adversarial),
        n_train=int(x.shape[0]),
        teacher_weights=" + ".join(model_fingerprint(m) for m in trainer.frozen_models()) or None,
    )
    if out is not None and distributed()[1] == 0:  # under torchrun, rank 0 writes
        if trainer.epochs_run:  # an earlier report and settings describe another student
            stale = [n for n in RUN_FILES if n not in WRITTEN_BY_DISTILL and (out / n).is_file()]
            for name in stale:
                (out / name).unlink()
            if stale:
                logger.info("removed %s of the run before this training", ", ".join(stale))
        save_model(out / "student.pt", student, student_arch, info.num_classes)
        write_json(out / "history.json", history)
        result.files = {"student": str(out / "student.pt"), "history": str(out / "history.json")}
        try:
            result.files["training_plot"] = str(plot_history(history, out / "training.png"))
        except ImportError:
            logger.warning("matplotlib is not installed: no training plot")
    return result


def _as_ran(config: dict[str, Any], has_teacher: bool, adversarial: bool) -> dict[str, Any]:
    """The trainer's settings as a record of what ran: without the teacher-target mode of a
    method that has no teacher, and natural training's attack named as the validation's
    (it trains on no attack). The checkpoint's fingerprint keeps ``config()`` as it is."""
    ran = {k: v for k, v in config.items() if has_teacher or k != "teacher_targets"}
    if not adversarial and "attack" in ran:
        ran["validation_attack"] = ran.pop("attack")
    return ran


def _holdout_split(
    dataset: str,
    n_train: int | None,
    n_val: int,
    val_split: int,
    data_root: str | Path | None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Training images ``[0, n_train)`` and validation images ``[N - val_split, N -
    val_split + n_val)`` of the training split: disjoint, and no test image."""
    check_int("val_split", val_split, minimum=1)
    check_int("n_val", n_val, minimum=1)
    images, labels = load_dataset(dataset, root=data_root)
    pool = images.shape[0] - val_split
    if pool < 1:
        raise ValueError(
            f"val_split must leave training images: the {dataset} training split has "
            f"{images.shape[0]}, val_split is {val_split}"
        )
    if n_val > val_split:
        raise ValueError(f"n_val must be at most val_split ({val_split}), got {n_val}")
    n_train = pool if n_train is None else n_train
    if n_train > pool:
        raise ValueError(
            f"n_train must be at most {pool} (training images left after val_split="
            f"{val_split}), got {n_train}"
        )
    return (
        images[:n_train].clone(),
        labels[:n_train].clone(),
        images[pool : pool + n_val].clone(),
        labels[pool : pool + n_val].clone(),
    )


def plot_history(history: list[dict[str, Any]], path: Path) -> Path:
    """Loss and validation accuracies per epoch."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [h["epoch"] for h in history]
    figure, (loss_axes, acc_axes) = plt.subplots(1, 2, figsize=(8, 3))
    for key in ("loss", "loss_nat", "loss_adv"):
        if key in history[0]:
            loss_axes.plot(epochs, [h[key] for h in history], marker="o", label=key)
    loss_axes.set_xlabel("epoch")
    loss_axes.legend()
    for key in history[0]:
        if key.endswith("_accuracy"):
            acc_axes.plot(epochs, [100 * h[key] for h in history], marker="o", label=key)
    acc_axes.set_xlabel("epoch")
    acc_axes.set_ylabel("validation accuracy (%)")
    acc_axes.legend()
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)
    return path
