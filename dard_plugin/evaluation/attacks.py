"""The evaluation attack suite, as a table: every attack but AutoAttack is the package's
one projected-gradient loop (:func:`~dard_plugin.attacks.pgd.projected_gradient_descent`)
with another objective, step and start, in L-inf (sign-gradient steps) or L2 (normalized
gradient steps). Each row declares the norms it has a form for; AutoAttack (the original
algorithm, through pyautoattack) lives in :mod:`dard_plugin.evaluation.autoattack`."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from dard_plugin._validation import Bounds, check_choice, check_logits
from dard_plugin.attacks.dpgd import dpgd_objective
from dard_plugin.attacks.pgd import (
    NORMS,
    Objective,
    cross_entropy_objective,
    eval_mode,
    kl_objective,
    projected_gradient_descent,
)

logger = logging.getLogger(__name__)

ObjectiveFactory = Callable[[nn.Module, torch.Tensor], Objective]
STARTS = ("clean", "uniform", "gaussian")
GAUSSIAN_START_STD = 0.001  # RSLAD's / TRADES' x + 0.001 N(0, 1)


def _margin_objective(
    logits: torch.Tensor, labels: torch.Tensor, step: int, steps: int
) -> torch.Tensor:
    """Carlini-Wagner's margin: best other logit minus the true logit."""
    del step, steps
    true = logits.gather(1, labels.unsqueeze(1)).squeeze(1)
    others = logits.masked_fill(F.one_hot(labels, logits.shape[1]).bool(), float("-inf"))
    return (others.amax(dim=1) - true).sum()


def _trades_objective(model: nn.Module, images: torch.Tensor) -> Objective:
    """TRADES' inner maximisation: KL(f(x) || f(x')) away from the clean prediction (taken
    in eval mode, as the loop runs the model: a model in train mode keeps its buffers)."""
    with eval_mode(model), torch.no_grad():
        return kl_objective(F.softmax(model(images).float(), dim=1))


@dataclass(frozen=True)
class SuiteAttack:
    """One row of the suite: an objective on the package's loop, its step size as a
    fraction of eps, its steps, its start (``"clean"``; ``"uniform"``: uniform in the eps
    ball of the norm, from the row's generator; ``"gaussian"``: x + 0.001 N(0, 1) from the
    generator, clipped into the bounds) and the norms it has a form for.

    A row's L2 form is the same objective, step fraction, steps and start on the L2 loop
    (normalized gradient step, projection onto the L2 ball); asking a row for a norm it has
    no form for is an error naming the row and the norm."""

    name: str
    description: str
    objective: ObjectiveFactory
    step_fraction: float
    steps: int
    start: str = "clean"
    norms: tuple[str, ...] = ("Linf",)

    def __post_init__(self) -> None:
        check_choice("start", self.start, STARTS)
        if not self.norms or any(norm not in NORMS for norm in self.norms):
            raise ValueError(
                f"norms must be a non-empty tuple from {list(NORMS)}, got {self.norms}"
            )

    def run(
        self,
        model: nn.Module,
        images: torch.Tensor,
        labels: torch.Tensor,
        eps: float,
        norm: str,
        generator: torch.Generator,
        bounds: Bounds = (0.0, 1.0),
    ) -> torch.Tensor:
        """The row's adversarial examples of ``images`` in the ``norm`` ball of radius
        ``eps``, inside ``bounds``; every random draw comes from ``generator``."""
        if norm not in self.norms:
            raise ValueError(
                f"attack {self.name!r} has no {norm} form in this suite (it supports "
                f"{list(self.norms)})"
            )
        start = None
        if self.start == "gaussian":
            noise = torch.randn(images.shape, generator=generator).to(images.device)
            start = _clip(images + GAUSSIAN_START_STD * noise, bounds)
        return projected_gradient_descent(
            model,
            images,
            labels,
            self.objective(model, images),
            norm=norm,
            eps=eps,
            alpha=eps * self.step_fraction,
            steps=self.steps,
            random_start=self.start == "uniform",
            generator=generator,
            start=start,
            bounds=bounds,
        )


def _clip(images: torch.Tensor, bounds: Bounds) -> torch.Tensor:
    """Into ``bounds``: numbers or per-feature tensors."""
    low, high = bounds
    if isinstance(low, torch.Tensor) or isinstance(high, torch.Tensor):
        low_t = torch.as_tensor(low, dtype=images.dtype, device=images.device)
        high_t = torch.as_tensor(high, dtype=images.dtype, device=images.device)
        return torch.maximum(torch.minimum(images, high_t), low_t)
    return images.clamp(float(low), float(high))


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


BOTH = ("Linf", "L2")
SUITE: dict[str, SuiteAttack] = {
    row.name: row
    for row in (
        SuiteAttack(
            "fgsm",
            "FGSM: one step of size eps on CE (L2: FGM, one normalized-gradient step of eps)",
            _fixed(cross_entropy_objective),
            1.0,
            1,
            norms=BOTH,
        ),
        SuiteAttack(
            "pgd",
            "PGD-20 on CE, step eps/4, uniform random start in the eps ball (L2: PGD-L2)",
            _fixed(cross_entropy_objective),
            0.25,
            20,
            "uniform",
            norms=BOTH,
        ),
        SuiteAttack(
            "bim",
            "BIM: 20 steps of eps/10 on CE, no random start (L2: BIM-L2)",
            _fixed(cross_entropy_objective),
            0.1,
            20,
            norms=BOTH,
        ),
        SuiteAttack(
            "tpgd",
            "T-PGD: TRADES KL(f(x)||f(x')), 10 steps of eps/4 from x + 0.001 N (L2: T-PGD-L2)",
            _trades_objective,
            0.25,
            10,
            "gaussian",
            norms=BOTH,
        ),
        SuiteAttack(
            "cw",
            "CW: margin-loss PGD (best other logit minus true logit; RSLAD's and ARD's "
            "CW-inf row, not the Carlini-Wagner optimisation attack), 30 steps of eps/4, "
            "uniform random start (L2: the same loss on the L2 ball)",
            _fixed(_margin_objective),
            0.25,
            30,
            "uniform",
            norms=BOTH,
        ),
        SuiteAttack(
            "dpgd",
            "DPGD: 10 steps of eps/4 (METHOD.md's 2/255 : 8/255), per-sample Dice, no random "
            "start (L2: dpgd_l2's defaults, steps 10 and step eps/4, with per-sample Dice)",
            _fixed(dpgd_objective("sample")),
            0.25,
            10,
            norms=BOTH,
        ),
    )
}
# the trainers' per-epoch validation attack: cheaper than the suite's PGD-20
PGD10 = SuiteAttack(
    "pgd10",
    "PGD-10 on CE, step eps/4, uniform random start",
    _fixed(cross_entropy_objective),
    0.25,
    10,
    "uniform",
    norms=BOTH,
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
            flags.append(correct_predictions(model(x_eval), y).cpu())
    return torch.cat(flags)


def correct_predictions(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Per sample: the argmax is the label and no logit is NaN (argmax reads an all-NaN row
    as class 0, which would score that class's samples correct)."""
    check_logits(logits, labels.shape[0], warn=False)  # a (B, K, 1) output would broadcast
    return (logits.argmax(1) == labels) & ~logits.isnan().any(1)
