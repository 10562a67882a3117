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


def check_untargeted(attack: Any) -> None:
    """Refuse an attack that would push the training examples towards the true labels, as
    ART's trainers refuse a targeted attack (``NotImplementedError``): an ART attack with
    ``targeted=True`` (the trainer gives it the true labels as ``y``) or a torchattacks
    attack in ``set_mode_targeted_by_label`` (its targets are the labels given). Other
    torchattacks target modes (random, least likely, a function) choose other classes."""
    if is_art_attack(attack):
        targeted, how = "targeted" in attack.attack_params and attack.targeted, "targeted=True"
    else:
        targeted = getattr(attack, "attack_mode", None) == "targeted(label)"
        how = "set_mode_targeted_by_label"
    if targeted:
        raise NotImplementedError(
            f"attack: adversarial training with a targeted attack ({type(attack).__name__}, "
            f"{how}) would train on examples pushed towards the true labels, as ART's "
            "trainers refuse it; use it untargeted"
        )


def art_norm(attack: Any) -> str | None:
    """``"Linf"`` or ``"L2"`` for an ART attack's ``norm`` (``np.inf``, ``"inf"``, 2), else
    None (L1, or no norm)."""
    norm = getattr(attack, "norm", None)
    if norm in (np.inf, "inf"):
        return "Linf"
    return "L2" if norm in (2, "2") else None


def art_eps(attack: Any) -> float | None:
    """The attack's scalar ``eps`` in a norm the trainers know (None for none, an array of
    budgets, or an L1 attack's, which is no L-inf or L2 budget for validation)."""
    eps = getattr(attack, "eps", None)
    if eps is None or np.ndim(eps) != 0 or art_norm(attack) is None:
        return None
    return float(eps)


# parameters that change what an ART attack shows or logs, not what it computes
_ART_DISPLAY = {"verbose", "summary_writer"}


def describe_art_attack(attack: Any) -> dict[str, Any]:
    """The attack's class and its plain ``attack_params`` (eps, eps_step, max_iter, norm,
    num_random_init, ...; arrays of budgets as lists; not its estimator, progress bars or
    writer), for the run's fingerprint."""
    described: dict[str, Any] = {"art": type(attack).__name__}
    for key in sorted(set(attack.attack_params) - _ART_DISPLAY):
        value = getattr(attack, key, None)
        if isinstance(value, np.ndarray):
            value = value.tolist()
        elif isinstance(value, np.generic):
            value = value.item()
        if isinstance(value, float) and math.isinf(value):
            value = "inf"
        if value is None or isinstance(value, (bool, int, float, str, list)):
            described[key] = value
    return described


def _identity_preprocessing(estimator: Any) -> bool:
    """Whether the estimator's preprocessing leaves inputs as they are (none, or mean 0 and
    std 1: a ``PyTorchClassifier``'s default)."""
    for operation in getattr(estimator, "preprocessing_operations", []):
        mean, std = getattr(operation, "mean", None), getattr(operation, "std", None)
        if mean is None or std is None or np.any(mean != 0) or np.any(std != 1):
            return False
    return True


def check_built_on_student(
    attack: Any, student: nn.Module, classifier: Any, bounds: tuple[float, float]
) -> None:
    """The attack must differentiate what the trainer trains: built on the ART classifier
    given to the trainer, or, for a module given, on a classifier of that very module with
    no preprocessing and the trainer's bounds as its ``clip_values``."""
    estimator = attack.estimator
    if not isinstance(classifier, nn.Module):
        if estimator is classifier:
            return
        problem = "it is built on another estimator than the classifier given to the trainer"
    elif getattr(estimator, "model", None) is not student:
        problem = "it is built on another model than the student"
    elif not _identity_preprocessing(estimator):
        problem = "its classifier has preprocessing the trainer's student does not"
    elif estimator.clip_values is None or tuple(map(float, estimator.clip_values)) != bounds:
        problem = f"its classifier's clip_values are not the trainer's bounds {bounds}"
    else:
        return
    raise ValueError(
        "attack: an ART attack must be built on the classifier being trained (e.g. "
        "ProjectedGradientDescent(classifier, ...) with the classifier given to the trainer); "
        + problem
    )


def art_training_attack(
    attack: Any, student: nn.Module, classifier: Any, bounds: tuple[float, float]
) -> Any:
    """The training attack ``(model, images, labels, generator) -> adversarial`` running
    ``attack.generate`` on the batch (outside autocast: ART's numpy path takes no bf16),
    after :func:`check_untargeted` and :func:`check_built_on_student`."""
    check_untargeted(attack)
    check_built_on_student(attack, student, classifier, bounds)

    def run_art(
        model: nn.Module, images: torch.Tensor, labels: torch.Tensor, generator: torch.Generator
    ) -> torch.Tensor:
        del model
        state = np.random.get_state()
        np.random.seed(int(torch.randint(2**31 - 1, (1,), generator=generator)))
        try:
            with eval_mode(student), torch.autocast(images.device.type, enabled=False):
                adversarial = attack.generate(
                    images.detach().float().cpu().numpy(), y=labels.detach().cpu().numpy()
                )
        finally:
            np.random.set_state(state)
        out = torch.empty_like(images)  # the batch's device, dtype and memory format
        return out.copy_(torch.from_numpy(np.asarray(adversarial)))

    run_art.source_attack = attack  # type: ignore[attr-defined]  # checked again at fit
    return run_art
