"""``evaluate``: clean accuracy and robust accuracy under an attack suite, per sample."""

from __future__ import annotations

import importlib.metadata
import logging
import time
import warnings
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn
from tqdm.auto import tqdm

from dard_plugin._validation import (
    check_choice,
    check_images,
    check_int,
    check_label_range,
    check_labels,
    check_real,
    warn_if_probabilities,
)
from dard_plugin.evaluation.attacks import (
    AUTOATTACK_PARTS,
    SUITE,
    accuracy_flags,
    run_autoattack,
)
from dard_plugin.evaluation.report import RobustnessReport

logger = logging.getLogger(__name__)

NORMS = ("Linf", "L2")
ATTACK_NAMES = ("clean", *SUITE, "autoattack", *AUTOATTACK_PARTS)
DEFAULT_ATTACKS = ("clean", "fgsm", "pgd", "dpgd", "autoattack")


def _versions() -> dict[str, str]:
    names = [
        "dard-plugin",
        "torch",
        "torchattacks",
        "pyautoattack",
        "adversarial-robustness-toolbox",
        "robustbench",
    ]
    versions = {}
    for name in names:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def _sanity_checks(model: nn.Module, images: torch.Tensor, device: torch.device) -> None:
    """AutoAttack's own warnings: probabilities instead of logits, randomness."""
    sample = images[:8].to(device)
    with torch.no_grad():
        first, second = model(sample), model(sample)
    warn_if_probabilities(first)
    if not torch.allclose(first, second, atol=1e-5):
        warnings.warn(
            "the model's outputs differ between two identical calls (a randomized "
            "defence?): use an adaptive evaluation (e.g. AutoAttack's 'rand' "
            "version); these numbers may overestimate robustness",
            UserWarning,
            stacklevel=3,
        )


def evaluate(
    model: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    *,
    eps: float,
    norm: str = "Linf",
    attacks: Sequence[str] = DEFAULT_ATTACKS,
    batch_size: int = 256,
    n_examples: int | None = None,
    seed: int = 0,
    device: str | torch.device | None = None,
    state_path: str | Path | None = None,
    verbose: bool = True,
    model_name: str = "model",
) -> RobustnessReport:
    """Clean and robust accuracy of ``model`` on ``images`` (in [0, 1]) at budget ``eps``.

    Every attack runs on all examples, so ``per_attack[name]`` is what that attack alone
    gives; ``robust_accuracy`` is the per-sample worst case over all of them.

    Args:
        attacks: names from ``clean``, ``fgsm``, ``pgd``, ``bim``, ``tpgd``, ``cw``,
            ``dpgd``, ``autoattack`` (standard: APGD-CE, APGD-T, FAB-T, Square) and
            AutoAttack's parts ``apgd-ce``, ``apgd-t``, ``fab-t``, ``square`` (run with the
            standard version's settings).
        n_examples: evaluate the first N examples only.
        seed: seeds every random start, including AutoAttack's; the caller's global RNG
            state is restored afterwards.
        device: default: the model's device.
        state_path: AutoAttack's resumable state file (one per attack set).
    The model is evaluated in eval mode (restored afterwards, with a warning if it was in
    train mode); its parameters and buffers are never changed.
    """
    check_real("eps", eps, low=0.0, low_inclusive=False)
    check_choice("norm", norm, NORMS)
    if isinstance(attacks, str) or not attacks:
        raise ValueError(f"attacks must be a non-empty list of names from {list(ATTACK_NAMES)}")
    for name in attacks:
        check_choice("attacks", name, ATTACK_NAMES)
        if name in SUITE and norm not in SUITE[name].norms:
            raise ValueError(
                f"attack {name!r} supports norms {list(SUITE[name].norms)}, not {norm}"
            )
    check_int("batch_size", batch_size, minimum=1)
    check_int("seed", seed, minimum=0)
    check_images("images", images, (0.0, 1.0))
    check_labels("labels", labels, images.shape[0])
    if n_examples is not None:
        check_int("n_examples", n_examples, minimum=1)
        if n_examples > images.shape[0]:
            raise ValueError(
                f"n_examples must be at most {images.shape[0]} (the number of "
                f"images given), got {n_examples}"
            )
        images, labels = images[:n_examples], labels[:n_examples]
    if device is None:
        device = next((t.device for t in model.parameters()), torch.device("cpu"))
    device = torch.device(device)

    was_training = model.training
    if was_training:
        warnings.warn(
            "the model was in train mode: it is evaluated in eval mode (and put "
            "back in train mode afterwards)",
            UserWarning,
            stacklevel=2,
        )
    model.eval()
    fork_devices = [device] if device.type == "cuda" else []
    try:
        with torch.random.fork_rng(devices=fork_devices, device_type=device.type):
            torch.manual_seed(seed)  # torchattacks' L2 attacks draw from the global RNG
            _sanity_checks(model, images, device)
            with torch.no_grad():
                logits = model(images[:1].to(device))
            check_label_range("labels", labels, logits.shape[1])
            correct, seconds = _run_all(
                model,
                images,
                labels,
                eps=eps,
                norm=norm,
                attacks=attacks,
                batch_size=batch_size,
                seed=seed,
                device=device,
                state_path=state_path,
                verbose=verbose,
            )
    finally:
        model.train(was_training)

    worst = torch.stack(list(correct.values())).all(dim=0)
    clean = correct.get("clean")
    report = RobustnessReport(
        clean_accuracy=float(clean.float().mean()) if clean is not None else float("nan"),
        per_attack={k: float(v.float().mean()) for k, v in correct.items() if k != "clean"},
        robust_accuracy=float(worst.float().mean()),
        eps=float(eps),
        norm=norm,
        n_examples=int(images.shape[0]),
        seed=seed,
        seconds=seconds,
        versions=_versions(),
        model_name=model_name,
    )
    logger.info(
        "evaluation of %s: clean %.4f, worst case %.4f over %s",
        model_name,
        report.clean_accuracy,
        report.robust_accuracy,
        list(correct),
    )
    return report


def _run_all(
    model: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    *,
    eps: float,
    norm: str,
    attacks: Sequence[str],
    batch_size: int,
    seed: int,
    device: torch.device,
    state_path: str | Path | None,
    verbose: bool,
) -> tuple[dict[str, torch.Tensor], dict[str, float]]:
    correct: dict[str, torch.Tensor] = {}
    seconds: dict[str, float] = {}
    for name in tqdm(list(dict.fromkeys(attacks)), desc="evaluation", disable=not verbose):
        started = time.perf_counter()
        if name == "autoattack" or name in AUTOATTACK_PARTS:
            parts = AUTOATTACK_PARTS if name == "autoattack" else (name,)
            correct[name] = run_autoattack(
                model,
                images,
                labels,
                eps=eps,
                norm=norm,
                parts=parts,
                seed=seed,
                batch_size=batch_size,
                device=device,
                state_path=Path(state_path) if state_path is not None else None,
            )
        else:
            correct[name] = accuracy_flags(
                model,
                images,
                labels,
                None if name == "clean" else SUITE[name],
                eps=eps,
                norm=norm,
                batch_size=batch_size,
                device=device,
                generator=torch.Generator().manual_seed(seed),
            )
        seconds[name] = time.perf_counter() - started
    return correct, seconds
