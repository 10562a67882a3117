"""RobustBench teachers by name, online or from files already on disk."""

from __future__ import annotations

import contextlib
import difflib
import io
import json
import logging
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

import torch
from torch import nn

from dard_plugin._validation import check_choice
from dard_plugin.teachers.checkpoints import check_not_html, explain_load_error, freeze
from dard_plugin.teachers.robustbench_compat import import_robustbench_utils, robustbench_zoo

logger = logging.getLogger(__name__)

ZOO_DATASETS = ("cifar10", "cifar100", "imagenet")
THREAT_MODELS = ("Linf", "L2", "corruptions")
LEADERBOARD = "https://robustbench.github.io/"
MODEL_INFO = "https://github.com/RobustBench/robustbench/blob/master/model_info"


class TeacherNotFoundError(FileNotFoundError):
    """A teacher's weights are not on disk and could not be downloaded."""


@dataclass(frozen=True)
class TeacherInfo:
    """One RobustBench zoo entry, with the accuracies RobustBench publishes (percent)."""

    name: str
    dataset: str
    threat_model: str
    clean_acc: float | None
    autoattack_acc: float | None
    architecture: str | None
    venue: str | None
    eps: str | None


def model_page(name: str, dataset: str, threat_model: str) -> str:
    """The RobustBench page describing a zoo entry (paper, accuracies)."""
    return f"{MODEL_INFO}/{dataset}/{threat_model}/{name}.json"


@lru_cache(maxsize=1)
def _published_accuracies() -> dict[str, Any]:
    """RobustBench's model_info accuracies, shipped with this package (robustbench's wheel
    does not include them, so they would otherwise need the network)."""
    table = resources.files("dard_plugin.teachers").joinpath("robustbench_zoo.json")
    if not table.is_file():
        return {}
    models: dict[str, Any] = json.loads(table.read_text())["models"]
    return models


def list_teachers(dataset: str = "cifar10", threat_model: str = "Linf") -> list[TeacherInfo]:
    """Every zoo entry of the installed robustbench for ``dataset`` and ``threat_model``,
    sorted by AutoAttack accuracy (best first; entries without a published number last)."""
    check_choice("dataset", dataset, ZOO_DATASETS)
    check_choice("threat_model", threat_model, THREAT_MODELS)
    names = robustbench_zoo().get(dataset, {}).get(threat_model, [])
    published = _published_accuracies().get(dataset, {}).get(threat_model, {})
    teachers = []
    for name in names:
        info = published.get(name, {})
        teachers.append(
            TeacherInfo(
                name=name,
                dataset=dataset,
                threat_model=threat_model,
                clean_acc=info.get("clean_acc"),
                autoattack_acc=info.get("autoattack_acc"),
                architecture=info.get("architecture"),
                venue=info.get("venue"),
                eps=info.get("eps"),
            )
        )
    return sorted(teachers, key=lambda t: (t.autoattack_acc is None, -(t.autoattack_acc or 0.0)))


def _check_zoo_name(name: str, dataset: str, threat_model: str) -> None:
    names = robustbench_zoo().get(dataset, {}).get(threat_model, [])
    if name not in names:
        close = difflib.get_close_matches(name, names, n=3)
        hint = f" Did you mean {', '.join(close)}?" if close else ""
        raise ValueError(
            f"name must be a RobustBench {dataset}/{threat_model} model, got {name!r}.{hint} "
            f"See dard_plugin.teachers.list_teachers({dataset!r}, {threat_model!r}) or "
            f"{LEADERBOARD}"
        )


def load_robustbench_teacher(
    name: str,
    *,
    dataset: str = "cifar10",
    threat_model: str = "Linf",
    model_dir: str | Path = "./models",
    device: str | torch.device | None = None,
) -> nn.Module:
    """A RobustBench model, frozen, through ``robustbench.utils.load_model``.

    The weights are read from ``<model_dir>/<dataset>/<threat_model>/<name>.pt`` and
    downloaded only when that file is missing. Offline with no file, a
    :class:`TeacherNotFoundError` names the exact path expected and the model's page, and
    no empty folder is left behind.
    """
    check_choice("dataset", dataset, ZOO_DATASETS)
    check_choice("threat_model", threat_model, THREAT_MODELS)
    _check_zoo_name(name, dataset, threat_model)
    folder = Path(model_dir) / dataset / threat_model
    path = folder / f"{name}.pt"
    if path.is_file():
        check_not_html(path)
    created = [p for p in (folder, *folder.parents) if not p.exists()]
    utils = import_robustbench_utils()
    printed = io.StringIO()  # robustbench prints its download messages: log them instead
    try:
        with contextlib.redirect_stdout(printed):
            model: nn.Module = utils.load_model(
                model_name=name,
                model_dir=str(model_dir),
                dataset=dataset,
                threat_model=threat_model,
            )
    except Exception as error:
        logger.info("robustbench: %s", printed.getvalue().strip())
        _remove_empty(created)
        raise _explain(error, name, dataset, threat_model, path) from error
    if printed.getvalue().strip():
        logger.info("robustbench: %s", printed.getvalue().strip())
    logger.info("loaded RobustBench teacher %s (%s, %s)", name, dataset, threat_model)
    return freeze(model.to(device if device is not None else "cpu"))


def _remove_empty(created: list[Path]) -> None:
    for path in created:  # deepest first
        if path.is_dir() and not any(path.iterdir()):
            path.rmdir()
        elif path.is_dir():
            break


def _explain(error: Exception, name: str, dataset: str, threat_model: str, path: Path) -> Exception:
    page = model_page(name, dataset, threat_model)
    message = str(error).splitlines()[0] if str(error) else type(error).__name__
    if path.is_file():
        explained = explain_load_error(
            path,
            error,
            corrupt_types=(RuntimeError, EOFError),
            advice=f"Delete it and download the weights again (model page: {page}).",
        )
        if explained is not None:
            return explained
    if not path.is_file():
        return TeacherNotFoundError(
            f"RobustBench teacher {name!r} is not on disk and could not be downloaded "
            f"({type(error).__name__}: {message}). Put its weights at {path} "
            f"(a state dict, or {{'state_dict': ...}}); the model is described at {page}. "
            "Entries that RobustBench loads through timm (XCiT, DeiT, ...) always need the "
            "network."
        )
    return error
