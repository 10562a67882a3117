"""The attacks a trainer uses to craft adversarial examples, resolved from user input.

A training attack is ``attack(model, images, labels, generator) -> adversarial images``.
Users pass None (the method's default), a dict of settings (``norm``, ``eps``, ``alpha``,
``steps``), a torchattacks attack built on the student, an ART evasion attack built on the
classifier being trained (``training/art_attacks.py``), or any callable with that signature.
``norm="L2"`` runs the package's one L2 loop (:func:`~dard_plugin.attacks.pgd.pgd_l2`); its
default budget is :data:`~dard_plugin.attacks.dpgd.DPGD_L2_EPS` and its default step
``eps / 4``.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from dard_plugin._validation import check_budget, check_choice, check_int
from dard_plugin.attacks.dpgd import DPGD_L2_EPS, dpgd_objective, l2_default_step
from dard_plugin.attacks.pgd import NORMS, cross_entropy_objective, projected_gradient_descent
from dard_plugin.training.art_attacks import (
    art_eps,
    art_norm,
    art_training_attack,
    check_untargeted,
    describe_art_attack,
    is_art_attack,
)

TrainingAttack = Callable[[nn.Module, torch.Tensor, torch.Tensor, torch.Generator], torch.Tensor]
ATTACK_KINDS = ("dpgd", "pgd")


@dataclass(frozen=True)
class AttackSettings:
    """Norm (``"Linf"`` or ``"L2"``), budget, step size and number of steps.

    L-inf defaults are METHOD.md's (8/255, 2/255, 10); for ``norm="L2"`` an omitted ``eps``
    is 0.5, RobustBench's CIFAR-10 L2 budget and ``dpgd_l2``'s (``DPGD_L2_EPS``): CIFAR's
    budgets in both norms (``recipes.default_eps`` gives each dataset its own). An omitted
    ``alpha`` is ``eps / 4`` in either norm (2/255 at the L-inf default, bit for bit): a
    fixed 2/255 once stayed beside any given ``eps``, so ``{"eps": 8.0}`` on [0, 255]
    stepped 1% of its budget.
    """

    eps: float | None = None
    alpha: float | None = None
    steps: int = 10
    norm: str = "Linf"

    def __post_init__(self) -> None:
        check_choice("norm", self.norm, NORMS)
        if self.eps is None:
            object.__setattr__(self, "eps", 8 / 255 if self.norm == "Linf" else DPGD_L2_EPS)
        check_budget("eps", self.budget, batch_size=None, positive=True)
        if self.alpha is None:
            object.__setattr__(self, "alpha", float(l2_default_step(self.budget)))
        check_budget("alpha", self.step, batch_size=None, positive=True)
        check_int("steps", self.steps, minimum=1)

    @property
    def budget(self) -> float:
        """``eps`` (never None after construction)."""
        assert self.eps is not None
        return self.eps

    @property
    def step(self) -> float:
        """``alpha`` (never None after construction)."""
        assert self.alpha is not None
        return self.alpha

    @classmethod
    def from_mapping(
        cls, settings: Mapping[str, Any], bounds: tuple[float, float] = (0.0, 1.0)
    ) -> AttackSettings:
        """Settings from a mapping; an omitted ``eps`` is the default scaled to the range of
        ``bounds``: 8/255 of [0, 1] is 8 on [0, 255], as ART's PGD trainer's ``eps=8`` for
        pixels (and an omitted ``alpha`` ``eps / 4``, 2)."""
        unknown = set(settings) - {"eps", "alpha", "steps", "norm", "kind"}
        if unknown:
            raise ValueError(
                "attack settings take norm ('Linf' or 'L2'), eps, alpha, steps (and kind: "
                f"{list(ATTACK_KINDS)}), got unknown keys {sorted(unknown)}"
            )
        given = {k: v for k, v in settings.items() if k != "kind"}
        span = bounds[1] - bounds[0]
        if given.get("eps") is None and math.isfinite(span) and span != 1.0:
            given["eps"] = cls(norm=given.get("norm", "Linf")).budget * span  # [0, 1]'s
        return cls(**given)


def _dpgd_attack(
    settings: AttackSettings,
    bounds: tuple[float, float],
    model: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    generator: torch.Generator,
) -> torch.Tensor:
    """DPGD as the paper trains with it: no random start (L-inf or L2)."""
    del generator
    return projected_gradient_descent(
        model,
        images,
        labels,
        dpgd_objective(),
        norm=settings.norm,
        eps=settings.budget,
        alpha=settings.step,
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
    """Madry et al.'s PGD on cross-entropy, from a uniformly random start in the ball."""
    return projected_gradient_descent(
        model,
        images,
        labels,
        cross_entropy_objective,
        norm=settings.norm,
        eps=settings.budget,
        alpha=settings.step,
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


def declared_norm(attack: object, settings: AttackSettings | None) -> str | None:
    """The norm of a training attack where it is known: its settings' norm, or that of a
    torchattacks attack (its ``norm`` attribute, as ``APGD``'s; ``L2`` for the classes
    named ``...L2``; ``Linf`` for the other attacks with an ``eps``, torchattacks'
    convention); None for a callable or an attack with neither."""
    if settings is not None:
        return settings.norm
    from torchattacks.attack import Attack

    if is_art_attack(attack):
        return art_norm(attack)
    if not isinstance(attack, Attack):
        return None
    norm = getattr(attack, "norm", None)
    if norm in NORMS:
        return str(norm)
    if type(attack).__name__.endswith("L2"):
        return "L2"
    if norm is None and isinstance(getattr(attack, "eps", None), (int, float)):
        return "Linf"
    return None


def resolve_attack(
    attack: object,
    *,
    default_kind: str,
    student: nn.Module,
    bounds: tuple[float, float] = (0.0, 1.0),
    classifier: Any = None,
) -> tuple[TrainingAttack, AttackSettings | None, float | None]:
    """``(attack function, its settings if known, its eps if known)``; the package's
    attacks stay inside ``bounds`` (a torchattacks attack clips to its own [0, 1])."""
    if attack is None or isinstance(attack, Mapping):
        given: Mapping[str, Any] = attack or {}
        settings = AttackSettings.from_mapping(given, bounds)
        kind = given.get("kind", default_kind)
        return build_attack(kind, settings, bounds), settings, settings.budget
    from torchattacks.attack import Attack

    if isinstance(attack, Attack):
        if bounds != (0.0, 1.0):
            raise ValueError(
                f"a torchattacks attack clips to [0, 1], but the inputs lie in {bounds}: "
                "pass attack settings (a dict) or a callable instead"
            )
        if attack.model is getattr(student, "model", None) and hasattr(student, "std"):
            raise ValueError(
                "attack is built on the ART classifier's model, which the trainer runs behind "
                "the classifier's preprocessing=(mean, std); a torchattacks attack cannot "
                "follow it there: pass attack settings (a dict) or a callable, or a classifier "
                "without preprocessing whose model holds its normalisation"
            )
        if attack.model is not student:
            raise ValueError(
                "attack must be built on the student being trained "
                "(e.g. torchattacks.PGD(student, ...)); it is built on another model"
            )
        check_untargeted(attack)
        # its eps is a budget the trainers know only in a norm they know (FAB's L1 is not)
        eps = getattr(attack, "eps", None) if declared_norm(attack, None) else None

        def run_torchattacks(
            model: nn.Module,
            images: torch.Tensor,
            labels: torch.Tensor,
            generator: torch.Generator,
        ) -> torch.Tensor:
            del model, generator
            adversarial: torch.Tensor = attack(images, labels)
            return adversarial

        run_torchattacks.source_attack = attack  # type: ignore[attr-defined]
        return run_torchattacks, None, float(eps) if eps is not None else None
    if is_art_attack(attack):
        trained = student if classifier is None else classifier  # the ART classifier, or module
        return art_training_attack(attack, student, trained, bounds), None, art_eps(attack)
    if callable(attack):
        return attack, None, None
    raise AttackTypeError(
        "attack must be None, a dict of settings (eps, alpha, steps), a torchattacks or "
        f"ART attack built on the student, or a callable; got {type(attack).__name__}"
    )


class AttackTypeError(TypeError, ValueError):
    """An ``attack`` of a kind the trainers cannot run: a ``TypeError``, and the
    ``ValueError`` ART's trainers raise for one (``AdversarialTrainer(classifier, "a")``)."""


# torchattacks' attributes that name where an attack runs, not what it computes
_TORCHATTACKS_PLACE = {"model", "model_name", "device", "supported_mode", "attack"}


def describe_attack(attack: object) -> dict[str, Any] | None:
    """What identifies a torchattacks attack or a callable in a run's fingerprint (so that a
    resume with another one is refused): a torchattacks attack's class and its public
    settings (``eps``, ``alpha``, ``steps``, mode, normalization; not its model or device);
    a callable's qualified name, a ``functools.partial``'s arguments and a callable
    object's plain public attributes (numbers, strings, flags). None for None and dicts,
    whose :class:`AttackSettings` are fingerprinted instead. A closure's captured values
    are not seen: one function given other captured values resumes."""
    if attack is None or isinstance(attack, Mapping):
        return None
    from torchattacks.attack import Attack

    if isinstance(attack, Attack):
        public = {
            key: _plain(value)
            for key, value in sorted(vars(attack).items())
            if not key.startswith("_") and key not in _TORCHATTACKS_PLACE
        }
        return {"torchattacks": type(attack).__name__, **public}
    if is_art_attack(attack):
        return describe_art_attack(attack)
    if isinstance(attack, functools.partial):
        return {
            "callable": _qualified_name(attack.func),
            "args": _plain(list(attack.args)),
            "keywords": _plain(dict(attack.keywords)),
        }
    described: dict[str, Any] = {"callable": _qualified_name(attack)}
    if not inspect.isroutine(attack) and hasattr(attack, "__dict__"):  # an object's settings
        described["attributes"] = {
            key: value
            for key, value in sorted(vars(attack).items())
            if not key.startswith("_") and _is_setting(value)
        }
    return described


def _is_setting(value: Any) -> bool:
    """A plain value (number, string, flag, None, or a short list of them): what a callable
    object's settings look like, unlike a model or a tensor it holds."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return True
    return isinstance(value, (list, tuple)) and len(value) <= 16 and all(map(_is_setting, value))


def settings_of(description: Mapping[str, Any] | None, norm: str) -> AttackSettings | None:
    """The settings a torchattacks or ART attack declares (from :func:`describe_attack`):
    its ``eps``, its ``alpha`` (ART's ``eps_step``; ``eps / 4`` where it has none, the
    package's step) and its ``steps`` (ART's ``max_iter``; 10 where it has none), in
    ``norm``; None where it declares no ``eps``."""
    if not description or not ({"torchattacks", "art"} & set(description)):
        return None
    keys = ("eps", "eps_step", "max_iter") if "art" in description else ("eps", "alpha", "steps")
    eps, alpha, steps = (description.get(key) for key in keys)
    if isinstance(eps, bool) or not isinstance(eps, (int, float)) or eps <= 0:
        return None
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or alpha <= 0:
        alpha = eps / 4
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        steps = 10
    return AttackSettings(eps=float(eps), alpha=float(alpha), steps=steps, norm=norm)


def _qualified_name(function: object) -> str:
    module = getattr(function, "__module__", None) or type(function).__module__
    name = getattr(function, "__qualname__", None) or type(function).__qualname__
    return f"{module}.{name}"


def _plain(value: Any) -> Any:
    """``value`` as JSON-like data, for a fingerprint (no object addresses)."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, torch.Tensor):
        return value.detach().cpu().tolist()
    if isinstance(value, Mapping):
        return {str(key): _plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(item) for item in value]
    return type(value).__qualname__


def warmup_factor(epoch: int, warmup_epochs: int | None) -> float:
    """The fraction of the attack budget used in ``epoch`` (0-based) under a linear ramp
    over the first ``warmup_epochs`` epochs: ``min(1, (epoch + 1) / warmup_epochs)``, 1.0
    without a ramp. Epoch 1 trains at ``eps / k``, epoch ``k`` and later at ``eps``."""
    if warmup_epochs is None:
        return 1.0
    return min(1.0, (epoch + 1) / warmup_epochs)


def scheduled_settings(
    settings: AttackSettings, epoch: int, warmup_epochs: int | None
) -> AttackSettings:
    """``settings`` with the budget and the step size both scaled by :func:`warmup_factor`
    (so that the steps cover the smaller ball as they cover the full one)."""
    factor = warmup_factor(epoch, warmup_epochs)
    if factor == 1.0:
        return settings
    return dataclasses.replace(settings, eps=settings.budget * factor, alpha=settings.step * factor)


def attack_from_noise(
    model: Any,
    batch: Any,
    objective: Any,
    settings: AttackSettings,
    generator: torch.Generator,
    bounds: tuple[float, float],
) -> torch.Tensor:
    """PGD on ``objective`` at ``settings`` from ``x + 0.001 (high - low) N(0, 1)`` (the
    codes' ``0.001`` on [0, 1], scaled to ``bounds`` as the default budgets are; clipped
    to ``bounds``; the noise drawn from ``generator`` on the CPU, so that it is the same
    on every device)."""
    noise = torch.randn(batch.images.shape, generator=generator)
    noise = noise.to(batch.images.device, batch.images.dtype)
    scale = 0.001 * (bounds[1] - bounds[0])  # 0.001 exactly on [0, 1]
    return projected_gradient_descent(
        model,
        batch.images,
        batch.labels,
        objective,
        norm=settings.norm,
        eps=settings.budget,
        alpha=settings.step,
        steps=settings.steps,
        start=(batch.images + scale * noise).clamp(*bounds),
        bounds=bounds,
    )
