"""What a result file says about where it came from: the code, the packages, the machine."""

from __future__ import annotations

import importlib.metadata
import os
import platform
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
PACKAGES = (
    "dard-plugin",
    "torch",
    "torchattacks",
    "adversarial-robustness-toolbox",
    "robustbench",
    "pyautoattack",
    "numpy",
)


def _git(*args: str) -> str:
    try:
        return subprocess.run(
            ["git", *args], cwd=REPO, capture_output=True, text=True, timeout=30, check=True
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def cpu_model(cpuinfo: Path = Path("/proc/cpuinfo")) -> str:
    """The CPU's model name (``/proc/cpuinfo`` on Linux), else what ``platform`` knows."""
    try:
        for line in cpuinfo.read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name" and value.strip():
                return value.strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def provenance() -> dict[str, Any]:
    """The code version, packages and machine behind a result file. ``machine.cuda`` is the
    GPU's name when one is visible, else None; ``machine.cpu_model`` the CPU's."""
    import torch

    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = "not installed"
    status = _git("status", "--porcelain", "--untracked-files=no")
    return {
        "git_commit": _git("rev-parse", "HEAD"),
        "git_dirty": status not in ("", "unknown"),
        "versions": versions,
        "machine": {
            "platform": platform.platform(),
            "processor": platform.processor() or platform.machine(),
            "cpu_model": cpu_model(),
            "cpu_count": os.cpu_count(),
            "torch_threads": torch.get_num_threads(),
            "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        },
        "python": platform.python_version(),
    }


def script_path(script: str | Path | None = None) -> str:
    """The running script (or ``script``) relative to the repository where it lies inside."""
    path = Path(script if script is not None else sys.argv[0]).resolve()
    return str(path.relative_to(REPO)) if path.is_relative_to(REPO) else str(path)


def command_line() -> str:
    """The command that is running, with the script's path relative to the repository."""
    return " ".join(shlex.quote(a) for a in ["python", script_path(), *sys.argv[1:]])
