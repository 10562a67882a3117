"""The original AutoAttack (pyautoattack, the same code as Croce & Hein's repository), run
chunk by chunk with a resumable state.

The examples are cut into chunks of ``batch_size`` at fixed positions (chunk ``c`` holds
examples ``[c * batch_size, (c + 1) * batch_size)`` of the whole evaluation set), and
AutoAttack runs on each chunk on its own. Each of AutoAttack's attacks reseeds the global
RNG with the seed at every call, so a chunk's result depends only on its examples and the
seed: not on which chunks ran before it, on a restart, or on the rank that runs it. After
each chunk its per-sample flags are written (atomically) to the state file of that attack
set, and a restarted run skips the chunks already there; a chunk interrupted part-way is
run again from its start, so the resumed result equals an uninterrupted one exactly.
"""

from __future__ import annotations

import contextlib
import json
import logging
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from torch import nn

from dard_plugin._json import dumps_strict
from dard_plugin.evaluation.attacks import correct_predictions
from dard_plugin.evaluation.report import write_text_atomically

logger = logging.getLogger(__name__)

AUTOATTACK_PARTS = ("apgd-ce", "apgd-t", "fab-t", "square")
STATE_FORMAT = 1


def attack_set_name(parts: tuple[str, ...]) -> str:
    """``autoattack`` for the full standard set, else the parts joined by ``+``."""
    return "autoattack" if tuple(parts) == AUTOATTACK_PARTS else "+".join(parts)


def state_file(
    state_path: str | Path, parts: tuple[str, ...], *, rank: int = 0, world_size: int = 1
) -> Path:
    """The state file of one attack set (and one rank) derived from ``state_path``:
    ``aa.json`` gives ``aa.autoattack.json`` in one process and
    ``aa.autoattack.rank0-of-2.json`` under two ranks."""
    tag = attack_set_name(parts)
    if world_size > 1:
        tag += f".rank{rank}-of-{world_size}"
    return tagged_path(state_path, tag)


def tagged_path(state_path: str | Path, tag: str) -> Path:
    """``state_path`` with ``tag`` before its suffix: ``aa.json`` -> ``aa.TAG.json`` (a
    name without a suffix gets ``.json``)."""
    path = Path(state_path)
    suffix = path.suffix or ".json"
    return path.with_name(f"{path.stem if path.suffix else path.name}.{tag}{suffix}")


def _fingerprint_part(found: dict[str, Any], settings: dict[str, Any]) -> str:
    """What a differing ``fingerprint`` (the data's digest, then the model's) stands for."""
    old, new = str(found.get("fingerprint", "")), str(settings.get("fingerprint", ""))
    if old == new or len(old) != 128 or len(new) != 128:
        return ""
    named = [name for name, part in (("the images or labels", slice(0, 64)),
                                     ("the model's weights", slice(64, 128)))
             if old[part] != new[part]]  # fmt: skip
    return f": {' and '.join(named)}"


class AutoAttackState:
    """The per-chunk results of one attack set, on disk as JSON: ``settings`` (what the
    results were computed for), ``chunks`` (first example index -> a ``0``/``1`` string,
    one character per example: robust or not) and ``seconds`` (first example index -> the
    chunk's seconds, so that a resumed evaluation reports the whole attack's time; absent
    from state files written before it was kept)."""

    def __init__(self, path: Path | None, settings: dict[str, Any]) -> None:
        self.path = path
        self.settings = settings
        self.chunks: dict[int, torch.Tensor] = {}
        self.seconds: dict[int, float] = {}
        if path is not None and path.is_file():
            self._read(path)

    def _read(self, path: Path) -> None:
        try:
            payload = json.loads(path.read_text())
            found = payload["settings"]
            chunks = payload["chunks"]
            seconds = {int(k): float(v) for k, v in payload.get("seconds", {}).items()}
        except (json.JSONDecodeError, KeyError, TypeError, AttributeError, ValueError) as error:
            raise ValueError(
                f"state_path: {path} is not a dard-plugin AutoAttack state file ({error}); "
                "delete it or give another state_path"
            ) from None
        if found != self.settings:
            differing = sorted(
                key
                for key in set(found) | set(self.settings)
                if found.get(key) != self.settings.get(key)
            )
            raise ValueError(
                f"state_path: {path} was written for another evaluation (differs in "
                f"{differing}{_fingerprint_part(found, self.settings)}); delete it to start "
                "over, or give another state_path"
            )
        self.chunks = {
            int(start): torch.tensor([c == "1" for c in bits], dtype=torch.bool)
            for start, bits in chunks.items()
        }
        self.seconds = seconds

    def record(self, start: int, flags: torch.Tensor, seconds: float) -> None:
        self.chunks[start] = flags.clone()
        self.seconds[start] = seconds
        if self.path is None:
            return
        payload = {
            "format": STATE_FORMAT,
            "settings": self.settings,
            "chunks": {
                str(k): "".join("1" if f else "0" for f in v.tolist())
                for k, v in sorted(self.chunks.items())
            },
            "seconds": {str(k): v for k, v in sorted(self.seconds.items())},
        }
        write_text_atomically(self.path, dumps_strict(payload, indent=None))


@contextlib.contextmanager
def parameters_without_grad(model: nn.Module) -> Iterator[None]:
    """The model's parameters with ``requires_grad`` off, each flag given back: FAB's
    ``backward()`` would otherwise fill (and leave) their ``.grad``; AutoAttack needs
    gradients with respect to the inputs only."""
    flags = [(p, p.requires_grad) for p in model.parameters()]
    for parameter, _ in flags:
        parameter.requires_grad_(False)
    try:
        yield
    finally:
        for parameter, flag in flags:
            parameter.requires_grad_(flag)


def cuda_devices_to_fork(device: torch.device) -> list[Any]:
    """The CUDA devices whose RNG an evaluation forks: every initialised one (AutoAttack
    reseeds CUDA's RNG even when it runs on the CPU), else ``device`` if it is CUDA."""
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        return list(range(torch.cuda.device_count()))
    return [device] if device.type == "cuda" else []


def target_classes(model: nn.Module, sample: torch.Tensor) -> int:
    """APGD-T's and FAB-T's number of target classes: the standard version's 9, or every
    other class of a model with fewer than 10."""
    with torch.no_grad():
        return min(9, int(model(sample).shape[1]) - 1)


def run_autoattack(
    model: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    *,
    eps: float,
    norm: str,
    parts: tuple[str, ...],
    seed: int,
    batch_size: int,
    device: torch.device,
    state_path: Path | None = None,
    first_index: int = 0,
    fingerprint: str = "",
) -> tuple[torch.Tensor, float | None]:
    """Per-sample robustness (bool, on CPU) under the original AutoAttack with the
    ``standard`` version's settings (also for a subset of its four attacks), chunk by chunk,
    and the seconds its chunks took, resumed ones included (None where a resumed state
    file did not keep them).

    ``images`` are examples ``first_index ...`` of the evaluation set (a rank's shard);
    ``state_path`` is this attack set's state file (see :func:`state_file`), resumed when
    it exists; ``fingerprint`` identifies the data and model, so that a state file written
    for others is refused. The global RNG, which AutoAttack reseeds, is restored afterwards.
    """
    from importlib.metadata import version

    from pyautoattack import AutoAttack

    settings = {
        # a resume after an upgrade would join chunks of two versions under one report
        "pyautoattack": version("pyautoattack"),
        "attacks": list(parts),
        "eps": float(eps),
        "norm": norm,
        "seed": int(seed),
        "chunk_size": int(batch_size),
        "fingerprint": fingerprint,
    }
    state = AutoAttackState(state_path, settings)
    if state.chunks:
        logger.info("AutoAttack %s: resuming from %s", attack_set_name(parts), state_path)
    adversary = AutoAttack(model, eps=eps, norm=norm, seed=seed, version="standard", device=device)
    adversary.attacks_to_run = list(parts)  # keeps the standard version's parameters
    fork_devices = cuda_devices_to_fork(device)
    flags = []
    for offset in range(0, images.shape[0], batch_size):
        start = first_index + offset
        if start not in state.chunks:
            started = time.perf_counter()
            x = images[offset : offset + batch_size].to(device)
            y = labels[offset : offset + batch_size].to(device)
            # the standard version targets 9 classes: with fewer than 10, every other one
            # (the original fails inside APGD-T; evaluate refuses it below 4 classes)
            targets = target_classes(model, x[:1])
            adversary.apgd_targeted.n_target_classes = adversary.fab.n_target_classes = targets
            with (
                torch.random.fork_rng(devices=fork_devices, device_type="cuda"),
                parameters_without_grad(model),
            ):
                adversarial, _ = adversary.run_standard_evaluation(x, y, batch_size=batch_size)
                with torch.no_grad():  # the suite's rule: a NaN row counts as wrong
                    correct = correct_predictions(model(adversarial), y)
            state.record(start, correct.cpu(), time.perf_counter() - started)
        flags.append(state.chunks[start])
    timed = all(start in state.seconds for start in state.chunks)
    spent = float(sum(state.seconds[start] for start in sorted(state.chunks))) if timed else None
    return torch.cat(flags), spent
