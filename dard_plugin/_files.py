"""Atomic file writes: through a temporary file in the same folder, fsync, then a rename,
with the permissions a plain ``open`` would give (the umask's), not ``mkstemp``'s 0600."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO

# AutoAttack's state files that `dard evaluate` writes in --out (also removed with a run)
EVALUATION_STATE_PATTERN = "autoattack-state.*.json"


def atomic_write_bytes(path: str | Path, write: Callable[[IO[bytes]], object]) -> Path:
    """Write through a temporary file in the same folder, fsync, then rename: a reader (or
    a resumed run after SIGKILL) sees the old file or the new one, never half of one."""
    path = Path(path)
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
    return path


def write_text_atomically(path: str | Path, text: str) -> Path:
    """``text`` (UTF-8) written by :func:`atomic_write_bytes`."""
    data = text.encode()
    return atomic_write_bytes(path, lambda stream: stream.write(data))
