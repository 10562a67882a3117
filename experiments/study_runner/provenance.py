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


def git_dirty() -> bool | None:
    """Whether the checkout differs from its commit: a tracked file changed anywhere, or an
    untracked file in the code (``dard_plugin/``, ``experiments/``: a new module a run may
    import; result files elsewhere do not count). None where git cannot tell (no ``.git``,
    no git): unknown, not clean."""
    tracked = _git("status", "--porcelain", "--untracked-files=no")
    untracked = _git(
        "status", "--porcelain", "--untracked-files=all", "--", "dard_plugin", "experiments"
    )
    if "unknown" in (tracked, untracked):
        return None
    return bool(tracked) or bool(untracked)


def check_code_location() -> None:
    """Refuse, before any work, a run whose ``dard_plugin`` is imported from another
    checkout than the one whose commit the results record (a worktree run with another
    checkout's editable install, without ``PYTHONPATH``)."""
    import dard_plugin

    code = Path(dard_plugin.__file__).resolve().parent
    if not code.is_relative_to(REPO):
        raise RuntimeError(
            f"dard_plugin is imported from {code}, outside this checkout ({REPO}), whose "
            f"commit the results would record; run with PYTHONPATH={REPO}"
        )


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


def code_state() -> dict[str, Any]:
    """The checkout's commit and dirty flag, as :func:`provenance` records them."""
    return {"git_commit": _git("rev-parse", "HEAD"), "git_dirty": git_dirty()}


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
    return {
        "git_commit": _git("rev-parse", "HEAD"),
        "git_dirty": git_dirty(),
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
