"""dard-plugin: Dice Adversarial Robustness Distillation (DARD) and the DPGD attack.

One typed torch core (``dard_plugin.attacks.dpgd``) with thin faces for torchattacks
(``dard_plugin.DPGD``) and ART (``dard_plugin.art.DicePGD``).

Faces that need a heavy third-party import (torchattacks, ART) load on first use, so that
``import dard_plugin`` stays quick.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from dard_plugin.attacks.dpgd import dpgd

if TYPE_CHECKING:
    from dard_plugin import art
    from dard_plugin.attacks.torchattacks_dpgd import DPGD
    from dard_plugin.teachers import load_teacher

__version__ = "0.1.0.dev0"

__all__ = ["DPGD", "__version__", "art", "dpgd", "load_teacher"]

_LAZY = {
    "DPGD": ("dard_plugin.attacks.torchattacks_dpgd", "DPGD"),
    "art": ("dard_plugin.art", None),
    "load_teacher": ("dard_plugin.teachers", "load_teacher"),
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        module_name, attribute = _LAZY[name]
        module = importlib.import_module(module_name)
        return module if attribute is None else getattr(module, attribute)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
