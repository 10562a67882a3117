"""The robust distillation methods published after RSLAD, on the same loop: IAD, AdaAD
(with IGDM as an optional term) and MTARD.

Each follows what its official code computes (repository, file and commit in
``docs/training.md`` and in :mod:`dard_plugin.training.registry`), with schedules tied to
200 or 300 epochs there expressed as fractions of the run's epochs, and the KL scaling
stated against the code's value. Where the code and the paper differ, the code is followed.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F

from dard_plugin._validation import check_choice, check_real
from dard_plugin.attacks.pgd import cross_entropy_objective
from dard_plugin.losses.distillation import (
    KL_REDUCTIONS,
    adaad_loss,
    iad_loss,
    igdm_loss,
    mtard_loss,
)
from dard_plugin.training import models
from dard_plugin.training.loop import distributed
from dard_plugin.training.trainer import AdversarialTrainerBase, Batch


class IADTrainer(AdversarialTrainerBase):
    """IAD-I (Zhu et al., ICLR 2022, "Reliable Adversarial Distillation with Unreliable
    Teachers"): ARD with the teacher's reliability on the student's adversarial example,
    ``r_i = P_T(y_i | x'_i)^beta``, weighting a self-introspection term from the start
    epoch on (:func:`~dard_plugin.losses.distillation.iad_loss`). ``x'`` = PGD on CE
    against the student from a uniform random start (the code's ``AttackPGD``).

    Defaults are ``IAD-I.py``'s: ``alpha`` 1, ``temperature`` 1, ``beta`` 0.1, and the
    weighting starts at epoch 60 of 200: ``start_fraction=0.3`` (epoch
    ``floor(0.3 * nb_epochs)``, 0-based, as the code's ``epoch >= 60``).

    The loss equals the code's value (both batch means of per-sample sums). Differences:
    the code attacks with the student in train mode (BatchNorm batch statistics) and,
    from the start epoch, runs ``S(x)`` twice per step; here the attack runs in eval mode
    as for every method, and ``S(x)`` once. The teacher's natural logits may be cached;
    ``T(x')`` (the reliability) is computed for every batch from the start epoch on.
    """

    method = "iad"
    default_attack = "pgd"
    teacher_output_names = ("teacher_nat",)

    def __init__(
        self,
        classifier: Any,
        teacher: Any = None,
        *,
        alpha: float = 1.0,
        temperature: float = 1.0,
        beta: float = 0.1,
        start_fraction: float = 0.3,
        **kwargs: Any,
    ) -> None:
        self.alpha = check_real("alpha", alpha, low=0.0, high=1.0)
        self.temperature = check_real("temperature", temperature, low=0.0, low_inclusive=False)
        self.beta = check_real("beta", beta, low=0.0)
        self.start_fraction = check_real("start_fraction", start_fraction, low=0.0, high=1.0)
        super().__init__(classifier, teacher, **kwargs)

    def config(self) -> dict[str, Any]:
        return {
            **super().config(),
            "alpha": self.alpha,
            "temperature": self.temperature,
            "beta": self.beta,
            "start_fraction": self.start_fraction,
        }

    @property
    def schedule_spans_run(self) -> bool:
        return self.start_fraction > 0.0

    @property
    def reliability_started(self) -> bool:
        # rounded first: in binary 0.7 * 90 is 62.99999..., whose floor started IAD's
        # weighting one epoch before floor(0.7 x 90) = 63
        return self.epoch >= math.floor(round(self.start_fraction * self.nb_epochs, 9))

    def compute_loss(
        self, batch: Batch, adversarial: torch.Tensor, targets: Mapping[str, torch.Tensor]
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        reliability = None
        terms: dict[str, torch.Tensor] = {}
        if self.reliability_started:
            assert self.teacher is not None
            with torch.no_grad():
                probs = F.softmax(self.teacher(adversarial).float(), dim=1)
            reliability = probs.gather(1, batch.labels[:, None]).squeeze(1).pow(self.beta)
            terms["reliability"] = reliability.mean()
        loss = iad_loss(
            self.student_logits(batch.images),
            self.student_logits(adversarial),
            targets["teacher_nat"],
            batch.labels,
            reliability,
            alpha=self.alpha,
            temperature=self.temperature,
        )
        return loss, terms


class AdaADTrainer(AdversarialTrainerBase):
    """AdaAD (Huang et al., CVPR 2023, "Boosting Accuracy and Robustness of Student Models
    via Adaptive Adversarial Distillation"): the inner maximisation asks the teacher at
    every step, ``x' = argmax KL(T(x') || S(x'))`` from ``x + 0.001 N(0, 1)`` (the code's
    ``adaad_inner_loss``; its gradient flows through both models), and the student learns
    ``a KL(T(x') || S(x')) + (1 - a) KL(T(x) || S(x))``
    (:func:`~dard_plugin.losses.distillation.adaad_loss`). ``alpha`` 1 is the code's
    default (``--AdaAD_alpha``); no temperature.

    KL scaling: ``kl_reduction="batchmean"`` (default) equals the code's CIFAR-100 value;
    its CIFAR-10 branch takes the element mean, ``kl_reduction="mean"``, ``K`` times
    smaller. The code's defaults ``--epsilon 16 --step_size 4`` (of 255) are not taken:
    the attack is the run's (``attack=``).

    IGDM (Lee et al., ICLR 2025; ``HongsinLee/saad`` ``igdm.py``): ``igdm`` > 0 adds
    ``igdm * (epoch + 1) / nb_epochs * IGDM`` (:func:`~dard_plugin.losses.distillation.igdm_loss`),
    the code's ``igdm_alpha * epoch / 200`` with 1-based epochs of 200; its default
    ``igdm_alpha`` is 1 (``--method adaad-igdm``). ``x - d`` is not clipped to the bounds,
    as in the code. That code calls ``adaad_inner_loss`` with ``step_size=8/255,
    epsilon=2/255`` (eps and step swapped against its own evaluation at 8/255): not
    copied; the attack is the run's.

    The teacher's natural logits (``alpha < 1``) may be cached; ``T(x')`` depends on the
    student and is always computed online. As in ``main.py``, the student also runs on
    ``x`` (train mode, before ``x'``) when ``alpha=1``, so that its BatchNorm statistics
    see the clean batches; with IGDM, as in ``igdm.py``, it does not.
    """

    method = "adaad"
    default_attack = "pgd"

    def __init__(
        self,
        classifier: Any,
        teacher: Any = None,
        *,
        alpha: float = 1.0,
        igdm: float = 0.0,
        kl_reduction: str = "batchmean",
        **kwargs: Any,
    ) -> None:
        self.alpha = check_real("alpha", alpha, low=0.0, high=1.0)
        self.igdm = check_real("igdm", igdm, low=0.0)
        self.kl_reduction = check_choice("kl_reduction", kl_reduction, KL_REDUCTIONS)
        self.teacher_output_names = ("teacher_nat",) if self.alpha < 1.0 else ()
        self._attack_pair: models.StudentAndTeacher | None = None
        super().__init__(classifier, teacher, **kwargs)

    def config(self) -> dict[str, Any]:
        return {
            **super().config(),
            "alpha": self.alpha,
            "igdm": self.igdm,
            "kl_reduction": self.kl_reduction,
        }

    @property
    def schedule_spans_run(self) -> bool:
        return self.igdm > 0.0  # its weight grows as (epoch + 1) / nb_epochs

    @property
    def teacher(self) -> Any:
        return self._teacher

    @teacher.setter
    def teacher(self, model: Any) -> None:
        # fit swaps in a folded copy and gives the teacher back at its end: the attack's
        # module is rebuilt around the new one, and the copy not kept alive after fit
        self._teacher, self._attack_pair = model, None

    def craft_adversarial(self, batch: Batch, targets: Mapping[str, torch.Tensor]) -> torch.Tensor:
        if not self.uses_method_attack:
            return super().craft_adversarial(batch, targets)
        assert self.teacher is not None
        pair = self._attack_pair  # one per (student, teacher): a compiled step is kept
        if pair is None or pair.student is not self.student:
            pair = self._attack_pair = models.StudentAndTeacher(self.student, self.teacher)

        def objective(
            logits: torch.Tensor, labels: torch.Tensor, step: int, steps: int
        ) -> torch.Tensor:
            del labels, step, steps
            classes = logits.shape[1] // 2
            log_student = F.log_softmax(logits[:, :classes].float(), dim=1)
            log_teacher = F.log_softmax(logits[:, classes:].float(), dim=1)
            return F.kl_div(log_student, log_teacher, reduction="sum", log_target=True)

        return self.attack_from_noise(pair, batch, objective)

    def compute_loss(
        self, batch: Batch, adversarial: torch.Tensor, targets: Mapping[str, torch.Tensor]
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        assert self.teacher is not None
        student_nat = None
        if self.alpha < 1.0:
            student_nat = self.student_logits(batch.images)
        elif self.igdm == 0.0:
            # main.py runs S(x) in train mode before S(x') even when a = 1, so BatchNorm's
            # running statistics also see the clean batches (igdm.py does not)
            with torch.no_grad():
                self.student(batch.images)
        with torch.no_grad():
            teacher_adv = self.teacher(adversarial)
        student_adv = self.student_logits(adversarial)
        loss = adaad_loss(
            student_nat,
            student_adv,
            targets["teacher_nat"] if student_nat is not None else None,
            teacher_adv,
            alpha=self.alpha,
            kl_reduction=self.kl_reduction,
        )
        terms = {"loss_adaad": loss.detach()}
        if self.igdm > 0.0:
            delta = adversarial - batch.images
            minus = batch.images - delta
            with torch.no_grad():
                teacher_minus = self.teacher(minus)
            matching = igdm_loss(
                student_adv,
                self.student_logits(minus),
                teacher_adv,
                teacher_minus,
                kl_reduction=self.kl_reduction,
            )
            weight = self.igdm * (self.epoch + 1) / self.nb_epochs
            loss = loss + weight * matching
            terms["loss_igdm"] = matching.detach()
        return loss, terms


class MTARDTrainer(AdversarialTrainerBase):
    """MTARD (Zhao et al., ECCV 2022, "Enhanced Accuracy and Robustness via Multi-Teacher
    Adversarial Distillation"): an adversarially trained teacher ``T_adv`` (``teacher``)
    and a naturally trained one ``T_nat`` (``natural_teacher``), both frozen:

    ``L = (1 - w) KL(T_adv(x') || S(x')) + w KL(T_nat(x) || S(x))``,

    ``x'`` = PGD on CE against the student from ``x + 0.001 N(0, 1)``
    (``mtard_inner_loss_ce``). The natural weight ``w`` starts at 1/2 and, at every step
    (before the loss), moves towards the share of the relative natural loss:
    ``w <- w - lr_w (w - l_nat / (l_adv + l_nat))``, ``l = (L / L_first)^bert`` with
    ``L_first`` each term's value at the run's first step, ``bert`` 1 and ``lr_w`` 0.025
    (``mtard_resnet18_cifar10.py``). The code divides ``lr_w`` by 10 with the learning
    rate (epochs 215, 260, 285 of 300); here ``lr_w`` follows the optimizer: ``0.025 *
    min(1, lr / initial lr)``, whatever the schedule, with the initial lr read at the run's
    first step (a scheduler's ``initial_lr``, else the lr) and saved with the run. Capped at
    ``weight_lr``, as in the code, so that a warm-up schedule (``OneCycleLR``) cannot take
    ``w`` out of [0, 1] and give a KL term a negative weight. Under DDP the two loss values
    are averaged over the processes before the update, so that every process holds the same
    ``w``.

    KL scaling: the code's ``kl_loss`` is ``p (log(p + 1e-5) - log q)`` averaged over the
    ``B * K`` elements; ``kl_reduction="mean", target_log_eps=1e-5`` reproduces it, the
    defaults (batch mean, exact log) are ``K`` times it up to the ``1e-5``. The weight
    update uses ratios ``L / L_first``, which no constant scaling changes.

    ``T_nat(x)`` may be cached; ``T_adv(x')`` depends on the student and is computed
    online. Both teachers are fingerprinted for resume; ``w`` and the first losses are
    saved with every checkpoint.
    """

    method = "mtard"
    frozen_model_names = ("teacher", "natural_teacher")
    default_attack = "pgd"
    teacher_output_names = ("natural_teacher_nat",)

    def __init__(
        self,
        classifier: Any,
        teacher: Any = None,
        natural_teacher: Any = None,
        *,
        weight_lr: float = 0.025,
        bert: float = 1.0,
        kl_reduction: str = "batchmean",
        target_log_eps: float = 0.0,
        **kwargs: Any,
    ) -> None:
        self.weight_lr = check_real("weight_lr", weight_lr, low=0.0, high=1.0)
        self.bert = check_real("bert", bert, low=0.0)
        self.kl_reduction = check_choice("kl_reduction", kl_reduction, KL_REDUCTIONS)
        self.target_log_eps = check_real("target_log_eps", target_log_eps, low=0.0)
        if natural_teacher is None:
            raise ValueError(
                "MTARDTrainer needs natural_teacher: a naturally trained teacher "
                "(e.g. load_teacher('dard-fmnist-teacher-natural'))"
            )
        super().__init__(classifier, teacher, **kwargs)
        self.natural_teacher = models.unpack_teacher(
            natural_teacher, classifier, "MTARDTrainer (natural_teacher)", self.bounds
        )
        if self.natural_teacher is self.teacher:
            raise ValueError("teacher and natural_teacher must be different models")
        self.initial_lr: float | None = None  # read at the run's first step
        self.weight_nat = 0.5
        self.first_loss_nat: float | None = None
        self.first_loss_adv: float | None = None

    def config(self) -> dict[str, Any]:
        return {
            **super().config(),
            "weight_lr": self.weight_lr,
            "bert": self.bert,
            "kl_reduction": self.kl_reduction,
            "target_log_eps": self.target_log_eps,
        }

    def method_state(self) -> dict[str, Any]:
        return {
            "weight_nat": self.weight_nat,
            "first_loss_nat": self.first_loss_nat,
            "first_loss_adv": self.first_loss_adv,
            "initial_lr": self.initial_lr,
        }

    def load_method_state(self, state: Mapping[str, Any]) -> None:
        self.weight_nat = float(state.get("weight_nat", 0.5))
        self.first_loss_nat = state.get("first_loss_nat")
        self.first_loss_adv = state.get("first_loss_adv")
        self.initial_lr = state.get("initial_lr")  # absent before 2026-12-06: read again

    def teacher_outputs(
        self, images: torch.Tensor, labels: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        with torch.no_grad():
            return {"natural_teacher_nat": self.natural_teacher(images)}

    def craft_adversarial(self, batch: Batch, targets: Mapping[str, torch.Tensor]) -> torch.Tensor:
        if not self.uses_method_attack:
            return super().craft_adversarial(batch, targets)
        return self.attack_from_noise(self.student, batch, cross_entropy_objective)

    def update_weight(self, loss_adv: float, loss_nat: float) -> float:
        """One step of MTARD's weight rule (see the class docstring); returns ``w``."""
        if self.first_loss_nat is None or self.first_loss_adv is None:
            self.first_loss_nat, self.first_loss_adv = loss_nat, loss_adv
        # a first loss of exactly 0 (a student that already matches) has no scale: ratio 1
        relative_adv = (
            loss_adv / self.first_loss_adv if self.first_loss_adv > 0 else 1.0
        ) ** self.bert
        relative_nat = (
            loss_nat / self.first_loss_nat if self.first_loss_nat > 0 else 1.0
        ) ** self.bert
        group = self.optimizer.param_groups[0]
        lr = float(group["lr"])
        if self.initial_lr is None:  # the scheduler, made before fit, has set initial_lr
            self.initial_lr = float(group.get("initial_lr", lr))
        rate = self.weight_lr * min(1.0, lr / self.initial_lr) if self.initial_lr > 0 else 0.0
        share = relative_nat / (relative_adv + relative_nat)
        self.weight_nat = self.weight_nat - rate * (self.weight_nat - share)
        return self.weight_nat

    def compute_loss(
        self, batch: Batch, adversarial: torch.Tensor, targets: Mapping[str, torch.Tensor]
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        assert self.teacher is not None
        with torch.no_grad():
            teacher_adv = self.teacher(adversarial)
        student_adv = self.student_logits(adversarial)
        student_nat = self.student_logits(batch.images)
        _, loss_adv, loss_nat = mtard_loss(
            student_nat,
            student_adv,
            targets["natural_teacher_nat"],
            teacher_adv,
            weight_nat=0.5,
            kl_reduction=self.kl_reduction,
            target_log_eps=self.target_log_eps,
        )
        values = torch.stack([loss_adv.detach(), loss_nat.detach()]).double()
        world, _ = distributed()
        if world > 1:
            torch.distributed.all_reduce(values)
            values /= world
        weight = self.update_weight(float(values[0]), float(values[1]))
        loss = (1.0 - weight) * loss_adv + weight * loss_nat
        terms = {
            "loss_adv": loss_adv.detach(),
            "loss_nat": loss_nat.detach(),
            "weight_nat": torch.tensor(weight),
        }
        return loss, terms
