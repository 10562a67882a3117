"""Training: one adversarial (distillation) loop, the methods of ``registry.METHODS`` on it.

Names load on first use, so that the command line can read the method registry
(:mod:`dard_plugin.training.registry`) without importing torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from dard_plugin.training._checks import TrainingDivergedError
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
    from dard_plugin.training.recent_methods import AdaADTrainer, IADTrainer, MTARDTrainer
    from dard_plugin.training.registry import METHODS, MethodSpec, build_trainer, method_spec
    from dard_plugin.training.targets import TeacherTargets
    from dard_plugin.training.trainer import AdversarialTrainerBase, Batch

    TRAINERS: dict[str, type[AdversarialTrainerBase]]

_LAZY = {
    "AttackSettings": "dard_plugin.training.attacks",
    "BatchSource": "dard_plugin.training.batches",
    "Checkpointer": "dard_plugin.training.checkpointing",
    "ADV_TARGETS": "dard_plugin.training.methods",
    "ARDTrainer": "dard_plugin.training.methods",
    "DARDTrainer": "dard_plugin.training.methods",
    "NaturalTrainer": "dard_plugin.training.methods",
    "RSLADTrainer": "dard_plugin.training.methods",
    "SATTrainer": "dard_plugin.training.methods",
    "AdaADTrainer": "dard_plugin.training.recent_methods",
    "IADTrainer": "dard_plugin.training.recent_methods",
    "MTARDTrainer": "dard_plugin.training.recent_methods",
    "METHODS": "dard_plugin.training.registry",
    "MethodSpec": "dard_plugin.training.registry",
    "build_trainer": "dard_plugin.training.registry",
    "method_spec": "dard_plugin.training.registry",
    "TeacherTargets": "dard_plugin.training.targets",
    "TrainingDivergedError": "dard_plugin.training._checks",
    "AdversarialTrainerBase": "dard_plugin.training.trainer",
    "Batch": "dard_plugin.training.trainer",
}

__all__ = [
    "ADV_TARGETS",
    "METHODS",
    "TRAINERS",
    "ARDTrainer",
    "AdaADTrainer",
    "AdversarialTrainerBase",
    "AttackSettings",
    "Batch",
    "BatchSource",
    "Checkpointer",
    "DARDTrainer",
    "IADTrainer",
    "MTARDTrainer",
    "MethodSpec",
    "NaturalTrainer",
    "RSLADTrainer",
    "SATTrainer",
    "TeacherTargets",
    "TrainingDivergedError",
    "build_trainer",
    "method_spec",
]


def __getattr__(name: str) -> Any:
    if name == "TRAINERS":  # method name -> trainer class (presets live in METHODS)
        from dard_plugin.training.registry import METHODS

        return {method: spec.trainer for method, spec in METHODS.items()}
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
