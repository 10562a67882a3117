"""The methods: each says what the teacher provides, how the student's adversarial
examples are made, and the loss. The loop is :class:`AdversarialTrainerBase`'s.

``ADV_TARGETS``: where DARD's adversarial soft labels ``q_adv = softmax(T(.)/tau)`` come
from (``adv_targets``): ``"teacher-adv"``, the teacher on its own DPGD example ``x_T`` (the
paper; the default); ``"teacher-nat"``, the teacher on the natural ``x``; ``"student-adv"``,
the teacher on the student's adversarial example ``x_S`` (online targets only: ``x_S``
changes with the student at every step, so it cannot be cached); ``"teacher-adv-corrected"``,
``"teacher-adv"`` with ``q_adv`` replaced by the true one-hot label wherever the teacher is
fooled on ``x_T``. Where ``x_T`` is computed, the history records ``teacher_fooled``, the
epoch's mean fraction of the batch on which the teacher misclassifies ``x_T``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F

from dard_plugin._validation import check_bool, check_choice, check_real
from dard_plugin.attacks.dpgd import dpgd_objective
from dard_plugin.attacks.pgd import kl_objective, projected_gradient_descent
from dard_plugin.losses.distillation import (
    KL_REDUCTIONS,
    ard_loss,
    dard_loss,
    rslad_loss,
    sat_loss,
)
from dard_plugin.training.attacks import AttackSettings, settings_of
from dard_plugin.training.trainer import AdversarialTrainerBase, Batch


class SATTrainer(AdversarialTrainerBase):
    """SAT / PGD-AT (Madry et al. 2018): ``CE(S(x'), y)``, ``x'`` = PGD on CE against the
    student from a random start. No teacher."""

    method = "sat"
    needs_teacher = False
    default_attack = "pgd"

    def __init__(self, classifier: Any, **kwargs: Any) -> None:
        super().__init__(classifier, None, **kwargs)

    def compute_loss(
        self, batch: Batch, adversarial: torch.Tensor, targets: Mapping[str, torch.Tensor]
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        loss = sat_loss(self.student_logits(adversarial), batch.labels)
        return loss, {}


class NaturalTrainer(AdversarialTrainerBase):
    """Standard (non-adversarial) training: ``CE(S(x), y)`` on the natural images, no
    attack and no teacher. For naturally trained teachers (MTARD's second teacher); the
    ``attack`` settings only set the validation's budget (``eval_eps``)."""

    method = "natural"
    needs_teacher = False

    def __init__(self, classifier: Any, **kwargs: Any) -> None:
        if kwargs.get("eps_warmup_epochs") is not None:
            raise ValueError("eps_warmup_epochs does not apply to natural training (no attack)")
        attack = kwargs.get("attack")
        if isinstance(attack, Mapping) and attack.get("kind") is not None:
            raise ValueError(
                f"attack kind {attack['kind']!r} does not apply to natural training (no "
                "attack; the attack settings only set the validation's budget)"
            )
        unused = sorted({"alpha", "steps"} & set(attack)) if isinstance(attack, Mapping) else []
        if unused or not (attack is None or isinstance(attack, Mapping)):
            what = f"attack settings {unused}" if unused else f"a {type(attack).__name__} attack"
            raise ValueError(
                f"{what} would change nothing in natural training, which runs no attack: "
                "only attack={'eps': ..., 'norm': ...} (the validation attack's budget and "
                "norm; its steps are eval_attack's own) or eval_eps apply"
            )
        super().__init__(classifier, None, **kwargs)

    def craft_adversarial(self, batch: Batch, targets: Mapping[str, torch.Tensor]) -> torch.Tensor:
        return batch.images

    def compute_loss(
        self, batch: Batch, adversarial: torch.Tensor, targets: Mapping[str, torch.Tensor]
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        return F.cross_entropy(self.student_logits(batch.images), batch.labels), {}


class ARDTrainer(AdversarialTrainerBase):
    """ARD (Goldblum et al. 2020): ``a tau^2 KL(T(x)/tau || S(x')/tau) + (1-a) CE(S(x), y)``,
    ``x'`` = PGD on CE against the student from a random start.

    KL scaling: ``kl_reduction="batchmean"`` (default, the package's convention); ARD's
    code (``nn.KLDivLoss()``) takes the element mean, ``kl_reduction="mean"``, ``K`` times
    smaller."""

    method = "ard"
    default_attack = "pgd"
    teacher_output_names = ("teacher_nat",)

    def __init__(
        self,
        classifier: Any,
        teacher: Any = None,
        *,
        alpha: float = 1.0,
        temperature: float = 30.0,
        kl_reduction: str = "batchmean",
        **kwargs: Any,
    ) -> None:
        self.alpha = check_real("alpha", alpha, low=0.0, high=1.0)
        self.temperature = check_real("temperature", temperature, low=0.0, low_inclusive=False)
        self.kl_reduction = check_choice("kl_reduction", kl_reduction, KL_REDUCTIONS)
        super().__init__(classifier, teacher, **kwargs)

    def config(self) -> dict[str, Any]:
        return {
            **super().config(),
            "alpha": self.alpha,
            "temperature": self.temperature,
            **kl_settings(self.kl_reduction),
        }

    def compute_loss(
        self, batch: Batch, adversarial: torch.Tensor, targets: Mapping[str, torch.Tensor]
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        loss = ard_loss(
            self.student_logits(batch.images),
            self.student_logits(adversarial),
            targets["teacher_nat"],
            batch.labels,
            alpha=self.alpha,
            temperature=self.temperature,
            kl_reduction=self.kl_reduction,
        )
        return loss, {}


def kl_settings(kl_reduction: str, target_log_eps: float = 0.0) -> dict[str, Any]:
    """The KL options of ARD and RSLAD for the fingerprint: only where not the defaults, so
    that runs from before these options existed keep their fingerprints (and resume)."""
    return {
        **({} if kl_reduction == "batchmean" else {"kl_reduction": kl_reduction}),
        **({} if target_log_eps == 0.0 else {"target_log_eps": target_log_eps}),
    }


class RSLADTrainer(AdversarialTrainerBase):
    """RSLAD (Zi et al. 2021): ``5/6 KL(T(x) || S(x')) + 1/6 KL(T(x) || S(x))``; ``x'``
    maximises ``KL(T(x) || S(x'))`` from ``x + 0.001 N(0, 1)`` (as RSLAD's code), at the
    ``attack`` settings (L-inf or L2, ``attack={"norm": ...}``); an attack of another kind
    (``{"kind": ...}``, a torchattacks attack, a callable) replaces it.

    KL scaling: ``kl_reduction="batchmean"`` (default); RSLAD's code takes the element mean
    of ``p (log(p + 1e-5) - log q)``: ``kl_reduction="mean", target_log_eps=1e-5``
    reproduces it (the default is ``K`` times it up to the ``1e-5``)."""

    method = "rslad"
    default_attack = "pgd"
    teacher_output_names = ("teacher_nat",)

    def __init__(
        self,
        classifier: Any,
        teacher: Any = None,
        *,
        kl_reduction: str = "batchmean",
        target_log_eps: float = 0.0,
        **kwargs: Any,
    ) -> None:
        self.kl_reduction = check_choice("kl_reduction", kl_reduction, KL_REDUCTIONS)
        self.target_log_eps = check_real("target_log_eps", target_log_eps, low=0.0)
        super().__init__(classifier, teacher, **kwargs)

    def config(self) -> dict[str, Any]:
        return {**super().config(), **kl_settings(self.kl_reduction, self.target_log_eps)}

    def craft_adversarial(self, batch: Batch, targets: Mapping[str, torch.Tensor]) -> torch.Tensor:
        if not self.uses_method_attack:
            return super().craft_adversarial(batch, targets)
        target_probs = F.softmax(targets["teacher_nat"].float(), dim=1)
        return self.attack_from_noise(self.student, batch, kl_objective(target_probs))

    def compute_loss(
        self, batch: Batch, adversarial: torch.Tensor, targets: Mapping[str, torch.Tensor]
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        loss = rslad_loss(
            self.student_logits(batch.images),
            self.student_logits(adversarial),
            targets["teacher_nat"],
            kl_reduction=self.kl_reduction,
            target_log_eps=self.target_log_eps,
        )
        return loss, {}


ADV_TARGETS = ("teacher-adv", "teacher-nat", "student-adv", "teacher-adv-corrected")


class DARDTrainer(AdversarialTrainerBase):
    """DARD (METHOD.md §2): the student learns the teacher's temperature-softened outputs on
    natural images and on the *teacher's* DPGD examples, while being attacked by DPGD:

    ``L = (1 - w) [a tau^2 KL(q_nat || S(x)/tau) + (1 - a) CE(S(x), y)]
    + w [a tau^2 KL(q_adv || S(x_S)/tau) + (1 - a) CE(S(x_S), y)]``

    Args (beyond :class:`AdversarialTrainerBase`'s):
        alpha: distillation weight ``a`` (0.7).
        temperature: ``tau`` (3.0), applied to the teacher's logits.
        adv_weight: ``w`` (0.5: the paper's average of the two terms).
        teacher_attack: settings of the teacher's DPGD (default: the student attack's
            settings, a torchattacks attack's ``eps``, ``alpha`` and ``steps`` where it has
            them, else the run's norm's defaults). A partial dict takes the run's norm (the
            student attack's) when it names none, and the student's settings for the rest
            in that norm (``{"steps": 20}`` in a run at eps 0.1: eps 0.1, the student's
            step, 20 steps; a given ``eps`` without ``alpha`` steps ``eps / 4``); in another
            norm, or where the student's are unknown, that norm's defaults (L-inf:
            METHOD.md's 8/255 and 2/255; L2: 0.5 and eps / 4).
        adv_targets: where ``q_adv`` comes from, one of ``ADV_TARGETS`` (module docstring);
            default ``"teacher-adv"``, the paper's.
        legacy_teacher_softmax: reproduce the original scripts' defect (temperature softmax
            of the teacher's *probabilities*), for comparison only.
    """

    method = "dard"
    default_attack = "dpgd"

    def __init__(
        self,
        classifier: Any,
        teacher: Any = None,
        *,
        alpha: float = 0.7,
        temperature: float = 3.0,
        adv_weight: float = 0.5,
        teacher_attack: Mapping[str, Any] | None = None,
        adv_targets: str = "teacher-adv",
        legacy_teacher_softmax: bool = False,
        **kwargs: Any,
    ) -> None:
        self.alpha = check_real("alpha", alpha, low=0.0, high=1.0)
        self.temperature = check_real("temperature", temperature, low=0.0, low_inclusive=False)
        self.adv_weight = check_real("adv_weight", adv_weight, low=0.0, high=1.0)
        self.adv_targets = check_choice("adv_targets", adv_targets, ADV_TARGETS)
        self.legacy_teacher_softmax = check_bool("legacy_teacher_softmax", legacy_teacher_softmax)
        if adv_targets == "student-adv" and kwargs.get("teacher_targets") == "cached":
            raise ValueError(
                "adv_targets='student-adv' needs teacher_targets='online': the student's "
                "adversarial example changes with the student at every step, so the "
                "teacher's output on it cannot be cached"
            )
        uses_teacher_attack = adv_targets in ("teacher-adv", "teacher-adv-corrected")
        if teacher_attack is not None and not uses_teacher_attack:
            raise ValueError(
                f"teacher_attack sets the teacher's own DPGD, which adv_targets="
                f"{adv_targets!r} does not run: it would change nothing; drop it, or use "
                "adv_targets='teacher-adv'"
            )
        self.teacher_output_names = (
            ("teacher_nat", "teacher_adv") if uses_teacher_attack else ("teacher_nat",)
        )
        super().__init__(classifier, teacher, **kwargs)
        self.teacher_attack = self._teacher_attack_settings(teacher_attack, uses_teacher_attack)

    def _teacher_attack_settings(
        self, given: Mapping[str, Any] | None, used: bool = True
    ) -> AttackSettings:
        """The student's settings when none are given; a partial dict takes the run's norm
        where it names none, and the student's settings in that norm for the rest (else
        that norm's defaults). A student attack whose budget is in a norm the teacher's DPGD
        has no form for (L1) needs ``given``."""
        run_norm = self.attack_norm or "Linf"
        declared = settings_of(self.attack_description, run_norm)  # a torchattacks one's
        if given is None:
            if declared is not None and self.attack_norm is None:  # an L1 attack's eps
                if used:
                    raise ValueError(
                        f"teacher_attack must be given: the student's attack declares eps "
                        f"{declared.eps:g} in a norm the teacher's DPGD has no form for (L1, "
                        "or one unknown), which is no L-inf or L2 budget; pass teacher_attack="
                        "{'norm': 'Linf' or 'L2', 'eps': ...}"
                    )
                declared = None
            default = AttackSettings.from_mapping({"norm": run_norm}, self.bounds)
            return self.attack_settings or declared or default
        if not isinstance(given, Mapping):
            raise TypeError(
                "teacher_attack must be a dict of settings (norm, eps, alpha, steps), got "
                f"{type(given).__name__}"
            )
        if declared is not None and self.attack_norm is None and used and "eps" not in given:
            raise ValueError(
                f"teacher_attack must give eps: the student's attack declares eps "
                f"{declared.eps:g} in a norm the teacher's DPGD has no form for (L1, or one "
                "unknown), so there is no budget to inherit"
            )
        norm = given.get("norm", run_norm)
        student = self.attack_settings or (declared if self.attack_norm else None)
        inherited: dict[str, Any] = {"norm": norm}
        if student is not None and student.norm == norm:  # the student's budget, this norm
            inherited.update(eps=student.eps, alpha=student.alpha, steps=student.steps)
            if "eps" in given and "alpha" not in given:
                del inherited["alpha"]  # a new budget's step: eps / 4
        return AttackSettings.from_mapping({**inherited, **given}, self.bounds)

    def attack_budgets(self) -> list[tuple[str, float, str]]:
        budgets = super().attack_budgets()
        settings = self.teacher_attack
        if "teacher_adv" in self.teacher_output_names and settings != self.attack_settings:
            budgets.append(("teacher_attack['eps']", settings.budget, settings.norm))
        return budgets

    def config(self) -> dict[str, Any]:
        return {
            **super().config(),
            "alpha": self.alpha,
            "temperature": self.temperature,
            "adv_weight": self.adv_weight,
            "teacher_attack": vars(self.teacher_attack),
            "adv_targets": self.adv_targets,
            "legacy_teacher_softmax": self.legacy_teacher_softmax,
        }

    def teacher_outputs(
        self, images: torch.Tensor, labels: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        assert self.teacher is not None
        if "teacher_adv" not in self.teacher_output_names:
            with torch.no_grad():
                return {"teacher_nat": self.teacher(images)}
        settings = self.teacher_attack
        teacher_adversarial = projected_gradient_descent(
            self.teacher,
            images,
            labels,
            dpgd_objective(),
            norm=settings.norm,
            eps=settings.budget,
            alpha=settings.step,
            steps=settings.steps,
            bounds=self.bounds,
        )
        with torch.no_grad():
            return {
                "teacher_nat": self.teacher(images),
                "teacher_adv": self.teacher(teacher_adversarial),
            }

    def adversarial_targets(
        self, batch: Batch, adversarial: torch.Tensor, targets: Mapping[str, torch.Tensor]
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The teacher logits whose ``softmax(./tau)`` is ``q_adv``, and (where ``x_T`` is
        used) the flags of the images on which the teacher is fooled on ``x_T``."""
        if self.adv_targets == "teacher-nat":
            return targets["teacher_nat"], None
        if self.adv_targets == "student-adv":
            assert self.teacher is not None
            with torch.no_grad():
                return self.teacher(adversarial), None
        logits = targets["teacher_adv"]
        fooled = logits.argmax(dim=1) != batch.labels
        if self.adv_targets == "teacher-adv-corrected":  # softmax(one_hot / tau) = one-hot
            one_hot = torch.full_like(logits, float("-inf"))
            one_hot.scatter_(1, batch.labels[:, None], 0.0)
            logits = torch.where(fooled[:, None], one_hot, logits)
        return logits, fooled

    def compute_loss(
        self, batch: Batch, adversarial: torch.Tensor, targets: Mapping[str, torch.Tensor]
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        teacher_adv, fooled = self.adversarial_targets(batch, adversarial, targets)
        student_nat = self.student_logits(batch.images)
        student_adv = self.student_logits(adversarial)

        def half(adv_weight: float) -> torch.Tensor:  # w = 0: L_nat; w = 1: L_adv
            return dard_loss(
                student_nat,
                student_adv,
                targets["teacher_nat"],
                teacher_adv,
                batch.labels,
                alpha=self.alpha,
                temperature=self.temperature,
                adv_weight=adv_weight,
                legacy_teacher_softmax=self.legacy_teacher_softmax,
            )

        loss_nat, loss_adv = half(0.0), half(1.0)
        loss = (1.0 - self.adv_weight) * loss_nat + self.adv_weight * loss_adv
        terms = {"loss_nat": loss_nat, "loss_adv": loss_adv}
        if fooled is not None:
            terms["teacher_fooled"] = fooled.float().mean()
        return loss, terms
