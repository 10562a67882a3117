"""The attack loop's fast path: its one gradient computation compiled with ``torch.compile``.

The projected gradient loop (``attacks/pgd.py``) asks :func:`gradient_function` for the
function that computes the model's logits and the objective's input gradient at a step
(``pgd._loss_gradient``). Outside :func:`compiled_attacks` that is the plain function
itself. Inside, it is the same function compiled by ``torch.compile`` (with
``torch._dynamo.config.trace_autograd_ops`` on where torch has it, so forward, objective and
input-gradient backward are one graph; ``mode="reduce-overhead"`` also captures it in CUDA
graphs). The algorithm stays written once: the fast path compiles the loop's own step
function, it does not restate it. The update and projection stay eager (a few element-wise
kernels per step against the model's hundreds).

Static shapes: a compiled graph is used for the first batch shape it sees per model (the
training batch) and the plain function for any other (the last, smaller batch of an
epoch), so a graph is never recompiled for one odd batch and a captured CUDA graph never
sees another shape. The plain function also runs the first step of the first call per
model and shape, with the loop's checks of the model's output before the objective, so a
wrong model fails with the same clear error as on the plain path. Should the compiler
itself fail (an operation it cannot handle), a warning is logged and the plain function
runs from then on.

``compile_attack=None`` (the trainers' default) resolves through :data:`FASTEST` per
device type: the plain path everywhere until a measurement shows the compiled one faster
(issue 24; ``benchmarks/gpu_smoke.py`` measures both).
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
import weakref
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

logger = logging.getLogger(__name__)

COMPILE_MODES = (None, "default", "reduce-overhead", "max-autotune-no-cudagraphs")
# Whether the compiled attack step is the faster one, by device type (the auto default).
# CPU: 0.91x the time per DPGD call on a small CNN, but 82 s to compile, which short runs
# never win back (docs/performance.md). CUDA: not measured yet (issue 24); plain until
# benchmarks/gpu_smoke.py shows otherwise.
FASTEST: dict[str, bool] = {"cpu": False, "cuda": False}
# Graphs per compiled function: (model, batch shape) pairs times the two compilations of
# the step counter (static at the first call, symbolic after); the default 8 is too few
# for a teacher and a student at two batch shapes.
_RECOMPILE_LIMIT = 64

LossGradient = Callable[..., tuple[torch.Tensor, torch.Tensor]]


@dataclass(frozen=True)
class CompileSettings:
    """How the attack step is compiled: ``mode`` is ``torch.compile``'s (None: default;
    ``"reduce-overhead"``: also CUDA graphs)."""

    mode: str | None = None


_ACTIVE: contextvars.ContextVar[CompileSettings | None] = contextvars.ContextVar(
    "dard_plugin_compiled_attacks", default=None
)


def check_compile_mode(mode: object) -> str | None:
    if mode not in COMPILE_MODES:
        raise ValueError(f"compile_mode must be one of {list(COMPILE_MODES)}, got {mode!r}")
    return None if mode == "default" else mode


def resolve_compile(request: bool | None, device: torch.device) -> bool:
    """``request`` when given, else whether the compiled step is the faster on ``device``."""
    if request is not None:
        if not isinstance(request, bool):
            raise TypeError(f"compile_attack must be a bool or None, got {request!r}")
        return request
    return FASTEST.get(device.type, False)


def resolve_compile_settings(
    request: bool | None, mode: object, device: torch.device
) -> tuple[bool, str | None]:
    """``(compile, mode)`` for a trainer: a ``mode`` set for a step that is not compiled
    (``compile_attack=False``, or None resolving to the plain step on ``device``) would
    change nothing and is refused."""
    enabled, mode = resolve_compile(request, device), check_compile_mode(mode)
    if mode is not None and not enabled:
        raise ValueError(
            f"compile_mode={mode!r} applies to the compiled attack step, which "
            f"compile_attack={request!r} does not run on {device.type}: pass "
            "compile_attack=True, or drop compile_mode"
        )
    return enabled, mode


@contextlib.contextmanager
def compiled_attacks(enabled: bool = True, *, mode: str | None = None) -> Iterator[None]:
    """Inside the block, the package's attack functions (:func:`~dard_plugin.attacks.dpgd`,
    ``dpgd_l2``, ``pgd_linf``, ``pgd_l2``) run their gradient step compiled when the model
    is an ``nn.Module`` (``enabled``; ``mode``: ``torch.compile``'s). The torchattacks and
    ART faces pass the loop a callable, which stays plain. The trainers' ``compile_attack``
    option sets it for their attacks::

        with compiled_attacks():
            adversarial = dpgd(model, images, labels)
    """
    mode = check_compile_mode(mode)
    token = _ACTIVE.set(CompileSettings(mode) if enabled else None)
    try:
        yield
    finally:
        _ACTIVE.reset(token)


class _StaticShapeStep:
    """The compiled step for one model: one batch shape compiled, the rest plain."""

    def __init__(self, plain: LossGradient, settings: CompileSettings) -> None:
        self.plain = plain
        self.compiled = torch.compile(plain, mode=settings.mode)
        self.shape: tuple[int, ...] | None = None  # the one compiled shape
        self.checked: set[tuple[int, ...]] = set()
        self.calls = {"compiled": 0, "plain": 0}  # for tests and benchmarks
        self.failed = False  # the compiler failed once: plain from then on

    def __call__(
        self,
        model: Any,
        objective: Any,
        adversarial: torch.Tensor,
        labels: torch.Tensor,
        step: int,
        steps: int,
        model_dtype: torch.dtype,
        check: Callable[[torch.Tensor], None] | None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        shape = tuple(adversarial.shape)
        if self.shape is None:
            self.shape = shape
        if shape != self.shape or (check is not None and shape not in self.checked):
            # another shape (the last batch), or the first look at this model's output
            self.calls["plain"] += 1
            self.checked.add(shape)
            return self.plain(
                model, objective, adversarial, labels, step, steps, model_dtype, check
            )
        if self.failed:
            self.calls["plain"] += 1
            return self.plain(
                model, objective, adversarial, labels, step, steps, model_dtype, check
            )
        try:
            with _compile_config():
                logits, gradient = self.compiled(
                    model, objective, adversarial, labels, step, steps, model_dtype, None
                )
        except torch._dynamo.exc.TorchDynamoException:  # the compiler, not the model, failed
            logger.warning("compiling the attack step failed; the plain step runs", exc_info=True)
            self.failed = True
            self.calls["plain"] += 1
            return self.plain(
                model, objective, adversarial, labels, step, steps, model_dtype, check
            )
        self.calls["compiled"] += 1
        if check is not None:
            check(logits)
        return logits, gradient


def _compile_config() -> contextlib.AbstractContextManager[Any]:
    config = torch._dynamo.config
    settings: dict[str, Any] = {"recompile_limit": _RECOMPILE_LIMIT}
    if hasattr(config, "trace_autograd_ops"):  # torch >= 2.11: backward inside the graph
        settings["trace_autograd_ops"] = True
    settings = {k: v for k, v in settings.items() if hasattr(config, k)}
    return config.patch(settings)


# one compiled step per (model, mode); weak, so a model's graphs go with the model
_STEPS: weakref.WeakKeyDictionary[nn.Module, dict[str | None, _StaticShapeStep]] = (
    weakref.WeakKeyDictionary()
)


def gradient_function(plain: LossGradient, model: object) -> LossGradient:
    """``plain`` itself, or (inside :func:`compiled_attacks`, for an ``nn.Module``) its
    compiled, static-shape form for ``model``."""
    settings = _ACTIVE.get()
    if settings is None or not isinstance(model, nn.Module):
        return plain
    by_mode = _STEPS.setdefault(model, {})
    if settings.mode not in by_mode:
        by_mode[settings.mode] = _StaticShapeStep(plain, settings)
    return by_mode[settings.mode]


def compiled_step_calls(model: nn.Module) -> dict[str, int]:
    """How often the compiled step ran compiled and plain for ``model`` (all modes)."""
    totals = {"compiled": 0, "plain": 0}
    for step in _STEPS.get(model, {}).values():
        for key, value in step.calls.items():
            totals[key] += value
    return totals


__all__ = [
    "COMPILE_MODES",
    "FASTEST",
    "CompileSettings",
    "check_compile_mode",
    "compiled_attacks",
    "compiled_step_calls",
    "gradient_function",
    "resolve_compile",
    "resolve_compile_settings",
]
