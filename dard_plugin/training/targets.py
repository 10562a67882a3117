"""Teacher targets: what the teacher provides for a batch, ``online`` (computed for the
exact batch the student sees) or ``cached`` (computed once per training image, on the
un-augmented image, and looked up by index). The cache is keyed by a fingerprint of the
training images and of the teacher: other images or another teacher rebuild it."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from typing import Any

import torch

from dard_plugin._validation import check_choice, check_int
from dard_plugin.training.batches import Batch

logger = logging.getLogger(__name__)

TEACHER_TARGETS = ("online", "cached")
Outputs = Callable[[torch.Tensor, torch.Tensor], Mapping[str, torch.Tensor]]


class TeacherTargets:
    """The teacher's outputs named ``names`` for each batch."""

    def __init__(
        self,
        mode: str,
        names: tuple[str, ...],
        refresh_epochs: int | None = None,
        owner: str = "the trainer",
    ) -> None:
        self.mode = check_choice("teacher_targets", mode, TEACHER_TARGETS)
        if self.mode == "cached" and not names:
            raise ValueError(
                f"teacher_targets='cached' stores the teacher's outputs on the training "
                f"images, and {owner} with these settings reads none (each teacher query is "
                "on an example the student's attack makes, e.g. AdaAD with alpha=1): it "
                "would run online while recorded as cached; use 'online'"
            )
        if refresh_epochs is not None:
            check_int("cache_refresh_epochs", refresh_epochs, minimum=1)
            if self.mode != "cached":
                raise ValueError(
                    f"cache_refresh_epochs={refresh_epochs} applies to teacher_targets='cached' "
                    f"only (got teacher_targets={mode!r}, which asks the teacher every batch)"
                )
        self.refresh_epochs = refresh_epochs
        self.names = names
        self.cache: dict[str, torch.Tensor] | None = None
        self.cache_epoch = -1
        self.key: dict[str, Any] | None = None

    @property
    def cached(self) -> bool:
        return self.mode == "cached" and bool(self.names)

    def due(self, epoch: int, key: Mapping[str, Any]) -> bool:
        if self.cache is None or self.key != key:
            return True
        every = self.refresh_epochs
        return every is not None and epoch - self.cache_epoch >= every

    def build(
        self,
        images: torch.Tensor,
        labels: torch.Tensor,
        outputs: Outputs,
        *,
        epoch: int,
        key: Mapping[str, Any],
        batch_size: int,
    ) -> None:
        """Teacher outputs for every training image, ``batch_size`` at a time."""
        started = time.perf_counter()
        parts: dict[str, list[torch.Tensor]] = {name: [] for name in self.names}
        for start in range(0, images.shape[0], batch_size):
            found = outputs(images[start : start + batch_size], labels[start : start + batch_size])
            for name in self.names:
                parts[name].append(found[name].detach().float().cpu())
        self.cache = {name: torch.cat(chunks) for name, chunks in parts.items()}
        self.cache_epoch, self.key = epoch, dict(key)
        logger.info(
            "cached teacher outputs for %d images in %.1f s",
            images.shape[0],
            time.perf_counter() - started,
        )

    def for_batch(self, batch: Batch, outputs: Outputs, device: torch.device) -> dict[str, Any]:
        if not self.names:
            return {}
        if self.mode == "online":
            return dict(outputs(batch.images, batch.labels))
        assert self.cache is not None and batch.indices is not None
        indices = batch.indices.to(self.cache[self.names[0]].device)
        return {name: self.cache[name][indices].to(device) for name in self.names}

    def state(self) -> dict[str, Any]:
        return {"cache": self.cache, "cache_epoch": self.cache_epoch, "cache_key": self.key}

    def load_state(self, state: Mapping[str, Any]) -> None:
        if state.get("cache") is not None:
            self.cache = dict(state["cache"])
            self.cache_epoch = int(state["cache_epoch"])
            self.key = state.get("cache_key")
