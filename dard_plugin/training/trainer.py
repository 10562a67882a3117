"""The shared adversarial (distillation) training loop, as an ART ``Trainer``.

One loop serves every method. A method (``training/methods.py``) says what the teacher
provides for a batch (:meth:`AdversarialTrainerBase.teacher_outputs`), how the student's
adversarial examples are made (:meth:`~AdversarialTrainerBase.craft_adversarial`) and
what the loss is (:meth:`~AdversarialTrainerBase.compute_loss`). The loop owns the rest:
data, devices, AMP, DistributedDataParallel, seeding, validation, history, checkpoints.
"""

from __future__ import annotations

import logging
import math
import time
import warnings
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from art.defences.trainer.trainer import Trainer
from torch import nn
from tqdm.auto import tqdm

from dard_plugin._validation import (
    check_bool,
    check_choice,
    check_images,
    check_int,
    check_label_range,
    check_real,
)
from dard_plugin.data.loaders import (
    BatchAugment,
    EpochBatchSampler,
    TensorPairs,
    make_loader,
    set_loader_epoch,
)
from dard_plugin.evaluation.attacks import PGD10, SUITE, SuiteAttack, accuracy_flags
from dard_plugin.training.attacks import AttackSettings, resolve_attack
from dard_plugin.training.checkpointing import (
    CHECKPOINT_NAME,
    FORMAT_VERSION,
    load_checkpoint_state,
    save_checkpoint,
    write_json,
)

logger = logging.getLogger(__name__)

TEACHER_TARGETS = ("online", "cached")
VALIDATION: dict[str, SuiteAttack] = {"pgd": PGD10, "dpgd": SUITE["dpgd"]}
EVAL_ATTACKS = tuple(VALIDATION)


@dataclass
class Batch:
    """A training batch; ``indices`` into the training set when the loop knows them."""

    images: torch.Tensor
    labels: torch.Tensor
    indices: torch.Tensor | None = None


def _epoch_seed(seed: int, epoch: int) -> int:
    return (seed * 1_000_003 + epoch) % (2**63 - 1)


def _distributed() -> tuple[int, int]:
    """(world size, rank): (1, 0) unless torch.distributed is initialised (torchrun)."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_world_size(), torch.distributed.get_rank()
    return 1, 0


class AdversarialTrainerBase(Trainer):
    """Shared loop of :class:`SATTrainer`, :class:`ARDTrainer`, :class:`RSLADTrainer` and
    :class:`DARDTrainer`.

    Args:
        classifier: an ART ``PyTorchClassifier`` (its model and optimizer are used) or a
            plain ``nn.Module`` taking [0, 1] inputs (then pass ``optimizer``).
        teacher: the frozen teacher (``nn.Module`` or ART classifier); put in eval mode
            (with a warning if it was training) and never updated.
        optimizer: the student's optimizer when ``classifier`` is a plain module.
        attack: the student's training attack: None (the method's default, METHOD.md's
            eps 8/255, step 2/255, 10 steps), a dict of ``eps``/``alpha``/``steps`` (and
            ``kind``: ``"dpgd"`` or ``"pgd"``), a torchattacks attack built on the student,
            or a callable ``(model, images, labels, generator) -> adversarial images``.
        teacher_targets: ``"online"`` computes the teacher's outputs for the exact batch the
            student sees (cost: for DARD, a teacher DPGD attack per batch); ``"cached"``
            computes them once per training image, on the un-augmented image, and reuses
            them (recomputed every ``cache_refresh_epochs`` epochs if given).
        seed: seeds shuffling, augmentation, random starts and (inside each epoch only)
            the global RNG used by dropout; the caller's global RNG state is restored.
        device: where to train (default: the student's device; never assumed to be CUDA).
        amp: bf16 autocast (default: on when training on CUDA).
        channels_last: channels-last memory format for 4-D image batches, student and
            teacher. ``None`` (default): on whenever both models run a channels-last batch
            (checked on the first batch; a model that cannot, e.g. one calling ``.view`` on
            a conv output, falls back to contiguous). It pays on CPU too: 1.1x to 2.2x per
            attack-and-train step for the registry's models, measured in
            ``docs/performance.md``.
        eval_attack: validation attack, ``"pgd"`` (PGD-10 on CE, random start) or
            ``"dpgd"``, at the training eps (``eval_eps`` when the attack's eps is unknown).
        checkpoint_dir: write ``checkpoint.pt`` (model, optimizer, scheduler, history,
            cached targets) and ``history.json`` atomically at the end of every epoch.
        resume: continue from ``checkpoint_dir`` (same configuration required).
        history_path: also write the per-epoch history to this JSON file.
        verbose: tqdm progress bar per epoch.
    """

    method: ClassVar[str] = "base"
    needs_teacher: ClassVar[bool] = True
    default_attack: ClassVar[str] = "pgd"
    teacher_output_names: ClassVar[tuple[str, ...]] = ()

    def __init__(
        self,
        classifier: Any,
        teacher: Any = None,
        *,
        optimizer: torch.optim.Optimizer | None = None,
        attack: Any = None,
        teacher_targets: str = "online",
        cache_refresh_epochs: int | None = None,
        seed: int = 0,
        device: str | torch.device | None = None,
        amp: bool | None = None,
        channels_last: bool | None = None,
        eval_attack: str = "pgd",
        eval_eps: float | None = None,
        eval_batch_size: int = 256,
        checkpoint_dir: str | Path | None = None,
        resume: bool = False,
        history_path: str | Path | None = None,
        verbose: bool = True,
    ) -> None:
        super().__init__(classifier)
        self.student, self.optimizer = self._unpack_student(classifier, optimizer)
        self.teacher = self._unpack_teacher(teacher)
        self.teacher_targets = check_choice("teacher_targets", teacher_targets, TEACHER_TARGETS)
        if cache_refresh_epochs is not None:
            check_int("cache_refresh_epochs", cache_refresh_epochs, minimum=1)
        self.cache_refresh_epochs = cache_refresh_epochs
        self.seed = check_int("seed", seed, minimum=0)
        self.eval_attack = check_choice("eval_attack", eval_attack, EVAL_ATTACKS)
        self.eval_batch_size = check_int("eval_batch_size", eval_batch_size, minimum=1)
        self.resume = check_bool("resume", resume)
        self.verbose = check_bool("verbose", verbose)
        self.checkpoint_dir = Path(checkpoint_dir) if checkpoint_dir is not None else None
        if resume and self.checkpoint_dir is None:
            raise ValueError("resume=True needs checkpoint_dir (where the checkpoint is)")
        self.history_path = Path(history_path) if history_path is not None else None

        self.device = torch.device(device) if device is not None else self._module_device()
        on_cuda = self.device.type == "cuda"
        self.amp = check_bool("amp", on_cuda if amp is None else amp)
        if channels_last is not None:
            check_bool("channels_last", channels_last)
        self._channels_last_request = channels_last
        # decided on the first batch when None (see _settle_memory_format)
        self.channels_last = bool(channels_last)
        self.attack, self.attack_settings, attack_eps = resolve_attack(
            attack, default_kind=self.default_attack, student=self.student
        )
        # None, or settings without "kind": the method's own attack at those settings
        self.uses_method_attack = attack is None or (
            isinstance(attack, Mapping) and "kind" not in attack
        )
        if eval_eps is not None:
            check_real("eval_eps", eval_eps, low=0.0, low_inclusive=False)
        self.eval_eps = eval_eps if eval_eps is not None else attack_eps
        self.history: list[dict[str, Any]] = []
        self._generator = torch.Generator()
        self._cache: dict[str, torch.Tensor] | None = None
        self._cache_epoch = -1
        self._classifier_wrapper: Any = None

    # ----------------------------------------------------------------- method hooks
    def teacher_outputs(
        self, images: torch.Tensor, labels: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        """The teacher's outputs a method needs for ``images`` (no gradient)."""
        return {}

    def craft_adversarial(self, batch: Batch, targets: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """The student's adversarial examples (the student is in eval mode here)."""
        return self.attack(self.student, batch.images, batch.labels, self._generator)

    def compute_loss(
        self, batch: Batch, adversarial: torch.Tensor, targets: Mapping[str, torch.Tensor]
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The loss to minimise and its named terms (the student is in train mode)."""
        raise NotImplementedError

    def config(self) -> dict[str, Any]:
        """What must match for a checkpoint to be resumed."""
        settings = self.attack_settings
        return {
            "method": self.method,
            "seed": self.seed,
            "teacher_targets": self.teacher_targets,
            "cache_refresh_epochs": self.cache_refresh_epochs,
            "attack": None if settings is None else vars(settings),
        }

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
        """Train on arrays ``x`` (N, C, H, W) in [0, 1] and labels ``y`` (indices or
        one-hot). ``scheduler`` steps once per epoch. Returns the per-epoch history."""
        if kwargs:
            raise TypeError(f"fit got unexpected arguments {sorted(kwargs)}")
        check_int("batch_size", batch_size, minimum=1)
        check_int("nb_epochs", nb_epochs, minimum=1)
        images, labels = self._as_tensors(x, y, "x", "y")
        check_images("x", images, (0.0, 1.0))
        world, rank = _distributed()
        loader = make_loader(
            images,
            labels,
            batch_size=batch_size,
            shuffle=True,
            augment=augment,
            seed=self.seed,
            num_replicas=world,
            rank=rank,
        )
        return self._train(
            loader,
            nb_epochs,
            scheduler,
            validation_data,
            cache_source=(images, labels),
            batch_size=batch_size,
        )

    def fit_generator(
        self,
        generator: Any,
        nb_epochs: int = 20,
        scheduler: Any = None,
        validation_data: tuple[Any, Any] | None = None,
        **kwargs: Any,
    ) -> list[dict[str, Any]]:
        """Train from an ART ``DataGenerator`` or a torch ``DataLoader`` yielding
        ``(images, labels)``. ``teacher_targets="cached"`` needs a loader made by
        :func:`dard_plugin.data.make_loader` (so each image is known)."""
        if kwargs:
            raise TypeError(f"fit_generator got unexpected arguments {sorted(kwargs)}")
        check_int("nb_epochs", nb_epochs, minimum=1)
        cache_source = None
        dataset = getattr(generator, "dataset", None)
        if isinstance(dataset, TensorPairs):
            cache_source = (dataset.images, dataset.labels)
        return self._train(
            generator,
            nb_epochs,
            scheduler,
            validation_data,
            cache_source=cache_source,
            batch_size=None,
        )

    def get_classifier(self) -> Any:
        """The trained classifier: the ART classifier given, or one wrapping the module."""
        if not isinstance(self._classifier, nn.Module):
            return self._classifier
        if self._classifier_wrapper is None:
            from art.estimators.classification import PyTorchClassifier

            if self._input_shape is None:
                raise RuntimeError("get_classifier needs fit() to have seen the data first")
            self._classifier_wrapper = PyTorchClassifier(
                model=self.student,
                loss=nn.CrossEntropyLoss(),
                optimizer=self.optimizer,
                input_shape=self._input_shape,
                nb_classes=self._num_classes,
                clip_values=(0.0, 1.0),
                device_type="gpu" if self.device.type == "cuda" else "cpu",
            )
        return self._classifier_wrapper

    # ----------------------------------------------------------------- the loop
    _input_shape: tuple[int, ...] | None = None
    _num_classes: int = 0

    def _train(
        self,
        source: Any,
        nb_epochs: int,
        scheduler: Any,
        validation_data: tuple[Any, Any] | None,
        *,
        cache_source: tuple[torch.Tensor, torch.Tensor] | None,
        batch_size: int | None,
    ) -> list[dict[str, Any]]:
        world, rank = _distributed()
        if self.teacher_targets == "cached" and cache_source is None:
            raise ValueError(
                "teacher_targets='cached' needs fit(x, y) or a loader from "
                "dard_plugin.data.make_loader, so that each training image is known"
            )
        validation = None
        if validation_data is not None:
            validation = self._as_tensors(
                *validation_data, "validation_data[0]", "validation_data[1]"
            )
            check_images("validation_data[0]", validation[0], (0.0, 1.0))
        first = next(iter(self._batches(source)))
        self._check_first_batch(first)
        if validation is not None:
            check_label_range("validation_data[1]", validation[1], self._num_classes)
        if self.eval_eps is None and validation is not None:
            raise ValueError("eval_eps must be given: the attack's eps is unknown")

        self.student.to(self.device)
        if self.teacher is not None:
            self.teacher.to(self.device)
        self._settle_memory_format(first)
        start_epoch = self._restore(
            scheduler, fingerprint=self._fingerprint(batch_size, cache_source)
        )
        train_model: nn.Module = self.student
        if world > 1:
            ids = [self.device.index] if self.device.type == "cuda" else None
            train_model = nn.parallel.DistributedDataParallel(self.student, device_ids=ids)
        self._train_model = train_model

        for epoch in range(start_epoch, nb_epochs):
            started = time.perf_counter()
            set_loader_epoch(source, epoch)
            self._generator.manual_seed(_epoch_seed(self.seed, epoch))
            fork_devices = [self.device] if self.device.type == "cuda" else []
            with torch.random.fork_rng(devices=fork_devices, device_type=self.device.type):
                torch.manual_seed(_epoch_seed(self.seed, epoch))
                if self.teacher_targets == "cached" and self._cache_due(epoch):
                    assert cache_source is not None
                    self._build_cache(*cache_source, epoch)
                sums = self._run_epoch(source, epoch, nb_epochs, rank)
            record: dict[str, Any] = {"epoch": epoch + 1}
            record.update(sums)
            record["lr"] = float(self.optimizer.param_groups[0]["lr"])
            if scheduler is not None:
                scheduler.step()
            record["seconds"] = time.perf_counter() - started
            if validation is not None and rank == 0:
                record.update(self._validate(*validation))
            self.history.append(record)
            if rank == 0:
                logger.info(
                    "%s epoch %d/%d: %s",
                    self.method,
                    epoch + 1,
                    nb_epochs,
                    ", ".join(f"{k}={v:.4g}" for k, v in record.items() if isinstance(v, float)),
                )
                self._save(epoch + 1, scheduler, batch_size, cache_source)
        return self.history

    def _run_epoch(self, source: Any, epoch: int, nb_epochs: int, rank: int) -> dict[str, float]:
        totals: dict[str, torch.Tensor] = {}
        count = 0
        batches = self._batches(source)
        progress = tqdm(
            batches,
            desc=f"{self.method} epoch {epoch + 1}/{nb_epochs}",
            disable=not self.verbose or rank != 0,
            total=self._length(source),
            leave=False,
        )
        for batch in progress:
            loss, terms = self._step(batch)
            count += 1
            for name, value in {"loss": loss, **terms}.items():
                totals[name] = totals.get(name, 0.0) + value.detach().float()
            if count % 20 == 0:
                progress.set_postfix(loss=f"{float(totals['loss']) / count:.4f}")
        return {name: float(total) / max(count, 1) for name, total in totals.items()}

    def _step(self, batch: Batch) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        autocast = torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.amp)
        with autocast:
            targets = self._targets(batch)
            self.student.eval()
            adversarial = self.craft_adversarial(batch, targets)
            self.student.train()
            loss, terms = self.compute_loss(batch, adversarial, targets)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        return loss, terms

    def student_logits(self, images: torch.Tensor) -> torch.Tensor:
        """The student's training forward (through DDP when distributed)."""
        logits: torch.Tensor = self._train_model(images)
        return logits

    def _targets(self, batch: Batch) -> dict[str, torch.Tensor]:
        if not self.teacher_output_names:
            return {}
        if self.teacher_targets == "online":
            return self.teacher_outputs(batch.images, batch.labels)
        assert self._cache is not None and batch.indices is not None
        indices = batch.indices.to(self._cache[self.teacher_output_names[0]].device)
        return {
            name: self._cache[name][indices].to(self.device) for name in self.teacher_output_names
        }

    def _cache_due(self, epoch: int) -> bool:
        if self._cache is None:
            return True
        every = self.cache_refresh_epochs
        return every is not None and epoch - self._cache_epoch >= every

    def _build_cache(self, images: torch.Tensor, labels: torch.Tensor, epoch: int) -> None:
        """Teacher outputs for every training image (un-augmented), computed once."""
        started = time.perf_counter()
        parts: dict[str, list[torch.Tensor]] = {name: [] for name in self.teacher_output_names}
        step = self.eval_batch_size
        for start in range(0, images.shape[0], step):
            x = self._to_device(images[start : start + step])
            y = labels[start : start + step].to(self.device)
            with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.amp):
                outputs = self.teacher_outputs(x, y)
            for name in self.teacher_output_names:
                parts[name].append(outputs[name].detach().float().cpu())
        self._cache = {name: torch.cat(chunks) for name, chunks in parts.items()}
        self._cache_epoch = epoch
        logger.info(
            "cached teacher outputs for %d images in %.1f s",
            images.shape[0],
            time.perf_counter() - started,
        )

    # ----------------------------------------------------------------- data
    def _batches(self, source: Any) -> Iterator[Batch]:
        sampler = getattr(source, "sampler", None)
        dataset = getattr(source, "dataset", None)
        if isinstance(sampler, EpochBatchSampler) and isinstance(dataset, TensorPairs):
            collate = source.collate_fn
            for indices in sampler:  # the DataLoader's own path, keeping the indices
                images, labels = collate(dataset[indices])
                yield Batch(self._to_device(images), labels.to(self.device), indices)
            return
        from art.data_generators import DataGenerator

        if isinstance(source, DataGenerator):
            iterator = getattr(source, "iterator", None)
            if isinstance(iterator, Iterable) and not isinstance(iterator, Iterator):
                source = iterator
            else:
                for _ in range(self._length(source) or 0):
                    images, labels = source.get_batch()
                    yield self._to_batch(images, labels)
                return
        for images, labels in source:
            yield self._to_batch(images, labels)

    def _length(self, source: Any) -> int | None:
        from art.data_generators import DataGenerator

        if isinstance(source, DataGenerator):
            if source.size is None:
                return None
            return math.ceil(source.size / source.batch_size)
        try:
            return len(source)
        except TypeError:
            return None

    def _to_batch(self, images: Any, labels: Any) -> Batch:
        images_t, labels_t = self._as_tensors(images, labels, "images", "labels")
        return Batch(self._to_device(images_t), labels_t.to(self.device))

    def _to_device(self, images: torch.Tensor) -> torch.Tensor:
        images = images.to(self.device, non_blocking=True)
        if self.channels_last and images.ndim == 4:
            images = images.contiguous(memory_format=torch.channels_last)
        return images

    @staticmethod
    def _as_tensors(x: Any, y: Any, x_name: str, y_name: str) -> tuple[torch.Tensor, torch.Tensor]:
        images = torch.as_tensor(np.asarray(x) if not isinstance(x, torch.Tensor) else x)
        labels = torch.as_tensor(np.asarray(y) if not isinstance(y, torch.Tensor) else y)
        if not images.is_floating_point():
            raise TypeError(f"{x_name} must hold floating point images in [0, 1]")
        images = images.float()
        if labels.ndim == 2:  # one-hot, as ART passes them
            labels = labels.argmax(dim=1)
        if labels.dtype.is_floating_point and not bool(torch.all(labels == labels.round())):
            raise ValueError(f"{y_name} must hold integer class indices or one-hot rows")
        labels = labels.long()
        if labels.shape != images.shape[:1]:
            raise ValueError(
                f"{y_name} must have one label per image: {images.shape[0]} images, "
                f"labels of shape {tuple(labels.shape)}"
            )
        return images, labels

    # ----------------------------------------------------------------- checks
    def _check_first_batch(self, batch: Batch) -> None:
        """Shapes and classes of student and teacher agree, before any training step."""
        check_images("images", batch.images, (0.0, 1.0))
        self._input_shape = tuple(batch.images.shape[1:])
        sample = batch.images[:2].to(self._module_device())
        with torch.no_grad():
            was_training = self.student.training
            self.student.eval()
            try:
                student_out = self.student(sample)
            except RuntimeError as error:
                raise ValueError(
                    f"the student cannot take inputs of shape {self._input_shape}: {error}"
                ) from None
            finally:
                self.student.train(was_training)
            if student_out.ndim != 2:
                raise ValueError(
                    f"the student must return (batch, classes) logits, got "
                    f"{tuple(student_out.shape)}"
                )
            self._num_classes = int(student_out.shape[1])
            if self.teacher is not None:
                teacher_device = next(iter(self.teacher.parameters()), sample).device
                try:
                    teacher_out = self.teacher(sample.to(teacher_device))
                except RuntimeError as error:
                    raise ValueError(
                        f"the teacher cannot take the training inputs of shape "
                        f"{self._input_shape}: {error}"
                    ) from None
                if teacher_out.shape[1:] != student_out.shape[1:]:
                    raise ValueError(
                        f"teacher and student disagree on the number of classes: teacher "
                        f"{teacher_out.shape[1]}, student {student_out.shape[1]}"
                    )
        check_label_range("labels", batch.labels, self._num_classes)

    def _settle_memory_format(self, batch: Batch) -> None:
        """Put student and teacher in channels-last format when asked, or, by default, when
        both run a channels-last batch (eval mode, no gradient: nothing changes)."""
        request = self._channels_last_request
        wanted = batch.images.ndim == 4 if request is None else request
        models = [m for m in (self.student, self.teacher) if m is not None]
        if not wanted:
            self.channels_last = False
            return
        for model in models:
            model.to(memory_format=torch.channels_last)
        self.channels_last = True
        if request is not None:
            return
        sample = batch.images[:2].to(self.device).contiguous(memory_format=torch.channels_last)
        try:
            with torch.no_grad():
                for model in models:
                    was_training = model.training
                    model.eval()
                    try:
                        model(sample)
                    finally:
                        model.train(was_training)
        except RuntimeError as error:
            logger.info("channels-last format off (a model cannot run it: %s)", error)
            for model in models:
                model.to(memory_format=torch.contiguous_format)
            self.channels_last = False

    def _module_device(self) -> torch.device:
        for tensor in (*self.student.parameters(), *self.student.buffers()):
            return tensor.device
        return torch.device("cpu")

    @staticmethod
    def _unpack_student(classifier: Any, optimizer: Any) -> tuple[nn.Module, torch.optim.Optimizer]:
        if isinstance(classifier, nn.Module):
            if optimizer is None:
                raise ValueError("optimizer must be given when classifier is a plain nn.Module")
            model = classifier
        else:
            from art.estimators.classification.pytorch import PyTorchClassifier

            if not isinstance(classifier, PyTorchClassifier):
                raise TypeError(
                    "classifier must be an ART PyTorchClassifier or an nn.Module, got "
                    f"{type(classifier).__name__}"
                )
            model = classifier.model
            optimizer = optimizer if optimizer is not None else classifier.optimizer
            if optimizer is None:
                raise ValueError("the ART classifier has no optimizer: pass optimizer=")
        if not isinstance(optimizer, torch.optim.Optimizer):
            raise TypeError(f"optimizer must be a torch.optim.Optimizer, got {type(optimizer)}")
        return model, optimizer

    def _unpack_teacher(self, teacher: Any) -> nn.Module | None:
        if not self.needs_teacher:
            if teacher is not None:
                raise ValueError(f"{type(self).__name__} takes no teacher")
            return None
        if teacher is None:
            raise ValueError(f"{type(self).__name__} needs a teacher")
        model = teacher if isinstance(teacher, nn.Module) else getattr(teacher, "model", None)
        if not isinstance(model, nn.Module):
            raise TypeError(
                f"teacher must be an nn.Module or an ART PyTorchClassifier, got "
                f"{type(teacher).__name__}"
            )
        if model is self._classifier or model is getattr(self._classifier, "model", None):
            raise ValueError("teacher and student must be different models")
        if model.training:
            warnings.warn(
                "the teacher was in train mode; it is put in eval mode (a teacher is frozen)",
                UserWarning,
                stacklevel=3,
            )
        return model.eval()

    # ----------------------------------------------------------------- validation
    def _validate(self, images: torch.Tensor, labels: torch.Tensor) -> dict[str, float]:
        assert self.eval_eps is not None
        was_training = self.student.training
        self.student.eval()
        flags = {}
        for name, attack in (("clean", None), (self.eval_attack, VALIDATION[self.eval_attack])):
            flags[name] = accuracy_flags(
                self.student,
                images,
                labels,
                attack,
                eps=self.eval_eps,
                batch_size=self.eval_batch_size,
                device=self.device,
                generator=torch.Generator().manual_seed(self.seed),
            )
        self.student.train(was_training)
        return {f"{name}_accuracy": float(f.float().mean()) for name, f in flags.items()}

    # ----------------------------------------------------------------- checkpoints
    def _fingerprint(
        self, batch_size: int | None, cache_source: tuple[torch.Tensor, torch.Tensor] | None
    ) -> dict[str, Any]:
        fingerprint = self.config()
        fingerprint["batch_size"] = batch_size
        fingerprint["n_train"] = None if cache_source is None else int(cache_source[0].shape[0])
        return fingerprint

    def _restore(self, scheduler: Any, *, fingerprint: dict[str, Any]) -> int:
        if not self.resume or self.checkpoint_dir is None:
            return 0
        path = self.checkpoint_dir / CHECKPOINT_NAME
        if not path.is_file():
            logger.info("no checkpoint at %s: starting from scratch", path)
            return 0
        state = load_checkpoint_state(path)
        if state["config"] != fingerprint:
            differing = sorted(
                k
                for k in set(state["config"]) | set(fingerprint)
                if state["config"].get(k) != fingerprint.get(k)
            )
            raise ValueError(
                f"resume: {path} was written by a different configuration (differs in "
                f"{differing}: checkpoint {[state['config'].get(k) for k in differing]}, now "
                f"{[fingerprint.get(k) for k in differing]}); use another checkpoint_dir"
            )
        self.student.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        if scheduler is not None and state.get("scheduler") is not None:
            scheduler.load_state_dict(state["scheduler"])
        self.history = list(state["history"])
        if state.get("cache") is not None:
            self._cache = {k: v for k, v in state["cache"].items()}
            self._cache_epoch = int(state["cache_epoch"])
        logger.info("resumed %s from %s after epoch %d", self.method, path, state["epoch"])
        return int(state["epoch"])

    def _save(
        self,
        epochs_done: int,
        scheduler: Any,
        batch_size: int | None,
        cache_source: tuple[torch.Tensor, torch.Tensor] | None,
    ) -> None:
        if self.history_path is not None:
            write_json(self.history_path, self.history)
        if self.checkpoint_dir is None:
            return
        state = {
            "format": FORMAT_VERSION,
            "config": self._fingerprint(batch_size, cache_source),
            "epoch": epochs_done,
            "model": self.student.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": scheduler.state_dict() if scheduler is not None else None,
            "history": self.history,
            "cache": self._cache,
            "cache_epoch": self._cache_epoch,
        }
        save_checkpoint(self.checkpoint_dir / CHECKPOINT_NAME, state)
        write_json(self.checkpoint_dir / "history.json", self.history)


__all__ = ["AdversarialTrainerBase", "AttackSettings", "Batch"]
