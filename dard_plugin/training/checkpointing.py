"""Atomic training checkpoints that load with ``weights_only=True``."""

from __future__ import annotations

import collections
import json
import os
import tempfile
from pathlib import Path
from typing import Any

import torch

CHECKPOINT_NAME = "checkpoint.pt"
FORMAT_VERSION = 1


def atomic_write_bytes(path: Path, write: Any) -> None:
    """Write through a temporary file in the same folder, fsync, then rename: a reader (or
    a resumed run after SIGKILL) sees the old file or the new one, never half of one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(temporary, 0o666 & ~umask)  # mkstemp's 0600 is not what a saved file should be
    try:
        with os.fdopen(handle, "wb") as stream:
            write(stream)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    atomic_write_bytes(path, lambda stream: torch.save(state, stream))


def load_checkpoint_state(path: Path) -> dict[str, Any]:
    # MultiStepLR keeps its milestones in a collections.Counter: allowed explicitly, and
    # only for this load (no global registration).
    with torch.serialization.safe_globals([collections.Counter]):
        state: dict[str, Any] = torch.load(path, map_location="cpu", weights_only=True)
    if state.get("format") != FORMAT_VERSION:
        raise ValueError(f"{path} is not a dard-plugin training checkpoint (format 1)")
    return state


def write_json(path: Path, payload: Any) -> None:
    text = json.dumps(payload, indent=2)
    atomic_write_bytes(path, lambda stream: stream.write(text.encode()))
