"""Robust teachers: RobustBench models by name, local checkpoints, loaded safely and frozen.

RobustBench is imported only when a RobustBench teacher is asked for (its import takes
seconds); see :mod:`dard_plugin.teachers.robustbench_compat` for how its import problems
are handled.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from dard_plugin.teachers.checkpoints import (
    CheckpointError,
    extract_state_dict,
    freeze,
    load_checkpoint,
    safe_load,
)
from dard_plugin.teachers.robustbench_teachers import (
    ZOO_DATASETS,
    TeacherInfo,
    TeacherNotFoundError,
    known_teacher_names,
    list_teachers,
    load_robustbench_teacher,
    model_page,
    unknown_teacher_error,
)
from dard_plugin.teachers.shipped import SHIPPED_TEACHERS, load_shipped_teacher


def load_teacher(
    name: str,
    *,
    dataset: str | None = None,
    threat_model: str | None = None,
    model_dir: str | Path = "./models",
    device: str | torch.device | None = None,
) -> nn.Module:
    """A frozen teacher (eval mode, ``requires_grad=False``) by name.

    ``name`` is a teacher shipped with this package (``"dard-fmnist-teacher"``, the
    stronger ``"dard-fmnist-teacher-strong"``, or the naturally trained, not robust
    ``"dard-fmnist-teacher-natural"`` (MTARD's second teacher), for
    ``dataset="fashion-mnist"``; no file or network needed; see :data:`SHIPPED_TEACHERS`)
    or a RobustBench zoo entry
    (e.g. ``"Wong2020Fast"``; ``dataset`` defaults to ``"cifar10"``), read from
    ``<model_dir>/<dataset>/<threat_model>/<name>.pt`` or downloaded when missing (a
    shipped teacher is read from the package: ``model_dir`` does not apply to it, and the
    command line refuses ``--model-dir`` there). A shipped teacher has its own threat
    model (taken when ``threat_model`` is None): another is an error. A RobustBench name
    takes ``"Linf"`` when None.
    For a local checkpoint of your own, use :func:`load_checkpoint`.
    """
    if name in SHIPPED_TEACHERS:
        shipped = SHIPPED_TEACHERS[name].threat_model
        if threat_model not in (None, shipped):
            raise ValueError(
                f"threat_model={threat_model!r}: {name!r} is a shipped {shipped} teacher "
                "(threat_model chooses among RobustBench entries): drop it"
            )
        return load_shipped_teacher(
            name, dataset=dataset or SHIPPED_TEACHERS[name].dataset, device=device
        )
    if name not in known_teacher_names():
        raise unknown_teacher_error(name, dataset)
    dataset = dataset or "cifar10"
    if dataset not in ZOO_DATASETS:  # the command line's default dataset, say
        raise ValueError(
            f"{name!r} is a RobustBench model, for {' / '.join(ZOO_DATASETS)} images; the "
            f"dataset is {dataset!r}: choose its dataset (on the command line --dataset), "
            "or a teacher for these images (`dard teachers --dataset DATASET` lists them)"
        )
    return load_robustbench_teacher(
        name, dataset=dataset, threat_model=threat_model or "Linf", model_dir=model_dir,
        device=device,
    )  # fmt: skip


__all__ = [
    "SHIPPED_TEACHERS",
    "CheckpointError",
    "TeacherInfo",
    "TeacherNotFoundError",
    "extract_state_dict",
    "freeze",
    "known_teacher_names",
    "list_teachers",
    "load_checkpoint",
    "load_teacher",
    "model_page",
    "safe_load",
]
