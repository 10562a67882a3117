"""``dard evaluate`` (in one process or sharded under torchrun) and ``dard attack``
(DPGD examples to ``.npz`` and an image grid)."""

from __future__ import annotations

import argparse
import math
from pathlib import Path
from typing import Any

from dard_plugin._files import EVALUATION_STATE_PATTERN
from dard_plugin.cli.common import CommandError, attack_list, distributed_setup
from dard_plugin.cli.model_source import (
    add_model_source,
    check_model_source_args,
    load_model_source,
)

# every suite row has an L-inf and an L2 form, so this serves both --norm values
DEFAULT_EVALUATE_ATTACKS = "clean,fgsm,pgd,dpgd,autoattack"  # evaluation.DEFAULT_ATTACKS


def add_parsers(commands: Any) -> None:
    evaluate = commands.add_parser("evaluate", help="clean and robust accuracy of a model")
    add_model_source(evaluate)
    evaluate.add_argument("--norm", default="Linf", choices=("Linf", "L2"))
    evaluate.add_argument(
        "--attacks",
        default=DEFAULT_EVALUATE_ATTACKS,
        help=f"comma-separated attack names, in --norm (default: {DEFAULT_EVALUATE_ATTACKS})",
    )
    evaluate.add_argument(
        "--curve",
        default=None,
        help="comma-separated eps values: also plot accuracy against eps (curve.png in --out)",
    )
    evaluate.add_argument(
        "--n-examples",
        type=int,
        default=1000,
        help="evaluate the first N test images (default: 1000; RobustBench's leaderboard "
        "evaluates all 10,000 of CIFAR-10's, --n-examples 10000)",
    )
    evaluate.add_argument("--batch-size", type=int, default=256)
    evaluate.add_argument("--seed", type=int, default=0)
    evaluate.add_argument(
        "--name",
        default=None,
        help="the model's name in the report (default: the file's stem, e.g. student, or the "
        "model's name)",
    )
    evaluate.add_argument(
        "--out",
        type=Path,
        default=None,
        help="folder for JSON and markdown; also keeps AutoAttack's resumable state "
        "(one file per attack set and rank) while the evaluation runs. An --out holding "
        "an evaluation (or a run's report) is refused unless --resume or --overwrite",
    )
    evaluate.add_argument(
        "--resume",
        action="store_true",
        help="continue the interrupted evaluation in --out from AutoAttack's saved state "
        "(refused where --out holds a finished report: --overwrite replaces it)",
    )
    evaluate.add_argument(
        "--overwrite",
        action="store_true",
        help="delete the evaluation files in --out (report, curve, AutoAttack state) first",
    )
    evaluate.epilog = (
        "Under torchrun (torchrun --nproc_per_node N -m dard_plugin evaluate ...) each rank "
        "evaluates its shard of the examples and rank 0 writes the one report."
    )

    attack = commands.add_parser("attack", help="DPGD adversarial examples to .npz and PNG")
    add_model_source(attack, norms=False)
    attack.add_argument("--n", type=int, default=16, help="first N test images")
    attack.add_argument("--step-size", type=float, default=None)
    attack.add_argument("--steps", type=int, default=10)
    attack.add_argument(
        "--reduction",
        choices=["sample", "batch"],
        default="sample",
        help="the Dice loss per image (default, as dard_plugin.DPGD and the ART DicePGD: an "
        "image's result does not depend on the others attacked with it) or over the batch "
        "(the paper's batch-coupled Dice, as DARD trains with)",
    )
    attack.add_argument("--out", type=Path, required=True, help="folder for adv.npz, grid.png")
    attack.add_argument(
        "--overwrite",
        action="store_true",
        help="replace adv.npz and grid.png where --out holds them (refused otherwise)",
    )


# what `dard evaluate` writes in --out (AutoAttack's state files match STATE_PATTERN)
EVALUATION_FILES = ("report.json", "report.md", "curve.png")
STATE_NAME = "autoattack-state.json"
STATE_PATTERN = EVALUATION_STATE_PATTERN


def _check_existing_evaluation(args: argparse.Namespace) -> None:
    """As ``dard distill`` does: an --out holding an evaluation (a report, a curve, or
    AutoAttack's state of an interrupted one) is refused unless ``--resume`` (continue the
    interrupted evaluation; nothing to resume in a finished one) or ``--overwrite``
    (delete those files first, after every check)."""
    if args.resume and args.overwrite:
        raise CommandError("--resume and --overwrite exclude each other: choose one")
    if args.out is None:
        if args.resume or args.overwrite:
            flag = "--resume" if args.resume else "--overwrite"
            raise CommandError(f"{flag} needs --out (the folder of the evaluation)")
        return
    reports = [name for name in EVALUATION_FILES if (args.out / name).is_file()]
    states = sorted(p.name for p in args.out.glob(STATE_PATTERN)) if args.out.is_dir() else []
    if args.overwrite or not (reports or states):
        return
    if args.resume and not reports:
        return
    found = ", ".join(reports + states)
    if args.resume:
        raise CommandError(
            f"--out {args.out} holds a finished evaluation ({found}): nothing to resume; "
            "pass --overwrite to replace it, or another --out"
        )
    kind = "a finished" if reports else "an interrupted"
    resume = "" if reports else "--resume to continue it, "
    raise CommandError(
        f"--out {args.out} already holds {kind} evaluation ({found}): pass {resume}"
        "--overwrite to replace it, or another --out"
    )


def _remove_evaluation(out: Path) -> None:
    """Delete the files ``dard evaluate`` writes in ``out``, and nothing else."""
    for name in EVALUATION_FILES:
        (out / name).unlink(missing_ok=True)
    for path in out.glob(STATE_PATTERN):
        path.unlink()


def run_evaluate(args: argparse.Namespace) -> dict[str, Any]:
    """``dard evaluate``: in one process, or under torchrun with one shard per rank (rank 0
    prints and writes the report)."""
    from dard_plugin._validation import MAX_SEED, check_int
    from dard_plugin.data import check_n_examples, load_dataset
    from dard_plugin.evaluation.distributed import check_torchrun_environment

    check_model_source_args(args)
    if args.name is not None and not args.name.strip():
        raise CommandError("--name must be a non-empty name for the report, got an empty one")
    attacks = attack_list(args.attacks, "--attacks")
    check_n_examples(args.dataset, args.n_examples, train=False, argument="--n-examples")
    check_int("--batch-size", args.batch_size, minimum=1)
    check_int("--seed", args.seed, minimum=0, maximum=MAX_SEED)  # before the model loads
    curve = _parse_curve(args)
    _check_existing_evaluation(args)
    check_torchrun_environment()
    world, rank = distributed_setup(args)
    try:
        # the model and the data first: a failure there leaves an earlier evaluation in place
        model = load_model_source(args)
        data = load_dataset(
            args.dataset, train=False, n_examples=args.n_examples, root=args.data_root
        )
        if args.overwrite and rank == 0:
            _remove_evaluation(args.out)
        if world > 1:
            from dard_plugin.cli.common import barrier

            barrier()  # no rank starts before rank 0 has removed the old files
        return _evaluate_sharded(args, attacks, curve, rank, model, data)
    finally:
        if world > 1:
            import torch.distributed as dist

            dist.destroy_process_group()


def _evaluate_sharded(
    args: argparse.Namespace,
    attacks: list[str],
    curve: list[float],
    rank: int,
    model: Any,
    data: tuple[Any, Any],
) -> dict[str, Any]:
    from dard_plugin.evaluation import evaluate, plot_robustness_curve, robustness_curve
    from dard_plugin.evaluation.autoattack import AUTOATTACK_PARTS, state_file

    x, y = data
    name = args.name or Path(args.model).stem
    state = args.out / STATE_NAME if args.out is not None else None
    options: dict[str, Any] = {
        "attacks": attacks,
        "norm": args.norm,
        "batch_size": args.batch_size,
        "seed": args.seed,
        "device": args.device,
        "verbose": not args.quiet and rank == 0,
        "model_name": name,
    }
    try:
        report = evaluate(model, x, y, eps=args.eps, state_path=state, **options)
    except ValueError as error:
        if str(error).startswith("state_path:"):  # the state file in --out: name the flags
            raise CommandError(
                f"{error} (on the command line: --overwrite to start over, or another --out)"
            ) from None
        raise
    if rank == 0 and args.out is not None:  # written before the curve, which may fail
        from dard_plugin.evaluation.report import write_text_atomically

        report.to_json(args.out / "report.json")
        write_text_atomically(args.out / "report.md", report.to_markdown())
    if state is not None:  # the report is written: the resumable state is no longer needed
        for attack in attacks:
            if attack == "autoattack" or attack in AUTOATTACK_PARTS:
                parts = AUTOATTACK_PARTS if attack == "autoattack" else (attack,)
                path = state_file(state, parts, rank=rank, world_size=report.world_size)
                path.unlink(missing_ok=True)
    reports = robustness_curve(model, x, y, curve, **options) if curve else []
    if rank != 0:
        args.json = False  # one report, printed by rank 0
        return {"rank": rank, "world_size": report.world_size}
    result = report.to_dict()
    if not args.json:
        print(report.to_markdown())
    if reports:
        path = plot_robustness_curve(reports, args.out / "curve.png")
        result["curve"] = [r.to_dict() for r in reports]
        if not args.json:
            print(f"robust accuracy against eps: {path}")
    return result


def _parse_curve(args: argparse.Namespace) -> list[float]:
    if args.curve is None:
        return []
    if args.out is None:
        raise CommandError("--curve needs --out (where curve.png is written)")
    try:
        values = [float(v) for v in args.curve.split(",") if v.strip()]
    except ValueError:
        raise CommandError(f"--curve must be comma-separated numbers, got {args.curve!r}") from None
    if not values or any(not math.isfinite(v) or v <= 0 for v in values):
        raise CommandError(f"--curve values must be finite and > 0, got {args.curve!r}")
    from dard_plugin._validation import check_eps_plausible
    from dard_plugin.data import dataset_info

    shape = dataset_info(args.dataset).input_shape
    for value in values:  # every budget before the first evaluation
        check_eps_plausible(value, (0.0, 1.0), norm=args.norm, input_shape=shape, name="--curve")
    return values


def run_attack(args: argparse.Namespace) -> dict[str, Any]:
    import numpy as np
    import torch

    from dard_plugin._files import atomic_write_bytes
    from dard_plugin._validation import check_int, check_real, refuse_nan_logits
    from dard_plugin.attacks.dpgd import dpgd
    from dard_plugin.cli.figures import image_grid
    from dard_plugin.data import load_dataset
    from dard_plugin.evaluation.attacks import correct_predictions

    check_model_source_args(args)
    check_int("--n", args.n, minimum=1)
    check_int("--steps", args.steps, minimum=1)
    if args.step_size is not None:
        check_real("--step-size", args.step_size, low=0.0, low_inclusive=False)
    files = [args.out / "adv.npz", args.out / "grid.png"]
    held = [path.name for path in files if path.exists()]
    if held and not args.overwrite:
        raise CommandError(
            f"--out {args.out} already holds {' and '.join(held)}: pass --overwrite to "
            "replace them, or another --out"
        )
    x, y = load_dataset(args.dataset, train=False, root=args.data_root)
    if args.n > x.shape[0]:
        raise CommandError(
            f"--n must be at most {x.shape[0]} (the size of the {args.dataset} test split), "
            f"got {args.n}"
        )
    x, y = x[: args.n].clone(), y[: args.n].clone()
    model = load_model_source(args)
    device = args.device or "cpu"
    with torch.no_grad():  # evaluate's refusal (the attack's gradients would be zeros too)
        refuse_nan_logits(model(x[:8].to(device)), f"{args.model} returns NaN logits")
    step = args.step_size if args.step_size is not None else args.eps / 4
    adversarial = dpgd(
        model,
        x.to(device),
        y.to(device),
        eps=args.eps,
        alpha=step,
        steps=args.steps,
        reduction=args.reduction,
    ).cpu()
    with torch.no_grad():
        clean_logits, adv_logits = model(x.to(device)).cpu(), model(adversarial.to(device)).cpu()
    # the suite's scoring: a (B, K) output, and a NaN row (past the first images) is wrong
    clean_correct, adv_correct = (correct_predictions(z, y) for z in (clean_logits, adv_logits))
    clean_pred, adv_pred = clean_logits.argmax(1), adv_logits.argmax(1)
    args.out.mkdir(parents=True, exist_ok=True)
    arrays = {
        "clean": x.numpy(),
        "adversarial": adversarial.numpy(),
        "labels": y.numpy(),
        "clean_pred": clean_pred.numpy(),
        "adv_pred": adv_pred.numpy(),
        "eps": args.eps,
        "step_size": step,
        "steps": args.steps,
        "reduction": args.reduction,
        "model": args.model,
    }
    atomic_write_bytes(args.out / "adv.npz", lambda stream: np.savez_compressed(stream, **arrays))
    image_grid(x, adversarial, y, clean_pred, adv_pred, args.out / "grid.png")
    summary = {
        "n": args.n,
        "eps": args.eps,
        "step_size": step,
        "steps": args.steps,
        "reduction": args.reduction,
        "model": args.model,
        "clean_accuracy": int(clean_correct.sum()) / len(y),  # exact, not a float32 mean
        "dpgd_accuracy": int(adv_correct.sum()) / len(y),
        "files": [str(args.out / "adv.npz"), str(args.out / "grid.png")],
    }
    if not args.json:
        print(
            f"DPGD at eps {args.eps}: accuracy {summary['clean_accuracy']:.3f} -> "
            f"{summary['dpgd_accuracy']:.3f} on {args.n} images; wrote {args.out}/adv.npz, "
            f"{args.out}/grid.png"
        )
    return summary


COMMANDS = {"evaluate": run_evaluate, "attack": run_attack}
