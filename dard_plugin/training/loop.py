"""The training loop itself: the epochs, the steps, the cache builds and the checkpoints,
in the order that makes a run reproducible bit for bit (and resumable at an epoch boundary).

Each epoch seeds the run's generator (random starts) and, inside ``fork_rng``, the global
RNG (dropout); shuffling and augmentation are seeded per epoch by the batch source. The
attributes it uses are set by :class:`~dard_plugin.training.trainer.AdversarialTrainerBase`.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any, ClassVar

import torch
from art.defences.trainer.trainer import Trainer
from torch import nn
from tqdm.auto import tqdm

from dard_plugin._validation import check_eps_plausible
from dard_plugin.attacks._fast import compiled_attacks
from dard_plugin.training import _checks, art_attacks, models
from dard_plugin.training.attacks import AttackSettings, TrainingAttack
from dard_plugin.training.batches import Batch, BatchSource, seeded_python_random
from dard_plugin.training.checkpointing import (
    Checkpointer,
    distributed,
    restore_run,
    run_fingerprint,
    save_run,
    validation_fingerprint,
)
from dard_plugin.training.targets import TeacherTargets
from dard_plugin.training.validation import check_validation_shape, read_validation, validate

logger = logging.getLogger(__name__)


def _epoch_seed(seed: int, epoch: int) -> int:
    return (seed * 1_000_003 + epoch) % (2**63 - 1)


class TrainingLoop(Trainer):
    """The loop; a method is a subclass that fills in the three hooks."""

    method: ClassVar[str] = "base"
    teacher_output_names: tuple[str, ...] = ()
    student: nn.Module
    teacher: nn.Module | None
    optimizer: torch.optim.Optimizer
    attack: TrainingAttack
    attack_settings: AttackSettings | None
    bounds: tuple[float, float]
    targets: TeacherTargets
    checkpointer: Checkpointer
    checkpoint_dir: Path | None
    device: torch.device
    amp: bool
    compile_attack: bool
    compile_mode: str | None
    teacher_batch_size: int | None
    channels_last: bool
    fold_teacher: bool | None
    seed: int
    resume: bool
    verbose: bool
    eval_attack: str
    eval_eps: float | None
    eval_eps_missing: str
    eval_norm: str
    attack_eps: float | None
    attack_norm: str | None
    eval_batch_size: int
    history: list[dict[str, Any]]
    _channels_last_request: bool | None
    _generator: torch.Generator
    _input_shape: tuple[int, ...] | None
    _num_classes: int
    _train_model: nn.Module
    _kept_in_eval: list[nn.Module]
    epochs_run: int = 0  # epochs trained by the last fit (0: resumed a finished run)
    epochs_trained: int = 0  # the run's epochs so far: a later fit continues from there
    epoch: int = 0  # the epoch being trained (0-based), for methods with a schedule
    nb_epochs: int = 1  # the number of epochs of the current fit

    @property
    def schedule_spans_run(self) -> bool:
        """Whether the method's schedule is a fraction of the run (IAD's start epoch, IGDM's
        weight): a resume under another ``nb_epochs`` is refused (it would train neither)."""
        return False

    frozen_model_names: tuple[str, ...] = ("teacher",)  # MTARD adds its natural teacher
    # called once per fit when every check has passed, before the first epoch (the recipes
    # delete an old run being overwritten there, so that a refused fit deletes nothing)
    before_training: Callable[[], None] | None = None

    def frozen_models(self) -> list[nn.Module]:
        """The frozen models (teachers) the method uses: moved to the device, put in the
        run's memory format, fingerprinted for resume, and queried during training through
        copies with their BatchNorm folded (``models.fold_batch_norm``)."""
        named = (getattr(self, name) for name in self.frozen_model_names)
        return [model for model in named if model is not None]

    def queried_model(self, model: nn.Module, sample: torch.Tensor) -> nn.Module:
        """What this ``fit`` queries for the frozen ``model``: a copy with BatchNorm folded
        (``models.fold_batch_norm``, checked on ``sample``) where ``fold_teacher`` is True,
        or None and the model is built of torch.nn's and this package's modules only
        (``models.pure_modules``); else ``model``. Made anew at every ``fit``, from the
        model's weights as they are then."""
        if self.fold_teacher is False or (
            self.fold_teacher is None and not models.pure_modules(model)
        ):
            return model
        folded = models.fold_batch_norm(model, sample)
        if folded is not model and self.channels_last:
            folded.to(memory_format=torch.channels_last)
        return folded

    def method_state(self) -> dict[str, Any]:
        """State a method carries from step to step (e.g. MTARD's adaptive weights):
        saved with every checkpoint and given back to :meth:`load_method_state`."""
        return {}

    def load_method_state(self, state: Mapping[str, Any]) -> None:
        """Restore what :meth:`method_state` returned."""

    # ----------------------------------------------------------------- method hooks
    def teacher_outputs(
        self, images: torch.Tensor, labels: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        """The teacher's outputs a method needs for ``images`` (no gradient). By default the
        teacher's logits on the natural images, ``"teacher_nat"``, where the method names
        it in ``teacher_output_names``; nothing otherwise."""
        if self.teacher is None or "teacher_nat" not in self.teacher_output_names:
            return {}
        with torch.no_grad():
            return {"teacher_nat": self.teacher(images)}

    def craft_adversarial(self, batch: Batch, targets: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """The student's adversarial examples (the student is in eval mode here)."""
        return self.attack(self.student, batch.images, batch.labels, self._generator)

    def compute_loss(
        self, batch: Batch, adversarial: torch.Tensor, targets: Mapping[str, torch.Tensor]
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The loss to minimise and its named terms (the student is in train mode)."""
        raise NotImplementedError

    def config(self) -> dict[str, Any]:
        """The method's settings that change the result (part of the run's fingerprint)."""
        raise NotImplementedError

    def _check_images(self, name: str, images: torch.Tensor) -> None:
        raise NotImplementedError

    def _schedule_attack(self, epoch: int | None) -> dict[str, float]:
        """Set the student's attack for ``epoch`` (None: after training); the history's
        entries for it (an epsilon schedule, see the trainer)."""
        return {}

    def student_logits(self, images: torch.Tensor) -> torch.Tensor:
        """The student's training forward (through DDP when distributed)."""
        logits: torch.Tensor = self._train_model(images)
        return logits

    # ----------------------------------------------------------------- the loop
    def _train(
        self,
        source: BatchSource,
        nb_epochs: int,
        scheduler: Any,
        validation_data: tuple[Any, Any] | None,
        batch_size: int | None,
    ) -> list[dict[str, Any]]:
        world, rank = distributed()
        _checks.check_scheduler(scheduler, self.optimizer)
        # a later fit continues the run; with resume=True the checkpoint holds it
        earlier = 0 if self.resume else self.epochs_trained
        _checks.check_continuation(type(self).__name__, earlier, self.schedule_spans_run)
        nb_epochs += earlier
        if self.targets.cached and source.known is None:
            raise ValueError(
                "teacher_targets='cached' needs fit(x, y) or a loader from "
                "dard_plugin.data.make_loader, so that each training image is known"
            )
        if rank == 0:
            self.checkpointer.check_writable()
        saved = self.checkpointer.read() if self.resume else None
        if saved is not None:
            self.checkpointer.check_epochs(saved, nb_epochs)
            if self.schedule_spans_run:
                self.checkpointer.check_run_length(saved, nb_epochs, self.method)
        validation = read_validation(
            validation_data, self.eval_eps, self.eval_eps_missing, self._check_images
        )
        # the probe of the first batch starts the source's iterator (a DataLoader draws its
        # seeds from the global RNG): inside a fork, seeded as epoch 0, so that the caller's
        # RNG is left as found and a one-shot source's first epoch follows the run's seed
        with torch.random.fork_rng(devices=[]), seeded_python_random(_epoch_seed(self.seed, 0)):
            torch.manual_seed(_epoch_seed(self.seed, 0))
            first = source.first(numpy_seed=_epoch_seed(self.seed, 0))
        self._input_shape = tuple(first.images.shape[1:])
        if validation is not None:
            check_validation_shape(validation[0], self._input_shape)
        self._check_budgets(self._input_shape, validating=validation is not None)
        # the student's classes check every label known so far before the teacher runs
        self._num_classes = models.student_classes(self.student, first.images, self.bounds)
        source.set_num_classes(self._num_classes)
        validation_labels = None
        if validation is not None:
            validation_labels = validation[1].check_classes(self._num_classes)
        for frozen, name in zip(self.frozen_models(), ("teacher", "second teacher"), strict=False):
            models.frozen_in_eval(frozen, name)  # MTARD's natural teacher is the second
            models.check_teacher(frozen, first.images, self._num_classes, name)
        fingerprint = run_fingerprint(self, source, scheduler, batch_size)

        self.student.to(self.device)
        for frozen in self.frozen_models():
            frozen.to(self.device)
        self.channels_last = models.settle_memory_format(
            [self.student, *self.frozen_models()],
            first.images,
            self.device,
            self._channels_last_request,
        )
        validation_print = validation_fingerprint(
            self,
            None
            if validation is None or validation_labels is None
            else (validation[0], validation_labels),
        )
        if not earlier:
            self.history = []  # this run's epochs: a resume restores the earlier ones
        self._kept_in_eval = self._frozen_modules()
        start_epoch = restore_run(self, scheduler, fingerprint, saved, validation_print) or earlier
        _checks.warn_if_nothing_to_resume(self.resume, self.epochs_trained, start_epoch, nb_epochs)
        if self.before_training is not None:
            self.before_training()
        self.epochs_run = max(0, nb_epochs - start_epoch)
        self._train_model = self.student
        if world > 1:
            ids = [self.device.index] if self.device.type == "cuda" else None
            self._train_model = nn.parallel.DistributedDataParallel(self.student, device_ids=ids)

        given = {name: getattr(self, name) for name in self.frozen_model_names}
        try:
            sample = self._to_device(first.images[:2])
            for name, model in given.items():  # the given teachers come back in `finally`
                if model is not None:
                    setattr(self, name, self.queried_model(model, sample))
            for epoch in range(start_epoch, nb_epochs):
                self.epoch, self.nb_epochs = epoch, nb_epochs
                started = time.perf_counter()
                batches = source.epoch(epoch, numpy_seed=_epoch_seed(self.seed, epoch))
                self._generator.manual_seed(_epoch_seed(self.seed, epoch))
                fork_devices = [self.device] if self.device.type == "cuda" else []
                with (
                    torch.random.fork_rng(devices=fork_devices, device_type=self.device.type),
                    seeded_python_random(_epoch_seed(self.seed, epoch)),
                ):
                    torch.manual_seed(_epoch_seed(self.seed, epoch))
                    key = {"data": fingerprint["data"], "teacher": fingerprint["teacher"]}
                    if self.targets.cached and self.targets.due(epoch, key):
                        assert source.known is not None
                        self._build_cache(*source.known, epoch=epoch, key=key)
                    record: dict[str, Any] = {"epoch": epoch + 1}
                    scheduled = self._schedule_attack(epoch)
                    record.update(self._run_epoch(batches, source.length, epoch, nb_epochs, rank))
                    record.update(scheduled)
                record["lr"] = float(self.optimizer.param_groups[0]["lr"])
                if scheduler is not None:
                    scheduler.step()
                record["seconds"] = time.perf_counter() - started
                _checks.end_epoch(self, epoch, record, world)  # finite; ranks' buffers
                if validation is not None and rank == 0:
                    assert self.eval_eps is not None and validation_labels is not None
                    record.update(
                        validate(
                            self.student,
                            validation[0],
                            validation_labels,
                            attack=self.eval_attack,
                            eps=self.eval_eps,
                            batch_size=self.eval_batch_size,
                            device=self.device,
                            seed=self.seed,
                            bounds=self.bounds,
                            norm=self.eval_norm,
                        )
                    )
                self.history.append(record)
                self.epochs_trained = epoch + 1
                if rank == 0:
                    floats = {k: v for k, v in record.items() if isinstance(v, float)}
                    shown = ", ".join(f"{k}={v:.4g}" for k, v in floats.items())
                    logger.info("%s epoch %d/%d: %s", self.method, epoch + 1, nb_epochs, shown)
                    save_run(self, epoch + 1, scheduler, fingerprint, validation_print)
        finally:
            # let go of the DDP wrapper (it holds the process group): left for interpreter
            # exit, after destroy_process_group, its teardown can abort the process
            self._train_model = self.student
            self._schedule_attack(None)
            for name, model in given.items():
                setattr(self, name, model)
        return list(self.history)  # a later fit does not change what this one returned

    def _run_epoch(
        self, batches: Any, length: int | None, epoch: int, nb_epochs: int, rank: int
    ) -> dict[str, float]:
        totals: dict[str, torch.Tensor] = {}
        count = 0
        progress = tqdm(
            batches,
            desc=f"{self.method} epoch {epoch + 1}/{nb_epochs}",
            disable=not self.verbose or rank != 0,
            total=length,
            leave=False,
        )
        for raw in progress:
            batch = Batch(self._to_device(raw.images), raw.labels.to(self.device), raw.indices)
            loss, terms = self._step(batch)
            count += 1
            for name, value in {"loss": loss, **terms}.items():
                totals[name] = totals.get(name, 0.0) + value.detach().float()
            if count % 20 == 0:
                progress.set_postfix(loss=f"{float(totals['loss']) / count:.4f}")
        if count == 0:
            logger.warning("%s epoch %d: the training data yielded no batch", self.method, epoch)
        return {name: float(total) / max(count, 1) for name, total in totals.items()}

    def _step(self, batch: Batch) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        with self._step_settings():
            targets = self.targets.for_batch(batch, self.teacher_outputs, self.device)
            self.student.eval()
            adversarial = self.craft_adversarial(batch, targets)
            models.train_mode(self.student, self._kept_in_eval)
            loss, terms = self.compute_loss(batch, adversarial, targets)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        return loss, terms

    def _build_cache(
        self, images: torch.Tensor, labels: torch.Tensor, *, epoch: int, key: dict[str, Any]
    ) -> None:
        def outputs(x: torch.Tensor, y: torch.Tensor) -> Mapping[str, torch.Tensor]:
            with self._step_settings():
                return self.teacher_outputs(self._to_device(x), y.to(self.device))

        batch_size = self.teacher_batch_size or self.eval_batch_size
        self.targets.build(images, labels, outputs, epoch=epoch, key=key, batch_size=batch_size)

    @contextlib.contextmanager
    def _step_settings(self) -> Iterator[None]:
        """bf16 autocast (``amp``) and the compiled attack step (``compile_attack``)."""
        with (
            torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.amp),
            compiled_attacks(self.compile_attack, mode=self.compile_mode),
        ):
            yield

    def _frozen_modules(self) -> list[nn.Module]:
        """The modules the caller froze (kept in eval), read at the run's first fit."""
        return self._kept_in_eval if self.epochs_trained else models.kept_in_eval(self.student)

    def _to_device(self, images: torch.Tensor) -> torch.Tensor:
        images = images.to(self.device, non_blocking=True)
        if self.channels_last and images.ndim == 4:
            images = images.contiguous(memory_format=torch.channels_last)
        return images

    # ----------------------------------------------------------------- checks
    def attack_budgets(self) -> list[tuple[str, float, str]]:
        """``(name, eps, norm)`` of every attack the method runs in training whose budget is
        known, checked for plausibility before the first batch trains."""
        settings = self.attack_settings
        if settings is not None:
            return [("attack['eps']", settings.budget, settings.norm)]
        if self.attack_eps is not None and self.attack_norm is not None:
            return [("attack.eps", self.attack_eps, self.attack_norm)]
        return []

    def _check_budgets(self, input_shape: tuple[int, ...], *, validating: bool) -> None:
        """Before any work: every budget against the bounds and input shape; no targeted attack."""
        art_attacks.check_untargeted(getattr(self.attack, "source_attack", None))
        budgets = self.attack_budgets()
        if validating:
            assert self.eval_eps is not None
            budgets.append(("eval_eps", self.eval_eps, self.eval_norm))
        for name, eps, norm in budgets:
            check_eps_plausible(eps, self.bounds, norm=norm, input_shape=input_shape, name=name)
