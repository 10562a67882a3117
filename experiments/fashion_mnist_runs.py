"""The first look's runs and presets (``fashion_mnist.py``): data, kept apart from the code
that runs them so that each file stays small."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

EPS = 0.1
TEACHER = "dard-fmnist-teacher"
STUDENT_ARCH = "small-cnn"
SUITE_ATTACKS = ["clean", "fgsm", "pgd", "tpgd", "bim", "dpgd", "apgd-ce", "apgd-t"]
STEP_COUNTS = [1, 5, 10, 20, 50]


@dataclass(frozen=True)
class Preset:
    n_train: int
    epochs: int
    n_val: int  # per-epoch validation on the first test images: monitoring only
    n_eval: int
    n_aa: int
    n_steps_eval: int
    batch_size: int = 128
    description: str = ""


PRESETS = {
    "smoke": Preset(256, 1, 64, 32, 8, 32, description="a check of the script"),
    "standard": Preset(
        10_000,
        5,
        500,
        2_000,
        200,
        1_000,
        description="about 2 hours on the project's 2-core CPU machine",
    ),
    "full": Preset(
        60_000, 10, 1_000, 10_000, 1_000, 2_000, description="all training images; for a GPU"
    ),
}


@dataclass(frozen=True)
class Run:
    name: str
    method: str
    seed: int = 0
    options: dict[str, Any] = field(default_factory=dict)
    group: str = "main"
    label: str = ""


RUNS = [
    Run("sat-s0", "sat", label="SAT (PGD-AT)"),
    Run(
        "dard-online-s0",
        "dard",
        options={"teacher_targets": "online"},
        label="DARD, online targets",
    ),
    Run("ard-s0", "ard", label="ARD"),
    Run("rslad-s0", "rslad", label="RSLAD"),
    Run(
        "dard-cached-s0",
        "dard",
        options={"teacher_targets": "cached"},
        label="DARD, cached targets",
    ),
    Run(
        "dard-aw0.75-s0",
        "dard",
        options={"teacher_targets": "online", "adv_weight": 0.75},
        group="ablation",
        label="DARD, adv_weight 0.75",
    ),
    Run(
        "dard-aw1.0-s0",
        "dard",
        options={"teacher_targets": "online", "adv_weight": 1.0},
        group="ablation",
        label="DARD, adv_weight 1.0",
    ),
    Run(
        "dard-pgdce-s0",
        "dard",
        options={"teacher_targets": "online", "attack_kind": "pgd"},
        group="ablation",
        label="DARD, PGD-CE for the student's examples",
    ),
    Run(
        "dard-legacy-s0",
        "dard",
        options={"teacher_targets": "online", "legacy_teacher_softmax": True},
        group="ablation",
        label="DARD as the original scripts compute it",
    ),
    Run("sat-s1", "sat", seed=1, group="seed", label="SAT (PGD-AT), seed 1"),
    Run(
        "dard-online-s1",
        "dard",
        seed=1,
        options={"teacher_targets": "online"},
        group="seed",
        label="DARD, online targets, seed 1",
    ),
    Run(
        "sat-lr0.01-s0",
        "sat",
        options={"lr": 0.01},
        group="control",
        label="SAT (PGD-AT) at lr 0.01, the distillation methods' learning rate",
    ),
    Run(
        "dard-online-lr0.02-s0",
        "dard",
        options={"teacher_targets": "online", "lr": 0.02},
        group="control",
        label="DARD, online targets, lr 0.02",
    ),
    Run(
        "dard-online-lr0.05-s0",
        "dard",
        options={"teacher_targets": "online", "lr": 0.05},
        group="control",
        label="DARD, online targets, lr 0.05 (SAT's learning rate)",
    ),
]
RUNS_BY_NAME = {run.name: run for run in RUNS}
