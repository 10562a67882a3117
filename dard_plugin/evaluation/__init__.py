"""Standardised robustness evaluation: AutoAttack (the original algorithm) and the usual
attack suite, reported the way RobustBench reports them."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from dard_plugin.evaluation.attacks import SUITE
from dard_plugin.evaluation.autoattack import AUTOATTACK_PARTS
from dard_plugin.evaluation.evaluate import ATTACK_NAMES, DEFAULT_ATTACKS, evaluate
from dard_plugin.evaluation.report import RobustnessReport, eps_string, plot_robustness_curve


def robustness_curve(
    model: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    eps_values: Sequence[float],
    **kwargs: Any,
) -> list[RobustnessReport]:
    """:func:`evaluate` at each budget in ``eps_values`` (for :func:`plot_robustness_curve`)."""
    if not eps_values:
        raise ValueError("eps_values must hold at least one budget")
    return [evaluate(model, images, labels, eps=eps, **kwargs) for eps in eps_values]


__all__ = [
    "ATTACK_NAMES",
    "AUTOATTACK_PARTS",
    "DEFAULT_ATTACKS",
    "SUITE",
    "RobustnessReport",
    "eps_string",
    "evaluate",
    "plot_robustness_curve",
    "robustness_curve",
]
