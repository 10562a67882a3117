"""The ``dard`` command line. Heavy imports happen inside each command, so that
``dard --help`` answers at once."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from pathlib import Path
from typing import Any

METHODS = ("dard", "sat", "ard", "rslad")
DATASETS = ("fashion-mnist", "cifar10", "cifar100")
DEMO_TEACHER = "dard-fmnist-teacher"
# every suite row has an L-inf and an L2 form, so these serve both --norm values
DEFAULT_TRAINING_EVAL_ATTACKS = "clean,fgsm,pgd,dpgd,apgd-ce"  # distill / train-teacher
DEFAULT_EVALUATE_ATTACKS = "clean,fgsm,pgd,dpgd,autoattack"  # evaluation.DEFAULT_ATTACKS

logger = logging.getLogger("dard_plugin.cli")


class CommandError(Exception):
    """A user-facing error: printed as one line, exit status 2."""


def _add_common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--quiet", action="store_true", help="no progress bars or logs")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    parser.add_argument("--device", default=None, help="cpu, cuda, cuda:1 (default: cpu)")


def _add_training(parser: argparse.ArgumentParser, *, default_arch: str) -> None:
    parser.add_argument("--dataset", default="fashion-mnist", choices=DATASETS)
    parser.add_argument("--data-root", default=None, help="folder holding the dataset files")
    parser.add_argument("--arch", default=default_arch, help="architecture (registry name)")
    parser.add_argument("--n-train", type=int, default=None, help="first N training images")
    parser.add_argument("--n-val", type=int, default=1000, help="validation images per epoch")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument(
        "--lr",
        type=float,
        default=None,
        help="SGD learning rate (default: 0.05 for SAT, 0.01 for distillation)",
    )
    parser.add_argument(
        "--norm",
        default="Linf",
        choices=("Linf", "L2"),
        help="threat model of training, validation and the final evaluation",
    )
    parser.add_argument(
        "--eps",
        type=float,
        default=None,
        help="budget in [0,1] pixels (default: 0.1 for Linf, 1.5 for L2)",
    )
    parser.add_argument("--step-size", type=float, default=None, help="default: eps / 4")
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, required=True, help="results folder")
    parser.add_argument(
        "--resume",
        action="store_true",
        help="continue the run in --out (nothing to do if it finished with these settings)",
    )
    parser.add_argument("--overwrite", action="store_true", help="replace the run in --out, if any")
    parser.add_argument("--n-eval", type=int, default=1000, help="test images evaluated")
    parser.add_argument(
        "--eval-attacks",
        default=DEFAULT_TRAINING_EVAL_ATTACKS,
        help="comma-separated attack names for the final evaluation, in --norm (default: "
        f"{DEFAULT_TRAINING_EVAL_ATTACKS}; every suite row has an L-inf and an L2 form)",
    )


def _add_model_source(parser: argparse.ArgumentParser) -> None:
    """The model to load, the data and the budget: shared by evaluate and attack."""
    parser.add_argument("model", help="checkpoint file, shipped teacher or RobustBench name")
    parser.add_argument("--arch", default=None, help="architecture of a bare checkpoint")
    parser.add_argument("--dataset", default="fashion-mnist", choices=DATASETS)
    parser.add_argument("--data-root", default=None)
    parser.add_argument("--model-dir", default="./models", help="RobustBench model folder")
    parser.add_argument("--eps", type=float, default=0.1)


def _load_model_source(args: argparse.Namespace) -> Any:
    """The model named by :func:`_add_model_source`'s arguments, frozen; a model that
    declares an input shape other than the dataset's is an error naming both."""
    from dard_plugin.data import dataset_info
    from dard_plugin.evaluation._checks import expected_input_shape
    from dard_plugin.recipes import load_model

    model = load_model(
        args.model,
        dataset=args.dataset,
        arch=args.arch,
        model_dir=args.model_dir,
        device=args.device,
    )
    expected, given = expected_input_shape(model), dataset_info(args.dataset).input_shape
    if expected is not None and expected != given:
        raise CommandError(
            f"{args.model} expects inputs of shape {expected}, but --dataset {args.dataset} "
            f"gives images of shape {given}: choose the dataset the model was trained on"
        )
    return model


def _check_model_source_args(args: argparse.Namespace) -> None:
    """``evaluate`` and ``attack``: the budget, the data folder and the output folder,
    before any model or data is loaded."""
    from dard_plugin._validation import check_eps_plausible, check_real
    from dard_plugin.data import dataset_info

    check_real("--eps", args.eps, low=0.0, low_inclusive=False)
    check_eps_plausible(
        args.eps,
        (0.0, 1.0),
        norm=getattr(args, "norm", "Linf"),
        input_shape=dataset_info(args.dataset).input_shape,
        name="--eps",
    )
    _check_data_root(args.data_root)
    if args.out is not None:
        _check_out_writable(args.out)


def _check_data_root(root: str | None) -> None:
    """A ``--data-root`` that does not exist is an error (not a silent fallback to another
    copy of the data)."""
    if root is not None and not Path(root).is_dir():
        what = "is not a directory" if Path(root).exists() else "does not exist"
        raise CommandError(f"--data-root {root} {what}: give the folder holding the dataset")


def _check_out_writable(folder: Path) -> None:
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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dard",
        description="Dice Adversarial Robustness Distillation (DARD) and the DPGD attack.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    teachers = commands.add_parser("teachers", help="list RobustBench teachers and accuracies")
    teachers.add_argument(
        "--dataset",
        default="cifar10",
        choices=("cifar10", "cifar100", "imagenet", "fashion-mnist"),
        help="fashion-mnist lists the teachers shipped with dard-plugin",
    )
    teachers.add_argument("--threat-model", default="Linf", choices=("Linf", "L2"))
    _add_common(teachers)

    train_teacher = commands.add_parser(
        "train-teacher", help="PGD adversarial training (SAT) of a teacher"
    )
    _add_training(train_teacher, default_arch="teacher-cnn")
    _add_common(train_teacher)

    distill = commands.add_parser("distill", help="distil a robust teacher into a student")
    distill.add_argument("--method", default="dard", choices=METHODS)
    distill.add_argument(
        "--teacher",
        default=DEMO_TEACHER,
        help="shipped teacher, RobustBench name, or checkpoint file",
    )
    distill.add_argument("--teacher-arch", default=None, help="architecture of a checkpoint")
    distill.add_argument("--threat-model", default="Linf")
    distill.add_argument("--model-dir", default="./models", help="RobustBench model folder")
    distill.add_argument("--teacher-targets", default="online", choices=("online", "cached"))
    distill.add_argument(
        "--cache-refresh-epochs",
        type=int,
        default=None,
        help="with cached targets: recompute them every K epochs",
    )
    distill.add_argument(
        "--attack-kind",
        default=None,
        choices=("dpgd", "pgd"),
        help="the student's attack (default: the method's own)",
    )
    distill.add_argument("--alpha", type=float, default=None, help="distillation weight a")
    distill.add_argument("--temperature", type=float, default=None)
    distill.add_argument("--adv-weight", type=float, default=None, help="DARD's w")
    distill.add_argument(
        "--adv-targets",
        default=None,
        choices=("teacher-adv", "teacher-nat", "student-adv", "teacher-adv-corrected"),
        help="DARD's adversarial soft labels: the teacher on its own DPGD example "
        "(teacher-adv, the paper's, default), on the natural image, on the student's "
        "adversarial example (online targets only), or teacher-adv with the true label "
        "where the teacher is fooled",
    )
    distill.add_argument(
        "--legacy-teacher-softmax",
        action="store_true",
        help="reproduce the original scripts' defect (comparison only)",
    )
    _add_training(distill, default_arch="small-cnn")
    _add_common(distill)

    evaluate = commands.add_parser("evaluate", help="clean and robust accuracy of a model")
    _add_model_source(evaluate)
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
    evaluate.add_argument("--n-examples", type=int, default=1000)
    evaluate.add_argument("--batch-size", type=int, default=256)
    evaluate.add_argument("--seed", type=int, default=0)
    evaluate.add_argument(
        "--out",
        type=Path,
        default=None,
        help="folder for JSON and markdown; also keeps AutoAttack's resumable state "
        "(one file per attack set and rank) while the evaluation runs",
    )
    _add_common(evaluate)
    evaluate.epilog = (
        "Under torchrun (torchrun --nproc_per_node N -m dard_plugin evaluate ...) each rank "
        "evaluates its shard of the examples and rank 0 writes the one report."
    )

    attack = commands.add_parser("attack", help="DPGD adversarial examples to .npz and PNG")
    _add_model_source(attack)
    attack.add_argument("--n", type=int, default=16, help="first N test images")
    attack.add_argument("--step-size", type=float, default=None)
    attack.add_argument("--steps", type=int, default=10)
    attack.add_argument("--out", type=Path, required=True, help="folder for adv.npz, grid.png")
    _add_common(attack)

    demo = commands.add_parser(
        "demo", help="distil the shipped Fashion-MNIST teacher with DARD, then evaluate"
    )
    demo.add_argument("--out", type=Path, default=Path("results/demo"))
    demo.add_argument("--n-train", type=int, default=3000)
    demo.add_argument("--epochs", type=int, default=3)
    demo.add_argument("--n-eval", type=int, default=500)
    _add_common(demo)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING if args.quiet else logging.INFO, format="%(message)s")
    logging.getLogger("art").setLevel(logging.WARNING)  # ART logs its data path at import
    if args.quiet:
        logging.getLogger("auto-attack").setLevel(logging.WARNING)
    try:
        handler = COMMANDS[args.command]
        result = handler(args)
    except KeyboardInterrupt:
        print("dard: interrupted", file=sys.stderr)
        return 130
    except Exception as error:  # one clear line unless --debug
        if args.debug:
            raise
        print(f"dard {args.command}: error: {error}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(result, indent=2, default=str))
    return 0


# --------------------------------------------------------------------------- commands
def _teachers(args: argparse.Namespace) -> list[dict[str, Any]]:
    from dard_plugin.teachers import list_teachers

    rows = [vars(t) for t in list_teachers(args.dataset, args.threat_model)]
    if not args.json:
        print(f"{'name':<46} {'clean':>6} {'AA':>6}  {'source':<26} architecture")
        for row in rows:
            clean = "-" if row["clean_acc"] is None else f"{row['clean_acc']:.2f}"
            robust = "-" if row["autoattack_acc"] is None else f"{row['autoattack_acc']:.2f}"
            if row["source"] == "dard-plugin":
                source = f"measured (AA: {row['autoattack_examples']} images)"
            else:
                source = "RobustBench (published)"
            print(
                f"{row['name']:<46} {clean:>6} {robust:>6}  {source:<26} "
                f"{row['architecture'] or ''}"
            )
        shipped = sum(row["source"] == "dard-plugin" for row in rows)
        print(
            f"{len(rows)} {args.dataset}/{args.threat_model} teachers ({shipped} shipped with "
            "dard-plugin, measured; the others RobustBench's published numbers); accuracies "
            "in percent."
        )
    return rows


def _check_training_args(args: argparse.Namespace) -> None:
    """Every argument checked before any data, model or teacher is loaded."""
    from dard_plugin._validation import check_choice, check_int, check_real
    from dard_plugin.evaluation import ATTACK_NAMES
    from dard_plugin.models import REGISTRY
    from dard_plugin.training.attacks import L2_TRAINING_EPS

    check_choice("--arch", args.arch, list(REGISTRY))
    check_choice("--norm", args.norm, ["Linf", "L2"])
    if args.eps is None:
        args.eps = 0.1 if args.norm == "Linf" else L2_TRAINING_EPS
    _check_data_root(args.data_root)
    check_real("--eps", args.eps, low=0.0, low_inclusive=False)
    if args.step_size is not None:
        check_real("--step-size", args.step_size, low=0.0, low_inclusive=False)
    for name in ("epochs", "batch_size", "steps", "n_val", "n_eval"):
        check_int(f"--{name.replace('_', '-')}", getattr(args, name), minimum=1)
    if args.n_train is not None:
        check_int("--n-train", args.n_train, minimum=1)
    if args.lr is not None:
        check_real("--lr", args.lr, low=0.0, low_inclusive=False)
    for attack in args.eval_attacks.split(","):
        check_choice("--eval-attacks", attack.strip(), list(ATTACK_NAMES))
    _check_out(args.out)
    _check_existing_run(args)


_NOT_RUN_SETTINGS = {"quiet", "json", "debug", "resume", "overwrite", "device", "command", "out"}


def _run_settings(args: argparse.Namespace) -> dict[str, Any]:
    """The command's settings as recorded in ``run.json`` beside its results."""
    return {k: str(v) for k, v in sorted(vars(args).items()) if k not in _NOT_RUN_SETTINGS}


def _check_existing_run(args: argparse.Namespace) -> None:
    """An --out that holds a run is refused unless --resume or --overwrite."""
    from dard_plugin.recipes import existing_run

    if args.resume and args.overwrite:
        raise CommandError("--resume and --overwrite exclude each other: choose one")
    found = existing_run(args.out)
    if found is not None and not (args.resume or args.overwrite):
        raise CommandError(
            f"--out {args.out} already holds a {found} run: pass --resume to continue it (or "
            "do nothing if it finished with the same settings), --overwrite to replace it, "
            "or another --out"
        )


def _finished_report(args: argparse.Namespace) -> dict[str, Any] | None:
    """The saved report of a finished run whose recorded settings are these, else None."""
    out = args.out
    try:
        recorded = json.loads((out / "run.json").read_text())
        report: dict[str, Any] = json.loads((out / "report.json").read_text())
        markdown = (out / "report.md").read_text()
    except (OSError, ValueError):
        return None
    if recorded != _run_settings(args):
        return None
    if not args.json:
        print(f"{out} holds this run, finished with the same settings: nothing to do")
        print(markdown)
    return report


def _check_out(folder: Path) -> None:
    from dard_plugin.recipes import _check_writable

    _check_writable(folder)


def _train(
    args: argparse.Namespace, *, method: str, teacher: Any, **method_kwargs: Any
) -> dict[str, Any]:
    from dard_plugin.recipes import distill

    world, rank = _distributed_setup(args)
    try:
        result = distill(
            method=method,
            dataset=args.dataset,
            teacher=teacher,
            student_arch=args.arch,
            n_train=args.n_train,
            n_val=args.n_val,
            epochs=args.epochs,
            batch_size=args.batch_size,
            lr=args.lr,
            eps=args.eps,
            step_size=args.step_size,
            steps=args.steps,
            norm=args.norm,
            seed=args.seed,
            device=args.device,
            out_dir=args.out,
            resume=args.resume,
            overwrite=args.overwrite,
            data_root=args.data_root,
            verbose=not args.quiet and rank == 0,
            **method_kwargs,
        )
        # every rank evaluates its shard (evaluate shards over the process group); rank 0
        # alone decides whether a finished run's report is reused, prints and writes
        report = _finished_report(args) if result.epochs_run == 0 and rank == 0 else None
        if _broadcast_from_rank0(report is None, world):
            report = _evaluate_into(
                result.student,
                args,
                args.out if rank == 0 else None,
                name=f"{method}-{args.arch}",
                announce=rank == 0,
            )
            if rank == 0:
                from dard_plugin.training.checkpointing import write_json

                write_json(args.out / "run.json", _run_settings(args))
        if rank != 0:
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


def _distributed_setup(args: argparse.Namespace) -> tuple[int, int]:
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


def _broadcast_from_rank0(value: bool, world: int) -> bool:
    """Rank 0's ``value`` on every rank (itself when not distributed)."""
    if world <= 1:
        return value
    import torch.distributed as dist

    box = [value]
    dist.broadcast_object_list(box, src=0)
    return bool(box[0])


def _evaluate_into(
    model: Any,
    args: argparse.Namespace,
    out: Path | None,
    *,
    name: str,
    announce: bool = True,
) -> dict[str, Any]:
    from dard_plugin.data import load_dataset
    from dard_plugin.evaluation import evaluate
    from dard_plugin.training.loop import distributed

    attacks = [a.strip() for a in args.eval_attacks.split(",") if a.strip()]
    x, y = load_dataset(args.dataset, train=False, n_examples=args.n_eval, root=args.data_root)
    batch_size = 256
    world = distributed()[0]
    if world > 1 and x.shape[0] <= batch_size * (world - 1):
        # a smaller batch, so that every rank's shard holds examples (evaluate refuses an
        # empty shard); the report then depends on the world size through the batch size
        batch_size = -(-x.shape[0] // world)
        logger.info("evaluation batch size %d so that %d ranks share the work", batch_size, world)
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


def _train_teacher(args: argparse.Namespace) -> dict[str, Any]:
    _check_training_args(args)
    return _train(args, method="sat", teacher=None)


def _distill(args: argparse.Namespace) -> dict[str, Any]:
    from dard_plugin.recipes import load_model

    _check_training_args(args)
    method_kwargs = _method_options(args)
    teacher = None
    if args.method != "sat":
        world, rank = _distributed_setup(args)
        if rank > 0:  # rank 0 fetches a RobustBench teacher first; the others then read it
            _barrier()
        teacher = load_model(
            args.teacher,
            dataset=args.dataset,
            arch=args.teacher_arch,
            threat_model=args.threat_model,
            model_dir=args.model_dir,
            device=args.device,
        )
        if rank == 0 and world > 1:
            _barrier()
    return _train(args, method=args.method, teacher=teacher, **method_kwargs)


def _barrier() -> None:
    import torch.distributed as dist

    dist.barrier()


_METHOD_OPTIONS = {
    "sat": {"attack_kind"},
    "ard": {"teacher_targets", "cache_refresh_epochs", "attack_kind", "alpha", "temperature"},
    "rslad": {"teacher_targets", "cache_refresh_epochs", "attack_kind"},
    "dard": {
        "teacher_targets",
        "cache_refresh_epochs",
        "attack_kind",
        "alpha",
        "temperature",
        "adv_weight",
        "adv_targets",
        "legacy_teacher_softmax",
    },
}


def _method_options(args: argparse.Namespace) -> dict[str, Any]:
    """The trainer options given on the command line; one that the method does not take is
    an error rather than silently ignored."""
    given: dict[str, Any] = {}
    options = ("cache_refresh_epochs", "attack_kind", "alpha", "temperature", "adv_weight")
    for option in (*options, "adv_targets"):
        if getattr(args, option) is not None:
            given[option] = getattr(args, option)
    if args.legacy_teacher_softmax:
        given["legacy_teacher_softmax"] = True
    allowed = _METHOD_OPTIONS[args.method]
    refused = sorted(set(given) - allowed)
    if refused:
        names = ", ".join("--" + k.replace("_", "-") for k in refused)
        raise CommandError(f"{names} does not apply to --method {args.method}")
    if "teacher_targets" in allowed:
        given["teacher_targets"] = args.teacher_targets
    return given


def _evaluate(args: argparse.Namespace) -> dict[str, Any]:
    """``dard evaluate``: in one process, or under torchrun with one shard per rank (rank 0
    prints and writes the report)."""
    from dard_plugin._validation import check_choice, check_int
    from dard_plugin.evaluation import ATTACK_NAMES
    from dard_plugin.evaluation.distributed import check_torchrun_environment

    _check_model_source_args(args)
    attacks = [a.strip() for a in args.attacks.split(",") if a.strip()]
    for attack in attacks:
        check_choice("--attacks", attack, list(ATTACK_NAMES))
    check_int("--n-examples", args.n_examples, minimum=1)
    check_int("--batch-size", args.batch_size, minimum=1)
    curve = _parse_curve(args)
    check_torchrun_environment()
    world, rank = _distributed_setup(args)
    try:
        return _evaluate_sharded(args, attacks, curve, rank)
    finally:
        if world > 1:
            import torch.distributed as dist

            dist.destroy_process_group()


def _evaluate_sharded(
    args: argparse.Namespace, attacks: list[str], curve: list[float], rank: int
) -> dict[str, Any]:
    from dard_plugin.data import load_dataset
    from dard_plugin.evaluation import evaluate, plot_robustness_curve, robustness_curve
    from dard_plugin.evaluation.autoattack import AUTOATTACK_PARTS, state_file

    model = _load_model_source(args)
    x, y = load_dataset(args.dataset, train=False, n_examples=args.n_examples, root=args.data_root)
    name = Path(args.model).stem
    state = args.out / "autoattack-state.json" if args.out is not None else None
    options: dict[str, Any] = {
        "attacks": attacks,
        "norm": args.norm,
        "batch_size": args.batch_size,
        "seed": args.seed,
        "device": args.device,
        "verbose": not args.quiet and rank == 0,
        "model_name": name,
    }
    report = evaluate(model, x, y, eps=args.eps, state_path=state, **options)
    if state is not None:  # finished: the resumable state is no longer needed
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
    if args.out is not None:
        from dard_plugin.evaluation.report import write_text_atomically

        report.to_json(args.out / "report.json")
        write_text_atomically(args.out / "report.md", report.to_markdown())
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
    if not values or any(v <= 0 for v in values):
        raise CommandError(f"--curve values must be > 0, got {args.curve!r}")
    return values


def _attack(args: argparse.Namespace) -> dict[str, Any]:
    import numpy as np
    import torch

    from dard_plugin.attacks.dpgd import dpgd
    from dard_plugin.data import load_dataset

    _check_model_source_args(args)
    model = _load_model_source(args)
    x, y = load_dataset(args.dataset, train=False, n_examples=args.n, root=args.data_root)
    device = args.device or "cpu"
    step = args.step_size if args.step_size is not None else args.eps / 4
    adversarial = dpgd(
        model, x.to(device), y.to(device), eps=args.eps, alpha=step, steps=args.steps
    ).cpu()
    with torch.no_grad():
        clean_pred = model(x.to(device)).argmax(1).cpu()
        adv_pred = model(adversarial.to(device)).argmax(1).cpu()
    args.out.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(
        args.out / "adv.npz",
        clean=x.numpy(),
        adversarial=adversarial.numpy(),
        labels=y.numpy(),
        clean_pred=clean_pred.numpy(),
        adv_pred=adv_pred.numpy(),
        eps=args.eps,
    )
    _image_grid(x, adversarial, y, clean_pred, adv_pred, args.out / "grid.png")
    summary = {
        "n": args.n,
        "eps": args.eps,
        "clean_accuracy": float((clean_pred == y).float().mean()),
        "dpgd_accuracy": float((adv_pred == y).float().mean()),
        "files": [str(args.out / "adv.npz"), str(args.out / "grid.png")],
    }
    if not args.json:
        print(
            f"DPGD at eps {args.eps}: accuracy {summary['clean_accuracy']:.3f} -> "
            f"{summary['dpgd_accuracy']:.3f} on {args.n} images; wrote {args.out}/adv.npz, "
            f"{args.out}/grid.png"
        )
    return summary


def _image_grid(
    clean: Any, adversarial: Any, labels: Any, clean_pred: Any, adv_pred: Any, path: Path
) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = min(8, clean.shape[0])
    figure, axes = plt.subplots(2, n, figsize=(1.4 * n, 3.2), squeeze=False)
    for i in range(n):
        for row, (images, preds, title) in enumerate(
            ((clean, clean_pred, "clean"), (adversarial, adv_pred, "DPGD"))
        ):
            image = images[i].permute(1, 2, 0).squeeze(-1).numpy()
            axes[row][i].imshow(image, cmap="gray" if image.ndim == 2 else None, vmin=0, vmax=1)
            ok = int(preds[i]) == int(labels[i])
            axes[row][i].set_title(
                f"{title}: {int(preds[i])}", fontsize=7, color="green" if ok else "red"
            )
            axes[row][i].axis("off")
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)


def _demo(args: argparse.Namespace) -> dict[str, Any]:
    started = time.perf_counter()
    if not args.json:
        print(
            f"dard demo: distilling the shipped robust Fashion-MNIST teacher "
            f"({DEMO_TEACHER}) into small-cnn with DARD: {args.n_train} training images, "
            f"{args.epochs} epochs, L-inf eps 0.1; then evaluating on {args.n_eval} test "
            "images. Results in " + str(args.out)
        )
    # exactly `dard distill` with these arguments: every other option keeps its default
    demo_argv = [
        "distill",
        "--method",
        "dard",
        "--teacher",
        DEMO_TEACHER,
        "--arch",
        "small-cnn",
        "--dataset",
        "fashion-mnist",
        "--n-train",
        str(args.n_train),
        "--epochs",
        str(args.epochs),
        "--n-val",
        "500",
        "--n-eval",
        str(args.n_eval),
        "--eps",
        "0.1",
        "--eval-attacks",
        "clean,fgsm,pgd,dpgd,apgd-ce",
        "--out",
        str(args.out),
        "--resume",
    ]
    demo_args = build_parser().parse_args(demo_argv)
    demo_args.quiet, demo_args.json, demo_args.device = args.quiet, args.json, args.device
    result = _distill(demo_args)
    result["seconds"] = time.perf_counter() - started
    if not args.json:
        print(f"done in {result['seconds']:.0f} s; report: {args.out}/report.md")
    return result


COMMANDS = {
    "teachers": _teachers,
    "train-teacher": _train_teacher,
    "distill": _distill,
    "evaluate": _evaluate,
    "attack": _attack,
    "demo": _demo,
}
