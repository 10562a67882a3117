"""dard-plugin: Dice Adversarial Robustness Distillation (DARD) and the DPGD attack.

One typed torch core (``dard_plugin.attacks.dpgd``) with thin faces for torchattacks
(``dard_plugin.DPGD``, ``dard_plugin.DPGDL2``) and ART (``dard_plugin.art.DicePGD``).

Everything loads on first use (torch included), so that ``import dard_plugin`` and the
``dard`` command line start at once.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from dard_plugin import art
    from dard_plugin.attacks.dpgd import dpgd, dpgd_l2
    from dard_plugin.attacks.torchattacks_dpgd import DPGD, DPGDL2
    from dard_plugin.evaluation import evaluate
    from dard_plugin.teachers import load_teacher
    from dard_plugin.training import (
        AdaADTrainer,
        ARDTrainer,
        DARDTrainer,
        IADTrainer,
        MTARDTrainer,
        RSLADTrainer,
        SATTrainer,
    )

__version__ = "0.1.0.dev0"

__all__ = [
    "DPGD",
    "DPGDL2",
    "ARDTrainer",
    "AdaADTrainer",
    "DARDTrainer",
    "IADTrainer",
    "MTARDTrainer",
    "RSLADTrainer",
    "SATTrainer",
    "__version__",
    "art",
    "dpgd",
    "dpgd_l2",
    "evaluate",
    "load_teacher",
]

_LAZY = {
    "dpgd": ("dard_plugin.attacks.dpgd", "dpgd"),
    "dpgd_l2": ("dard_plugin.attacks.dpgd", "dpgd_l2"),
    "DPGD": ("dard_plugin.attacks.torchattacks_dpgd", "DPGD"),
    "DPGDL2": ("dard_plugin.attacks.torchattacks_dpgd", "DPGDL2"),
    "art": ("dard_plugin.art", None),
    "load_teacher": ("dard_plugin.teachers", "load_teacher"),
    "evaluate": ("dard_plugin.evaluation", "evaluate"),
    "DARDTrainer": ("dard_plugin.training", "DARDTrainer"),
    "SATTrainer": ("dard_plugin.training", "SATTrainer"),
    "ARDTrainer": ("dard_plugin.training", "ARDTrainer"),
    "RSLADTrainer": ("dard_plugin.training", "RSLADTrainer"),
    "IADTrainer": ("dard_plugin.training", "IADTrainer"),
    "AdaADTrainer": ("dard_plugin.training", "AdaADTrainer"),
    "MTARDTrainer": ("dard_plugin.training", "MTARDTrainer"),
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        module_name, attribute = _LAZY[name]
        module = importlib.import_module(module_name)
        return module if attribute is None else getattr(module, attribute)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
