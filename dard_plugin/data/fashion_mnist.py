"""Fashion-MNIST from IDX files: the Debian package's, a user's folder, or a download.

Debian's ``dataset-fashion-mnist`` recompresses the ``.gz`` files, so torchvision's MD5
check rejects them; the IDX format is simple enough to read directly.
"""

from __future__ import annotations

import gzip
import logging
import shutil
import tempfile
from pathlib import Path

import numpy as np
import torch

logger = logging.getLogger(__name__)

DEBIAN_DIR = Path("/usr/share/datasets/fashion-mnist")
SUBDIRS = ("", "FashionMNIST/raw", "fashion-mnist", "fashion_mnist")
_IDX_DTYPES: dict[int, str | type] = {
    0x08: np.uint8,
    0x09: np.int8,
    0x0B: ">i2",
    0x0C: ">i4",
    0x0D: ">f4",
    0x0E: ">f8",
}


# where a download without ``root`` goes (relative to the working directory), and is
# read from afterwards
DOWNLOAD_DIR = Path("data")


class DatasetNotFoundError(FileNotFoundError):
    """A dataset's files are nowhere on disk and could not be downloaded."""


def read_idx(path: Path) -> np.ndarray:
    """Parse an IDX file (optionally gzip-compressed) into a numpy array."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as handle:
        raw = handle.read()
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_DTYPES:
        raise ValueError(f"{path} is not an IDX file (bad magic number)")
    ndim = raw[3]
    header = 4 + 4 * ndim
    shape = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    dtype = np.dtype(_IDX_DTYPES[raw[2]])
    expected = int(np.prod(shape)) * dtype.itemsize
    if len(raw) - header != expected:
        raise ValueError(
            f"{path} is truncated or corrupt: header promises {expected} bytes of data, "
            f"found {len(raw) - header}"
        )
    return np.frombuffer(raw, dtype=dtype, offset=header).reshape(shape)


def _split_files(train: bool) -> tuple[str, str]:
    prefix = "train" if train else "t10k"
    return f"{prefix}-images-idx3-ubyte", f"{prefix}-labels-idx1-ubyte"


def _find_in(folder: Path, train: bool) -> tuple[Path, Path] | None:
    for sub in SUBDIRS:
        base = folder / sub if sub else folder
        found = []
        for stem in _split_files(train):
            candidates = [base / f"{stem}.gz", base / stem]
            match = next((c for c in candidates if c.is_file()), None)
            if match is None:
                break
            found.append(match)
        if len(found) == 2:
            return found[0], found[1]
    return None


MIRROR = "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"


def _download(root: Path, timeout: float = 30.0) -> None:
    """Fetch the four IDX files into a temporary folder, then move them into ``root``:
    a failed download leaves nothing behind. (torchvision is not imported: the offline
    failure stays well under a second.)"""
    import urllib.request

    with tempfile.TemporaryDirectory(prefix="dard-fmnist-") as tmp:
        names = [f"{stem}.gz" for train in (True, False) for stem in _split_files(train)]
        for name in names:
            with urllib.request.urlopen(MIRROR + name, timeout=timeout) as response:
                (Path(tmp) / name).write_bytes(response.read())
            read_idx(Path(tmp) / name)  # refuse an error page saved under the right name
        root.mkdir(parents=True, exist_ok=True)
        for name in names:
            shutil.move(str(Path(tmp) / name), root / name)


def load_fashion_mnist(
    *, train: bool, root: str | Path | None, download: bool
) -> tuple[torch.Tensor, torch.Tensor]:
    """Images (N, 1, 28, 28) float32 in [0, 1] and labels (N,) int64, from ``root`` alone
    when it is given (a download goes there), else from the Debian package's folder or
    ``data`` (where a download without ``root`` goes), else downloaded into ``data``: a
    ``root`` without the files is an error, never a silent read of another copy."""
    places = [Path(root).expanduser()] if root is not None else [DEBIAN_DIR, DOWNLOAD_DIR]
    found = next((f for f in (_find_in(p, train) for p in places) if f is not None), None)
    download_error: Exception | None = None
    if found is None and download:
        target = Path(root).expanduser() if root is not None else DOWNLOAD_DIR
        try:
            _download(target)
            found = _find_in(target, train)
        except Exception as error:
            download_error = error
    if found is None:
        looked = ", ".join(str(p) for p in places)
        reason = f"; the download failed ({download_error})" if download_error else ""
        raise DatasetNotFoundError(
            f"Fashion-MNIST {_split_files(train)[0]}[.gz] not found in {looked} "
            f"(or their FashionMNIST/raw subfolders){reason}. Provide it with "
            "`apt-get install dataset-fashion-mnist` (Debian), pass root=DIR holding the IDX "
            "files, or run once with network access and download=True."
        )
    images_path, labels_path = found
    logger.debug("reading Fashion-MNIST from %s", images_path.parent)
    images = read_idx(images_path)
    labels = read_idx(labels_path)
    if images.ndim != 3 or labels.shape != images.shape[:1]:
        raise ValueError(
            f"Fashion-MNIST files in {images_path.parent} disagree: images {images.shape}, "
            f"labels {labels.shape}"
        )
    images_t = torch.from_numpy(images.copy()).unsqueeze(1).float().div_(255.0)
    return images_t, torch.from_numpy(labels.astype(np.int64))
