"""An ART evasion attack as a trainer's ``attack``, as ART's own trainers take one
(``AdversarialTrainerMadryPGD``, TRADES: ``ProjectedGradientDescent(classifier, ...)``).

The attack must be built on the classifier being trained (its estimator's model is the
student), untargeted (ART's trainers raise ``NotImplementedError`` for a targeted one). Each
batch goes through its ``generate`` as numpy, with the student's module flags given back
afterwards (ART's gradients leave the model in eval mode) and numpy's global random state
seeded from the run's generator and restored (ART draws its random starts from it), so that
a run stays reproducible by its seed and the caller's random state is left alone.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from torch import nn

from dard_plugin.attacks.pgd import eval_mode


def is_art_attack(attack: object) -> bool:
    from art.attacks import EvasionAttack

    return isinstance(attack, EvasionAttack)


def check_untargeted_art(attack: Any) -> None:
    if "targeted" in attack.attack_params and getattr(attack, "targeted", False):
        raise NotImplementedError(
            f"attack: adversarial training with a targeted attack ({type(attack).__name__}"
            "(targeted=True)) would train on examples pushed towards the true labels, as "
            "ART's trainers refuse it; build it with targeted=False"
        )


def art_norm(attack: Any) -> str | None:
    """``"Linf"`` or ``"L2"`` for an ART attack's ``norm`` (``np.inf``, ``"inf"``, 2), else
    None (L1, or no norm)."""
    norm = getattr(attack, "norm", None)
    if norm in (np.inf, "inf"):
        return "Linf"
    return "L2" if norm in (2, "2") else None


def art_eps(attack: Any) -> float | None:
    """The attack's scalar ``eps`` (None for none, or an array of budgets)."""
    eps = getattr(attack, "eps", None)
    if eps is None or np.ndim(eps) != 0:
        return None
    return float(eps)


def describe_art_attack(attack: Any) -> dict[str, Any]:
    """The attack's class and its plain ``attack_params`` (eps, eps_step, max_iter, norm,
    num_random_init, ...; not its estimator or writer), for the run's fingerprint."""
    described: dict[str, Any] = {"art": type(attack).__name__}
    for key in sorted(attack.attack_params):
        value = getattr(attack, key, None)
        if isinstance(value, np.generic):
            value = value.item()
        if isinstance(value, float) and math.isinf(value):
            value = "inf"
        if value is None or isinstance(value, (bool, int, float, str)):
            described[key] = value
    return described


def art_training_attack(attack: Any, student: nn.Module) -> Any:
    """The training attack ``(model, images, labels, generator) -> adversarial`` running
    ``attack.generate`` on the batch; refused unless built on ``student`` (or on the ART
    classifier whose model ``student`` wraps) and untargeted."""
    check_untargeted_art(attack)
    model = getattr(attack.estimator, "model", None)
    if model is None or (model is not student and model is not getattr(student, "model", None)):
        raise ValueError(
            "attack: an ART attack must be built on the classifier being trained (e.g. "
            "ProjectedGradientDescent(classifier, ...) with the classifier given to the "
            "trainer); it is built on another estimator"
        )

    def run_art(
        model: nn.Module, images: torch.Tensor, labels: torch.Tensor, generator: torch.Generator
    ) -> torch.Tensor:
        del model
        state = np.random.get_state()
        np.random.seed(int(torch.randint(2**31 - 1, (1,), generator=generator)))
        try:
            with eval_mode(student):
                adversarial = attack.generate(
                    images.detach().cpu().numpy(), y=labels.detach().cpu().numpy()
                )
        finally:
            np.random.set_state(state)
        return torch.from_numpy(np.asarray(adversarial)).to(images.device, images.dtype)

    run_art.source_attack = attack  # type: ignore[attr-defined]  # checked again at fit
    return run_art
