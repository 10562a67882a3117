"""The settings of a run of :func:`~dard_plugin.recipes.distill`, checked before any data,
model or teacher is loaded, shared by Python and the ``dard`` command line (which names its
flags): default budgets, where validation images come from, and the run already in an
output folder."""

from __future__ import annotations

from pathlib import Path

from dard_plugin._files import EVALUATION_STATE_PATTERN
from dard_plugin._validation import check_choice, check_eps_plausible, check_int, check_real
from dard_plugin.attacks.pgd import NORMS
from dard_plugin.data import check_n_examples, dataset_info
from dard_plugin.models import REGISTRY
from dard_plugin.training.registry import METHODS

# The default budget per dataset and norm, shared by distill(), `dard distill`,
# `dard train-teacher` and `dard evaluate`: Fashion-MNIST's are the package's own (L-inf 0.1,
# the shipped teacher's; L2 1.5, 1.5 / sqrt(784) = 0.054 per pixel in RMS, about half the
# L-inf ball's L2 radius 2.8: docs/training.md states the choice); CIFAR's are
# RobustBench's (L-inf 8/255, L2 0.5), which are also the trainers' own defaults.
DEFAULT_EPS: dict[str, dict[str, float]] = {
    "fashion-mnist": {"Linf": 0.1, "L2": 1.5},
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


def default_lr(method: str) -> float:
    """:func:`distill`'s default learning rate: 0.05 for a method without a teacher (SAT,
    natural training), 0.01 for the distillation methods (their KL terms are scaled up)."""
    check_choice("method", method, list(METHODS))
    return 0.01 if METHODS[method].needs_teacher else 0.05


RUN_FILES = (
    "student.pt",
    "history.json",
    "report.json",
    "report.md",
    "training.png",
    "run.json",
    "curve.png",  # a `dard evaluate --curve` into the run's folder
)
# what distill itself writes anew at the end of every training (the rest of RUN_FILES, an
# earlier student's report, settings and curve, is removed when a resume trains)
WRITTEN_BY_DISTILL = ("student.pt", "history.json", "training.png")


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
    for path in out.glob(EVALUATION_STATE_PATTERN):
        path.unlink()
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
    if not METHODS[method].adversarial and (steps != 10 or step_size is not None):
        given = name("steps") if steps != 10 else name("step_size")
        raise ValueError(
            f"{given} does not apply to method {method!r} (no attack in training; the "
            "validation runs PGD-10 at eps / 4): drop it"
        )
    info = dataset_info(dataset)
    check_choice(name("student_arch"), student_arch, list(REGISTRY))
    built_for = REGISTRY[student_arch].input_shape[1:]
    if built_for != info.input_shape[1:]:
        pixels = "x".join(map(str, info.input_shape[1:]))
        raise ValueError(
            f"{name('student_arch')} {student_arch} is built for "
            f"{'x'.join(map(str, built_for))} images; {dataset} has {pixels}: choose one of "
            f"{[a for a, arch in REGISTRY.items() if arch.input_shape[1:] == info.input_shape[1:]]}"
        )
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
    if found is None and (out / "report.json").is_file() and not overwrite:
        raise ValueError(
            f"{name('out_dir')} {out} holds a report (report.json) but no run: an "
            f"evaluation's, which this run's report would replace. Pass "
            f"{_switch('overwrite', cli)} to replace it, or another {name('out_dir')}"
        )
    if found is not None and not (resume or overwrite):
        article = "an" if found == "unfinished" else "a"
        raise ValueError(
            f"{name('out_dir')} {out} already holds {article} {found} run: pass "
            f"{_switch('resume', cli)} to continue it (a finished run with the same settings "
            f"trains nothing), {_switch('overwrite', cli)} to replace it, or another "
            f"{name('out_dir')}"
        )
    if found == "finished" and resume and not (out / "checkpoint" / "checkpoint.pt").is_file():
        raise ValueError(
            f"{name('out_dir')} {out} holds a finished run without its checkpoint "
            "(checkpoint/checkpoint.pt, which records the run's settings): a resume cannot "
            f"check that the settings are the same, and would train afresh over it. Its "
            f"student stays as it is; pass {_switch('overwrite', cli)} to train afresh, or "
            f"another {name('out_dir')}"
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


def _check_writable(folder: Path, name: str = "output folder") -> None:
    """Fail before any work if results cannot be written."""
    from dard_plugin.training._checks import check_writable_dir

    check_writable_dir(name, folder)
