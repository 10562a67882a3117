"""Standardised robustness evaluation: AutoAttack (the original algorithm) and the usual
attack suite, reported the way RobustBench reports them."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from dard_plugin._validation import check_choice, check_eps_plausible, check_real
from dard_plugin.evaluation.attacks import SUITE
from dard_plugin.evaluation.autoattack import AUTOATTACK_PARTS, tagged_path
from dard_plugin.evaluation.evaluate import (
    ATTACK_NAMES,
    DEFAULT_ATTACKS,
    NORMS,
    evaluate,
    worst_case,
)
from dard_plugin.evaluation.report import RobustnessReport, eps_string, plot_robustness_curve


def robustness_curve(
    model: nn.Module | Any,
    images: torch.Tensor,
    labels: torch.Tensor,
    eps_values: Sequence[float],
    **kwargs: Any,
) -> list[RobustnessReport]:
    """:func:`evaluate` at each budget in ``eps_values`` (for :func:`plot_robustness_curve`).
    Every budget is checked before the first evaluation. A ``state_path`` (AutoAttack's
    resume state) gives each budget its own files: ``aa.json`` -> ``aa.eps-0.1.json``, from
    which :func:`evaluate` derives each attack set's (``aa.eps-0.1.autoattack.json``)."""
    if isinstance(eps_values, (str, bytes)):
        raise ValueError("eps_values must hold at least one budget, not a string")
    eps_values = list(eps_values)  # an iterator is read once, here
    if not eps_values:
        raise ValueError("eps_values must hold at least one budget")
    norm = kwargs.get("norm", "Linf")
    check_choice("norm", norm, NORMS)
    for index, eps in enumerate(eps_values):
        name = f"eps_values[{index}]"
        check_real(name, eps, low=0.0, low_inclusive=False)
        check_eps_plausible(
            eps, (0.0, 1.0), norm=norm, input_shape=tuple(images.shape[1:]), name=name
        )
    state_path = kwargs.pop("state_path", None)
    attacks = kwargs.get("attacks")
    if isinstance(attacks, Iterable) and not isinstance(attacks, str):
        kwargs["attacks"] = list(attacks)  # an iterator is read once, for every budget
    return [
        evaluate(model, images, labels, eps=eps, state_path=budget_state(state_path, eps), **kwargs)
        for eps in eps_values
    ]


def budget_state(state_path: str | Path | None, eps: float) -> Path | None:
    """The state path of one budget of a curve: ``aa.json`` -> ``aa.eps-8_255.json``. A
    budget its written form gives back neither in float64 nor in float32 (``0.1000000001``
    is written ``0.1``) gets a hash of its value too, so that it has its own file (a float32
    budget and its float64 twin, ``np.float32(0.1)`` and ``0.1``, share one: its settings
    refuse the other, naming eps)."""
    if state_path is None:
        return None
    text = eps_string(eps)
    written = int(text[:-4]) / 255 if text.endswith("/255") else float(text)
    tag = "eps-" + text.replace("/", "_")
    if float(eps) not in (written, float(np.float32(written))):
        tag += "-" + hashlib.sha256(repr(float(eps)).encode()).hexdigest()[:8]
    return tagged_path(state_path, tag)


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
    "worst_case",
]
