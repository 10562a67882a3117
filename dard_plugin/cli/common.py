"""What the ``dard`` commands share: the user-facing error, the common options, checks of
paths, and joining a torchrun process group."""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

DATASETS = ("fashion-mnist", "cifar10", "cifar100")
# the shipped teacher: the default of `dard distill --teacher` and the demo's teacher
DEFAULT_TEACHER = "dard-fmnist-teacher"


class CommandError(Exception):
    """A user-facing error: printed as one line, exit status 2."""


def build_command_parser(*families: Any) -> argparse.ArgumentParser:
    """The ``dard`` parser of these command families (modules with ``add_parsers``), each
    subcommand with the common options: :func:`dard_plugin.cli.main.build_parser` passes
    them all, ``dard demo`` only the training family (so that it needs no import of
    ``cli/main.py``, which imports it)."""
    parser = argparse.ArgumentParser(
        prog="dard",
        description="Dice Adversarial Robustness Distillation (DARD) and the DPGD attack.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for family in families:
        family.add_parsers(commands)
    for subparser in commands.choices.values():
        add_common(subparser)
    return parser


def add_common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--quiet", action="store_true", help="no progress bars or logs")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    parser.add_argument("--device", default=None, help="cpu, cuda, cuda:1 (default: cpu)")


THREAT_MODELS = ["Linf", "L2", "corruptions"]


def add_robustbench_options(parser: argparse.ArgumentParser, threat_model_help: str) -> None:
    """``--threat-model`` (None by default: each command resolves it) and ``--model-dir``,
    where a RobustBench model is looked up."""
    parser.add_argument(
        "--threat-model", default=None, choices=THREAT_MODELS, help=threat_model_help
    )
    parser.add_argument(
        "--model-dir",
        default=None,
        help=f"where a RobustBench name's file is looked up (default {MODEL_DIR}); refused "
        "for a shipped teacher or a checkpoint file",
    )


MODEL_DIR = "./models"


def check_model_dir(args: argparse.Namespace, names: list[str]) -> None:
    """``--model-dir`` serves a RobustBench name only: given where no model is one, it
    would change nothing. Then resolved to its default."""
    from dard_plugin.recipes.model_files import is_model_file
    from dard_plugin.teachers import SHIPPED_TEACHERS

    robustbench = [n for n in names if not is_model_file(n) and n not in SHIPPED_TEACHERS]
    if args.model_dir is not None and not robustbench:
        shown = ", ".join(names) if names else "no model"
        raise CommandError(
            f"--model-dir is where a RobustBench name's file is looked up; this command loads "
            f"{shown} (a shipped teacher or a checkpoint file): drop it"
        )
    if args.model_dir is None:
        args.model_dir = MODEL_DIR


def check_data_root(root: str | None) -> None:
    """A ``--data-root`` that does not exist is an error (not a silent fallback to another
    copy of the data)."""
    if root is not None and not Path(root).is_dir():
        what = "is not a directory" if Path(root).exists() else "does not exist"
        raise CommandError(f"--data-root {root} {what}: give the folder holding the dataset")


def check_out_writable(folder: Path) -> None:
    """``--out`` must be creatable and writable: probed with a temporary file in its
    nearest existing folder (permission bits alone do not say so, e.g. for root)."""
    import tempfile

    existing = folder
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        raise CommandError(f"--out {folder}: {existing} is not a directory")
    try:
        handle, probe = tempfile.mkstemp(dir=existing, prefix=".dard-write-probe.")
    except OSError as error:
        raise CommandError(
            f"--out {folder} is not writable: cannot create files in {existing} "
            f"({error.strerror or error})"
        ) from None
    os.close(handle)
    os.unlink(probe)


def distributed_setup(args: argparse.Namespace) -> tuple[int, int]:
    """(world size, rank). Under torchrun (``WORLD_SIZE`` > 1) this joins the process group
    (nccl for CUDA, gloo for CPU), once, and gives each process its own GPU
    (``cuda`` becomes ``cuda:LOCAL_RANK``)."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return 1, 0
    import torch
    import torch.distributed as dist

    if not dist.is_initialized():
        local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        args.device = args.device or "cpu"
        if args.device.startswith("cuda"):
            if args.device == "cuda":
                args.device = f"cuda:{local_rank}"
            torch.cuda.set_device(torch.device(args.device))
        dist.init_process_group("nccl" if args.device.startswith("cuda") else "gloo")
    return dist.get_world_size(), dist.get_rank()


def broadcast_from_rank0(value: bool, world: int) -> bool:
    """Rank 0's ``value`` on every rank (itself when not distributed)."""
    if world <= 1:
        return value
    import torch.distributed as dist

    box = [value]
    dist.broadcast_object_list(box, src=0)
    return bool(box[0])


def barrier() -> None:
    import torch.distributed as dist

    dist.barrier()


def attack_list(value: str, flag: str) -> list[str]:
    """The attacks a comma-separated ``flag`` names (empty entries dropped), each checked
    against the evaluation's attack names: one reading for ``dard evaluate --attacks`` and
    ``dard distill --eval-attacks``."""
    from dard_plugin._validation import check_choice
    from dard_plugin.evaluation import ATTACK_NAMES

    named = [a.strip() for a in value.split(",") if a.strip()]
    if not named:
        raise CommandError(f"{flag} must name at least one of {list(ATTACK_NAMES)}")
    for attack in named:
        check_choice(flag, attack, list(ATTACK_NAMES))
    return named
