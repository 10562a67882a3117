"""The leaderboard's design as data: methods, students, grids, the rules that extend a
grid and select its learning rate, the calls, and which machine a unit or a cost file ran
on. Pure functions of a unit loader, so that the plan, the report and the tests read the
same rules. ``leaderboard.py``'s docstring
describes the whole design."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from study_runner.report import machine_label

EPS = 0.1
TEACHER, NATURAL_TEACHER = "dard-fmnist-teacher", "dard-fmnist-teacher-natural"
STUDENTS = ("small-cnn", "tiny-cnn")
N_POOL, N_VALIDATION = 55_000, 5_000  # the study's split: validation = images 55,000..
N_TRAIN, N_VAL_CURVE = 10_000, 2_000
N_EVAL, N_AA = 1_000, 500
SUITE_ATTACKS = ["clean", "fgsm", "pgd", "dpgd", "apgd-ce", "apgd-t"]  # the study's six
LRS = (0.005, 0.015, 0.04, 0.1)  # the study's log-spaced grid (its units are reused)
GRID_EPOCHS, FINAL_EPOCHS = 15, 30  # the study's: 30 gained 1.5-2.5 points over 15
SEEDS = (0, 1, 2)
WARMUP_EPOCHS = 5  # the sat-warmup row's linear eps ramp (epochs), in grid and final runs
CHANCE = 0.15  # final validation clean accuracy at or below: the run stayed at chance
FLAT = 0.01  # validation PGD-10 gain over the last 10 final epochs below which it is flat

# row -> (method name in dard_plugin's methods registry, trainer options). The order is the
# plan's priority; online DARD (a teacher query at every attack step) comes last.
METHODS: dict[str, tuple[str, dict[str, Any]]] = {
    "sat": ("sat", {}),
    # SAT of tiny-cnn stayed at chance at every grid lr (the first leaderboard units): the
    # usual remedy, a linear warm-up of the attack budget, as a second SAT row
    "sat-warmup": ("sat", {"eps_warmup_epochs": WARMUP_EPOCHS}),
    "ard": ("ard", {}),
    "rslad": ("rslad", {}),
    "dard": ("dard", {"teacher_targets": "cached"}),
    "iad": ("iad", {}),
    "adaad": ("adaad", {}),
    "mtard": ("mtard", {}),
    "adaad-igdm": ("adaad-igdm", {}),
    "dard-online": ("dard", {"teacher_targets": "online"}),
}
LABELS = {
    "sat": "SAT (PGD-AT)",
    "sat-warmup": f"SAT, eps warm-up over {WARMUP_EPOCHS} epochs",
    "ard": "ARD",
    "rslad": "RSLAD",
    "dard": "DARD (cached targets)",
    "iad": "IAD",
    "adaad": "AdaAD",
    "mtard": "MTARD (adversarial + natural teacher)",
    "adaad-igdm": "AdaAD + IGDM",
    "dard-online": "DARD (online targets)",
}
# The study's units with these settings are the leaderboard's: small-cnn, shipped teacher.
STUDY_OUT = "docs/results/fashion_mnist/study"
STUDY_WORK = "runs/fashion_mnist/study"
STUDY_STUDENT = "small-cnn"


def available_methods() -> set[str]:
    """The method names this installation of dard_plugin trains (its methods registry
    where it has one, else its trainers)."""
    try:
        from dard_plugin.training import registry
    except ImportError:
        from dard_plugin.training import TRAINERS

        return set(TRAINERS)
    return set(registry.METHODS)


@dataclass(frozen=True)
class Run:
    """One student training: the row (method), the student, its settings."""

    name: str
    row: str
    student: str
    lr: float
    epochs: int
    seed: int = 0
    options: dict[str, Any] = field(default_factory=dict)

    @property
    def method(self) -> str:
        return METHODS[self.row][0]

    def study_settings(self) -> dict[str, Any]:
        """The settings as the study records them (its ``run`` field), for reuse."""
        return {
            "method": self.method,
            "lr": self.lr,
            "epochs": self.epochs,
            "seed": self.seed,
            "teacher": "shipped",
            "options": dict(self.options),
        }


ACCURACIES, INF = ("clean_accuracy", "pgd_accuracy"), float("inf")
Loader = Callable[[str, str], "dict[str, Any] | None"]


def diverged_history(error: Any) -> list[dict[str, Any]]:
    """A diverged run's history (``TrainingDivergedError``): its finite epochs, then the
    diverged one, at 0 accuracy (a NaN student predicts no class) and marked ``diverged``;
    its non-finite losses as text (``"nan"``), which JSON has no number for."""
    record = {k: str(v) if v != v or v in (INF, -INF) else v for k, v in error.record.items()}
    return [*error.history, {**record, "diverged": True, **dict.fromkeys(ACCURACIES, 0.0)}]


def final_value(unit: dict[str, Any], key: str = "pgd_accuracy") -> float:
    return float(unit["history"][-1][key])


def grid_name(row: str, student: str, lr: float) -> str:
    return f"grid-{row}-{student}-lr{lr:g}"


def final_name(row: str, student: str, seed: int) -> str:
    return f"final-{row}-{student}-s{seed}"


def extend(lrs: list[float], best: float) -> float | None:
    """The value past the grid's edge where ``best`` lies on it (the same ratio as the
    edge's last step, 3 significant digits), else None."""
    if best == lrs[0]:
        return float(f"{lrs[0] * lrs[0] / lrs[1]:.3g}")
    if best == lrs[-1]:
        return float(f"{lrs[-1] * lrs[-1] / lrs[-2]:.3g}")
    return None


def grid_lrs(load: Loader, row: str, student: str) -> tuple[list[float], bool]:
    """The learning rates of the grid so far and whether it is complete: ``LRS``, then one
    value past the edge where the best of ``LRS`` is on it (one extension, once)."""
    lrs = list(LRS)
    scores = _scores(load, row, student, lrs)
    if scores is None:
        return lrs, False
    extra = extend(lrs, max(scores)[2])
    if extra is None:
        return lrs, True
    lrs = sorted([*lrs, extra])
    return lrs, load("train", grid_name(row, student, extra)) is not None


def _scores(
    load: Loader, row: str, student: str, lrs: list[float]
) -> list[tuple[float, float, float]] | None:
    scores = []
    for lr in lrs:
        unit = load("train", grid_name(row, student, lr))
        if unit is None:
            return None
        # rounded: some study units stored float32 accuracies (0.5985000133514404 for
        # 1197/2000), which must tie with the same count stored exactly
        pgd, clean = (
            round(final_value(unit, key), 6) for key in ("pgd_accuracy", "clean_accuracy")
        )
        scores.append((pgd, clean, lr))
    return scores


def selected_lr(load: Loader, row: str, student: str) -> float | None:
    """The complete grid's learning rate with the best final validation PGD-10 accuracy
    (clean accuracy, then the larger lr, breaks ties), as in the study; None until the
    grid is complete."""
    lrs, complete = grid_lrs(load, row, student)
    scores = _scores(load, row, student, lrs) if complete else None
    return None if scores is None else max(scores)[2]


def grid_runs(load: Loader, row: str, student: str) -> list[Run]:
    options = METHODS[row][1]
    lrs, _ = grid_lrs(load, row, student)
    return [
        Run(grid_name(row, student, lr), row, student, lr, GRID_EPOCHS, 0, options) for lr in lrs
    ]


def final_runs(load: Loader, row: str, student: str) -> list[Run]:
    lr = selected_lr(load, row, student)
    if lr is None:
        return []
    options = METHODS[row][1]
    return [
        Run(final_name(row, student, seed), row, student, lr, FINAL_EPOCHS, seed, options)
        for seed in SEEDS
    ]


def call(diff: float, verdict: str) -> str:
    """The study's verdict as the leaderboard says it."""
    return {"higher": "better", "lower": "worse"}.get(verdict, verdict)


# The CPU model of every unit that recorded one until 2026-12-06 (2026-12-03 15:11 on); the
# earlier units (the study's, 2026-12-01 to 12-03 10:45) do not record it and are counted as
# run on the same kind of machine, as the report assumed until then.
EARLIER_CPU = "Intel(R) Xeon(R) Processor"


def machine(unit: dict[str, Any]) -> str:
    """Where a unit (or a cost file) ran: the GPU's name, else the CPU model with the torch
    threads (``EARLIER_CPU`` for units that predate its record)."""
    found = unit["provenance"]["machine"]
    return machine_label({"cpu_model": EARLIER_CPU, **{k: v for k, v in found.items() if v}})


def cost_file_name(unit: dict[str, Any]) -> str:
    """The cost file's name for the machine ``unit`` ran on: its ``machine`` label (the GPU,
    or the CPU model and torch threads) in lower case, with dashes."""
    return re.sub(r"[^a-z0-9]+", "-", machine(unit).lower()).strip("-") + ".json"


def load_costs(folder: Path) -> dict[str, dict[str, Any]]:
    """``leaderboard_costs.py``'s files in ``folder``, by the machine each was measured on
    (``machine``): every method's epoch cost, in one process on that machine."""
    found: dict[str, dict[str, Any]] = {}
    for path in sorted(folder.glob("*.json")) if folder.is_dir() else []:
        measured = json.loads(path.read_text())
        found[machine(measured)] = {**measured, "file": str(path)}
    return found


def _epoch_timer_ratios(measured: dict[str, Any], student: str) -> dict[str, float] | None:
    """Each row's steady epoch over SAT's on ``student`` in one cost file, where the file
    was measured with the trainer's epoch timer (``leaderboard_costs.py`` since 2026-12-06;
    earlier files took a CPU-time difference of whole runs, too noisy to show) and holds
    SAT's epoch there; None otherwise."""
    table = measured.get("costs", {})
    sat = table.get(f"sat/{student}", {}).get("epoch_seconds")
    if "epoch timer" not in measured.get("what", "") or not sat:
        return None
    return {
        row: float(table[f"{row}/{student}"]["epoch_seconds"]) / float(sat)
        for row in METHODS
        if table.get(f"{row}/{student}", {}).get("epoch_seconds")
    }


def one_process_ratio(row: str, student: str, costs: dict[str, dict[str, Any]]) -> float | None:
    """``row``'s steady epoch over SAT's on ``student``, from the first cost file measured
    with the trainer's epoch timer that holds both (one process, one machine: the table's
    epoch cost); None where none does."""
    for _, measured in sorted(costs.items()):
        ratio = (_epoch_timer_ratios(measured, student) or {}).get(row)
        if ratio is not None:
            return ratio
    return None


def one_process_costs(student: str, costs: dict[str, dict[str, Any]]) -> list[str]:
    """A line per cost file measured with the trainer's epoch timer: each row's steady
    epoch over SAT's on ``student``, in one process."""
    lines = []
    for name, measured in sorted(costs.items()):
        ratios = _epoch_timer_ratios(measured, student)
        if ratios is None:
            continue
        sat = measured["costs"][f"sat/{student}"]["epoch_seconds"]
        shown = ", ".join(f"{LABELS[row]} {ratio:.1f}x" for row, ratio in ratios.items())
        lines.append(
            f"Epoch cost over SAT's, measured in one process on {name} "
            f"(`{measured['file']}`; a steady epoch, SAT's {sat:.0f} s; cached DARD's "
            f"one-off target cache not included): {shown}."
        )
    return lines
