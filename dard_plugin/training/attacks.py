"""The attacks a trainer uses to craft adversarial examples, resolved from user input.

A training attack is ``attack(model, images, labels, generator) -> adversarial images``.
Users pass None (the method's default), a dict of settings (``eps``, ``alpha``, ``steps``),
a torchattacks attack built on the student, or any callable with that signature.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from dard_plugin._validation import check_budget, check_choice, check_int
from dard_plugin.attacks.dpgd import dpgd
from dard_plugin.attacks.pgd import cross_entropy_objective, pgd_linf

TrainingAttack = Callable[[nn.Module, torch.Tensor, torch.Tensor, torch.Generator], torch.Tensor]
ATTACK_KINDS = ("dpgd", "pgd")


@dataclass(frozen=True)
class AttackSettings:
    """L-inf budget, step size and number of steps (METHOD.md's defaults)."""

    eps: float = 8 / 255
    alpha: float = 2 / 255
    steps: int = 10

    def __post_init__(self) -> None:
        check_budget("eps", self.eps, batch_size=None, positive=True)
        check_budget("alpha", self.alpha, batch_size=None, positive=True)
        check_int("steps", self.steps, minimum=1)

    @classmethod
    def from_mapping(cls, settings: Mapping[str, Any]) -> AttackSettings:
        unknown = set(settings) - {"eps", "alpha", "steps", "kind"}
        if unknown:
            raise ValueError(
                f"attack settings take eps, alpha, steps (and kind: {list(ATTACK_KINDS)}), "
                f"got unknown keys {sorted(unknown)}"
            )
        return cls(**{k: v for k, v in settings.items() if k != "kind"})


def _dpgd_attack(
    settings: AttackSettings,
    bounds: tuple[float, float],
    model: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    generator: torch.Generator,
) -> torch.Tensor:
    """DPGD as the paper trains with it: no random start."""
    del generator
    return dpgd(
        model,
        images,
        labels,
        eps=settings.eps,
        alpha=settings.alpha,
        steps=settings.steps,
        bounds=bounds,
    )


def _pgd_attack(
    settings: AttackSettings,
    bounds: tuple[float, float],
    model: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    generator: torch.Generator,
) -> torch.Tensor:
    """Madry et al.'s PGD on cross-entropy, from a uniformly random start."""
    return pgd_linf(
        model,
        images,
        labels,
        cross_entropy_objective,
        eps=settings.eps,
        alpha=settings.alpha,
        steps=settings.steps,
        random_start=True,
        generator=generator,
        bounds=bounds,
    )


def build_attack(
    kind: str, settings: AttackSettings, bounds: tuple[float, float] = (0.0, 1.0)
) -> TrainingAttack:
    check_choice("kind", kind, ATTACK_KINDS)
    function = _dpgd_attack if kind == "dpgd" else _pgd_attack
    return functools.partial(function, settings, bounds)


def resolve_attack(
    attack: object,
    *,
    default_kind: str,
    student: nn.Module,
    bounds: tuple[float, float] = (0.0, 1.0),
) -> tuple[TrainingAttack, AttackSettings | None, float | None]:
    """``(attack function, its settings if known, its eps if known)``; the package's
    attacks stay inside ``bounds`` (a torchattacks attack clips to its own [0, 1])."""
    if attack is None:
        settings = AttackSettings()
        return build_attack(default_kind, settings, bounds), settings, settings.eps
    if isinstance(attack, Mapping):
        settings = AttackSettings.from_mapping(attack)
        kind = attack.get("kind", default_kind)
        return build_attack(kind, settings, bounds), settings, settings.eps
    from torchattacks.attack import Attack

    if isinstance(attack, Attack):
        if bounds != (0.0, 1.0):
            raise ValueError(
                f"a torchattacks attack clips to [0, 1], but the inputs lie in {bounds}: "
                "pass attack settings (a dict) or a callable instead"
            )
        if attack.model is not student:
            raise ValueError(
                "attack must be built on the student being trained "
                "(e.g. torchattacks.PGD(student, ...)); it is built on another model"
            )
        eps = getattr(attack, "eps", None)

        def run_torchattacks(
            model: nn.Module,
            images: torch.Tensor,
            labels: torch.Tensor,
            generator: torch.Generator,
        ) -> torch.Tensor:
            del model, generator
            adversarial: torch.Tensor = attack(images, labels)
            return adversarial

        return run_torchattacks, None, float(eps) if eps is not None else None
    if callable(attack):
        return attack, None, None
    raise TypeError(
        "attack must be None, a dict of settings (eps, alpha, steps), a torchattacks "
        f"attack built on the student, or a callable; got {type(attack).__name__}"
    )
