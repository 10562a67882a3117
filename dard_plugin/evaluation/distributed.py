"""Evaluation sharded over the ranks of a ``torch.distributed`` process group.

The examples are cut at batch boundaries: with ``B = ceil(N / batch_size)`` batches, rank
``r`` of ``W`` evaluates batches ``[r * B // W, (r + 1) * B // W)``. Every batch therefore
holds exactly the examples it holds in one process, and each batch's random source depends
only on its index (see :func:`~dard_plugin.evaluation.attacks.batch_generator`), so a
sharded run computes the same per-sample results as one process; the per-sample flags are
then gathered on every rank, in rank order.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass

import torch
from torch import nn

TORCHRUN_VARIABLES = ("RANK", "LOCAL_RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")


@dataclass(frozen=True)
class Sharding:
    """Who evaluates what: ``ranges[r]`` is rank ``r``'s ``[start, stop)`` of the examples,
    and ``first_batch`` this rank's first batch index in the whole evaluation."""

    world_size: int
    rank: int
    ranges: tuple[tuple[int, int], ...]
    first_batch: int

    @property
    def start(self) -> int:
        return self.ranges[self.rank][0]

    @property
    def stop(self) -> int:
        return self.ranges[self.rank][1]


def process_group() -> tuple[int, int]:
    """``(world_size, rank)`` of the initialised default process group, ``(1, 0)`` without
    one; an error when the environment says torchrun started this process with several
    ranks but no process group was initialised (every rank would evaluate everything)."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_world_size(), dist.get_rank()
    declared = int(os.environ.get("WORLD_SIZE", "1") or "1")
    if declared > 1:
        raise RuntimeError(
            f"WORLD_SIZE={declared} (torchrun's environment) but no torch.distributed process "
            "group is initialised: call torch.distributed.init_process_group() before "
            "evaluate() (dard evaluate does), or unset WORLD_SIZE to evaluate every example "
            "in each process"
        )
    return 1, 0


def check_torchrun_environment() -> None:
    """A clear error for a half-set-up torchrun environment (``WORLD_SIZE`` without the
    other variables ``init_process_group`` reads)."""
    if int(os.environ.get("WORLD_SIZE", "1") or "1") <= 1:
        return
    missing = [name for name in TORCHRUN_VARIABLES if not os.environ.get(name)]
    if missing:
        raise RuntimeError(
            f"the torch.distributed environment is half set up: WORLD_SIZE is "
            f"{os.environ['WORLD_SIZE']} but {', '.join(missing)} "
            f"{'is' if len(missing) == 1 else 'are'} not set; start the job with "
            "torchrun --nproc_per_node N -m dard_plugin evaluate ..."
        )


def plan(n_examples: int, batch_size: int, world_size: int, rank: int) -> Sharding:
    """The batch-aligned split of ``n_examples`` over ``world_size`` ranks."""
    n_batches = -(-n_examples // batch_size)
    if n_batches < world_size:
        raise ValueError(
            f"cannot split {n_examples} examples ({n_batches} batches of batch_size "
            f"{batch_size}) over {world_size} ranks: a rank would get an empty shard; "
            f"use a batch_size of at most {max(1, n_examples // world_size)} or fewer ranks"
        )
    bounds = [r * n_batches // world_size for r in range(world_size + 1)]
    ranges = tuple(
        (bounds[r] * batch_size, min(bounds[r + 1] * batch_size, n_examples))
        for r in range(world_size)
    )
    return Sharding(world_size, rank, ranges, bounds[rank])


def fingerprint_tensors(*tensors: torch.Tensor) -> str:
    """SHA-256 over the tensors' shapes, dtypes and values."""
    digest = hashlib.sha256()
    for tensor in tensors:
        digest.update(str((tuple(tensor.shape), tensor.dtype)).encode())
        flat = tensor.detach().cpu().contiguous().reshape(-1)
        digest.update(flat.view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def fingerprint_model(model: nn.Module) -> str:
    """SHA-256 over the model's parameter and buffer names and values, and an ART
    classifier's standardisation, held outside its state dict (two classifiers over one
    network under other ``preprocessing`` once shared an AutoAttack state file)."""
    from dard_plugin.training.fingerprints import standardisation

    state = model.state_dict()
    names = hashlib.sha256(repr(list(state)).encode()).hexdigest()
    tensors = fingerprint_tensors(*state.values(), *standardisation(model))
    return hashlib.sha256((names + tensors).encode()).hexdigest()


def check_agreement(parts: dict[str, str], world_size: int) -> None:
    """Every rank's fingerprints (``{"data": ..., "model": ...}``) must be equal."""
    import torch.distributed as dist

    gathered: list[dict[str, str] | None] = [None] * world_size
    dist.all_gather_object(gathered, parts)
    for key in parts:
        values = [g[key] if g is not None else None for g in gathered]
        if len(set(values)) > 1:
            raise ValueError(
                f"the ranks disagree on the {key} to evaluate ({describe_disagreement(values)})"
                f": every rank must load the same {key} (same files, same n_examples, same "
                "order)"
            )


def describe_disagreement(values: list[str | None]) -> str:
    """Which ranks hold which value, each value in full (fingerprints that differ only
    after their first characters, and argument lists, must be told apart)."""
    groups: dict[str | None, list[int]] = {}
    for rank, value in enumerate(values):
        groups.setdefault(value, []).append(rank)
    return "; ".join(f"ranks {ranks}: {value}" for value, ranks in groups.items())


def gather_flags(flags: dict[str, torch.Tensor], world_size: int) -> dict[str, torch.Tensor]:
    """Every rank's per-sample flags, concatenated in rank order (on every rank)."""
    import torch.distributed as dist

    gathered: list[dict[str, torch.Tensor] | None] = [None] * world_size
    dist.all_gather_object(gathered, {k: v.cpu() for k, v in flags.items()})
    return {key: torch.cat([g[key] for g in gathered if g is not None]) for key in flags}
