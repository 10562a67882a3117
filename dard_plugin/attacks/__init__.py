"""Attacks: the L-inf sign-gradient loop, DPGD on it, and DPGD's torchattacks face.

``DPGD`` (the torchattacks class) is imported on first use, so that ``import dard_plugin``
does not import torchattacks.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from dard_plugin.attacks.dpgd import DPGD_REDUCTIONS, dpgd, dpgd_objective
from dard_plugin.attacks.pgd import cross_entropy_objective, kl_objective, pgd_linf

if TYPE_CHECKING:
    from dard_plugin.attacks.torchattacks_dpgd import DPGD

__all__ = [
    "DPGD",
    "DPGD_REDUCTIONS",
    "cross_entropy_objective",
    "dpgd",
    "dpgd_objective",
    "kl_objective",
    "pgd_linf",
]


def __getattr__(name: str) -> Any:
    if name == "DPGD":
        from dard_plugin.attacks.torchattacks_dpgd import DPGD

        return DPGD
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
