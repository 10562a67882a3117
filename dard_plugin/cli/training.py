"""``dard train-teacher`` and ``dard distill``: a training run (resumable, refused where
``--out`` holds another run), then the final evaluation of the trained model. Their options
and the checks made before any work are in ``training_options.py``."""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import warnings
from pathlib import Path
from typing import Any

from dard_plugin.cli.common import (
    CommandError,
    attack_list,
    barrier,
    broadcast_from_rank0,
    distributed_setup,
)
from dard_plugin.cli.training_options import (
    add_parsers,
    check_training_args,
    choose_teacher,
    distill_settings,
    method_options,
    run_method,
    teacher_threat_model,
)

__all__ = ["COMMANDS", "add_parsers", "run_distill", "run_train_teacher"]

logger = logging.getLogger("dard_plugin.cli")


# run.json's records of what ran, beside the command's settings
_RESOLVED = ("trainer", "training_images", "teacher_weights")
_NOT_RUN_SETTINGS = {"quiet", "json", "debug", "resume", "overwrite", "device", "command", "out"}


def _run_settings(args: argparse.Namespace) -> dict[str, Any]:
    """The command's settings as recorded in ``run.json`` beside its results."""
    return {k: str(v) for k, v in sorted(vars(args).items()) if k not in _NOT_RUN_SETTINGS}


def _report_digest(out: Path) -> str:
    """The SHA-256 of the run's report.json and report.md, recorded in run.json: a report
    written there later (``dard evaluate --out`` the run's folder) is not the run's."""
    digest = hashlib.sha256()
    for name in ("report.json", "report.md"):
        digest.update((out / name).read_bytes())
    return digest.hexdigest()


def _finished_report(args: argparse.Namespace) -> dict[str, Any] | None:
    """The saved report of a finished run whose recorded settings are these and whose
    report files are the ones it wrote, else None (evaluate again)."""
    out = args.out
    try:
        recorded = json.loads((out / "run.json").read_text())
        # the report as a fresh run returns it (RobustnessReport.to_dict()), not the
        # RobustBench-style fields around it
        report: dict[str, Any] = json.loads((out / "report.json").read_text())["dard_plugin"]
        markdown = (out / "report.md").read_text()
        digest = recorded.pop("report_sha256", None)
        for key in _RESOLVED:  # what ran, resolved: not settings of the command
            recorded.pop(key, None)
        if digest != _report_digest(out):
            return None
    except (OSError, ValueError, KeyError, TypeError, AttributeError):  # evaluate again
        return None
    current = _run_settings(args)
    # an option newer than the run, left at its default None, is one the run did not have
    newer = {k for k, v in current.items() if v == "None" and k not in recorded}
    if recorded != {k: v for k, v in current.items() if k not in newer}:
        return None
    if not args.json:
        print(f"{out} holds this run, finished with the same settings: nothing to do")
        print(markdown)
    return report


def _announce_validation(args: argparse.Namespace) -> None:
    """The one line that says where per-epoch validation images come from."""
    if args.json or args.quiet:
        return
    if args.val_split is None:
        print(
            f"validation: the first {args.n_val} {args.dataset} test images (--validate-on-test:"
            " watch this curve, do not choose settings on it)"
        )
    else:
        print(
            f"validation: {args.n_val} of {args.val_split} images held out from the end of the "
            f"{args.dataset} training split (--val-split {args.val_split}); training uses "
            "none of them"
        )


def _train(args: argparse.Namespace, *, teacher: Any, **method_kwargs: Any) -> dict[str, Any]:
    """Train and evaluate. The command line judged --eps before any work (a warning naming
    --eps); the library's own judgements of the same budget would repeat it."""
    from dard_plugin._validation import BUDGET_WARNING

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=BUDGET_WARNING, category=UserWarning)
        return _train_and_evaluate(args, teacher=teacher, **method_kwargs)


def _train_and_evaluate(
    args: argparse.Namespace, *, teacher: Any, **method_kwargs: Any
) -> dict[str, Any]:
    from dard_plugin.data import load_dataset
    from dard_plugin.recipes import distill

    world, rank = distributed_setup(args)
    args.world_size = world  # recorded in run.json: the processes the run trained on
    if rank == 0:
        _announce_validation(args)
    try:
        # the test images of the final evaluation, read before training: a --data-root
        # without them fails now, not after every epoch has trained
        test = load_dataset(args.dataset, train=False, n_examples=args.n_eval, root=args.data_root)
        result = distill(
            **distill_settings(args),
            teacher=teacher,
            validate_on_test=args.val_split is None,
            seed=args.seed,
            device=args.device,
            data_root=args.data_root,
            eps_warmup_epochs=args.eps_warmup_epochs,
            verbose=not args.quiet and rank == 0,
            **method_kwargs,
        )
        # every rank evaluates its shard (evaluate shards over the process group); rank 0
        # alone decides whether a finished run's report is reused, prints and writes
        report = _finished_report(args) if result.epochs_run == 0 and rank == 0 else None
        if broadcast_from_rank0(report is None, world):
            report = _evaluate_into(
                result.student,
                test,
                args,
                args.out if rank == 0 else None,
                name=f"{run_method(args)}-{args.arch}",
                announce=rank == 0,
            )
            if rank == 0:
                from dard_plugin.training.checkpointing import write_json

                settings: dict[str, Any] = _run_settings(args)
                settings["trainer"] = result.config  # the method's values that ran
                settings["training_images"] = result.n_train  # --n-train resolved
                settings["teacher_weights"] = result.teacher_weights
                settings["report_sha256"] = _report_digest(args.out)
                write_json(args.out / "run.json", settings)
        if rank != 0:
            args.json = False  # one document on stdout: rank 0's
            return {"history": result.history, "rank": rank, "world_size": world}
    finally:
        if world > 1:
            import torch.distributed as dist

            dist.destroy_process_group()
    return {
        "history": result.history,
        "report": report,
        "files": result.files,
        "train_seconds": result.seconds,
        "world_size": world,
    }


def _evaluate_into(
    model: Any,
    test: tuple[Any, Any],
    args: argparse.Namespace,
    out: Path | None,
    *,
    name: str,
    announce: bool = True,
) -> dict[str, Any]:
    from dard_plugin.evaluation import evaluate
    from dard_plugin.training.loop import distributed

    attacks = attack_list(args.eval_attacks, "--eval-attacks")
    x, y = test
    batch_size = 256
    world = distributed()[0]
    if world > 1 and x.shape[0] <= batch_size * (world - 1):
        # a smaller batch, so that every rank's shard holds examples (evaluate refuses an
        # empty shard): N // world gives at least `world` batches (--n-eval >= world is
        # checked before training); the report then depends on the world size
        batch_size = max(1, x.shape[0] // world)
        if distributed()[1] == 0:
            logger.info(
                "evaluation batch size %d so that %d ranks share the work", batch_size, world
            )
    report = evaluate(
        model,
        x,
        y,
        eps=args.eps,
        batch_size=batch_size,
        norm=getattr(args, "norm", "Linf"),
        attacks=attacks,
        verbose=not args.quiet and announce,
        model_name=name,
        device=args.device,
    )
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        report.to_json(out / "report.json")
        (out / "report.md").write_text(report.to_markdown())
    if announce and not args.json:
        print(report.to_markdown())
    return report.to_dict()


def run_train_teacher(args: argparse.Namespace) -> dict[str, Any]:
    check_training_args(args)
    return _train(args, teacher=None)


def run_distill(args: argparse.Namespace) -> dict[str, Any]:
    from dard_plugin.recipes import load_model

    choose_teacher(args)
    check_training_args(args)
    method_kwargs = method_options(args)
    from dard_plugin.training.registry import method_spec

    spec = method_spec(args.method)
    if spec.needs_natural_teacher and args.natural_teacher is None:
        raise CommandError(f"--method {args.method} needs --natural-teacher")
    if not spec.needs_natural_teacher and args.natural_teacher is not None:
        raise CommandError(f"--natural-teacher does not apply to --method {args.method}")
    teacher = None
    if spec.needs_teacher:
        world, rank = distributed_setup(args)
        if rank > 0:  # rank 0 fetches a RobustBench teacher first; the others then read it
            barrier()
        teacher = load_model(
            args.teacher,
            dataset=args.dataset,
            arch=args.teacher_arch,
            threat_model=teacher_threat_model(args, args.teacher),
            model_dir=args.model_dir,
            device=args.device,
        )
        if spec.needs_natural_teacher:
            method_kwargs["natural_teacher"] = load_model(
                args.natural_teacher,
                dataset=args.dataset,
                arch=args.natural_teacher_arch,
                threat_model=teacher_threat_model(args, args.natural_teacher),
                model_dir=args.model_dir,
                device=args.device,
            )
        if rank == 0 and world > 1:
            barrier()
    return _train(args, teacher=teacher, **method_kwargs)


COMMANDS = {"train-teacher": run_train_teacher, "distill": run_distill}
