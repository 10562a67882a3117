"""Training: one adversarial (distillation) loop, four methods on it."""

from dard_plugin.training.attacks import AttackSettings
from dard_plugin.training.methods import ARDTrainer, DARDTrainer, RSLADTrainer, SATTrainer
from dard_plugin.training.trainer import AdversarialTrainerBase, Batch

TRAINERS = {"sat": SATTrainer, "ard": ARDTrainer, "rslad": RSLADTrainer, "dard": DARDTrainer}

__all__ = [
    "TRAINERS",
    "ARDTrainer",
    "AdversarialTrainerBase",
    "AttackSettings",
    "Batch",
    "DARDTrainer",
    "RSLADTrainer",
    "SATTrainer",
]
