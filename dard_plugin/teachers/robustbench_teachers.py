"""RobustBench teachers by name, online or from files already on disk."""

from __future__ import annotations

import contextlib
import difflib
import io
import json
import logging
from collections.abc import Iterator
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
INPUT_SHAPES = {"cifar10": (3, 32, 32), "cifar100": (3, 32, 32)}
MODEL_INFO = "https://github.com/RobustBench/robustbench/blob/master/model_info"


class TeacherNotFoundError(FileNotFoundError):
    """A teacher's weights are not on disk and could not be downloaded."""


@dataclass(frozen=True)
class TeacherInfo:
    """One teacher with its accuracies (percent): for a RobustBench zoo entry
    (``source="robustbench"``) the ones RobustBench publishes; for a teacher shipped with
    this package (``source="dard-plugin"``) the ones measured on it, AutoAttack on the first
    ``autoattack_examples`` test images (None: RobustBench's full test set), whose clean
    accuracy is ``autoattack_clean_acc`` (None for a zoo entry: both on the full set)."""

    name: str
    dataset: str
    threat_model: str
    clean_acc: float | None
    autoattack_acc: float | None
    architecture: str | None
    venue: str | None
    eps: str | None
    source: str = "robustbench"
    autoattack_examples: int | None = None
    autoattack_clean_acc: float | None = None
    # RobustBench flags the entry's AutoAttack accuracy as unreliable (an adaptive attack
    # found it lower: Kang2021Stable, 71.28 under AutoAttack, 64.20 on the leaderboard)
    unreliable: bool = False
    # the robust accuracy under an adaptive attack, where RobustBench records one (its
    # model_info "external"): MeanSparse S-WRN-94-16, 75.28 under AutoAttack, 73.10 so
    external_acc: float | None = None

    @property
    def robust_acc(self) -> float | None:
        """The best known robust accuracy, ``min(autoattack_acc, external_acc)``: what
        RobustBench's leaderboard shows and ranks by."""
        known = [a for a in (self.autoattack_acc, self.external_acc) if a is not None]
        return min(known) if known else None


def model_page(name: str, dataset: str, threat_model: str) -> str:
    """The RobustBench page describing a zoo entry (paper, accuracies)."""
    return f"{MODEL_INFO}/{dataset}/{threat_model}/{name}.json"


@lru_cache(maxsize=1)
def _zoo_table() -> dict[str, Any]:
    """The shipped table of RobustBench's model_info (robustbench's wheel does not include
    it, so it would otherwise need the network): ``models`` and ``notes``, read once."""
    table = resources.files("dard_plugin.teachers").joinpath("robustbench_zoo.json")
    if not table.is_file():
        return {}
    loaded: dict[str, Any] = json.loads(table.read_text())
    return loaded


def _published_accuracies() -> dict[str, Any]:
    """RobustBench's model_info accuracies, per dataset and threat model."""
    models: dict[str, Any] = _zoo_table().get("models", {})
    return models


def _zoo_notes() -> dict[str, Any]:
    """The table's notes (which entries RobustBench flags unreliable, ...)."""
    notes: dict[str, Any] = _zoo_table().get("notes", {})
    return notes


def list_teachers(dataset: str = "cifar10", threat_model: str = "Linf") -> list[TeacherInfo]:
    """The teachers for ``dataset`` and ``threat_model``: those shipped with this package
    (with the accuracies measured on them) first, then every zoo entry of the installed
    robustbench sorted by the best known robust accuracy RobustBench publishes,
    ``robust_acc`` (the lower of AutoAttack's and an adaptive attack's, as its leaderboard
    ranks; best first; entries without a published number, then those RobustBench flags
    ``unreliable``, last). ``"fashion-mnist"`` has shipped teachers
    only (RobustBench has no Fashion-MNIST track)."""
    from dard_plugin.teachers.shipped import SHIPPED_TEACHERS

    shipped_datasets = sorted({t.dataset for t in SHIPPED_TEACHERS.values()})
    check_choice("dataset", dataset, [*ZOO_DATASETS, *shipped_datasets])
    check_choice("threat_model", threat_model, THREAT_MODELS)
    shipped = [
        TeacherInfo(
            name=name,
            dataset=t.dataset,
            threat_model=t.threat_model,
            clean_acc=t.clean_acc,
            autoattack_acc=t.autoattack_acc,
            architecture=t.arch,
            venue="dard-plugin (measured; model card: " + t.card + ")",
            eps=t.eps,
            source="dard-plugin",
            autoattack_examples=t.autoattack_examples,
            autoattack_clean_acc=t.autoattack_clean_acc,
        )
        for name, t in SHIPPED_TEACHERS.items()
        if t.dataset == dataset and t.threat_model == threat_model
    ]
    if dataset not in ZOO_DATASETS:
        return shipped
    names = robustbench_zoo().get(dataset, {}).get(threat_model, [])
    published = _published_accuracies().get(dataset, {}).get(threat_model, {})
    flagged = set(_zoo_notes().get("unreliable_flag_true", []))
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
                unreliable=f"{dataset}/{threat_model}/{name}" in flagged,
                external_acc=info.get("external"),
            )
        )
    ranked = sorted(
        teachers, key=lambda t: (t.unreliable, t.robust_acc is None, -(t.robust_acc or 0.0))
    )
    return shipped + ranked


def known_teacher_names() -> list[str]:
    """Every teacher name this package can load: shipped ones and all zoo entries."""
    from dard_plugin.teachers.shipped import SHIPPED_TEACHERS

    names = list(SHIPPED_TEACHERS)
    for tracks in robustbench_zoo().values():
        for entries in tracks.values():
            names.extend(n for n in entries if n not in names)
    return names


def unknown_teacher_error(name: str, dataset: str | None) -> ValueError:
    """The error for a teacher name that is neither shipped nor a zoo entry, naming it and
    the closest known names."""
    close = difflib.get_close_matches(name, known_teacher_names(), n=3, cutoff=0.6)
    hint = f" Did you mean {', '.join(close)}? (the closest known names)" if close else ""
    from dard_plugin.teachers.shipped import SHIPPED_TEACHERS

    if Path(name).is_dir():  # a run's folder: its model is a file in it
        inside = sorted(p.name for p in Path(name).glob("*.pt"))
        files = f" (it holds {', '.join(inside)})" if inside else ""
        return ValueError(f"{name} is a folder, not a model: give a model file's path{files}")
    where = f" for dataset {dataset!r}" if dataset else ""
    return ValueError(
        f"teacher must be a teacher shipped with dard-plugin or a RobustBench model name, "
        f"got {name!r}{where}.{hint} See `dard teachers --dataset DATASET` (shipped: "
        f"{', '.join(SHIPPED_TEACHERS)}); for a checkpoint file, its path (`dard evaluate "
        "FILE`, `dard distill --teacher FILE`), `dard_plugin.teachers.load_checkpoint(path, "
        "arch)` from Python"
    )


def _check_zoo_name(name: str, dataset: str, threat_model: str) -> None:
    names = robustbench_zoo().get(dataset, {}).get(threat_model, [])
    if name not in names:
        close = difflib.get_close_matches(name, names, n=3)
        hint = f" Did you mean {', '.join(close)}?" if close else ""
        others = [t for t, entries in robustbench_zoo().get(dataset, {}).items() if name in entries]
        if others:  # a model may be evaluated in any norm: its entry is another track's
            hint = (
                f" It is a RobustBench {dataset}/{others[0]} model: pass threat_model="
                f"{others[0]!r} (on the command line --threat-model {others[0]}) to load it, "
                "whatever norm it is then attacked in."
            )
        raise ValueError(
            f"name must be a RobustBench {dataset}/{threat_model} model, got {name!r}.{hint} "
            f"See dard_plugin.teachers.list_teachers({dataset!r}, {threat_model!r}) or "
            f"{LEADERBOARD}"
        )


@contextlib.contextmanager
def weights_only_loads() -> Iterator[None]:
    """``torch.load`` with ``weights_only=True`` forced while RobustBench loads a file: its
    ``load_model`` calls ``torch.load`` without it, which unpickles arbitrary objects (runs
    code) on torch < 2.6 or under ``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1``; an explicit
    ``True`` holds in both cases."""
    original = torch.load

    def load(*args: Any, **kwargs: Any) -> Any:
        kwargs["weights_only"] = True
        return original(*args, **kwargs)

    torch.load = load
    try:
        yield
    finally:
        torch.load = original


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
        with contextlib.redirect_stdout(printed), weights_only_loads():
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
    if dataset in INPUT_SHAPES:  # the zoo's CIFAR models take 3x32x32 images
        setattr(model, "input_shape", INPUT_SHAPES[dataset])  # noqa: B010 (nn.Module typing)
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
