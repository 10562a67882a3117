"""The trainers' common face, as an ART ``Trainer``: options, ``fit``, ``fit_generator``.

One loop (``loop.py``) serves every method. A method (``training/methods.py``) says what the teacher
provides for a batch (:meth:`AdversarialTrainerBase.teacher_outputs`), how the student's
adversarial examples are made (:meth:`~AdversarialTrainerBase.craft_adversarial`) and what
the loss is (:meth:`~AdversarialTrainerBase.compute_loss`). The parts it drives each have
their own module: the batch source (``batches.py``), the teacher targets (``targets.py``),
the checkpointer (``checkpointing.py``, with ``fingerprints.py``), the models' set-up
(``models.py``) and the validation (``validation.py``). ``docs/training.md`` shows how a
new method plugs in.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from dard_plugin._labels import read_labels
from dard_plugin._validation import (
    MAX_SEED,
    check_bool,
    check_choice,
    check_images,
    check_int,
    check_real,
)
from dard_plugin.attacks import _fast
from dard_plugin.attacks.pgd import NORMS, Objective
from dard_plugin.data.loaders import BatchAugment, make_loader
from dard_plugin.training import models
from dard_plugin.training._checks import (
    check_augment_layout,
    check_last_batch,
    check_no_teacher_options,
    training_bounds,
)
from dard_plugin.training.attacks import (
    AttackSettings,
    attack_from_noise,
    build_attack,
    declared_norm,
    describe_attack,
    resolve_attack,
    scheduled_settings,
)
from dard_plugin.training.batches import Batch, BatchSource, as_images
from dard_plugin.training.checkpointing import Checkpointer
from dard_plugin.training.classifier_face import ClassifierFace
from dard_plugin.training.loop import TrainingLoop, distributed
from dard_plugin.training.targets import TEACHER_TARGETS, TeacherTargets
from dard_plugin.training.validation import EVAL_ATTACKS

logger = logging.getLogger(__name__)
# images per forward pass in validation and, unless teacher_batch_size says otherwise, per
# teacher call when building cached targets
DEFAULT_EVAL_BATCH_SIZE = 256

__all__ = ["TEACHER_TARGETS", "AdversarialTrainerBase", "AttackSettings", "Batch"]


class AdversarialTrainerBase(ClassifierFace, TrainingLoop):
    """The face of every method's trainer (SAT, ARD, RSLAD, DARD, IAD, AdaAD, MTARD, natural).

    Args:
        classifier: an ART ``PyTorchClassifier`` (its model, its optimizer, its ``clip_values``
            as the input bounds; not its ``loss``: each method trains on its own) or a plain
            ``nn.Module`` (then pass ``optimizer``).
        teacher: the frozen teacher (``nn.Module`` or ART classifier); put in eval mode
            (with a warning if it was training) and never updated.
        optimizer: the student's optimizer when ``classifier`` is a plain module.
        attack: the student's training attack: None (the method's default, METHOD.md's
            eps 8/255, step 2/255, 10 steps, both scaled to the width of ``bounds``: 8 and 2
            on [0, 255]), a dict of ``eps``/``alpha``/``steps`` (and
            ``kind``: ``"dpgd"`` or ``"pgd"``), a torchattacks attack built on the student,
            or a callable ``(model, images, labels, generator) -> adversarial images``.
        bounds: the valid input range ``(low, high)``, used by the student's attack, the
            teacher's attack, the validation and the input checks. Default: the ART
            classifier's ``clip_values``, else (0, 1).
        teacher_targets: ``"online"`` computes the teacher's outputs for the exact batch the
            student sees (cost: for DARD, a teacher DPGD attack per batch); ``"cached"``
            computes them once per training image, on the un-augmented image, and reuses
            them (rebuilt for other images or teacher weights; ``cache_refresh_epochs``
            recomputes them every K epochs: the same numbers, unless the teacher changes).
        seed: seeds shuffling, augmentation, random starts and (inside each epoch only)
            the global RNG used by dropout; the caller's global RNG state is restored.
        device: where to train (default: the student's device; never assumed to be CUDA).
        amp: bf16 autocast (default: on when training on CUDA).
        channels_last: channels-last memory format for 4-D image batches, student and
            teacher. ``None`` (default): on whenever both models run a channels-last batch
            (checked on the first batch).
        fold_teacher: query the teacher(s) during training through a copy with each
            BatchNorm folded into the layer before it (``training.models.fold_batch_norm``:
            the same function to float rounding, less time per query). ``None`` (default): for
            teachers built of torch.nn's and dard_plugin's modules only (a module of your
            own may have side effects in ``forward`` that a traced copy drops).
        eval_attack: validation attack, ``"pgd"`` (PGD-10 on CE, random start) or
            ``"dpgd"``, run after each epoch on ``validation_data``.
        eval_eps: its budget. Default: the training attack's eps, when known and when the
            validation norm is the training attack's; otherwise it must be given.
        eval_norm: its norm, ``"Linf"`` or ``"L2"``. Default: the run's norm, that of the
            attack settings (``attack={"norm": "L2"}``) or of a torchattacks attack that
            declares one (``PGDL2``, ``APGD(norm="L2")``, ...); L-inf when it is unknown.
        compile_attack: run the attacks' gradient step compiled with ``torch.compile``
            (``attacks/_fast.py``; the same adversarial examples to float tolerance). None
            (default): whichever path is the faster on the device (the plain one until
            measured otherwise; ``docs/performance.md``).
        compile_mode: ``torch.compile``'s mode for the compiled step (refused without it):
            None, ``"reduce-overhead"`` (CUDA graphs), ``"max-autotune-no-cudagraphs"``.
        teacher_batch_size: images per teacher call when building cached targets (default:
            ``eval_batch_size``); larger fills a large GPU better. DARD's batch-reduced Dice
            makes the teacher's DPGD example depend on it, so it joins the fingerprint.
        checkpoint_dir: write ``checkpoint.pt`` (model, optimizer, scheduler, history,
            cached targets, the run's fingerprint) and ``history.json`` atomically at the
            end of every epoch. Checked for writability before training.
        resume: continue from ``checkpoint_dir``; refused, listing the differing fields,
            when the checkpoint's run had other settings (method, loss and attack
            hyper-parameters, optimizer and scheduler, batch size, seed, data, teacher),
            and refused before any work when it has trained more epochs than ``fit``'s
            ``nb_epochs`` (a run is never shortened; the same number returns it as it is).
        history_path: also write the per-epoch history to this JSON file.
        verbose: tqdm progress bar per epoch.
        eps_warmup_epochs: ramp the student's attack budget linearly over the first ``k``
            epochs (off by default): epoch ``e`` (1-based) attacks with ``eps * min(1, e / k)``
            and step ``alpha * min(1, e / k)``; the history records each epoch's
            ``attack_eps``. Needs an attack with known settings (None or a dict); DARD's
            teacher attack keeps its full budget. Part of the run's fingerprint.
    """

    method: ClassVar[str] = "base"
    needs_teacher: ClassVar[bool] = True
    default_attack: ClassVar[str] = "pgd"

    def __init__(
        self,
        classifier: Any,
        teacher: Any = None,
        *,
        optimizer: torch.optim.Optimizer | None = None,
        attack: Any = None,
        bounds: tuple[float, float] | None = None,
        teacher_targets: str = "online",
        cache_refresh_epochs: int | None = None,
        seed: int = 0,
        device: str | torch.device | None = None,
        amp: bool | None = None,
        channels_last: bool | None = None,
        fold_teacher: bool | None = None,
        eval_attack: str = "pgd",
        eval_eps: float | None = None,
        eval_norm: str | None = None,
        eval_batch_size: int = DEFAULT_EVAL_BATCH_SIZE,
        compile_attack: bool | None = None,
        compile_mode: str | None = None,
        teacher_batch_size: int | None = None,
        checkpoint_dir: str | Path | None = None,
        resume: bool = False,
        history_path: str | Path | None = None,
        verbose: bool = True,
        eps_warmup_epochs: int | None = None,
    ) -> None:
        super().__init__(classifier)
        self.student, self.optimizer, clip_values = models.unpack_student(classifier, optimizer)
        self.bounds: tuple[float, float] = training_bounds(bounds, clip_values)
        self.teacher: nn.Module | None = None
        if self.needs_teacher:
            self.teacher = models.unpack_teacher(
                teacher, classifier, type(self).__name__, self.bounds
            )
        elif teacher is not None:
            raise ValueError(f"{type(self).__name__} takes no teacher")
        else:
            check_no_teacher_options(
                type(self).__name__,
                teacher_targets=teacher_targets,
                cache_refresh_epochs=cache_refresh_epochs,
                teacher_batch_size=teacher_batch_size,
            )
        self.targets = TeacherTargets(
            teacher_targets, self.teacher_output_names, cache_refresh_epochs, type(self).__name__
        )
        self.teacher_targets = self.targets.mode
        self.cache_refresh_epochs = cache_refresh_epochs
        self.seed = check_int("seed", seed, minimum=0, maximum=MAX_SEED)
        self.eval_attack = check_choice("eval_attack", eval_attack, EVAL_ATTACKS)
        self.eval_batch_size = check_int("eval_batch_size", eval_batch_size, minimum=1)
        if teacher_batch_size is not None:
            check_int("teacher_batch_size", teacher_batch_size, minimum=1)
            if self.teacher_targets != "cached":
                raise ValueError(
                    "teacher_batch_size sets the teacher's chunk when building cached targets; "
                    f"with teacher_targets={self.teacher_targets!r} it would change nothing "
                    "(the teacher runs on each training batch): drop it, or use 'cached'"
                )
        self.teacher_batch_size = teacher_batch_size
        self.resume = check_bool("resume", resume)
        self.verbose = check_bool("verbose", verbose)
        if resume and checkpoint_dir is None:
            raise ValueError("resume=True needs checkpoint_dir (where the checkpoint is)")
        self.checkpoint_dir = Path(checkpoint_dir) if checkpoint_dir is not None else None
        self.history_path = Path(history_path) if history_path is not None else None
        self.checkpointer = Checkpointer(self.checkpoint_dir, self.history_path)
        self.device = (
            torch.device(device) if device is not None else models.module_device(self.student)
        )
        self.amp = check_bool("amp", self.device.type == "cuda" if amp is None else amp)
        self.compile_attack, self.compile_mode = _fast.resolve_compile_settings(
            compile_attack, compile_mode, self.device
        )
        if channels_last is not None:
            check_bool("channels_last", channels_last)
        self._channels_last_request = channels_last
        if fold_teacher is not None:
            check_bool("fold_teacher", fold_teacher)
        self.fold_teacher = fold_teacher
        self.channels_last = bool(channels_last)  # decided on the first batch when None
        self.attack, self.attack_settings, attack_eps = resolve_attack(
            attack,
            default_kind=self.default_attack,
            student=self.student,
            bounds=self.bounds,
            classifier=self._classifier,
        )
        self.attack_description = describe_attack(attack)  # fingerprinted where no settings
        if eps_warmup_epochs is not None:
            check_int("eps_warmup_epochs", eps_warmup_epochs, minimum=1)
            if self.attack_settings is None:
                raise ValueError(
                    "eps_warmup_epochs needs an attack whose budget the trainer sets: None or "
                    "a dict of settings, not a torchattacks attack or a callable"
                )
        self.eps_warmup_epochs = eps_warmup_epochs
        self.full_attack, self.full_attack_settings = self.attack, self.attack_settings
        self._attack_kind = (
            attack.get("kind", self.default_attack)
            if isinstance(attack, Mapping)
            else self.default_attack
        )
        # None, or settings without "kind": the method's own attack at those settings
        self.uses_method_attack = attack is None or (
            isinstance(attack, Mapping) and "kind" not in attack
        )
        self.attack_eps = attack_eps
        # the run's norm: the attack settings', or what a torchattacks attack declares
        self.attack_norm = declared_norm(attack, self.attack_settings)
        if eval_eps is not None:
            check_real("eval_eps", eval_eps, low=0.0, low_inclusive=False)
        if eval_norm is not None:
            check_choice("eval_norm", eval_norm, NORMS)
        # validation follows the run's norm (L-inf when it is unknown) unless told otherwise,
        # and then the training attack's eps only where the norms agree
        self.eval_norm = eval_norm or self.attack_norm or "Linf"
        same_norm = self.eval_norm == (self.attack_norm or "Linf")
        self.eval_eps = eval_eps if eval_eps is not None else (attack_eps if same_norm else None)
        self.eval_eps_missing = (
            f"eval_norm={self.eval_norm!r} is not the training attack's norm "
            f"{self.attack_norm!r}, so the training eps does not apply; pass eval_eps, the "
            "validation budget in that norm"
            if not same_norm
            else "the training attack's eps is unknown; pass eval_eps, the validation budget"
        )
        self.history: list[dict[str, Any]] = []
        self._generator = torch.Generator()
        self._classifier_wrapper: Any = None
        self._input_shape: tuple[int, ...] | None = None
        self._num_classes = 0
        self._train_model: nn.Module = self.student
        self._kept_in_eval: list[nn.Module] = []

    def config(self) -> dict[str, Any]:
        """The method's settings that change the result (part of the run's fingerprint)."""
        settings = self.full_attack_settings  # the full budget, also mid-schedule
        teacher_batch = self._fingerprinted_teacher_batch()
        return {
            "method": self.method,
            "seed": self.seed,
            "teacher_targets": self.teacher_targets,
            "cache_refresh_epochs": self.cache_refresh_epochs,
            "attack": self.attack_description if settings is None else vars(settings),
            "bounds": list(self.bounds),
            # only when set, so that earlier runs' fingerprints (and resumes) still match
            **({} if teacher_batch is None else {"teacher_batch_size": teacher_batch}),
            # only when on, so that the fingerprints of runs without a schedule are unchanged
            **({"eps_warmup_epochs": self.eps_warmup_epochs} if self.eps_warmup_epochs else {}),
            # only when on (CPU runs' fingerprints unchanged): bf16 changes the weights
            **({"amp": True} if self.amp else {}),
            # only when set: a resume with another explicit setting differs in float rounding
            **({} if self.fold_teacher is None else {"fold_teacher": self.fold_teacher}),
            # only when a dict names it: it replaces the method's own attack (RSLAD's KL, ...)
            **({} if self.uses_method_attack else {"attack_kind": self._attack_kind}),
        }

    def _fingerprinted_teacher_batch(self) -> int | None:
        """The teacher's chunk size when it shapes the cached targets and is not the
        default: ``teacher_batch_size`` when set, else a non-default ``eval_batch_size`` of
        a cached-targets run (DPGD's batch-reduced Dice makes the teacher's example depend
        on its chunk, so a resume under another ``eval_batch_size`` must be refused, not
        mixed). None leaves the fingerprints of default runs as they were."""
        if self.teacher_batch_size is not None:
            return int(self.teacher_batch_size)
        if self.teacher_targets == "cached" and self.eval_batch_size != DEFAULT_EVAL_BATCH_SIZE:
            return int(self.eval_batch_size)
        return None

    def _schedule_attack(self, epoch: int | None) -> dict[str, float]:
        """Set the student's attack for ``epoch`` under ``eps_warmup_epochs`` (``None``: back
        to the full budget); returns what the epoch's history records."""
        if self.eps_warmup_epochs is None or self.full_attack_settings is None:
            return {}
        if epoch is None:
            self.attack, self.attack_settings = self.full_attack, self.full_attack_settings
            return {}
        settings = scheduled_settings(self.full_attack_settings, epoch, self.eps_warmup_epochs)
        self.attack_settings = settings
        self.attack = build_attack(self._attack_kind, settings, self.bounds)
        return {"attack_eps": settings.budget}

    # ----------------------------------------------------------------- ART interface
    def fit(
        self,
        x: np.ndarray | torch.Tensor,
        y: np.ndarray | torch.Tensor,
        validation_data: tuple[Any, Any] | None = None,
        batch_size: int = 128,
        nb_epochs: int = 20,
        scheduler: Any = None,
        *,
        augment: BatchAugment | None = None,
        **kwargs: Any,
    ) -> list[dict[str, Any]]:
        """Train on arrays ``x`` (N, C, H, W) inside ``bounds`` and labels ``y`` (class
        indices of shape (N,) or (N, 1), or one-hot rows as wide as the model has classes:
        ``dard_plugin/_labels.py``). All of ``x`` and ``y`` are checked before training.
        ``scheduler`` steps once per epoch. A later ``fit`` continues the run (its epochs
        numbered on, with their own seeds and schedules: ``fit(nb_epochs=1)`` three times
        trains what ``fit(nb_epochs=3)`` trains); with ``resume=True`` the checkpoint holds
        the run and ``nb_epochs`` is its length. Returns the run's per-epoch history, this
        call's epochs after the earlier ones."""
        if kwargs:
            raise TypeError(f"fit got unexpected arguments {sorted(kwargs)}")
        check_int("batch_size", batch_size, minimum=1)
        check_int("nb_epochs", nb_epochs, minimum=1)
        check_augment_layout(augment, self._classifier)
        images = as_images(x, "x")
        self._check_images("x", images)
        labels = read_labels("y", y, num_examples=images.shape[0])  # classes: on the probe
        world, rank = distributed()
        check_last_batch(self.student, images, batch_size, self._frozen_modules(), world)
        loader = make_loader(
            images,
            labels.indices,
            batch_size=batch_size,
            shuffle=True,
            augment=augment,
            seed=self.seed,
            num_replicas=world,
            rank=rank,
        )
        source = BatchSource(loader, labels=labels)
        return self._train(source, nb_epochs, scheduler, validation_data, batch_size)

    def fit_generator(
        self,
        generator: Any,
        nb_epochs: int = 20,
        scheduler: Any = None,
        validation_data: tuple[Any, Any] | None = None,
        *,
        batch_keys: Sequence[str] | None = None,
        **kwargs: Any,
    ) -> list[dict[str, Any]]:
        """Train from an ART ``DataGenerator``, a torch ``DataLoader`` or any iterable of
        ``(images, labels)`` pairs or dicts (keys ``"image"``/``"label"``,
        ``"images"``/``"labels"``, or ``batch_keys``). A one-shot iterator (a generator)
        trains one epoch only. ``teacher_targets="cached"`` needs a loader made by
        :func:`dard_plugin.data.make_loader` (so each image is known)."""
        if kwargs:
            raise TypeError(f"fit_generator got unexpected arguments {sorted(kwargs)}")
        check_int("nb_epochs", nb_epochs, minimum=1)
        source = BatchSource(generator, keys=batch_keys)
        source.check_epochs(nb_epochs)
        return self._train(source, nb_epochs, scheduler, validation_data, None)

    def attack_from_noise(self, model: Any, batch: Batch, objective: Objective) -> torch.Tensor:
        """PGD on ``objective`` at the run's attack settings from ``x + 0.001 N(0, 1)``
        (``training.attacks.attack_from_noise``, noise from the run's generator): the inner
        maximisation of RSLAD's, AdaAD's and MTARD's code."""
        settings = self.attack_settings or AttackSettings()
        return attack_from_noise(model, batch, objective, settings, self._generator, self.bounds)

    def _check_images(self, name: str, images: torch.Tensor) -> None:
        try:
            check_images(name, images, self.bounds)
        except ValueError as error:
            raise ValueError(f"{error}; the trainer's bounds are {self.bounds} (bounds=)") from None
