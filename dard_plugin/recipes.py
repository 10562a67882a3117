"""End-to-end recipes behind the ``dard`` command line, usable from Python too: train a
robust teacher, distil it into a student, with results written to a folder."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from dard_plugin._validation import check_choice, check_eps_plausible, check_int, check_real
from dard_plugin.attacks.pgd import NORMS
from dard_plugin.data import check_n_examples, dataset_info, load_dataset, standard_augment
from dard_plugin.models import REGISTRY, create
from dard_plugin.teachers import extract_state_dict, freeze, safe_load
from dard_plugin.teachers.checkpoints import load_weights
from dard_plugin.training.attacks import L2_TRAINING_EPS
from dard_plugin.training.checkpointing import save_checkpoint, write_json
from dard_plugin.training.loop import distributed
from dard_plugin.training.registry import METHODS, build_trainer

logger = logging.getLogger(__name__)

# The default budget per dataset and norm, shared by distill(), `dard distill`,
# `dard train-teacher` and `dard evaluate`: Fashion-MNIST's are the package's own (L-inf 0.1,
# the shipped teacher's; L2 1.5 = L2_TRAINING_EPS, 0.054 per pixel in RMS); CIFAR's are
# RobustBench's (L-inf 8/255, L2 0.5).
DEFAULT_EPS: dict[str, dict[str, float]] = {
    "fashion-mnist": {"Linf": 0.1, "L2": L2_TRAINING_EPS},
    "cifar10": {"Linf": 8 / 255, "L2": 0.5},
    "cifar100": {"Linf": 8 / 255, "L2": 0.5},
}

# training images held out for per-epoch validation unless val_split or validate_on_test says
# otherwise (the study's, the leaderboard's and the demo's 5,000; `dard distill`'s too)
DEFAULT_VAL_SPLIT = 5000


def default_eps(dataset: str, norm: str) -> float:
    """The default budget of ``dataset`` under ``norm`` (see :data:`DEFAULT_EPS`)."""
    check_choice("dataset", dataset, list(DEFAULT_EPS))
    check_choice("norm", norm, NORMS)
    return DEFAULT_EPS[dataset][norm]


def save_model(path: Path, model: nn.Module, arch: str, num_classes: int) -> None:
    """A model file that knows its architecture: ``{'arch', 'num_classes', 'state_dict'}``
    (plain data and tensors: loads with ``weights_only=True``)."""
    save_checkpoint(
        path, {"arch": arch, "num_classes": num_classes, "state_dict": model.state_dict()}
    )


def load_model(
    spec: str,
    *,
    dataset: str = "fashion-mnist",
    arch: str | None = None,
    threat_model: str = "Linf",
    model_dir: str | Path = "./models",
    device: str | torch.device | None = None,
) -> nn.Module:
    """A model from a file (a dard-plugin model file, or any checkpoint with ``arch``), a
    shipped teacher name, or a RobustBench name. Frozen (eval mode, no gradients)."""
    path = Path(spec)
    if path.suffix in (".pt", ".pth") or path.is_file():
        checkpoint = safe_load(path)
        file_arch = checkpoint.get("arch") if isinstance(checkpoint, dict) else None
        arch = arch or file_arch
        if arch is None:
            raise ValueError(
                f"arch must be given for {path} (a checkpoint that does not "
                f"record its architecture); choose from {list(REGISTRY)}"
            )
        num_classes = (
            checkpoint.get("num_classes") if isinstance(checkpoint, dict) else None
        ) or dataset_info(dataset).num_classes
        # the file's Normalize buffers hold the statistics it was trained with
        model = create(arch, num_classes=int(num_classes))
        state = extract_state_dict(checkpoint, source=str(path))
        load_weights(model, state, source=str(path), arch=arch, recorded_arch=file_arch)
        return freeze(model.to(device or "cpu"))
    from dard_plugin.teachers import load_teacher

    return load_teacher(
        spec, dataset=dataset, threat_model=threat_model, model_dir=model_dir, device=device
    )


@dataclass
class DistillationResult:
    student: nn.Module
    history: list[dict[str, Any]]
    out_dir: Path | None
    seconds: float
    files: dict[str, str] = field(default_factory=dict)
    epochs_run: int = 0  # 0: resumed a run that had already finished, with the same settings


RUN_FILES = (
    "student.pt",
    "history.json",
    "report.json",
    "report.md",
    "training.png",
    "run.json",
)


def existing_run(out_dir: str | Path) -> str | None:
    """``"finished"`` or ``"unfinished"`` when ``out_dir`` holds a run of :func:`distill`
    (its student file, or its checkpoint), else None."""
    out = Path(out_dir)
    if (out / "student.pt").is_file():
        return "finished"
    if (out / "checkpoint" / "checkpoint.pt").is_file():
        return "unfinished"
    return None


def remove_run(out_dir: str | Path) -> None:
    """Delete the files a run of :func:`distill` (and the CLI's evaluation) writes in
    ``out_dir``, and nothing else."""
    out = Path(out_dir)
    for name in RUN_FILES:
        (out / name).unlink(missing_ok=True)
    checkpoint = out / "checkpoint"
    for name in ("checkpoint.pt", "history.json"):
        (checkpoint / name).unlink(missing_ok=True)
    if checkpoint.is_dir() and not any(checkpoint.iterdir()):
        checkpoint.rmdir()


# how an argument of distill() is named on the command line, where the names differ
_FLAGS = {"student_arch": "--arch", "out_dir": "--out"}


def _arg(name: str, cli: bool) -> str:
    """``name`` as the user wrote it: ``n_train`` in Python, ``--n-train`` on the command
    line."""
    return _FLAGS.get(name, "--" + name.replace("_", "-")) if cli else name


def _switch(name: str, cli: bool) -> str:
    """A boolean option as the user turns it on: ``resume=True`` or ``--resume``."""
    return _arg(name, cli) if cli else f"{name}=True"


def epochs_done(out_dir: str | Path) -> int | None:
    """The epochs the run in ``out_dir`` has trained (its checkpoint's history, else its
    ``history.json``), or None when there is no readable record."""
    import json

    out = Path(out_dir)
    for path in (out / "checkpoint" / "history.json", out / "history.json"):
        try:
            records = json.loads(path.read_text())
            return max(int(record["epoch"]) for record in records)
        except (OSError, ValueError, KeyError, TypeError):
            continue
    return None


def choose_validation(
    val_split: int | None, n_val: int, validate_on_test: bool, *, cli: bool = False
) -> int | None:
    """Where per-epoch validation images come from, shared by :func:`distill` and ``dard
    distill`` / ``dard train-teacher``: the returned ``val_split`` training images are held
    out (``val_split``, or :data:`DEFAULT_VAL_SPLIT` / ``n_val`` if larger when None), or
    None, the first ``n_val`` test images, only when ``validate_on_test`` asks for it: a
    curve on test images must not be used to choose epochs or learning rates. Holding
    nothing out (``val_split=0``) without ``validate_on_test`` is refused rather than
    moved to the test images silently."""
    if not isinstance(validate_on_test, bool):
        raise TypeError(f"validate_on_test must be a bool, got {type(validate_on_test).__name__}")
    if validate_on_test:
        if val_split:
            raise ValueError(
                f"{_switch('validate_on_test', cli)} validates on test images and holds "
                f"nothing out: drop {_arg('val_split', cli)} {val_split} (or "
                f"{_switch('validate_on_test', cli)})"
            )
        return None
    if val_split is None:
        return max(DEFAULT_VAL_SPLIT, n_val) if isinstance(n_val, int) else DEFAULT_VAL_SPLIT
    if val_split == 0:
        raise ValueError(
            f"{_arg('val_split', cli)} 0 holds nothing out, so validation would run on test "
            f"images: pass {_switch('validate_on_test', cli)} to ask for that, or a "
            f"{_arg('val_split', cli)} of at least {_arg('n_val', cli)}"
        )
    return val_split


def check_distill_settings(
    *,
    method: str,
    dataset: str,
    student_arch: str,
    n_train: int | None,
    n_val: int,
    val_split: int | None,
    epochs: int,
    batch_size: int,
    lr: float | None,
    eps: float | None,
    step_size: float | None,
    steps: int,
    norm: str,
    out_dir: str | Path | None,
    resume: bool,
    overwrite: bool,
    cli: bool = False,
) -> float:
    """Every check of :func:`distill`'s settings that needs no data, model or teacher: run
    first by :func:`distill` and by ``dard distill`` / ``dard train-teacher`` (``cli=True``
    names the command-line flags), before anything is loaded. Returns the budget (``eps``,
    or :func:`default_eps` when None).

    Among them: a resume (of a finished or an unfinished run in ``out_dir``) with fewer
    ``epochs`` than the run has already trained is refused, since it could only return
    the longer run's model under the shorter run's settings."""

    def name(key: str) -> str:
        return _arg(key, cli)

    check_choice(name("method"), method, list(METHODS))
    info = dataset_info(dataset)
    check_choice(name("student_arch"), student_arch, list(REGISTRY))
    check_choice(name("norm"), norm, NORMS)
    for key, value in (("epochs", epochs), ("batch_size", batch_size), ("steps", steps)):
        check_int(name(key), value, minimum=1)
    check_int(name("n_val"), n_val, minimum=1)
    if n_train is not None:
        check_int(name("n_train"), n_train, minimum=1)
    if val_split is not None:
        check_int(name("val_split"), val_split, minimum=1)
        if n_val > val_split:
            raise ValueError(
                f"{name('n_val')} must be at most {name('val_split')} ({val_split}, the "
                f"held-out images it validates on), got {n_val}"
            )
        size = info.train_size
        if val_split >= size:
            raise ValueError(
                f"{name('val_split')} must leave training images: the {dataset} training "
                f"split has {size}, got {val_split}"
            )
        if n_train is not None and n_train > size - val_split:
            raise ValueError(
                f"{name('n_train')} must be at most {size - val_split} (the {dataset} "
                f"training split's {size} images less {name('val_split')} {val_split} held "
                f"out for validation), got {n_train}"
            )
    else:  # validation on the first n_val test images, training on the whole split
        check_n_examples(dataset, n_val, train=False, argument=name("n_val"))
        if n_train is not None:
            check_n_examples(dataset, n_train, train=True, argument=name("n_train"))
    if lr is not None:
        check_real(name("lr"), lr, low=0.0, low_inclusive=False)
    if eps is None:
        eps = default_eps(dataset, norm)
    check_real(name("eps"), eps, low=0.0, low_inclusive=False)
    check_eps_plausible(eps, (0.0, 1.0), norm=norm, input_shape=info.input_shape, name=name("eps"))
    if step_size is not None:
        check_real(name("step_size"), step_size, low=0.0, low_inclusive=False)
    if resume and overwrite:
        raise ValueError(f"{name('resume')} and {name('overwrite')} exclude each other: choose one")
    if out_dir is None:
        return float(eps)
    out = Path(out_dir)
    _check_writable(out, name("out_dir"))
    found = existing_run(out)
    if found is not None and not (resume or overwrite):
        raise ValueError(
            f"{name('out_dir')} {out} already holds a {found} run: pass "
            f"{_switch('resume', cli)} to continue it (a finished run with the same settings "
            f"trains nothing), {_switch('overwrite', cli)} to replace it, or another "
            f"{name('out_dir')}"
        )
    done = epochs_done(out) if found is not None and resume else None
    if done is not None and epochs < done:
        given = f"--epochs {epochs}" if cli else f"epochs={epochs}"
        raise ValueError(
            f"{given} is fewer than the {done} epochs the {found} run in {out} has already "
            f"trained: a resume cannot undo epochs; pass {_switch('overwrite', cli)} to "
            f"train {epochs} epochs afresh, or another {name('out_dir')}"
        )
    return float(eps)


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
    spec = METHODS[method]
    if spec.needs_teacher and teacher is None:
        raise ValueError(f"method {method!r} needs a teacher")
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
        lr = 0.01 if spec.needs_teacher else 0.05
    optimizer = torch.optim.SGD(student.parameters(), lr=lr, momentum=0.9, weight_decay=5e-4)
    milestones = sorted({max(1, int(epochs * 0.6)), max(1, int(epochs * 0.8))})
    scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones, gamma=0.1)
    attack: dict[str, Any] = {
        "norm": norm,
        "eps": eps,
        "alpha": step_size if step_size is not None else eps / 4,
        "steps": steps,
    }
    if attack_kind is not None:
        attack["kind"] = attack_kind
    if out is not None and overwrite and distributed()[1] == 0:
        remove_run(out)
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
        student.eval(), history, out, time.perf_counter() - started, epochs_run=trainer.epochs_run
    )
    if out is not None and distributed()[1] == 0:  # under torchrun, rank 0 writes
        save_model(out / "student.pt", student, student_arch, info.num_classes)
        write_json(out / "history.json", history)
        result.files = {"student": str(out / "student.pt"), "history": str(out / "history.json")}
        try:
            result.files["training_plot"] = str(plot_history(history, out / "training.png"))
        except ImportError:
            logger.warning("matplotlib is not installed: no training plot")
    return result


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


def _check_writable(folder: Path, name: str = "output folder") -> None:
    """Fail before any work if results cannot be written."""
    from dard_plugin.training._checks import check_writable_dir

    check_writable_dir(name, folder)
