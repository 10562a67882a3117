"""The evaluation attack suite, as a table: every L-inf attack but AutoAttack is the
package's one sign-gradient loop with another objective, step and start. Each row declares
the norms it has a form for; AutoAttack (the original algorithm, through pyautoattack)
lives in :mod:`dard_plugin.evaluation.autoattack`."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from dard_plugin.attacks.dpgd import dpgd_objective
from dard_plugin.attacks.pgd import Objective, cross_entropy_objective, kl_objective, pgd_linf

logger = logging.getLogger(__name__)

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
    x + 0.001 N(0, 1)).

    ``l2_steps`` is the row's L2 form (``None``: the row has none, and asking for it is an
    error naming the row and the norm); today the L2 form runs torchattacks' ``PGDL2``, seeded
    from the row's generator."""

    description: str
    objective: ObjectiveFactory
    step_fraction: float
    steps: int
    start: str = "clean"
    l2_steps: int | None = None  # None: no L2 version

    @property
    def norms(self) -> tuple[str, ...]:
        """The norms this row has a form for."""
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
        if norm not in self.norms:
            raise ValueError(f"{self.description.split(':')[0]} has no {norm} form")
        if norm == "L2":
            return self._run_l2(model, images, labels, eps, generator)
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
        self,
        model: nn.Module,
        images: torch.Tensor,
        labels: torch.Tensor,
        eps: float,
        generator: torch.Generator,
    ) -> torch.Tensor:
        import torchattacks

        attack = torchattacks.PGDL2(
            model,
            eps=eps,
            alpha=eps * self.step_fraction,
            steps=self.l2_steps,
            random_start=self.start == "uniform",
        )
        # PGDL2 draws its random start from the global RNG: seed it from this batch's
        # generator inside a fork, so the caller's RNG is untouched
        devices = [images.device] if images.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices, device_type=images.device.type):
            torch.manual_seed(int(torch.randint(0, 2**62, (1,), generator=generator)))
            adversarial: torch.Tensor = attack(images, labels)
        return adversarial


def check_norm_supported(name: str, norm: str) -> None:
    """A clear error where suite row ``name`` has no form for ``norm``."""
    row = SUITE[name]
    if norm not in row.norms:
        with_form = [n for n, r in SUITE.items() if norm in r.norms]
        raise ValueError(
            f"attack {name!r} has no {norm} form in this suite (it supports "
            f"{list(row.norms)}): drop it from attacks, or use one of {with_form} "
            f"(and 'autoattack' or its parts) for norm={norm!r}"
        )


def batch_generator(seed: int, batch_index: int) -> torch.Generator:
    """The random source of batch ``batch_index`` of an evaluation seeded with ``seed``:
    one generator per batch, so a batch's random starts do not depend on which batches ran
    before it (in this process or on another rank)."""
    return torch.Generator().manual_seed((seed * 1_000_003 + batch_index) % 2**63)


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
    generator: torch.Generator | None = None,
    seed: int | None = None,
    first_batch: int = 0,
) -> torch.Tensor:
    """Per-sample correctness (bool, on CPU) on clean inputs (``attack=None``) or under an
    attack, batch by batch. The model is used as it is (callers set eval mode).

    Random starts draw from ``generator`` (one source for all batches, in order) or, with
    ``seed``, from :func:`batch_generator` ``(seed, first_batch + b)`` for batch ``b``: the
    evaluation's way, under which a batch gives the same result whichever process runs it.
    """
    if (generator is None) == (seed is None):
        raise ValueError("give exactly one of generator and seed")
    flags = []
    for index, start in enumerate(range(0, images.shape[0], batch_size)):
        x = images[start : start + batch_size].to(device)
        y = labels[start : start + batch_size].to(device)
        if attack is None:
            x_eval = x
        else:
            source = (
                generator
                if generator is not None
                else batch_generator(int(seed or 0), first_batch + index)
            )
            x_eval = attack.run(model, x, y, eps, norm, source)
        with torch.no_grad():
            flags.append((model(x_eval).argmax(1) == y).cpu())
    return torch.cat(flags)
