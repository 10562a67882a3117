"""The evaluation attack suite, as a table: every L-inf attack but AutoAttack is the
package's one sign-gradient loop with another objective, step and start; AutoAttack is
the original algorithm (pyautoattack, the same code as Croce & Hein's repository)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from dard_plugin.attacks.dpgd import dpgd_objective
from dard_plugin.attacks.pgd import Objective, cross_entropy_objective, kl_objective, pgd_linf

logger = logging.getLogger(__name__)

AUTOATTACK_PARTS = ("apgd-ce", "apgd-t", "fab-t", "square")

ObjectiveFactory = Callable[[nn.Module, torch.Tensor], Objective]


def _margin_objective(
    logits: torch.Tensor, labels: torch.Tensor, step: int, steps: int
) -> torch.Tensor:
    """Carlini-Wagner's margin: best other logit minus the true logit."""
    del step, steps
    true = logits.gather(1, labels.unsqueeze(1)).squeeze(1)
    others = logits.masked_fill(F.one_hot(labels, logits.shape[1]).bool(), float("-inf"))
    return (others.amax(dim=1) - true).sum()


def _trades_objective(model: nn.Module, images: torch.Tensor) -> Objective:
    """TRADES' inner maximisation: KL(f(x) || f(x')) away from the clean prediction."""
    with torch.no_grad():
        return kl_objective(F.softmax(model(images).float(), dim=1))


@dataclass(frozen=True)
class SuiteAttack:
    """One row of the suite: an objective on the package's L-inf loop, its step size as a
    fraction of eps, its steps and its start (``"clean"``, ``"uniform"`` or ``"gaussian"``:
    x + 0.001 N(0, 1)); L2, where supported, goes to torchattacks' ``PGDL2``."""

    description: str
    objective: ObjectiveFactory
    step_fraction: float
    steps: int
    start: str = "clean"
    l2_steps: int | None = None  # None: no L2 version

    @property
    def norms(self) -> tuple[str, ...]:
        return ("Linf", "L2") if self.l2_steps is not None else ("Linf",)

    def run(
        self,
        model: nn.Module,
        images: torch.Tensor,
        labels: torch.Tensor,
        eps: float,
        norm: str,
        generator: torch.Generator,
    ) -> torch.Tensor:
        if norm == "L2":
            return self._run_l2(model, images, labels, eps)
        start = None
        if self.start == "gaussian":
            noise = torch.randn(images.shape, generator=generator).to(images.device)
            start = (images + 0.001 * noise).clamp(0, 1)
        return pgd_linf(
            model,
            images,
            labels,
            self.objective(model, images),
            eps=eps,
            alpha=eps * self.step_fraction,
            steps=self.steps,
            random_start=self.start == "uniform",
            generator=generator,
            start=start,
        )

    def _run_l2(
        self, model: nn.Module, images: torch.Tensor, labels: torch.Tensor, eps: float
    ) -> torch.Tensor:
        import torchattacks

        attack = torchattacks.PGDL2(
            model,
            eps=eps,
            alpha=eps * self.step_fraction,
            steps=self.l2_steps,
            random_start=self.start == "uniform",
        )
        adversarial: torch.Tensor = attack(images, labels)
        return adversarial


def _fixed(objective: Objective) -> ObjectiveFactory:
    return lambda model, images: objective


SUITE: dict[str, SuiteAttack] = {
    "fgsm": SuiteAttack(
        "FGSM: one step of size eps (FGM for L2)",
        _fixed(cross_entropy_objective),
        1.0,
        1,
        l2_steps=1,
    ),
    "pgd": SuiteAttack(
        "PGD-20 on CE, step eps/4, uniform random start",
        _fixed(cross_entropy_objective),
        0.25,
        20,
        "uniform",
        l2_steps=20,
    ),
    "bim": SuiteAttack(
        "BIM: 20 steps of eps/10 on CE, no random start", _fixed(cross_entropy_objective), 0.1, 20
    ),
    "tpgd": SuiteAttack(
        "T-PGD: TRADES KL(f(x)||f(x')), 10 steps of eps/4 from x + 0.001 N",
        _trades_objective,
        0.25,
        10,
        "gaussian",
    ),
    "cw": SuiteAttack(
        "CW-Linf: margin loss, 30 steps of eps/4, uniform random start",
        _fixed(_margin_objective),
        0.25,
        30,
        "uniform",
    ),
    "dpgd": SuiteAttack(
        "DPGD: 10 steps of eps/4 (METHOD.md's 2/255 : 8/255), per-sample Dice",
        _fixed(dpgd_objective("sample")),
        0.25,
        10,
    ),
}
# the trainers' per-epoch validation attack: cheaper than the suite's PGD-20
PGD10 = SuiteAttack(
    "PGD-10 on CE, step eps/4, uniform random start",
    _fixed(cross_entropy_objective),
    0.25,
    10,
    "uniform",
)


def accuracy_flags(
    model: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    attack: SuiteAttack | None,
    *,
    eps: float,
    norm: str = "Linf",
    batch_size: int,
    device: torch.device,
    generator: torch.Generator,
) -> torch.Tensor:
    """Per-sample correctness (bool, on CPU) on clean inputs (``attack=None``) or under an
    attack, batch by batch. The model is used as it is (callers set eval mode)."""
    flags = []
    for start in range(0, images.shape[0], batch_size):
        x = images[start : start + batch_size].to(device)
        y = labels[start : start + batch_size].to(device)
        x_eval = x if attack is None else attack.run(model, x, y, eps, norm, generator)
        with torch.no_grad():
            flags.append((model(x_eval).argmax(1) == y).cpu())
    return torch.cat(flags)


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
