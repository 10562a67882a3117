"""CIFAR-10 and CIFAR-100 through torchvision, converted to tensors without PIL."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import torch

from dard_plugin.data.fashion_mnist import DatasetNotFoundError

_CLASSES = {"cifar10": "CIFAR10", "cifar100": "CIFAR100"}
_FOLDERS = {"cifar10": "cifar-10-batches-py", "cifar100": "cifar-100-python"}
_ARCHIVES = {"cifar10": "cifar-10-python.tar.gz", "cifar100": "cifar-100-python.tar.gz"}


def load_cifar(
    name: str, *, train: bool, root: str | Path | None, download: bool
) -> tuple[torch.Tensor, torch.Tensor]:
    """Images (N, 3, 32, 32) float32 in [0, 1] and labels (N,) int64."""
    import torchvision.datasets

    folder = Path(root if root is not None else "data").expanduser()
    dataset_class = getattr(torchvision.datasets, _CLASSES[name])
    created = [
        p
        for p in (folder / _ARCHIVES[name], folder / _FOLDERS[name], folder, *folder.parents)
        if not p.exists()
    ]
    try:
        dataset = dataset_class(str(folder), train=train, download=False)
    except RuntimeError:
        if not download:
            raise _not_found(name, folder) from None
        try:
            dataset = dataset_class(str(folder), train=train, download=True)
        except Exception as error:
            _remove_created(created)
            raise _not_found(name, folder, error) from error
    images = torch.from_numpy(np.ascontiguousarray(dataset.data)).permute(0, 3, 1, 2)
    return images.float().div_(255.0).contiguous(), torch.tensor(dataset.targets)


def _remove_created(created: list[Path]) -> None:
    """A failed download must not leave behind an archive, a half-extracted folder or an
    empty directory that it created; what existed before is never touched."""
    for path in created:
        if path.is_file():
            path.unlink()
        elif path.is_dir() and path.name in _FOLDERS.values():
            shutil.rmtree(path, ignore_errors=True)
    for path in created:
        if path.is_dir() and not any(path.iterdir()):
            path.rmdir()


def _not_found(name: str, folder: Path, error: Exception | None = None) -> DatasetNotFoundError:
    reason = f"; the download failed ({error})" if error else ""
    return DatasetNotFoundError(
        f"{name} not found in {folder / _FOLDERS[name]}{reason}. Put torchvision's "
        f"'{_FOLDERS[name]}' folder under root={folder}, or run once with network access "
        "and download=True."
    )
