"""Argument checks shared by every face of the package.

Each check raises a ``ValueError`` or ``TypeError`` whose message names the argument and
the value it expects, so that bad input fails before any work is done.
"""

from __future__ import annotations

import math
import numbers
import sys
import warnings
from collections.abc import Sequence

import torch

Bounds = tuple[float, float] | tuple[torch.Tensor, torch.Tensor]


def check_choice(name: str, value: object, choices: Sequence[str]) -> str:
    if not isinstance(value, str) or value not in choices:
        raise ValueError(f"{name} must be one of {list(choices)}, got {value!r}")
    return value


def check_int(name: str, value: object, *, minimum: int, maximum: int | None = None) -> int:
    expected = f">= {minimum}" if maximum is None else f"in [{minimum}, {maximum}]"
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an int {expected}, got {type(value).__name__}")
    if int(value) < minimum or (maximum is not None and int(value) > maximum):
        raise ValueError(f"{name} must be an int {expected}, got {value}")
    return int(value)


def check_not_inference_mode(what: str) -> None:
    """Input gradients, which ``torch.inference_mode()`` forbids and ``torch.enable_grad()``
    cannot lift: refused by name (torch's own error, "element 0 of tensors does not require
    grad", names neither)."""
    if torch.is_inference_mode_enabled():
        raise RuntimeError(
            f"{what} needs input gradients, which torch.inference_mode() forbids (and "
            "torch.enable_grad() cannot lift): run it outside inference mode (no_grad is fine)"
        )


# torch's CPU generator keeps a seed's low 32 bits (seed 2**32 trained what seed 0 trains),
# and the loaders' per-epoch generators take 3 of them for their streams (seed + 2**29
# shuffled and cropped as seed): seeds below 2**29 are distinct everywhere
MAX_SEED = 2**29 - 1


def check_bool(name: str, value: object) -> bool:
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be a bool, got {type(value).__name__}")
    return value


def check_real(
    name: str,
    value: object,
    *,
    low: float | None = None,
    high: float | None = None,
    low_inclusive: bool = True,
    high_inclusive: bool = True,
) -> float:
    """A finite real number inside [low, high] (bounds optionally exclusive)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__}")
    number = float(value)
    lo = "[" if low_inclusive and low is not None else "("  # an infinite end is open
    hi = "]" if high_inclusive and high is not None else ")"
    expected = f"{lo}{'-inf' if low is None else low}, {'inf' if high is None else high}{hi}"
    too_low = low is not None and (number < low or (not low_inclusive and number == low))
    too_high = high is not None and (number > high or (not high_inclusive and number == high))
    if not math.isfinite(number) or too_low or too_high:
        raise ValueError(f"{name} must be a finite number in {expected}, got {value}")
    return number


def check_budget(
    name: str,
    value: float | torch.Tensor,
    *,
    batch_size: int | None,
    positive: bool,
    image_ndim: int | None = None,
) -> float | torch.Tensor:
    """A perturbation budget or step size: a number, one value per sample (shape (B,)), or,
    where ``image_ndim`` is given, a tensor with that many dimensions that broadcasts
    against the images (per sample and per feature, e.g. (B, 1, 1, 1) or (1, C, H, W))."""
    rule = "> 0" if positive else ">= 0"
    if isinstance(value, torch.Tensor):
        if value.ndim == 0:
            return check_budget(name, float(value), batch_size=batch_size, positive=positive)
        broadcast = image_ndim is not None and value.ndim == image_ndim and value.ndim > 1
        if broadcast:
            if batch_size is not None and value.shape[0] not in (1, batch_size):
                raise ValueError(
                    f"{name} as a {image_ndim}-d tensor must broadcast against the images: "
                    f"first dimension 1 or {batch_size}, got {tuple(value.shape)}"
                )
        elif value.ndim != 1 or (batch_size is not None and value.shape[0] != batch_size):
            expected = "a number or one value per sample, shape (batch_size,)"
            if batch_size is not None:
                expected += f" = ({batch_size},)"
            if image_ndim is not None:
                expected += f", or a {image_ndim}-d tensor that broadcasts against the images"
            raise ValueError(f"{name} must be {expected}; got shape {tuple(value.shape)}")
        if not value.is_floating_point():
            raise TypeError(f"{name} as a tensor must be floating point, got {value.dtype}")
        bad = ~torch.isfinite(value) | ((value <= 0) if positive else (value < 0))
        if bool(bad.any()):
            shown = value.flatten()[:8].tolist()
            raise ValueError(f"every {name} must be finite and {rule}, got values like {shown}")
        return value
    if positive:
        return check_real(name, value, low=0.0, low_inclusive=False)
    return check_real(name, value, low=0.0)


def check_bounds(name: str, bounds: object) -> Bounds | None:
    """None (unbounded inputs), a pair of numbers ``(low, high)``, or a pair of tensors
    broadcasting against the images (per-feature bounds, as ART's ``clip_values``)."""
    if bounds is None:
        return None
    if not isinstance(bounds, (tuple, list)) or len(bounds) != 2:
        raise ValueError(f"{name} must be None or a pair (low, high), got {bounds!r}")
    if any(isinstance(b, torch.Tensor) and b.ndim > 0 for b in bounds):
        low_t, high_t = (torch.as_tensor(b, dtype=torch.float64) for b in bounds)
        if not bool(torch.isfinite(low_t).all() & torch.isfinite(high_t).all()):
            raise ValueError(f"{name} must be finite")
        try:
            ordered = bool((low_t < high_t).all())
        except RuntimeError as error:
            raise ValueError(f"{name}: low and high do not broadcast: {error}") from None
        if not ordered:
            raise ValueError(f"{name} must satisfy low < high for every feature")
        return (bounds[0], bounds[1])
    low = check_real(f"{name}[0]", bounds[0])
    high = check_real(f"{name}[1]", bounds[1])
    if not low < high:
        raise ValueError(f"{name} must satisfy low < high, got {bounds!r}")
    return (low, high)


def bounds_range(bounds: Bounds) -> float:
    """The widest ``high - low`` of the bounds (numbers or per-feature tensors)."""
    low, high = bounds
    if isinstance(low, torch.Tensor) or isinstance(high, torch.Tensor):
        widths = torch.as_tensor(high, dtype=torch.float64) - torch.as_tensor(
            low, dtype=torch.float64
        )
        return float(widths.max())
    return float(high - low)


def round_off_tolerance(dtype: torch.dtype, bounds: Bounds) -> float:
    """How far outside ``bounds`` an input may lie and still count as inside: a rounding
    error (1e-6 of the range for float32 and wider, one unit of the last place for half
    precision), such as torchattacks' inverse normalization leaves on black pixels."""
    return max(1e-6, float(torch.finfo(dtype).eps)) * max(1.0, bounds_range(bounds))


def check_images(name: str, images: object, bounds: Bounds | None) -> torch.Tensor:
    """A finite floating batch inside ``bounds``. Values outside by no more than a rounding
    error (:func:`round_off_tolerance`) are accepted and clipped, as torchattacks' and ART's
    PGD effectively do; the returned tensor is then a clipped copy (the input is never
    modified), otherwise the input itself."""
    if not isinstance(images, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(images).__name__}")
    if not images.is_floating_point():
        raise TypeError(f"{name} must be a floating point tensor, got dtype {images.dtype}")
    if images.ndim < 2:
        raise ValueError(f"{name} must have shape (batch_size, ...), got {tuple(images.shape)}")
    if images.shape[0] == 0:
        raise ValueError(f"{name} must hold at least one example, got batch size 0")
    if not bool(torch.isfinite(images).all()):
        raise ValueError(f"{name} must not contain NaN or inf values")
    if bounds is None:
        return images
    low, high = bounds
    tolerance = round_off_tolerance(images.dtype, bounds)
    low_t = torch.as_tensor(low, dtype=images.dtype, device=images.device)
    high_t = torch.as_tensor(high, dtype=images.dtype, device=images.device)
    below = float((low_t - images.detach()).max())  # detached: no autograd warning
    above = float((images.detach() - high_t).max())
    if below > tolerance or above > tolerance:
        shown = (
            f"[{low}, {high}]" if not isinstance(low, torch.Tensor) else "the per-feature bounds"
        )
        raise ValueError(
            f"{name} must lie in {shown} (normalization belongs inside the model), "
            f"got values in [{float(images.detach().min()):.4g}, "
            f"{float(images.detach().max()):.4g}]"
        )
    if below > 0 or above > 0:
        return torch.maximum(torch.minimum(images, high_t), low_t)
    return images


LARGEST_COMMON_LINF_EPS = 0.3  # MNIST's L-inf budget, the largest in common use, on [0, 1]
_EQUAL_TOLERANCE = 1e-6  # a float32 rounding of the range still counts as the range
# the start of the warnings check_eps_plausible gives, for a face that judged the budget once
BUDGET_WARNING = r".*(equals the whole input range|is above 0\.3 of the input range)"


def check_eps_plausible(
    eps: float | torch.Tensor,
    bounds: Bounds | None = (0.0, 1.0),
    *,
    norm: str = "Linf",
    num_features: int | None = None,
    input_shape: Sequence[int] | None = None,
    name: str = "eps",
    l2_hint: str = 'norm="L2"',
) -> None:
    """Refuse a budget larger than the whole input range; warn on one equal to it or
    implausibly large.

    The one budget check of the package (the attacks, their faces, the trainers through
    the attacks, ``evaluate`` and the command line). Budgets are judged per feature
    against the range R of the bounds: the budget itself for L-inf, the root mean square
    ``eps / sqrt(num_features)`` for L2 and the mean ``eps / num_features`` for L1, so the
    whole range is R for L-inf and the box's L2 (``R * sqrt(d)``) or L1 (``R * d``)
    diameter otherwise.

    - above the whole range: a ``ValueError`` naming ``name`` and the likely slip (a budget
      in 0-255 pixel units, ``eps=8`` for ``8/255``; an L2 budget given to the L-inf
      attack, switched on by ``l2_hint`` in the caller's words);
    - equal to it (within a float32 rounding): accepted, as ART's PGD accepts it (ART's own
      tests pass ``eps=1.0`` on [0, 1]), with a ``UserWarning`` naming the same slips;
    - above 0.3 R (the largest L-inf budget in common use, MNIST's 0.3 on [0, 1]): a
      ``UserWarning``.

    For L2 and L1, ``num_features`` may be given as the per-example ``input_shape``;
    nothing is checked when neither is known. Unbounded inputs (``bounds=None``) are not
    checked. Per-sample or per-feature budgets are judged by their largest value.
    """
    if bounds is None:
        return
    if input_shape is not None:
        num_features = math.prod(input_shape)
    largest = float(eps.max()) if isinstance(eps, torch.Tensor) else float(eps)
    full_range = bounds_range(bounds)
    if norm in ("L2", "L1"):
        if num_features is None:
            return
        scale = math.sqrt(num_features) if norm == "L2" else float(num_features)
        per_feature = largest / scale
        shape = f"inputs of shape {tuple(input_shape)}, " if input_shape is not None else ""
        measure = (
            f"{name} / sqrt({num_features}) = {per_feature:.4g} per feature"
            if norm == "L2"
            else f"{name} / {num_features} = {per_feature:.4g} per feature"
        )
        unit = (
            f" ({measure}; the {norm} diameter of the box is {full_range * scale:.4g} for "
            f"{shape}{num_features} features)"
        )
        slips = (
            "did you mean 0.5 (CIFAR-10's L2 budget)?"
            if norm == "L2"
            else "did you mean 12 (CIFAR-10's L1 budget)?"
        )
    else:
        unit = ""
        per_feature = largest
        slips = _linf_slips(largest, full_range, l2_hint)
    if per_feature > full_range * (1 + _EQUAL_TOLERANCE):
        raise ValueError(
            f"{name}={largest:g}{unit} covers the whole input range {full_range:g} of the "
            f"bounds and more: every input is reachable. Budgets are in the units of the "
            f"inputs (pixel values in [0, 1]); {slips}"
        )
    if per_feature >= full_range * (1 - _EQUAL_TOLERANCE):
        warnings.warn(
            f"{name}={largest:g}{unit} equals the whole input range {full_range:g} of the "
            f"bounds: every input in the bounds is reachable, so the budget constrains "
            f"nothing. Accepted (ART's PGD accepts it too); if it is a slip, {slips}",
            UserWarning,
            stacklevel=_caller_stacklevel(),
        )
        return
    # the tolerance keeps a float32 0.3 (0.30000001) from warning
    if per_feature > LARGEST_COMMON_LINF_EPS * full_range * (1 + _EQUAL_TOLERANCE):
        warnings.warn(
            f"{name}={largest:g}{unit} is above {LARGEST_COMMON_LINF_EPS:g} of the input range "
            f"{full_range:g}, larger than any {norm} budget in common use; {slips}",
            UserWarning,
            stacklevel=_caller_stacklevel(),
        )


def _linf_slips(eps: float, full_range: float, l2_hint: str) -> str:
    """The likely slips behind a large L-inf budget: a whole number on [0, 1] inputs is a
    budget in 0-255 pixel units; any other value may be an L2 budget."""
    common = "L-inf budgets in common use are 8/255 (CIFAR-10) and 0.3 (MNIST)"
    pixel_units = full_range <= 1 + _EQUAL_TOLERANCE and 1 <= eps <= 255 and eps == round(eps)
    l2 = f"if {eps:g} is an L2 budget, use the L2 attack ({l2_hint})"
    if pixel_units:
        pixels = (
            f"did you mean {eps:g}/255 = {eps / 255:.4g} (a budget in 0-255 pixel units; {common})"
        )
        return f"{pixels}, or, {l2}?" if eps <= 2 else f"{pixels}?"
    if eps > LARGEST_COMMON_LINF_EPS * full_range:
        return f"{l2}; {common}."
    return f"did you mean 8/255 ({common})?"


def _caller_stacklevel() -> int:
    """The ``stacklevel`` that points a warning at the first frame outside this package."""
    frame = sys._getframe(1)
    level = 1
    while frame is not None and frame.f_globals.get("__name__", "").startswith("dard_plugin"):
        frame = frame.f_back  # type: ignore[assignment]
        level += 1
    return level


def check_labels(
    name: str, labels: object, batch_size: int, num_classes: int | None = None
) -> torch.Tensor:
    if not isinstance(labels, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(labels).__name__}")
    if labels.dtype.is_floating_point or labels.dtype.is_complex or labels.dtype == torch.bool:
        raise TypeError(f"{name} must be an integer tensor of class indices, got {labels.dtype}")
    if labels.shape != (batch_size,):
        raise ValueError(
            f"{name} must have shape (batch_size,) = ({batch_size},), got {tuple(labels.shape)}"
        )
    if num_classes is not None:
        check_label_range(name, labels, num_classes)
    return labels.long()  # uint8 or int16 indices too: the losses gather with int64


def check_label_range(name: str, labels: torch.Tensor, num_classes: int) -> None:
    if labels.numel() and (int(labels.min()) < 0 or int(labels.max()) >= num_classes):
        raise ValueError(
            f"{name} must be class indices in [0, {num_classes - 1}] for a model with "
            f"{num_classes} outputs, got values in [{int(labels.min())}, {int(labels.max())}]"
        )


def check_logits(logits: object, batch_size: int, *, warn: bool = True) -> torch.Tensor:
    """The model's output must be a (B, K) tensor of logits; warn on probabilities (unless
    ``warn`` is False: a caller that warns itself, at its own stack level)."""
    if not isinstance(logits, torch.Tensor):
        raise TypeError(f"model must return a torch.Tensor, got {type(logits).__name__}")
    if logits.ndim != 2 or logits.shape[0] != batch_size or logits.shape[1] < 2:
        raise ValueError(
            f"model must return logits of shape (batch_size, num_classes) = ({batch_size}, K) "
            f"with K >= 2, got {tuple(logits.shape)}"
        )
    if warn:
        warn_if_probabilities(logits)
    return logits


def refuse_nan_logits(logits: torch.Tensor, what: str = "the model's logits hold NaN") -> None:
    """A model whose logits on the first images hold NaN (``what`` says so) is refused:
    argmax reads an all-NaN row as class 0, so the share of that class would be reported as
    accuracy. (-inf, a masked class, is a logit argmax reads correctly.)"""
    if logits.isnan().any():
        raise ValueError(
            f"{what} on the first images (a diverged training?); their argmax would be "
            "scored as class 0, the share of that class reported as accuracy"
        )


def warn_if_probabilities(outputs: torch.Tensor) -> None:
    """AutoAttack's check: rows that are non-negative and sum to one are not logits."""
    with torch.no_grad():
        detached = outputs.detach().float()
        sums = detached.sum(dim=1)
        if bool((detached >= 0).all()) and bool(torch.allclose(sums, torch.ones_like(sums))):
            warnings.warn(
                "the model's outputs look like probabilities (non-negative rows summing to 1); "
                "attacks and losses here expect logits, so gradients may vanish",
                UserWarning,
                stacklevel=4,
            )
