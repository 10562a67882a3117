"""Training: one adversarial (distillation) loop, four methods on it."""

from dard_plugin.training.attacks import AttackSettings
from dard_plugin.training.batches import BatchSource
from dard_plugin.training.checkpointing import Checkpointer
from dard_plugin.training.methods import (
    ADV_TARGETS,
    ARDTrainer,
    DARDTrainer,
    NaturalTrainer,
    RSLADTrainer,
    SATTrainer,
)
from dard_plugin.training.targets import TeacherTargets
from dard_plugin.training.trainer import AdversarialTrainerBase, Batch

TRAINERS: dict[str, type[AdversarialTrainerBase]] = {
    "sat": SATTrainer,
    "natural": NaturalTrainer,
    "ard": ARDTrainer,
    "rslad": RSLADTrainer,
    "dard": DARDTrainer,
}

__all__ = [
    "ADV_TARGETS",
    "TRAINERS",
    "ARDTrainer",
    "AdversarialTrainerBase",
    "AttackSettings",
    "Batch",
    "BatchSource",
    "Checkpointer",
    "DARDTrainer",
    "NaturalTrainer",
    "RSLADTrainer",
    "SATTrainer",
    "TeacherTargets",
]
