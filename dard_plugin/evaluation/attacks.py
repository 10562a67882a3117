"""The evaluation attack suite. Every L-inf attack but AutoAttack is the package's one
sign-gradient loop with another objective; AutoAttack is the original algorithm
(pyautoattack, the same code as Croce & Hein's repository)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from dard_plugin.attacks.dpgd import dpgd
from dard_plugin.attacks.pgd import cross_entropy_objective, kl_objective, pgd_linf

logger = logging.getLogger(__name__)

AUTOATTACK_PARTS = ("apgd-ce", "apgd-t", "fab-t", "square")

# (model, images, labels, eps, norm, generator) -> adversarial images
AttackRunner = Callable[
    [nn.Module, torch.Tensor, torch.Tensor, float, str, torch.Generator], torch.Tensor
]


def _margin_objective(
    logits: torch.Tensor, labels: torch.Tensor, step: int, steps: int
) -> torch.Tensor:
    """Carlini-Wagner's margin: best other logit minus the true logit."""
    del step, steps
    true = logits.gather(1, labels.unsqueeze(1)).squeeze(1)
    others = logits.masked_fill(F.one_hot(labels, logits.shape[1]).bool(), float("-inf"))
    return (others.amax(dim=1) - true).sum()


def _fgsm(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    eps: float,
    norm: str,
    generator: torch.Generator,
) -> torch.Tensor:
    if norm == "L2":
        return _torchattacks_l2("FGM", model, x, y, eps)
    return pgd_linf(model, x, y, cross_entropy_objective, eps=eps, alpha=eps, steps=1)


def _pgd(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    eps: float,
    norm: str,
    generator: torch.Generator,
) -> torch.Tensor:
    if norm == "L2":
        return _torchattacks_l2("PGDL2", model, x, y, eps)
    return pgd_linf(
        model,
        x,
        y,
        cross_entropy_objective,
        eps=eps,
        alpha=eps / 4,
        steps=20,
        random_start=True,
        generator=generator,
    )


def _bim(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    eps: float,
    norm: str,
    generator: torch.Generator,
) -> torch.Tensor:
    return pgd_linf(model, x, y, cross_entropy_objective, eps=eps, alpha=eps / 10, steps=20)


def _tpgd(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    eps: float,
    norm: str,
    generator: torch.Generator,
) -> torch.Tensor:
    """TRADES' inner maximisation: KL(f(x) || f(x')) from x + 0.001 N(0, 1), 10 steps."""
    with torch.no_grad():
        clean_probs = F.softmax(model(x).float(), dim=1)
    noise = torch.randn(x.shape, generator=generator).to(x.device)
    start = (x + 0.001 * noise).clamp(0, 1)
    return pgd_linf(
        model, x, y, kl_objective(clean_probs), eps=eps, alpha=eps / 4, steps=10, start=start
    )


def _cw(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    eps: float,
    norm: str,
    generator: torch.Generator,
) -> torch.Tensor:
    return pgd_linf(
        model,
        x,
        y,
        _margin_objective,
        eps=eps,
        alpha=eps / 4,
        steps=30,
        random_start=True,
        generator=generator,
    )


def _dpgd(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    eps: float,
    norm: str,
    generator: torch.Generator,
) -> torch.Tensor:
    """METHOD.md's defaults (8/255, 2/255, 10 steps) scaled to eps: step eps/4."""
    return dpgd(model, x, y, eps=eps, alpha=eps / 4, steps=10)


def _torchattacks_l2(
    name: str, model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float
) -> torch.Tensor:
    import torchattacks

    if name == "FGM":  # one normalised-gradient step of length eps
        attack = torchattacks.PGDL2(model, eps=eps, alpha=eps, steps=1, random_start=False)
    else:
        attack = torchattacks.PGDL2(model, eps=eps, alpha=eps / 4, steps=20, random_start=True)
    adversarial: torch.Tensor = attack(x, y)
    return adversarial


@dataclass(frozen=True)
class SuiteAttack:
    description: str
    run: AttackRunner
    norms: tuple[str, ...]


SUITE: dict[str, SuiteAttack] = {
    "fgsm": SuiteAttack("FGSM (one step of size eps); FGM for L2", _fgsm, ("Linf", "L2")),
    "pgd": SuiteAttack("PGD-20 on CE, step eps/4, random start", _pgd, ("Linf", "L2")),
    "bim": SuiteAttack("BIM: 20 steps of eps/10 on CE, no random start", _bim, ("Linf",)),
    "tpgd": SuiteAttack("T-PGD: TRADES KL(f(x)||f(x')), 10 steps of eps/4", _tpgd, ("Linf",)),
    "cw": SuiteAttack("CW-Linf: margin loss PGD, 30 steps of eps/4", _cw, ("Linf",)),
    "dpgd": SuiteAttack("DPGD, 10 steps of eps/4 (METHOD.md's ratio)", _dpgd, ("Linf",)),
}


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
    state_path: Path | None,
) -> torch.Tensor:
    """Per-sample robustness under the original AutoAttack, ``standard`` version settings
    (also for a subset of its four attacks). The global RNG, which AutoAttack reseeds, is
    restored afterwards."""
    from pyautoattack import AutoAttack
    from pyautoattack.state import EvaluationState

    adversary = AutoAttack(model, eps=eps, norm=norm, seed=seed, version="standard", device=device)
    adversary.attacks_to_run = list(parts)  # keeps the standard version's parameters
    fork_devices = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=fork_devices, device_type=device.type):
        adversarial, _ = adversary.run_standard_evaluation(
            images.to(device), labels.to(device), batch_size=batch_size, state_path=state_path
        )
    if state_path is not None:
        flags = EvaluationState.from_disk(state_path).robust_flags
        if flags is not None:
            return flags.detach().cpu().bool()
    with torch.no_grad():
        correct = [
            model(adversarial[i : i + batch_size].to(device)).argmax(1).cpu()
            == labels[i : i + batch_size].cpu()
            for i in range(0, images.shape[0], batch_size)
        ]
    return torch.cat(correct)
