"""Model files that know their architecture, and loading a model by file, shipped
teacher name or RobustBench name."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from dard_plugin.data import dataset_info
from dard_plugin.models import REGISTRY, create
from dard_plugin.teachers import extract_state_dict, freeze, safe_load
from dard_plugin.teachers.checkpoints import load_weights, weights_target
from dard_plugin.training.checkpointing import save_checkpoint


def save_model(
    path: Path,
    model: nn.Module,
    arch: str,
    num_classes: int,
    *,
    arch_options: Mapping[str, Any] | None = None,
) -> None:
    """A model file that knows its architecture: ``{'arch', 'num_classes', 'state_dict'}``
    and, when given, ``'arch_options'`` (``create``'s options the model was built with,
    e.g. ``{"depth": 10, "width": 1}`` for ``wide-resnet``), so that :func:`load_model`
    rebuilds it; plain data and tensors, loading with ``weights_only=True``. A model that
    ``create(arch, num_classes=..., **arch_options)`` does not rebuild (another shape of
    any weight, or its bare network without the Normalize layer, which ``load_model``
    would put behind the dataset's normalization) is refused before anything is
    written."""
    options = dict(arch_options or {})
    state = model.state_dict()
    other = sorted(
        {str(t.dtype) for t in state.values() if t.is_floating_point()} - {"torch.float32"}
    )
    if other:
        raise ValueError(
            f"model holds {', '.join(other)} weights, and load_model rebuilds float32 models "
            "(the file would load as another model: float64 rounded, 16-bit widened): save "
            "model.float()"
        )
    with torch.device("meta"):  # shapes only: nothing allocated
        rebuilt = create(arch, num_classes=num_classes, **options)
    expected = {k: tuple(v.shape) for k, v in rebuilt.state_dict().items()}
    given = {k: tuple(v.shape) for k, v in state.items()}
    bare = weights_target(rebuilt, state)
    if bare is not rebuilt and given == {k: tuple(v.shape) for k, v in bare.state_dict().items()}:
        raise ValueError(
            f"model is the bare network of create({arch!r}) (no Normalize layer): "
            "load_model would rebuild it behind the dataset's normalization, another "
            "function. Save the registry model that holds it (create(...) with its "
            "weights), so that the file is what was trained"
        )
    if expected != given:
        differing = sorted(set(expected) ^ set(given)) or sorted(
            k for k in expected if expected[k] != given[k]
        )
        raise ValueError(
            f"model is not create({arch!r}, num_classes={num_classes}"
            f"{''.join(f', {k}={v!r}' for k, v in options.items())}): "
            f"{sum(p.numel() for p in model.parameters()):,} parameters against "
            f"{sum(p.numel() for p in rebuilt.parameters()):,}, first difference at "
            f"{differing[0]!r}; pass arch_options, the options it was built with (e.g. "
            "depth=, width=, dataset=), so that load_model can rebuild it"
        )
    payload: dict[str, Any] = {"arch": arch, "num_classes": num_classes, "state_dict": state}
    if options:
        payload["arch_options"] = options
    save_checkpoint(path, payload)


def is_model_file(spec: str) -> bool:
    """Whether :func:`load_model` reads ``spec`` as a checkpoint file (a ``.pt`` or
    ``.pth`` name, or an existing file) rather than a model name."""
    path = Path(spec)
    return path.suffix in (".pt", ".pth") or path.is_file()


def load_model(
    spec: str,
    *,
    dataset: str = "fashion-mnist",
    arch: str | None = None,
    threat_model: str | None = None,
    model_dir: str | Path = "./models",
    device: str | torch.device | None = None,
) -> nn.Module:
    """A model from a file (a dard-plugin model file, or any checkpoint with ``arch``), a
    shipped teacher name, or a RobustBench name. ``threat_model`` chooses a RobustBench
    entry (``"Linf"`` when None); a shipped teacher takes only its own, and a file none,
    since its weights are what they are; ``arch`` applies to a file only. Frozen (eval
    mode, no gradients)."""
    path = Path(spec)
    if is_model_file(spec):
        if threat_model is not None:
            raise ValueError(
                f"threat_model={threat_model!r} chooses a RobustBench entry; {spec!r} is a "
                "checkpoint file, whose weights are the same under any threat model: drop "
                "threat_model"
            )
        checkpoint = safe_load(path)
        file_arch = checkpoint.get("arch") if isinstance(checkpoint, dict) else None
        arch = arch or file_arch
        if arch is None:
            raise ValueError(
                f"arch must be given for {path} (a checkpoint that does not "
                f"record its architecture; on the command line --arch, or --teacher-arch for "
                f"--teacher and --natural-teacher-arch for --natural-teacher); choose from "
                f"{list(REGISTRY)}"
            )
        num_classes = (
            checkpoint.get("num_classes") if isinstance(checkpoint, dict) else None
        ) or dataset_info(dataset).num_classes
        # the file's Normalize buffers hold the statistics it was trained with
        # a bare network's Normalize takes the dataset's statistics (a model file's own
        # buffers override them); a network built for other images keeps its own, and the
        # callers' shape check names the mismatch
        fits = arch in REGISTRY and REGISTRY[arch].input_shape == dataset_info(dataset).input_shape
        options = dict(checkpoint.get("arch_options", {}) if isinstance(checkpoint, dict) else {})
        built_for = options.pop("dataset", None)  # the dataset it was built for, if recorded
        model = create(
            arch, num_classes=int(num_classes), dataset=built_for or (dataset if fits else None),
            **options,
        )  # fmt: skip
        state = extract_state_dict(checkpoint, source=str(path))
        target = weights_target(model, state)  # a bare network's weights: behind Normalize
        load_weights(target, state, source=str(path), arch=arch, recorded_arch=file_arch)
        return freeze(model.to(device or "cpu"))
    if arch is not None:
        raise ValueError(
            f"arch={arch!r} applies to a checkpoint file; {spec!r} is a named model whose "
            "architecture is known: drop arch"
        )
    from dard_plugin.teachers import load_teacher

    return load_teacher(
        spec, dataset=dataset, threat_model=threat_model, model_dir=model_dir, device=device
    )
