"""The checkpointer: atomic saves, loads that name what is wrong with a file, and the
refusal to resume a run whose fingerprint differs. Files load with ``weights_only=True``."""

from __future__ import annotations

import collections
import logging
import pickle
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from dard_plugin._files import atomic_write_bytes
from dard_plugin.training._checks import check_writable_dir, check_writable_file
from dard_plugin.training.fingerprints import (
    differences,
    model_fingerprint,
    optimizer_fingerprint,
    scheduler_fingerprint,
    standardisation,
    tensor_digest,
)

if TYPE_CHECKING:
    from dard_plugin.training.batches import BatchSource
    from dard_plugin.training.loop import TrainingLoop

logger = logging.getLogger(__name__)

CHECKPOINT_NAME = "checkpoint.pt"
FORMAT_VERSION = 2


def save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    atomic_write_bytes(path, lambda stream: torch.save(state, stream))


def write_json(path: Path, payload: Any) -> None:
    """``payload`` as strict JSON (non-finite numbers as ``null``), written atomically."""
    from dard_plugin._json import dumps_strict

    text = dumps_strict(payload)
    atomic_write_bytes(path, lambda stream: stream.write(text.encode()))


def load_checkpoint_state(path: Path) -> dict[str, Any]:
    """A training checkpoint's state; a ``ValueError`` naming the file if it is corrupt,
    not a checkpoint, or from another format version."""
    # MultiStepLR keeps its milestones in a collections.Counter: allowed explicitly, and
    # only for this load (no global registration).
    try:
        with torch.serialization.safe_globals([collections.Counter]):
            state = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, zipfile.BadZipFile) as error:
        reason = str(error).strip().splitlines()[0][:200] if str(error).strip() else ""
        raise ValueError(
            f"{path} cannot be read as a training checkpoint (corrupt, truncated, or holding "
            f"objects other than tensors: {type(error).__name__} {reason}); delete it or "
            "use another checkpoint_dir to start afresh"
        ) from None
    if not isinstance(state, dict) or "format" not in state:
        raise ValueError(
            f"{path} is not a dard-plugin training checkpoint (no 'format' entry); delete it "
            "or use another checkpoint_dir"
        )
    if state["format"] != FORMAT_VERSION:
        raise ValueError(
            f"{path} is a dard-plugin training checkpoint of format {state['format']}, this "
            f"version reads format {FORMAT_VERSION}; start afresh in another checkpoint_dir"
        )
    return state


class Checkpointer:
    """Where a run's checkpoint and history go, and whether a saved run may be resumed."""

    def __init__(self, folder: Path | None, history_path: Path | None) -> None:
        self.folder = folder
        self.history_path = history_path

    @property
    def path(self) -> Path | None:
        return None if self.folder is None else self.folder / CHECKPOINT_NAME

    def check_writable(self) -> None:
        """Every output location, before any training."""
        if self.folder is not None:
            check_writable_dir("checkpoint_dir", self.folder)
        if self.history_path is not None:
            check_writable_file("history_path", self.history_path)

    def read(self) -> dict[str, Any] | None:
        """The saved state, None when there is none (a corrupt file is a ``ValueError``)."""
        path = self.path
        if path is None or not path.is_file():
            return None
        return load_checkpoint_state(path)

    def check_epochs(self, state: dict[str, Any], nb_epochs: int) -> None:
        """A run is continued, or returned as it is, never shortened: a checkpoint with more
        epochs than ``nb_epochs`` is refused (before any work)."""
        done = int(state["epoch"])
        if done > nb_epochs:
            raise ValueError(
                f"resume refused: {self.path} holds a run that has already trained {done} "
                f"epochs, more than nb_epochs={nb_epochs}, and a run is never shortened. Pass "
                f"nb_epochs={done} to get that run back as it is, or more to continue it; to "
                f"train {nb_epochs} epochs afresh, pass resume=False (the run is overwritten) "
                f"or another checkpoint_dir. The CLI: --epochs {done} or more, or --overwrite "
                "or another --out"
            )

    def check_run_length(self, state: dict[str, Any], nb_epochs: int, method: str) -> None:
        """For a method whose schedule is a fraction of the run: a checkpoint of a run of
        another length is refused (checkpoints before 2026-12-06 did not record it)."""
        planned = state.get("nb_epochs")
        if planned is not None and int(planned) != nb_epochs:
            raise ValueError(
                f"resume refused: {self.path} holds a run planned for nb_epochs={planned}, "
                f"and {method}'s schedule is a fraction of the run (IAD's start epoch, "
                f"IGDM's weight), so continuing it as a run of nb_epochs={nb_epochs} would "
                f"train neither schedule. Pass nb_epochs={planned}, or train {nb_epochs} "
                "epochs afresh: resume=False (the run is overwritten) or another "
                "checkpoint_dir; the CLI: --overwrite or another --out"
            )

    def check_fingerprint(self, state: dict[str, Any], fingerprint: dict[str, Any]) -> None:
        """Refused (``ValueError`` listing the fields) when ``state`` was written by a run
        with another fingerprint."""
        found = differences(state["fingerprint"], fingerprint)
        if found:
            milestones = any(field.startswith("scheduler.milestones") for field in found)
            raise ValueError(
                f"resume refused: {self.path} was written by a different configuration; "
                f"differing fields: {'; '.join(found)}. "
                + (
                    "The learning-rate milestones are fractions of the run's epochs (the "
                    "recipes' 60% and 80%), so another nb_epochs (--epochs) moves them: a run "
                    "cannot be extended past them. "
                    if milestones
                    else ""
                )
                + "To start afresh, pass resume=False (the run is overwritten), use another "
                "checkpoint_dir, or delete the checkpoint; the CLI: --overwrite or another --out"
            )

    def save(self, state: dict[str, Any], history: list[dict[str, Any]]) -> None:
        if self.history_path is not None:
            write_json(self.history_path, history)
        if self.folder is None:
            return
        save_checkpoint(self.folder / CHECKPOINT_NAME, {"format": FORMAT_VERSION, **state})
        write_json(self.folder / "history.json", history)


# ----------------------------------------------------------------- a run's state
def run_fingerprint(
    loop: TrainingLoop, source: BatchSource, scheduler: Any, batch_size: int | None
) -> dict[str, Any]:
    """Everything that changes the result of ``loop``'s run (see ``resume``)."""
    return {
        "config": loop.config(),
        "optimizer": optimizer_fingerprint(loop.optimizer),
        "scheduler": scheduler_fingerprint(scheduler),
        # fit's batch size; fit_generator's loader or generator says how it batches
        "batch_size": batch_size if batch_size is not None else source.batching(),
        "data": source.fingerprint(),
        "teacher": " + ".join(model_fingerprint(m) for m in loop.frozen_models()) or None,
        "student": f"{type(loop.student).__name__}, "
        f"{sum(p.numel() for p in loop.student.parameters())} parameters"
        + standardisation_note(loop.student),
    }


def standardisation_note(student: nn.Module) -> str:
    """An ART student's mean/std standardisation, for its fingerprint (empty without one,
    so that other students' fingerprints are unchanged)."""
    stats = standardisation(student)
    return f", standardised {tensor_digest(*stats)}" if stats else ""


def distributed() -> tuple[int, int]:
    """(world size, rank): (1, 0) unless torch.distributed is initialised (torchrun)."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_world_size(), torch.distributed.get_rank()
    return 1, 0


def validation_fingerprint(
    loop: TrainingLoop, validation: tuple[torch.Tensor, torch.Tensor] | None
) -> dict[str, Any] | None:
    """What makes the per-epoch validation numbers: the images, the labels and the
    validation attack's settings. Kept in the checkpoint beside (not in) the fingerprint,
    so that earlier checkpoints still resume; a resume on another validation is refused
    (its history would mix two validations)."""
    if validation is None:
        return None
    images, labels = validation
    return {
        "n": int(images.shape[0]),
        "sha256": tensor_digest(images, labels),
        "attack": loop.eval_attack,
        "eps": loop.eval_eps,
        "norm": loop.eval_norm,
        "batch_size": loop.eval_batch_size,
    }


def restore_run(
    loop: TrainingLoop,
    scheduler: Any,
    fingerprint: dict[str, Any],
    state: dict[str, Any] | None,
    validation: dict[str, Any] | None = None,
) -> int:
    """Load a saved ``state`` of the same run (fingerprint checked) into ``loop`` and
    ``scheduler`` when resuming; the number of epochs already done (0 without one)."""
    if not loop.resume:
        return 0
    if state is None:
        logger.info("no checkpoint in %s: starting from scratch", loop.checkpoint_dir)
        return 0
    loop.checkpointer.check_fingerprint(state, fingerprint)
    world = distributed()[0]
    if state.get("world_size", world) != world:  # absent before 2026-12-03
        raise ValueError(
            f"resume refused: {loop.checkpoint_dir} was trained by {state['world_size']} "
            f"processes, this run has {world}: each process takes its own batch, so the "
            "effective batch and the steps per epoch would change mid-run. Resume with the "
            f"same number of processes (torchrun --nproc_per_node {state['world_size']}), or "
            "start afresh"
        )
    if "validation" in state and state["validation"] != validation:  # absent before 2026-12-03
        raise ValueError(
            f"resume refused: {loop.checkpoint_dir} was validated on other data or settings "
            f"(saved: {state['validation']}; now: {validation}); its history would mix two "
            "validations. Resume with the same validation_data and eval settings (the CLI: "
            "the same --n-val, --val-split / --validate-on-test), or start afresh"
        )
    loop.student.load_state_dict(state["model"])
    loop.optimizer.load_state_dict(state["optimizer"])
    if scheduler is not None and state.get("scheduler") is not None:
        scheduler.load_state_dict(state["scheduler"])
    loop.history = list(state["history"])
    loop.targets.load_state(state)
    loop.load_method_state(state.get("method_state") or {})
    if distributed()[1] == 0:  # said once, not once per rank
        logger.info(
            "resumed %s from %s after epoch %d", loop.method, loop.checkpoint_dir, state["epoch"]
        )
    return int(state["epoch"])


def save_run(
    loop: TrainingLoop,
    epochs_done: int,
    scheduler: Any,
    fingerprint: dict[str, Any],
    validation: dict[str, Any] | None = None,
) -> None:
    """Save ``loop``'s run after ``epochs_done`` epochs (atomically)."""
    state = {
        "fingerprint": fingerprint,
        "validation": validation,
        "world_size": distributed()[0],
        "epoch": epochs_done,
        "nb_epochs": loop.nb_epochs,  # the run's planned length (check_run_length)
        "model": loop.student.state_dict(),
        "optimizer": loop.optimizer.state_dict(),
        "scheduler": scheduler.state_dict() if scheduler is not None else None,
        "history": loop.history,
        **loop.targets.state(),
        "method_state": loop.method_state(),
    }
    loop.checkpointer.save(state, loop.history)
