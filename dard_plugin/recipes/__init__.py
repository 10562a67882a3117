"""End-to-end recipes behind the ``dard`` command line, usable from Python too: train a
robust teacher, distil it into a student, with results written to a folder.

``settings`` checks a run's settings before any work, ``model_files`` saves and loads
models, ``distillation`` runs :func:`distill` (loaded on first use: it imports the trainers
and ART, which ``dard evaluate`` and ``dard attack`` do not need)."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from dard_plugin.recipes.model_files import load_model, save_model
from dard_plugin.recipes.settings import (
    DEFAULT_EPS,
    DEFAULT_VAL_SPLIT,
    RUN_FILES,
    check_distill_settings,
    choose_validation,
    default_eps,
    default_lr,
    epochs_done,
    existing_run,
    remove_run,
)

__all__ = [
    "DEFAULT_EPS",
    "DEFAULT_VAL_SPLIT",
    "RUN_FILES",
    "DistillationResult",
    "check_distill_settings",
    "choose_validation",
    "default_eps",
    "default_lr",
    "distill",
    "epochs_done",
    "existing_run",
    "load_model",
    "plot_history",
    "remove_run",
    "save_model",
]

if TYPE_CHECKING:
    from dard_plugin.recipes.distillation import DistillationResult, distill, plot_history

_LAZY = ("DistillationResult", "distill", "plot_history")


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module("dard_plugin.recipes.distillation"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
