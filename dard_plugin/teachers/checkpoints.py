"""Loading checkpoints safely: always ``weights_only=True``, with errors that say what is
wrong with a file (an HTML page, a truncated download, a pickle that would run code)."""

from __future__ import annotations

import logging
import pickle
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

STATE_DICT_KEYS = ("state_dict", "model_state_dict", "model")

logger = logging.getLogger(__name__)


class CheckpointError(RuntimeError):
    """A checkpoint file cannot be loaded: unsafe, corrupt, or not a checkpoint at all."""


def check_not_html(path: Path) -> None:
    """A failed Google Drive (or web) download often saves an HTML page under the
    expected name, and a run's folder holds JSON files beside its model: say so instead of
    failing inside the unpickler (which called JSON "Python objects other than tensors")."""
    with path.open("rb") as handle:
        head = handle.read(512).lstrip().lower()
    if head.startswith((b"<!doctype html", b"<html", b"<head", b"<?xml")) or b"<html" in head:
        raise CheckpointError(
            f"{path} is an HTML page, not a checkpoint (most likely a failed download, "
            "e.g. Google Drive's quota or confirmation page). Delete it and download the "
            "weights again."
        )
    if head.startswith((b"{", b"[")):  # torch writes zip archives (PK) or pickles (\x80)
        raise CheckpointError(
            f"{path} is a JSON file, not a checkpoint: give the model file (a run of dard "
            "distill or dard train-teacher keeps it as student.pt or teacher.pt)"
        )


def explain_load_error(
    path: Path,
    error: BaseException,
    *,
    corrupt_types: tuple[type[BaseException], ...],
    advice: str = "Delete it and download or save it again.",
) -> CheckpointError | None:
    """The clear error for a failed ``torch.load(weights_only=True)`` of ``path``: an
    unsafe pickle (refused), or a file of ``corrupt_types`` trouble (truncated or corrupt);
    None when the error is neither."""
    text = str(error)
    if isinstance(error, pickle.UnpicklingError) and (
        "weights only load failed" in text.lower() or "weights_only" in text
    ):
        return CheckpointError(
            f"refused to load {path}: it holds Python objects other than tensors and "
            "plain containers, and unpickling them could run arbitrary code "
            "(this package always loads with torch.load(weights_only=True)). If you "
            "trust the file, re-save only the weights: "
            "torch.save(model.state_dict(), 'weights.pt')."
        )
    if isinstance(error, (pickle.UnpicklingError, *corrupt_types)):
        first_line = text.splitlines()[0] if text else ""
        return CheckpointError(
            f"{path} is truncated or corrupt and cannot be read as a torch checkpoint "
            f"({type(error).__name__}: {first_line}). {advice}"
        )
    return None


def safe_load(path: str | Path) -> Any:
    """``torch.load(path, weights_only=True)`` on CPU, with clear errors."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    check_not_html(path)
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, OSError, ValueError) as error:
        explained = explain_load_error(
            path, error, corrupt_types=(RuntimeError, EOFError, OSError, ValueError)
        )
        raise (explained or error) from None


def extract_state_dict(checkpoint: Any, *, source: str = "checkpoint") -> dict[str, torch.Tensor]:
    """A state dict from a raw state dict or ``{'state_dict' | 'model_state_dict' |
    'model': ...}``, with DataParallel's ``module.`` prefixes removed."""
    state = checkpoint
    if isinstance(state, Mapping):
        for key in STATE_DICT_KEYS:
            if key in state and isinstance(state[key], Mapping):
                state = state[key]
                break
    if not isinstance(state, Mapping) or not all(
        isinstance(v, torch.Tensor) for v in state.values()
    ):
        raise CheckpointError(
            f"{source} holds no state dict: expected a mapping of tensors, or one under "
            f"{list(STATE_DICT_KEYS)}"
        )
    return {
        (key[len("module.") :] if key.startswith("module.") else key): value
        for key, value in state.items()
    }


def describe_state(state: Mapping[str, torch.Tensor], *, recorded_arch: object = None) -> str:
    """What a checkpoint looks like, for errors: the architecture it records (if any), its
    parameter count and its first weight's name and shape."""
    # buffers (BatchNorm statistics, the Normalize layer's mean and std) are not parameters
    buffers = (
        "running_mean",
        "running_var",
        "num_batches_tracked",
        "normalize.mean",
        "normalize.std",
    )
    learned = {k: v for k, v in state.items() if not k.endswith(buffers)}
    weights = [(k, v) for k, v in learned.items() if v.dim() > 1 and k.endswith("weight")]
    count = sum(v.numel() for v in learned.values())
    parts = []
    if recorded_arch is not None:
        parts.append(f"it records arch {recorded_arch!r}")
    parts.append(f"{count:,} parameters in {len(state)} tensors")
    if weights:
        first_name, first = weights[0]
        parts.append(f"first layer {first_name} of shape {tuple(first.shape)}")
    return "; ".join(parts)


def _classes_hint(model: nn.Module, state: Mapping[str, torch.Tensor]) -> str:
    """Where the file is this architecture but for its output layer's width: the number of
    classes to ask for."""
    own = model.state_dict()
    if set(own) != set(state):
        return ""
    differing = [k for k in own if tuple(own[k].shape) != tuple(state[k].shape)]
    layers = {k.rsplit(".", 1)[0] for k in differing}
    if len(layers) != 1 or any(own[k].shape[1:] != state[k].shape[1:] for k in differing):
        return ""
    layer, key = layers.pop(), differing[0]
    return (
        f"It is this architecture with {state[key].shape[0]} outputs in {layer} where the "
        f"model has {own[key].shape[0]}: ask for num_classes={state[key].shape[0]}"
    )


def load_weights(
    model: nn.Module,
    state: Mapping[str, torch.Tensor],
    *,
    source: str,
    arch: str,
    recorded_arch: object = None,
    strict: bool = True,
) -> None:
    """``model.load_state_dict(state)``; when the weights do not fit, a
    :class:`CheckpointError` that says what the file holds and which ``arch`` was asked
    for, instead of torch's list of missing and unexpected keys. With ``strict=False`` the
    keys left out either way are logged as a warning, and a file of which no key loads is
    refused as with ``strict=True``."""
    expected = sum(p.numel() for p in model.parameters())
    unfit = CheckpointError(
        f"{source} does not fit the architecture arch={arch!r} ({expected:,} parameters) "
        f"that was asked for: {describe_state(state, recorded_arch=recorded_arch)}. "
        + (
            _classes_hint(model, state)
            or "Give the architecture the file was saved from (see "
            "dard_plugin.models.list_models())"
        )
    )
    try:
        result = model.load_state_dict(state, strict=strict)
    except RuntimeError:
        raise unfit from None
    if strict or not (result.missing_keys or result.unexpected_keys):
        return
    if len(result.missing_keys) == len(model.state_dict()):
        raise unfit  # strict=False, and not one key loaded: a model left as initialised
    logger.warning(
        "%s loaded into arch=%r with strict=False: %d of the model's keys kept their initial "
        "values (%s), %d of the file's keys were not used (%s)",
        source, arch, len(result.missing_keys), ", ".join(result.missing_keys[:8]),
        len(result.unexpected_keys), ", ".join(result.unexpected_keys[:8]),
    )  # fmt: skip


def weights_target(model: nn.Module, state: Mapping[str, torch.Tensor]) -> nn.Module:
    """Where ``state`` loads in a registry model: the model itself, or, for a bare
    network's weights (keys without the ``network.`` prefix, no Normalize layer saved), its
    network behind the model's own normalization."""
    network = getattr(model, "network", None)
    if isinstance(network, nn.Module) and not any(k.startswith("network.") for k in state):
        return network
    return model


def freeze(model: nn.Module) -> nn.Module:
    """Evaluation mode and no parameter gradients: a teacher never updates."""
    model.eval()
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    return model


def _check_given_normalization(
    state: Mapping[str, Any], arch_kwargs: Mapping[str, Any], source: str
) -> None:
    """``mean``/``std`` given for a file that holds its own normalisation (a registry
    model's ``normalize.*``) would be silently replaced by the file's: refused when they
    differ."""
    for key in ("mean", "std"):
        held = state.get(f"normalize.{key}")
        if key not in arch_kwargs or not isinstance(held, torch.Tensor):
            continue
        given = torch.as_tensor(arch_kwargs[key], dtype=held.dtype).flatten()
        if given.shape != held.flatten().shape or not torch.allclose(given, held.flatten()):
            raise ValueError(
                f"{key}={list(arch_kwargs[key])} was given, and {source} holds its own "
                f"normalisation ({key} {held.flatten().tolist()}), which it loads over the "
                f"given one: drop {key}= (the file's is what the network was trained with)"
            )


def load_checkpoint(
    path: str | Path,
    arch: str | nn.Module,
    *,
    device: str | torch.device | None = None,
    strict: bool = True,
    **arch_kwargs: Any,
) -> nn.Module:
    """A local teacher: the weights in ``path`` loaded into ``arch``, frozen.

    Args:
        path: a checkpoint: a raw state dict, ``{'state_dict': ...}`` (also
            ``model_state_dict``/``model``), ``module.``-prefixed keys accepted. Always
            loaded with ``weights_only=True``: a pickle that would run code is refused.
        arch: a registry name (:func:`dard_plugin.models.list_models`) built with
            ``arch_kwargs`` (e.g. ``num_classes=10``), or an ``nn.Module`` to load into.
            Weights of a bare network (keys without the registry's ``network.`` prefix)
            load behind the registry model's ``Normalize`` layer: pass the ``mean`` and
            ``std`` the network was trained with.
        device: where to put the model (default: CPU).
        strict: as ``nn.Module.load_state_dict``.
    """
    if isinstance(arch, str):
        from dard_plugin.models import create

        model = create(arch, **arch_kwargs)
    elif isinstance(arch, nn.Module):
        if arch_kwargs:
            raise TypeError(f"arch_kwargs are only for a registry name, got {sorted(arch_kwargs)}")
        model = arch
    else:
        raise TypeError(f"arch must be a registry name or an nn.Module, got {type(arch).__name__}")
    state = extract_state_dict(safe_load(path), source=str(path))
    _check_given_normalization(state, arch_kwargs, str(path))
    target = weights_target(model, state)
    arch_name = arch if isinstance(arch, str) else type(arch).__name__
    load_weights(target, state, source=str(path), arch=arch_name, strict=strict)
    return freeze(model.to(device if device is not None else "cpu"))
