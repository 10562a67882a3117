"""The model a command evaluates or attacks (``dard evaluate``, ``dard attack``): its
arguments, their checks before any work, and its loading with the dataset's checks."""

from __future__ import annotations

import argparse
from typing import Any

from dard_plugin.cli.common import (
    DATASETS,
    CommandError,
    add_robustbench_options,
    check_data_root,
    check_model_dir,
    check_out_writable,
)


def add_model_source(parser: argparse.ArgumentParser, *, norms: bool = True) -> None:
    """The model to load, the data and the budget: shared by evaluate and attack (``norms``
    False: L-inf only, as ``dard attack``)."""
    parser.add_argument("model", help="checkpoint file, shipped teacher or RobustBench name")
    parser.add_argument("--arch", default=None, help="architecture of a bare checkpoint")
    parser.add_argument("--dataset", default="fashion-mnist", choices=DATASETS)
    parser.add_argument("--data-root", default=None)
    add_robustbench_options(
        parser,
        "the RobustBench entry of a name listed under several (default: "
        + ("--norm's)" if norms else "Linf)"),
    )
    parser.add_argument(
        "--eps",
        type=float,
        default=None,
        help="budget in [0,1] pixels (default per dataset and norm, as dard distill's: "
        "Fashion-MNIST 0.1 for Linf, 1.5 for L2; CIFAR 8/255 and 0.5)"
        if norms
        else "L-inf budget in [0,1] pixels (default per dataset, as dard distill's: "
        "Fashion-MNIST 0.1, CIFAR 8/255)",
    )


def load_model_source(args: argparse.Namespace) -> Any:
    """The model named by :func:`add_model_source`'s arguments, frozen; a model that
    declares an input shape other than the dataset's is an error naming both."""
    from dard_plugin.cli.training_options import teacher_threat_model
    from dard_plugin.data import dataset_info
    from dard_plugin.evaluation._checks import expected_input_shape
    from dard_plugin.recipes import load_model

    model = load_model(
        args.model,
        dataset=args.dataset,
        arch=args.arch,
        threat_model=teacher_threat_model(args, args.model),  # the same rule as distill's
        model_dir=args.model_dir,
        device=args.device,
    )
    info = dataset_info(args.dataset)
    expected, given = expected_input_shape(model), info.input_shape
    if expected is not None and expected != given:
        raise CommandError(
            f"{args.model} expects inputs of shape {expected}, but --dataset {args.dataset} "
            f"gives images of shape {given}: choose the dataset the model was trained on"
        )
    classes = output_classes(model, given)
    if classes is not None and classes != info.num_classes:
        raise CommandError(
            f"{args.model} outputs {classes} classes, but --dataset {args.dataset} has "
            f"{info.num_classes}: choose the dataset the model was trained on"
        )
    return model


def output_classes(model: Any, input_shape: tuple[int, ...]) -> int | None:
    """The model's number of outputs on one blank image of ``input_shape`` (None when it
    cannot run one: the evaluation's own checks then name the problem)."""
    import torch

    parameter = next(model.parameters(), None)
    device = parameter.device if parameter is not None else torch.device("cpu")
    try:
        with torch.no_grad():
            logits = model(torch.zeros((1, *input_shape), device=device))
    except RuntimeError:
        return None
    return int(logits.shape[-1]) if logits.ndim == 2 else None


def check_model_source_args(args: argparse.Namespace) -> None:
    """``evaluate`` and ``attack``: the model's flags (``--arch`` serves a checkpoint file
    only, ``--threat-model`` a RobustBench name only: given for another kind of model they
    would change nothing), the budget, the data folder and the output folder, before any
    model or data is loaded and before an old evaluation is overwritten."""
    from dard_plugin._validation import check_eps_plausible, check_real
    from dard_plugin.data import dataset_info
    from dard_plugin.recipes import default_eps
    from dard_plugin.recipes.model_files import is_model_file
    from dard_plugin.teachers import SHIPPED_TEACHERS

    is_file = is_model_file(args.model)
    if args.arch is not None and not is_file:
        raise CommandError(
            f"--arch applies to a checkpoint file; {args.model} is a named model whose "
            "architecture is known: drop --arch"
        )
    if args.threat_model is not None and (is_file or args.model in SHIPPED_TEACHERS):
        kind = "a checkpoint file" if is_file else "a shipped teacher"
        raise CommandError(
            f"--threat-model chooses a RobustBench entry; {args.model} is {kind}: drop it"
        )
    check_model_dir(args, [args.model])
    norm = getattr(args, "norm", "Linf")
    if args.eps is None:
        args.eps = default_eps(args.dataset, norm)
    check_real("--eps", args.eps, low=0.0, low_inclusive=False)
    check_eps_plausible(
        args.eps,
        (0.0, 1.0),
        norm=norm,
        input_shape=dataset_info(args.dataset).input_shape,
        name="--eps",
    )
    check_data_root(args.data_root)
    if args.out is not None:
        check_out_writable(args.out)
