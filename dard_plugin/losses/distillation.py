"""Training losses: DARD (METHOD.md §2), the baselines SAT, ARD, RSLAD (§3), and the
later methods IAD, AdaAD, IGDM and MTARD.

Every KL term is ``KL(target || student)`` with the batch mean of per-sample sums
(PyTorch ``reduction="batchmean"``); temperatures apply to logits. Several official
repositories use PyTorch's default ``reduction="mean"`` instead, the mean over all
``B * K`` elements, which is the batch mean divided by the number of classes ``K``: the
losses that reproduce such code take ``kl_reduction="mean"`` (:data:`KL_REDUCTIONS`).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from dard_plugin._validation import check_bool, check_choice, check_real

# "batchmean": sum over classes, mean over the batch (the package's convention);
# "mean": mean over all batch x class elements (PyTorch's default, = batchmean / K).
KL_REDUCTIONS = ("batchmean", "mean")


def distillation_kl(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    *,
    temperature: float = 1.0,
    legacy_teacher_softmax: bool = False,
    reduction: str = "batchmean",
    target_log_eps: float = 0.0,
) -> torch.Tensor:
    """``KL(softmax(teacher / tau) || softmax(student / tau))``, batch mean (or, with
    ``reduction="mean"``, the element mean: the batch mean divided by the classes).
    ``target_log_eps > 0`` takes ``log(p + eps)`` for the target's log, as code written
    ``p * (log(p + 1e-5) - log q)`` does (RSLAD's, MTARD's).

    ``legacy_teacher_softmax=True`` reproduces the DARD scripts' defect: the temperature
    softmax is applied to the teacher's *probabilities*, ``softmax(softmax(teacher) / tau)``,
    which flattens the targets towards uniform. For comparison only; never the default.

    Both logits must have one shape ``(batch, classes)``: ``F.kl_div`` would broadcast a
    ``(1, classes)`` teacher over the batch without a word.
    """
    check_same_logits_shape(student_logits, teacher_logits)
    teacher = teacher_logits.detach().float()
    if legacy_teacher_softmax:
        teacher = F.softmax(teacher, dim=1)
    target = F.softmax(teacher / temperature, dim=1)
    log_student = F.log_softmax(student_logits.float() / temperature, dim=1)
    check_choice("kl_reduction", reduction, KL_REDUCTIONS)
    check_real("target_log_eps", target_log_eps, low=0.0)
    if target_log_eps > 0.0:
        elements = target * (torch.log(target + target_log_eps) - log_student)
        kl = elements.sum() / elements.shape[0]
    else:
        kl = F.kl_div(log_student, target, reduction="batchmean")
    # "mean" by hand: PyTorch warns that its reduction="mean" will become "batchmean"
    return kl / target.shape[1] if reduction == "mean" else kl


def check_same_logits_shape(student_logits: torch.Tensor, teacher_logits: torch.Tensor) -> None:
    """Refuse two logit tensors that are not both ``(batch, classes)`` of one shape."""
    student_shape, teacher_shape = tuple(student_logits.shape), tuple(teacher_logits.shape)
    if len(student_shape) != 2 or student_shape != teacher_shape:
        raise ValueError(
            "the student's and the teacher's logits must both have shape (batch, classes), "
            f"got student {student_shape} and teacher {teacher_shape}"
        )


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
    kl_reduction: str = "batchmean",
) -> torch.Tensor:
    """ARD (Goldblum et al. 2020): ``a * tau^2 * KL(T(x)/tau || S(x')/tau) +
    (1 - a) * CE(S(x), y)``. Defaults are ARD's published ones (alpha 1, tau 30). ARD's
    code (``main.py``, ``nn.KLDivLoss()``) takes the element mean of the KL:
    ``kl_reduction="mean"`` reproduces it; the default batch mean is ``K`` times it."""
    _check_weights(alpha, temperature)
    kl = distillation_kl(
        student_adv_logits, teacher_nat_logits, temperature=temperature, reduction=kl_reduction
    )
    ce = F.cross_entropy(student_nat_logits.float(), labels)
    return alpha * temperature**2 * kl + (1.0 - alpha) * ce


def rslad_loss(
    student_nat_logits: torch.Tensor,
    student_adv_logits: torch.Tensor,
    teacher_nat_logits: torch.Tensor,
    *,
    kl_reduction: str = "batchmean",
    target_log_eps: float = 0.0,
) -> torch.Tensor:
    """RSLAD (Zi et al. 2021): ``5/6 * KL(T(x) || S(x')) + 1/6 * KL(T(x) || S(x))``, tau 1:
    the teacher's clean soft labels replace the hard labels everywhere. RSLAD's code
    (``resnet18_rslad_cifar10.py``) takes ``mean(p (log(p + 1e-5) - log q))`` over all
    elements: ``kl_reduction="mean", target_log_eps=1e-5`` reproduces it; the defaults
    (batch mean, exact log) are ``K`` times it up to the ``1e-5``."""

    def kl(student_logits: torch.Tensor) -> torch.Tensor:
        return distillation_kl(
            student_logits,
            teacher_nat_logits,
            reduction=kl_reduction,
            target_log_eps=target_log_eps,
        )

    adversarial, natural = kl(student_adv_logits), kl(student_nat_logits)
    return 5.0 / 6.0 * adversarial + 1.0 / 6.0 * natural


def sat_loss(student_adv_logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """SAT / PGD-AT (Madry et al. 2018): cross-entropy on the adversarial examples."""
    return F.cross_entropy(student_adv_logits.float(), labels)


def iad_loss(
    student_nat_logits: torch.Tensor,
    student_adv_logits: torch.Tensor,
    teacher_nat_logits: torch.Tensor,
    labels: torch.Tensor,
    reliability: torch.Tensor | None,
    *,
    alpha: float = 1.0,
    temperature: float = 1.0,
) -> torch.Tensor:
    """IAD-I (Zhu et al. 2022, ``ZFancy/IAD`` ``IAD-I.py``): ARD's loss plus, once the
    reliability weighting has started, the student's introspection term

    ``a tau^2 KL(T(x)/tau || S(x')/tau) + a mean_i[(1 - r_i) KL(S(x)_i || S(x')_i)]
    + (1 - a) CE(S(x), y)``,

    with ``r_i = P_T(y_i | x'_i)^beta`` (``reliability``, no gradient; None: before the
    start epoch, the term is absent). As in the code, the introspection target
    ``softmax(S(x))`` is *not* detached (the gradient flows through both sides), it has
    no temperature, and the teacher term is not weighted by ``r`` (``IAD-II.py`` weights
    it; IAD-I's code does not). Batch means as the code's ``(1/B) sum``: equal to it. The
    term is computed from log-probabilities: the code's value and gradient wherever the
    code's gradient is finite, and a finite gradient where a probability of ``S(x)``
    underflows to 0 (the code's is NaN there).
    """
    _check_weights(alpha, temperature)
    kl = distillation_kl(student_adv_logits, teacher_nat_logits, temperature=temperature)
    loss = alpha * temperature**2 * kl
    loss = loss + (1.0 - alpha) * F.cross_entropy(student_nat_logits.float(), labels)
    if reliability is not None:
        check_same_logits_shape(student_adv_logits, student_nat_logits)
        if tuple(reliability.shape) != (student_adv_logits.shape[0],):
            raise ValueError(
                f"reliability must have shape (batch,) = ({student_adv_logits.shape[0]},), "
                f"got {tuple(reliability.shape)} (squeeze a (batch, 1) gather)"
            )
        log_adv = F.log_softmax(student_adv_logits.float(), dim=1)
        # the target not detached, as the code; given as a log (log_target) so that a class
        # whose probability underflows to 0 gives a finite gradient, where the code's
        # softmax target takes log 0 in the backward (NaN for a very confident student)
        log_own = F.log_softmax(student_nat_logits.float(), dim=1)
        per_sample = F.kl_div(log_adv, log_own, reduction="none", log_target=True).sum(dim=1)
        loss = loss + alpha * (per_sample * (1.0 - reliability.detach().float())).mean()
    return loss


def adaad_loss(
    student_nat_logits: torch.Tensor | None,
    student_adv_logits: torch.Tensor,
    teacher_nat_logits: torch.Tensor | None,
    teacher_adv_logits: torch.Tensor,
    *,
    alpha: float = 1.0,
    kl_reduction: str = "batchmean",
) -> torch.Tensor:
    """AdaAD (Huang et al. 2023, ``boyellow/AdaAD`` ``main.py``):
    ``a KL(T(x') || S(x')) + (1 - a) KL(T(x) || S(x))``, tau 1, where ``x'`` is the
    student's adversarial example of the inner maximisation ``max KL(T(x') || S(x'))``.

    ``kl_reduction="batchmean"`` (default) is the code's CIFAR-100 branch; the code's
    CIFAR-10 branch uses ``nn.KLDivLoss()`` (element mean), ``kl_reduction="mean"``:
    the default value is ``K`` times it (10 for ten classes). With ``alpha=1`` (the
    code's default) the natural logits may be None.
    """
    check_real("alpha", alpha, low=0.0, high=1.0)
    loss = alpha * distillation_kl(student_adv_logits, teacher_adv_logits, reduction=kl_reduction)
    if alpha < 1.0:
        if student_nat_logits is None or teacher_nat_logits is None:
            raise ValueError("adaad_loss with alpha < 1 needs the natural logits")
        natural = distillation_kl(student_nat_logits, teacher_nat_logits, reduction=kl_reduction)
        loss = loss + (1.0 - alpha) * natural
    return loss


def igdm_loss(
    student_plus_logits: torch.Tensor,
    student_minus_logits: torch.Tensor,
    teacher_plus_logits: torch.Tensor,
    teacher_minus_logits: torch.Tensor,
    *,
    kl_reduction: str = "batchmean",
) -> torch.Tensor:
    """IGDM's input-gradient matching term (Lee et al. 2025, ``HongsinLee/saad``
    ``igdm.py``): ``KL(softmax(T(x+d) - T(x-d)) || softmax(S(x+d) - S(x-d)))`` with
    ``d = x' - x``: the teacher's and the student's logit differences across the
    perturbation, a finite-difference proxy of their input gradients along ``d``. Batch
    mean, as the code's ``nn.KLDivLoss(reduction="batchmean")``: equal to it."""
    return distillation_kl(
        student_plus_logits - student_minus_logits,
        teacher_plus_logits - teacher_minus_logits,
        reduction=kl_reduction,
    )


def mtard_kl(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    *,
    kl_reduction: str = "batchmean",
    target_log_eps: float = 0.0,
) -> torch.Tensor:
    """One of MTARD's two KL terms, ``KL(softmax(T) || softmax(S))``, tau 1.

    MTARD's code (``zhaoshiji123/MTARD`` ``mtard_resnet18_cifar10.py`` ``kl_loss``)
    computes ``p (log(p + 1e-5) - log_softmax(S))`` elementwise and takes the element
    mean: ``kl_reduction="mean", target_log_eps=1e-5`` reproduces it; the defaults
    (batch mean, exact log) give ``K`` times the code's value up to the ``1e-5``.
    (:func:`distillation_kl` at temperature 1.)
    """
    return distillation_kl(
        student_logits, teacher_logits, reduction=kl_reduction, target_log_eps=target_log_eps
    )


def mtard_loss(
    student_nat_logits: torch.Tensor,
    student_adv_logits: torch.Tensor,
    natural_teacher_logits: torch.Tensor,
    adversarial_teacher_logits: torch.Tensor,
    *,
    weight_nat: float,
    kl_reduction: str = "batchmean",
    target_log_eps: float = 0.0,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """MTARD (Zhao et al. 2022): ``(1 - w) KL(T_adv(x') || S(x')) + w KL(T_nat(x) || S(x))``
    with the natural weight ``w`` (:class:`~dard_plugin.training.recent_methods.MTARDTrainer`
    adapts it). Returns ``(loss, adversarial KL, natural KL)``."""
    check_real("weight_nat", weight_nat, low=0.0, high=1.0)
    adversarial = mtard_kl(
        student_adv_logits,
        adversarial_teacher_logits,
        kl_reduction=kl_reduction,
        target_log_eps=target_log_eps,
    )
    natural = mtard_kl(
        student_nat_logits,
        natural_teacher_logits,
        kl_reduction=kl_reduction,
        target_log_eps=target_log_eps,
    )
    return (1.0 - weight_nat) * adversarial + weight_nat * natural, adversarial, natural
