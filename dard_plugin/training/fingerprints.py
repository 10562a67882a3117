"""Fingerprints of what changes a training result: data, teacher, optimizer, scheduler.

A run's fingerprint is a nested dict of plain values; two runs may share a checkpoint only
when their fingerprints are equal, and :func:`differences` says where they are not.
"""

from __future__ import annotations

import collections
import hashlib
import numbers
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn


def tensor_digest(*tensors: torch.Tensor) -> str:
    """SHA-256 of the tensors' shapes, dtypes and values (first 16 hex digits)."""
    digest = hashlib.sha256()
    for tensor in tensors:
        plain = tensor.detach().cpu().contiguous().reshape(-1)
        digest.update(f"{tuple(tensor.shape)}{plain.dtype}".encode())
        digest.update(plain.view(torch.uint8).numpy().tobytes() if plain.numel() else b"")
    return digest.hexdigest()[:16]


def model_fingerprint(model: nn.Module) -> str:
    """The class and a digest of the state dict; an ART classifier's standardisation (held
    outside the state dict) joins the digest."""
    state = model.state_dict()
    tensors = [state[k] for k in sorted(state)]
    return f"{type(model).__name__}:{tensor_digest(*tensors, *standardisation(model))}"


def standardisation(model: nn.Module) -> list[torch.Tensor]:
    """The mean and std of an ART classifier's standardisation (``art_classifiers.Standardised``),
    or none: so that two runs under other ``preprocessing=(mean, std)`` differ."""
    from dard_plugin.training.art_classifiers import Standardised

    return [model.mean, model.std] if isinstance(model, Standardised) else []


def plain(value: Any) -> Any:
    """A JSON-like copy: numbers, strings, None, lists and dicts with string keys."""
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        return float(value)
    if isinstance(value, torch.Tensor):
        return value.tolist()
    if isinstance(value, collections.Counter):
        return {str(k): int(v) for k, v in sorted(value.items())}
    if isinstance(value, Mapping):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    return repr(value)


def optimizer_fingerprint(optimizer: torch.optim.Optimizer) -> dict[str, Any]:
    """The class and every hyper-parameter of every parameter group (group 0's at the top);
    the learning rate is the one the run started with (a scheduler's ``initial_lr``)."""
    found: dict[str, Any] = {"class": type(optimizer).__name__}
    for index, group in enumerate(optimizer.param_groups):
        prefix = "" if index == 0 else f"group{index}."
        for key, value in group.items():
            if key not in ("params", "initial_lr"):
                found[prefix + key] = plain(value)
        if "initial_lr" in group:  # a scheduler moves "lr"; the run was set up with this
            found[prefix + "lr"] = plain(group["initial_lr"])
    found["groups"] = len(optimizer.param_groups)
    return found


def scheduler_fingerprint(scheduler: Any) -> dict[str, Any] | None:
    """The class and the settings in the scheduler's state (not its position in time)."""
    if scheduler is None:
        return None
    state = scheduler.state_dict() if hasattr(scheduler, "state_dict") else {}
    settings = {k: plain(v) for k, v in state.items() if not k.startswith("_")}
    settings.pop("last_epoch", None)
    return {"class": type(scheduler).__name__, **settings}


def flatten(tree: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        if isinstance(value, Mapping) and value:
            flat.update(flatten(value, f"{prefix}{key}."))
        else:
            flat[prefix + key] = value
    return flat


def differences(saved: Mapping[str, Any], now: Mapping[str, Any]) -> list[str]:
    """``"field: checkpoint X, now Y"`` for every field (dotted path) that differs."""
    old, new = flatten(saved), flatten(now)
    return [
        f"{key}: checkpoint {old.get(key)!r}, now {new.get(key)!r}"
        for key in sorted(set(old) | set(new))
        if old.get(key) != new.get(key)
    ]
