"""Training losses: DARD (METHOD.md §2) and the baselines SAT, ARD, RSLAD (§3).

Every KL term is ``KL(target || student)`` with the batch mean of per-sample sums
(PyTorch ``reduction="batchmean"``); temperatures apply to logits.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from dard_plugin._validation import check_bool, check_real


def distillation_kl(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    *,
    temperature: float = 1.0,
    legacy_teacher_softmax: bool = False,
) -> torch.Tensor:
    """``KL(softmax(teacher / tau) || softmax(student / tau))``, batch mean.

    ``legacy_teacher_softmax=True`` reproduces the DARD scripts' defect: the temperature
    softmax is applied to the teacher's *probabilities*, ``softmax(softmax(teacher) / tau)``,
    which flattens the targets towards uniform. For comparison only; never the default.
    """
    teacher = teacher_logits.detach().float()
    if legacy_teacher_softmax:
        teacher = F.softmax(teacher, dim=1)
    target = F.softmax(teacher / temperature, dim=1)
    log_student = F.log_softmax(student_logits.float() / temperature, dim=1)
    return F.kl_div(log_student, target, reduction="batchmean")


def _check_weights(alpha: float, temperature: float) -> None:
    check_real("alpha", alpha, low=0.0, high=1.0)
    check_real("temperature", temperature, low=0.0, low_inclusive=False)


def dard_loss(
    student_nat_logits: torch.Tensor,
    student_adv_logits: torch.Tensor,
    teacher_nat_logits: torch.Tensor,
    teacher_adv_logits: torch.Tensor,
    labels: torch.Tensor,
    *,
    alpha: float = 0.7,
    temperature: float = 3.0,
    adv_weight: float = 0.5,
    legacy_teacher_softmax: bool = False,
) -> torch.Tensor:
    """DARD's loss ``(1 - w) * L_nat + w * L_adv`` with, for each of nat and adv,
    ``a * tau^2 * KL(softmax(T / tau) || softmax(S / tau)) + (1 - a) * CE(S, y)``.

    Natural terms pair the student's clean logits with the teacher's clean logits;
    adversarial terms pair the student on its own DPGD examples with the teacher on the
    teacher's DPGD examples (METHOD.md §2). ``adv_weight=0.5`` is the paper's
    ``(L_nat + L_adv) / 2``.
    """
    _check_weights(alpha, temperature)
    check_real("adv_weight", adv_weight, low=0.0, high=1.0)
    check_bool("legacy_teacher_softmax", legacy_teacher_softmax)
    scale = alpha * temperature**2

    def term(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
        kl = distillation_kl(
            student, teacher, temperature=temperature, legacy_teacher_softmax=legacy_teacher_softmax
        )
        return scale * kl + (1.0 - alpha) * F.cross_entropy(student.float(), labels)

    natural = term(student_nat_logits, teacher_nat_logits)
    adversarial = term(student_adv_logits, teacher_adv_logits)
    return (1.0 - adv_weight) * natural + adv_weight * adversarial


def ard_loss(
    student_nat_logits: torch.Tensor,
    student_adv_logits: torch.Tensor,
    teacher_nat_logits: torch.Tensor,
    labels: torch.Tensor,
    *,
    alpha: float = 1.0,
    temperature: float = 30.0,
) -> torch.Tensor:
    """ARD (Goldblum et al. 2020): ``a * tau^2 * KL(T(x)/tau || S(x')/tau) +
    (1 - a) * CE(S(x), y)``. Defaults are ARD's published ones (alpha 1, tau 30)."""
    _check_weights(alpha, temperature)
    kl = distillation_kl(student_adv_logits, teacher_nat_logits, temperature=temperature)
    ce = F.cross_entropy(student_nat_logits.float(), labels)
    return alpha * temperature**2 * kl + (1.0 - alpha) * ce


def rslad_loss(
    student_nat_logits: torch.Tensor,
    student_adv_logits: torch.Tensor,
    teacher_nat_logits: torch.Tensor,
) -> torch.Tensor:
    """RSLAD (Zi et al. 2021): ``5/6 * KL(T(x) || S(x')) + 1/6 * KL(T(x) || S(x))``, tau 1:
    the teacher's clean soft labels replace the hard labels everywhere."""
    adversarial = distillation_kl(student_adv_logits, teacher_nat_logits)
    natural = distillation_kl(student_nat_logits, teacher_nat_logits)
    return 5.0 / 6.0 * adversarial + 1.0 / 6.0 * natural


def sat_loss(student_adv_logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """SAT / PGD-AT (Madry et al. 2018): cross-entropy on the adversarial examples."""
    return F.cross_entropy(student_adv_logits.float(), labels)
