"""The Fashion-MNIST study's design as data: its constants, its runs, and the selection
rules that turn finished units into later ones (pure functions of a unit loader). The
design itself is described in ``fashion_mnist_study.py``'s docstring."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

EPS = 0.1
STUDENT_ARCH = "small-cnn"
N_POOL, N_VALIDATION = 55_000, 5_000
N_TRAIN = 10_000
N_VAL_CURVE = 2_000
N_EVAL, N_AA = 1_000, 200
LRS = (0.005, 0.015, 0.04, 0.1)
GRID_EPOCHS, LONG_EPOCHS = 15, 30
LONGER_IS_BETTER = 0.01
ABLATION_EPOCHS = 12
TEACHER_EPOCHS = 6
SEEDS = (0, 1, 2)
ONLINE_CHECK_LRS = (0.015, 0.04)
TEACHERS = {"shipped": "dard-fmnist-teacher", "strong": "dard-fmnist-teacher-strong"}
METHODS = ("sat", "ard", "rslad", "dard")
PHASES = ("teacher", "grid", "epochs", "final", "diagnosis", "ablation")
# What separates DARD from SAT, one change at a time from DARD's grid run at its selected lr
# (cached targets, GRID_EPOCHS, seed 0; validation only): sharper soft labels, no teacher
# (alpha 0: one-hot CE on x and x_S), and the adversarial term alone (no natural half).
DIAGNOSES = {
    "tau1": ({"temperature": 1.0}, "tau 1 instead of 3 (sharper soft labels)"),
    "alpha0": ({"alpha": 0.0}, "alpha 0: no teacher, one-hot CE on x and x_S"),
    "w1": ({"adv_weight": 1.0}, "adv weight 1: the adversarial term only"),
}
METHOD_LABELS = {
    "sat": "SAT (PGD-AT)",
    "ard": "ARD",
    "rslad": "RSLAD",
    "dard": "DARD (cached targets)",
    "dard-online": "DARD (online targets)",
}
SUITE_ATTACKS = ["clean", "fgsm", "pgd", "dpgd", "apgd-ce", "apgd-t"]
ADV_TARGETS = {
    "teacher-adv": "teacher on its own DPGD example x_T (the paper)",
    "teacher-nat": "teacher on the natural image x",
    "student-adv": "teacher on the student's adversarial example x_S",
    "teacher-adv-corrected": "x_T, with the true one-hot where the teacher is fooled",
}


# ---------------------------------------------------------------------- the runs
@dataclass(frozen=True)
class Run:
    """One student training: the method, its settings, and where it is used."""

    name: str
    method: str
    lr: float
    epochs: int
    seed: int = 0
    teacher: str = "shipped"
    options: dict[str, Any] = field(default_factory=dict)


def grid_runs() -> list[Run]:
    runs = [
        Run(
            f"grid-{m}-lr{lr:g}",
            m,
            lr,
            GRID_EPOCHS,
            options={"teacher_targets": "cached"} if m == "dard" else {},
        )
        for lr in LRS
        for m in METHODS
    ]
    runs += [
        Run(
            f"grid-dard-online-lr{lr:g}",
            "dard",
            lr,
            GRID_EPOCHS,
            options={"teacher_targets": "online"},
        )
        for lr in ONLINE_CHECK_LRS
    ]
    return runs


def final_value(history: list[dict[str, Any]], key: str = "pgd_accuracy") -> float:
    return float(history[-1][key])


# ---------------------------------------------------------------------- selection
Loader = Callable[[str, str], "dict[str, Any] | None"]


def selected_lr(load: Loader, method: str) -> float | None:
    """The grid's learning rate with the best final validation PGD-10 accuracy (clean
    accuracy breaks ties); None until the method's grid is complete."""
    scores = []
    for lr in LRS:
        unit = load("train", f"grid-{method}-lr{lr:g}")
        if unit is None:
            return None
        history = unit["history"]
        scores.append((final_value(history), final_value(history, "clean_accuracy"), lr))
    return max(scores)[2]


def longer_gain(load: Loader, method: str) -> float | None:
    """Final validation PGD-10 after ``LONG_EPOCHS`` minus after ``GRID_EPOCHS``, at the
    selected learning rate; None until both runs exist."""
    lr = selected_lr(load, method)
    if lr is None:
        return None
    short = load("train", f"grid-{method}-lr{lr:g}")
    long = load("train", f"epochs-{method}-lr{lr:g}")
    if short is None or long is None:
        return None
    return final_value(long["history"]) - final_value(short["history"])


def selected_epochs(load: Loader, method: str) -> int | None:
    """``LONG_EPOCHS`` where it gains at least ``LONGER_IS_BETTER``, else ``GRID_EPOCHS``."""
    gain = longer_gain(load, method)
    if gain is None:
        return None
    return LONG_EPOCHS if gain >= LONGER_IS_BETTER else GRID_EPOCHS


def dard_options(method: str) -> dict[str, Any]:
    """The trainer options every run of ``method`` carries (DARD: cached targets)."""
    return {"teacher_targets": "cached"} if method == "dard" else {}


def epochs_runs(load: Loader) -> list[Run]:
    """Each method at its selected learning rate for ``LONG_EPOCHS`` epochs."""
    runs = []
    for method in METHODS:
        lr = selected_lr(load, method)
        if lr is not None:
            runs.append(
                Run(
                    f"epochs-{method}-lr{lr:g}",
                    method,
                    lr,
                    LONG_EPOCHS,
                    options=dard_options(method),
                )
            )
    return runs


def final_runs(load: Loader) -> list[Run]:
    """Seed-major: every method and teacher at seed 0, then at seed 1, ..., so that a study
    stopped part-way has a complete comparison at the seeds it reached."""
    runs = []
    for seed in SEEDS:
        for method in METHODS:
            lr, epochs = selected_lr(load, method), selected_epochs(load, method)
            if lr is None or epochs is None:
                continue
            for teacher in TEACHERS if method != "sat" else ("shipped",):
                runs.append(
                    Run(
                        f"final-{teacher}-{method}-s{seed}",
                        method,
                        lr,
                        epochs,
                        seed=seed,
                        teacher=teacher,
                        options=dard_options(method),
                    )
                )
    return runs


def online_final_runs(load: Loader) -> list[Run]:
    """DARD with online targets (the paper's) at the learning rate the online grid points
    prefer, DARD's selected epochs, shipped teacher, seeds 0, 1, 2: is the cached stand-in's
    verdict the online one's? Last in the plan (about 75 minutes a seed on 1 CPU thread)."""
    epochs = selected_epochs(load, "dard")
    if epochs is None:
        return []
    scores = []
    for lr in ONLINE_CHECK_LRS:
        unit = load("train", f"grid-dard-online-lr{lr:g}")
        if unit is None:
            return []
        scores.append((final_value(unit["history"]), lr))
    best_lr = max(scores)[1]
    return [
        Run(
            f"final-shipped-dard-online-s{seed}",
            "dard",
            best_lr,
            epochs,
            seed=seed,
            options={"teacher_targets": "online"},
        )
        for seed in SEEDS
    ]


def dard_variants(load: Loader, options: dict[str, dict[str, Any]], epochs: int) -> list[Run]:
    """DARD at its selected learning rate, seed 0, shipped teacher, one run per ``name:
    trainer options``; empty until DARD's grid is complete."""
    lr = selected_lr(load, "dard")
    if lr is None:
        return []
    return [Run(name, "dard", lr, epochs, options=o) for name, o in options.items()]


def ablation_runs(load: Loader) -> list[Run]:
    return dard_variants(
        load,
        {
            f"ablation-{variant}": {"teacher_targets": "online", "adv_targets": variant}
            for variant in ADV_TARGETS
        },
        ABLATION_EPOCHS,
    )


def diagnosis_runs(load: Loader) -> list[Run]:
    lr = selected_lr(load, "dard")
    if lr is None:
        return []
    return dard_variants(
        load,
        {
            f"diag-dard-{key}-lr{lr:g}": {"teacher_targets": "cached", **options}
            for key, (options, _) in DIAGNOSES.items()
        },
        GRID_EPOCHS,
    )
