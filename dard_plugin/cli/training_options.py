"""The options of ``dard train-teacher`` and ``dard distill``: their parsers, and every
check of them made before any data, model or teacher is loaded (the teacher options, the
validation images, the method's own options)."""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

from dard_plugin.cli.common import (
    DATASETS,
    DEFAULT_TEACHER,
    MODEL_DIR,
    CommandError,
    add_robustbench_options,
    attack_list,
    check_data_root,
    check_model_dir,
)

# every suite row has an L-inf and an L2 form, so this serves both --norm values
DEFAULT_TRAINING_EVAL_ATTACKS = "clean,fgsm,pgd,dpgd,apgd-ce"
# training images held out for per-epoch validation unless --val-split or --validate-on-test
# says otherwise: the study's and the demo's 5,000 (of Fashion-MNIST's 60,000)
DEFAULT_VAL_SPLIT = 5000


def add_parsers(commands: Any) -> None:
    train_teacher = commands.add_parser(
        "train-teacher", help="PGD adversarial training (SAT) of a teacher, or --natural"
    )
    train_teacher.add_argument(
        "--natural",
        action="store_true",
        help="standard training on the natural images (no attack; --eps then sets only "
        "the validation's and the evaluation's budget)",
    )
    _add_training(train_teacher, default_arch="teacher-cnn")

    distill = commands.add_parser("distill", help="distil a robust teacher into a student")
    from dard_plugin.training.registry import METHODS

    distill.add_argument(
        "--method",
        default="dard",
        choices=list(METHODS),
        help="; ".join(f"{name}: {spec.description}" for name, spec in METHODS.items()),
    )
    distill.add_argument(
        "--teacher",
        default=None,
        help=f"shipped teacher, RobustBench name, or checkpoint file (default: {DEFAULT_TEACHER}; "
        "refused with --method sat, which trains without a teacher)",
    )
    distill.add_argument("--teacher-arch", default=None, help="architecture of a checkpoint")
    distill.add_argument(
        "--natural-teacher",
        default=None,
        help="--method mtard: the naturally trained teacher (shipped teacher name, "
        "RobustBench name, or checkpoint file)",
    )
    distill.add_argument("--natural-teacher-arch", help="architecture of its checkpoint")
    distill.add_argument(
        "--igdm",
        type=float,
        default=None,
        help="--method adaad: weight of IGDM's gradient-matching term (adaad-igdm: 1)",
    )
    add_robustbench_options(
        distill,
        "the RobustBench entry of a teacher listed under several (default: --norm's); "
        "refused for a shipped teacher or a checkpoint file",
    )
    distill.add_argument(
        "--teacher-targets",
        default=None,
        choices=("online", "cached"),
        help="the teacher's soft labels computed every batch (online, default) or once (cached)",
    )
    distill.add_argument(
        "--cache-refresh-epochs",
        type=int,
        default=None,
        help=(
            "with cached targets: recompute them every K epochs (the same numbers, unless "
            "the teacher's weights change during the run)"
        ),
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


def _add_training(parser: argparse.ArgumentParser, *, default_arch: str) -> None:
    parser.add_argument("--dataset", default="fashion-mnist", choices=DATASETS)
    parser.add_argument("--data-root", default=None, help="folder holding the dataset files")
    parser.add_argument("--arch", default=default_arch, help="architecture (registry name)")
    parser.add_argument("--n-train", type=int, default=None, help="first N training images")
    parser.add_argument("--n-val", type=int, default=1000, help="validation images per epoch")
    parser.add_argument(
        "--val-split",
        type=int,
        default=None,
        help="hold out the last N training images and validate on the first --n-val of "
        f"them (default: {DEFAULT_VAL_SPLIT}, or --n-val if larger); training draws "
        "--n-train images from the rest",
    )
    parser.add_argument(
        "--validate-on-test",
        action="store_true",
        help="hold nothing out and validate on the first --n-val test images (the old "
        "default): a curve to watch, not to choose settings on",
    )
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
        help="budget in [0,1] pixels (default per dataset and norm: Fashion-MNIST 0.1 for "
        "Linf, 1.5 for L2; CIFAR 8/255 and 0.5)",
    )
    parser.add_argument("--step-size", type=float, default=None, help="default: eps / 4")
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument(
        "--eps-warmup-epochs",
        type=int,
        default=None,
        metavar="K",
        help="ramp the training attack's eps (and step) linearly over the first K epochs: "
        "epoch e uses eps * min(1, e / K) (default: no ramp)",
    )
    parser.add_argument(
        "--seed",
        type=int,
        default=0,
        help=(
            "seeds the training (order, crops, random starts, dropout); the final "
            "evaluation's attacks keep seed 0, as dard evaluate's default, so that students "
            "of different seeds are attacked alike (report.json records it)"
        ),
    )
    parser.add_argument("--out", type=Path, required=True, help="results folder")
    parser.add_argument(
        "--resume",
        action="store_true",
        help="continue the run in --out (nothing to do if it finished with these settings)",
    )
    parser.add_argument("--overwrite", action="store_true", help="replace the run in --out, if any")
    parser.add_argument(
        "--n-eval",
        type=int,
        default=1000,
        help="the final evaluation's first N test images (default: 1000; all: 10000)",
    )
    parser.add_argument(
        "--eval-attacks",
        default=DEFAULT_TRAINING_EVAL_ATTACKS,
        help="comma-separated attack names for the final evaluation, in --norm (default: "
        f"{DEFAULT_TRAINING_EVAL_ATTACKS}; every suite row has an L-inf and an L2 form)",
    )


def check_training_args(args: argparse.Namespace) -> None:
    """Every argument checked before any data, model or teacher is loaded: the checks of
    :func:`~dard_plugin.recipes.distill` (shared, naming the flags) and the command's own."""
    from dard_plugin._validation import MAX_SEED, check_choice, check_int
    from dard_plugin.data import check_n_examples
    from dard_plugin.recipes import check_distill_settings

    check_choice("--norm", args.norm, ["Linf", "L2"])
    check_int("--seed", args.seed, minimum=0, maximum=MAX_SEED)
    check_data_root(args.data_root)
    _choose_validation(args)
    check_n_examples(args.dataset, args.n_eval, train=False, argument="--n-eval")
    world = int(os.environ.get("WORLD_SIZE", "1") or "1")  # torchrun's
    if args.n_eval is not None and args.n_eval < world:
        raise CommandError(
            f"--n-eval {args.n_eval} is fewer than the {world} processes (WORLD_SIZE): the "
            f"final evaluation gives each process at least one image; use --n-eval >= {world}"
        )
    natural = "--natural" if getattr(args, "natural", False) else None
    if run_method(args) == "natural" and natural is None:
        natural = "--method natural"
    if args.eps_warmup_epochs is not None:
        check_int("--eps-warmup-epochs", args.eps_warmup_epochs, minimum=1)
        if args.eps_warmup_epochs > args.epochs:
            raise CommandError(
                f"--eps-warmup-epochs {args.eps_warmup_epochs} is longer than --epochs "
                f"{args.epochs}: the run would end before its attack reaches --eps; use at "
                f"most {args.epochs}"
            )
        if natural:
            raise CommandError(f"--eps-warmup-epochs does not apply to {natural} (no attack)")
    if natural and (args.steps != 10 or args.step_size is not None):
        given = "--steps" if args.steps != 10 else "--step-size"
        raise CommandError(
            f"{given} does not apply to {natural} (no attack in training; the validation "
            "runs PGD-10 at eps / 4): drop it"
        )
    attack_list(args.eval_attacks, "--eval-attacks")
    settings = distill_settings(args)
    args.eps = check_distill_settings(**settings, cli=True)
    if args.lr is None:  # resolved here, so that run.json records the rate that ran
        from dard_plugin.recipes import default_lr

        args.lr = default_lr(settings["method"])


def run_method(args: argparse.Namespace) -> str:
    """The training method a command runs: ``--method`` for ``dard distill``;
    ``natural`` or ``sat`` for ``dard train-teacher``."""
    if getattr(args, "natural", False):
        return "natural"
    return str(getattr(args, "method", "sat"))


def distill_settings(args: argparse.Namespace) -> dict[str, Any]:
    """The settings of :func:`dard_plugin.recipes.distill` that the command's flags give,
    the same ones checked before any work (:func:`check_training_args`) and then run."""
    return {
        "method": run_method(args),
        "dataset": args.dataset,
        "student_arch": args.arch,
        "n_train": args.n_train,
        "n_val": args.n_val,
        "val_split": args.val_split,
        "epochs": args.epochs,
        "batch_size": args.batch_size,
        "lr": args.lr,
        "eps": args.eps,
        "step_size": args.step_size,
        "steps": args.steps,
        "norm": args.norm,
        "out_dir": args.out,
        "resume": args.resume,
        "overwrite": args.overwrite,
    }


def _choose_validation(args: argparse.Namespace) -> None:
    """Per-epoch validation on held-out training images by default; on test images only
    when ``--validate-on-test`` asks for it (:func:`dard_plugin.recipes.choose_validation`,
    shared with Python, naming the flags)."""
    from dard_plugin.recipes import choose_validation

    try:
        args.val_split = choose_validation(
            args.val_split, args.n_val, args.validate_on_test, cli=True
        )
    except ValueError as error:
        raise CommandError(str(error)) from None


def choose_teacher(args: argparse.Namespace) -> None:
    """The teacher options: refused for a method without a teacher (``sat``, ``natural``)
    when the user gave them, else their defaults filled in."""
    from dard_plugin.training.registry import method_spec

    teacher_options = ["teacher", "teacher_arch", "teacher_targets", "threat_model"]
    teacher_options += ["model_dir", "natural_teacher_arch"]
    if not method_spec(args.method).needs_teacher:
        given = [f"--{o.replace('_', '-')}" for o in teacher_options if getattr(args, o)]
        if given:
            raise CommandError(
                f"{', '.join(given)} does not apply to --method {args.method}, which trains "
                "without a teacher: drop it, or choose a distillation --method"
            )
        args.model_dir = MODEL_DIR  # recorded in run.json as before
        return
    args.teacher = args.teacher or DEFAULT_TEACHER
    args.teacher_targets = args.teacher_targets or "online"
    _check_teacher_source_options(args)


def _check_teacher_source_options(args: argparse.Namespace) -> None:
    """``--teacher-arch`` serves a checkpoint file only, ``--threat-model`` a RobustBench
    name only: given for another kind of teacher they would change nothing."""
    from dard_plugin.recipes.model_files import is_model_file
    from dard_plugin.teachers import SHIPPED_TEACHERS

    names = [args.teacher, *([args.natural_teacher] if args.natural_teacher else [])]
    is_file = [is_model_file(n) for n in names]
    if args.teacher_arch is not None and not is_file[0]:
        raise CommandError(
            f"--teacher-arch applies to a checkpoint file; --teacher {args.teacher} is a "
            "named model whose architecture is known: drop --teacher-arch"
        )
    if args.natural_teacher_arch is not None and not (args.natural_teacher and is_file[1]):
        given = f"--natural-teacher {args.natural_teacher} is a named model, of a known arch"
        raise CommandError(
            "--natural-teacher-arch applies to a --natural-teacher checkpoint file; "
            f"{given if args.natural_teacher else 'no --natural-teacher is given'}: drop it"
        )
    if args.threat_model is not None:
        for name, file in zip(names, is_file, strict=True):
            if file or name in SHIPPED_TEACHERS:
                kind = "a checkpoint file" if file else "a shipped teacher"
                raise CommandError(
                    f"--threat-model chooses a RobustBench entry; {name} is {kind}: drop it"
                )
    check_model_dir(args, names)


def teacher_threat_model(args: argparse.Namespace, name: str) -> str | None:
    """The threat model to load teacher ``name`` under: none for a checkpoint file, a
    shipped teacher's own, else ``--threat-model``, else the run's ``--norm`` (an L2 run
    is taught by a RobustBench name's L2 entry, as ``dard evaluate --norm L2`` evaluates
    it)."""
    from dard_plugin.recipes.model_files import is_model_file
    from dard_plugin.teachers import SHIPPED_TEACHERS

    if is_model_file(name):
        return None
    shipped = SHIPPED_TEACHERS.get(name)
    if shipped is not None:
        return shipped.threat_model
    return str(args.threat_model or getattr(args, "norm", None) or "Linf")


def method_options_allowed(method: str) -> set[str]:
    """The command-line trainer options ``method`` takes: the attack kind, the teacher
    targets where there is a teacher, and the options its trainer class names."""
    import inspect

    from dard_plugin.training.registry import method_spec

    spec = method_spec(method)
    allowed = {"attack_kind"}
    if spec.needs_teacher:
        allowed |= {"teacher_targets", "cache_refresh_epochs"}
    named = set(inspect.signature(spec.trainer.__init__).parameters)
    return (
        allowed
        | (named & {"alpha", "temperature", "adv_weight", "adv_targets", "igdm"})
        | ({"legacy_teacher_softmax"} & named)
    )


def method_options(args: argparse.Namespace) -> dict[str, Any]:
    """The trainer options given on the command line; one that the method does not take is
    an error rather than silently ignored."""
    given: dict[str, Any] = {}
    options = ("cache_refresh_epochs", "attack_kind", "alpha", "temperature", "adv_weight")
    for option in (*options, "adv_targets", "igdm"):
        if getattr(args, option) is not None:
            given[option] = getattr(args, option)
    if args.legacy_teacher_softmax:
        given["legacy_teacher_softmax"] = True
    allowed = method_options_allowed(args.method)
    refused = sorted(set(given) - allowed)
    if refused:
        names = ", ".join("--" + k.replace("_", "-") for k in refused)
        raise CommandError(f"{names} does not apply to --method {args.method}")
    if "cache_refresh_epochs" in given and args.teacher_targets != "cached":
        raise CommandError(
            "--cache-refresh-epochs applies to --teacher-targets cached only (the default, "
            "online, asks the teacher every batch)"
        )
    if "teacher_targets" in allowed:
        given["teacher_targets"] = args.teacher_targets
    return given
