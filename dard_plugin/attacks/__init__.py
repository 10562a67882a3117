"""Attacks: the projected gradient loop (L-inf, L2 and L1), DPGD on it, and DPGD's torchattacks
faces.

``DPGD`` and ``DPGDL2`` (the torchattacks classes) are imported on first use, so that
``import dard_plugin`` does not import torchattacks.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from dard_plugin.attacks._fast import compiled_attacks
from dard_plugin.attacks.dpgd import (
    DPGD_L2_EPS,
    DPGD_REDUCTIONS,
    dpgd,
    dpgd_l1,
    dpgd_l2,
    dpgd_objective,
)
from dard_plugin.attacks.pgd import (
    LOOP_NORMS,
    NORMS,
    cross_entropy_objective,
    eval_mode,
    kl_objective,
    pgd_l1,
    pgd_l2,
    pgd_linf,
    projected_gradient_descent,
)

if TYPE_CHECKING:
    from dard_plugin.attacks.torchattacks_dpgd import DPGD, DPGDL2

__all__ = [
    "DPGD",
    "DPGDL2",
    "DPGD_L2_EPS",
    "DPGD_REDUCTIONS",
    "LOOP_NORMS",
    "NORMS",
    "compiled_attacks",
    "cross_entropy_objective",
    "dpgd",
    "dpgd_l1",
    "dpgd_l2",
    "dpgd_objective",
    "eval_mode",
    "kl_objective",
    "pgd_l1",
    "pgd_l2",
    "pgd_linf",
    "projected_gradient_descent",
]


def __getattr__(name: str) -> Any:
    if name in ("DPGD", "DPGDL2"):
        from dard_plugin.attacks import torchattacks_dpgd

        return getattr(torchattacks_dpgd, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
