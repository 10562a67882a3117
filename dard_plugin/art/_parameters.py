"""The parameters and ``generate`` inputs of :class:`~dard_plugin.art.DicePGD`, checked and
converted by the rules of ART's ``ProjectedGradientDescent``.

:func:`check_parameters` is the attack's ``_check_params`` after ``EvasionAttack``'s own
(ART's PGD checks with ART's messages, then DPGD's); the rest turns what ``generate`` is
given into what the torch loop takes: the supported norms, ``random_eps`` draws, per-batch
``eps``/``eps_step`` (one radius per sample for L2), masks and label indices.
"""

from __future__ import annotations

from typing import Any, Protocol

import numpy as np
import torch
from art.attacks.evasion.projected_gradient_descent.projected_gradient_descent_numpy import (
    ProjectedGradientDescentCommon,
)
from art.config import ART_NUMPY_DTYPE
from art.defences.preprocessor.preprocessor import PreprocessorPyTorch
from art.utils import check_and_transform_label_format
from scipy.stats import truncnorm

from dard_plugin._validation import check_eps_plausible
from dard_plugin.art._classifier import clip_values_numpy
from dard_plugin.attacks.dpgd import DPGD_REDUCTIONS


class DicePGDParameters(Protocol):
    """What these checks read of a :class:`~dard_plugin.art.DicePGD` (a protocol, so that
    this module does not import the attack it serves)."""

    @property
    def estimator(self) -> Any: ...
    @property
    def eps(self) -> Any: ...
    @property
    def norm(self) -> Any: ...
    @property
    def num_random_init(self) -> Any: ...
    @property
    def random_eps(self) -> Any: ...
    @property
    def reduction(self) -> Any: ...
    @property
    def generator(self) -> Any: ...
    @property
    def targeted(self) -> Any: ...


# ART's norm values -> the package's loop (L1 with ART's own L1 geometry); other p >= 1
# are valid in ART but have no steepest-ascent step here (ART itself only rescales for them)
SUPPORTED_NORMS: dict[float, str] = {float("inf"): "Linf", 2.0: "L2", 1.0: "L1"}


def norm_value(norm: object) -> float:
    """ART's ``norm`` (``np.inf``, ``"inf"`` or a number) as a float."""
    return float("inf") if norm == "inf" else float(norm)  # type: ignore[arg-type]


def loop_norm(norm: object) -> str:
    """The package loop's name (``"Linf"`` or ``"L2"``) of a supported ART ``norm``."""
    return SUPPORTED_NORMS[norm_value(norm)]


def check_parameters(attack: DicePGDParameters) -> None:
    """Everything ``DicePGD._check_params`` checks after ``EvasionAttack._check_params``."""
    # types ART's checks compare without checking first
    for name in ("max_iter", "batch_size"):
        value = getattr(attack, name)
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
            raise ValueError(f"`{name}` must be an integer, got {value!r}")
    if isinstance(attack.num_random_init, bool) or not isinstance(
        attack.num_random_init, (int, np.integer)
    ):
        raise TypeError(
            f"`num_random_init` must be an integer >= 0, got {attack.num_random_init!r}"
        )
    if attack.num_random_init < 0:
        raise ValueError(f"`num_random_init` must be >= 0, got {attack.num_random_init}")
    # ART's own checks, with ART's messages and exception types
    ProjectedGradientDescentCommon._check_params(attack)
    # ART lets NaN and inf through (its comparisons are False for NaN): named here, before
    # the loop would name its own argument (alpha)
    for name in ("eps", "eps_step"):
        if not np.isfinite(getattr(attack, name)).all():
            raise ValueError(f"`{name}` must be finite, got {getattr(attack, name)!r}")
    if norm_value(attack.norm) not in SUPPORTED_NORMS:
        raise ValueError(
            f"DicePGD supports norm in {['inf', np.inf, 2, 1]}, got {attack.norm!r} (ART's other "
            "p >= 1 only rescale the gradient; no Dice variant is defined for them)"
        )
    if not isinstance(attack.random_eps, bool):
        raise ValueError(f"The flag `random_eps` has to be of type bool, got {attack.random_eps!r}")
    if attack.reduction not in DPGD_REDUCTIONS:
        raise ValueError(
            f"`reduction` must be one of {list(DPGD_REDUCTIONS)}, got {attack.reduction!r}"
        )
    if attack.generator is not None and not isinstance(attack.generator, torch.Generator):
        raise ValueError(f"`generator` must be a torch.Generator or None, got {attack.generator!r}")
    for operation in attack.estimator.preprocessing_operations:
        if not isinstance(operation, PreprocessorPyTorch):
            raise ValueError(
                "estimator preprocessing must be PyTorch-native (PreprocessorPyTorch) so "
                f"the attack can stay in torch, got {type(operation).__name__}"
            )
    bounds = clip_values_numpy(attack.estimator)
    if bounds is not None:
        largest = float(np.max(attack.eps))
        width = float(np.max(np.asarray(bounds[1]) - np.asarray(bounds[0])))
        features = int(np.prod(attack.estimator.input_shape))
        check_eps_plausible(
            largest,
            (0.0, width),
            norm=loop_norm(attack.norm),
            num_features=features,
            l2_hint="norm=2",
        )


def check_inputs(attack: DicePGDParameters, x: np.ndarray, y: np.ndarray | None) -> None:
    """``generate``'s checks of ``x`` (a numpy batch of the estimator's input shape), of
    ``y`` (required when targeted) and of ``eps`` against ``x``."""
    if not isinstance(x, np.ndarray):
        raise TypeError(f"x must be a numpy array, got {type(x).__name__}")
    if x.ndim < 2 or x.shape[0] == 0:
        raise ValueError(f"x must hold at least one example, got shape {x.shape}")
    expected = tuple(attack.estimator.input_shape)
    if tuple(x.shape[1:]) != expected:
        raise ValueError(
            f"x must have shape (N, *input_shape) = (N, {', '.join(map(str, expected))}) "
            f"for this estimator, got {x.shape}"
        )
    if attack.targeted and y is None:
        raise ValueError("Target labels `y` need to be provided for a targeted attack.")
    if isinstance(attack.eps, np.ndarray) and attack.eps.ndim > x.ndim:
        raise ValueError("The `eps` shape must be broadcastable to input shape.")


def draw_eps(
    eps: float | np.ndarray,
    eps_step: float | np.ndarray,
    random_eps: bool,
    generator: torch.Generator | None = None,
) -> tuple[float | np.ndarray, float | np.ndarray]:
    """ART's ``random_eps``: eps from a normal truncated to [0, eps] with scale eps/2,
    drawn from numpy's global generator (ART's), or from a numpy state seeded by
    ``generator`` when one is given; eps_step keeps its ratio to eps. A zero budget
    (where nothing may move, and ART divides by zero) stays zero with its eps_step."""
    if not random_eps:
        return eps, eps_step
    state = None
    if generator is not None:
        seed = torch.randint(0, 2**31, (1,), generator=generator, device=generator.device)
        state = np.random.RandomState(int(seed))
    if isinstance(eps, (int, float)):
        if eps == 0:
            return 0.0, eps_step
        distribution = truncnorm(0.0, 2.0, loc=0.0, scale=eps / 2)
        drawn = float(np.round(distribution.rvs(1, random_state=state)[0], 10))
        return drawn, eps_step / eps * drawn
    positive = eps > 0
    safe = np.where(positive, eps, 1.0)  # zero budgets drawn at a dummy scale, then dropped
    scale = safe / 2
    distribution = truncnorm(np.zeros_like(safe), safe / scale, loc=0.0, scale=scale)
    drawn_array = np.where(
        positive, np.round(distribution.rvs(size=eps.shape, random_state=state), 10), 0.0
    )
    step = np.where(positive, eps_step / safe * drawn_array, eps_step)
    return drawn_array, step


def per_batch(
    value: float | np.ndarray, x: np.ndarray, start: int, stop: int, device: torch.device
) -> float | torch.Tensor:
    """ART's rule: an array with ``x``'s dimensions whose first is the number of
    samples is sliced per batch; any other array broadcasts (leading ones added)."""
    if not isinstance(value, np.ndarray):
        return float(value)
    if value.ndim == x.ndim and value.shape[0] == x.shape[0]:
        value = value[start:stop]
    value = value.reshape((1,) * (x.ndim - value.ndim) + value.shape)
    return torch.as_tensor(value, dtype=torch.float32, device=device)


def for_norm(
    value: float | torch.Tensor, batch: torch.Tensor, norm: object
) -> float | torch.Tensor:
    """For L2 and L1 an array budget must be one value per sample (ART: "weighted L_p
    ball not supported with finite norm"); it becomes a (B,) tensor for the loop."""
    if not isinstance(value, torch.Tensor) or norm_value(norm) == float("inf"):
        return value
    full = value.expand(batch.shape).reshape(batch.shape[0], -1)
    if not bool((full == full[:, :1]).all()):
        raise ValueError(
            f"with norm={norm}, eps and eps_step arrays must hold one value per sample (a "
            "weighted L1 or L2 ball is not supported, as in ART)"
        )
    return full[:, 0].contiguous()


def batch_budget(
    value: float | np.ndarray,
    x: np.ndarray,
    start: int,
    stop: int,
    batch: torch.Tensor,
    norm: object,
) -> float | torch.Tensor:
    """``eps`` or ``eps_step`` for the batch ``x[start:stop]`` (already on its device), in
    the form the loop takes for ``norm``: :func:`per_batch`, then :func:`for_norm`."""
    return for_norm(per_batch(value, x, start, stop, batch.device), batch, norm)


def mask_from_kwargs(x: np.ndarray, kwargs: dict[str, Any]) -> np.ndarray | None:
    """``generate``'s keyword ``mask``, with ART's checks."""
    mask = kwargs.get("mask")
    if mask is None:
        return None
    if not isinstance(mask, np.ndarray):
        raise ValueError(f"`mask` must be a numpy array, got {type(mask).__name__}")
    if mask.ndim > np.ndim(x):
        raise ValueError("Mask shape must be broadcastable to input shape.")
    if not (np.issubdtype(mask.dtype, np.floating) or mask.dtype == bool):
        raise ValueError(
            f"The `mask` has to be either of type np.float32, np.float64 or bool, got {mask.dtype}."
        )
    if np.issubdtype(mask.dtype, np.floating) and np.amin(mask) < 0.0:
        raise ValueError("The `mask` of a floating type must hold only zero or positive values.")
    try:
        broadcast = np.broadcast_shapes(mask.shape, np.shape(x))
    except ValueError:
        broadcast = None
    if broadcast != np.shape(x):
        raise ValueError(
            f"`mask` must broadcast against x of shape {np.shape(x)} (or have its shape), "
            f"got shape {mask.shape}"
        )
    return mask


def mask_batch(
    mask: np.ndarray | None, x: np.ndarray, start: int, stop: int, device: torch.device
) -> torch.Tensor | None:
    """The batch's slice of ``mask`` (one mask per sample when it has ``x``'s dimensions
    and length, as in ART; a leading 1 broadcasts over every batch), as a tensor
    broadcasting against the batch."""
    if mask is None:
        return None
    if mask.ndim == x.ndim and mask.shape[0] == x.shape[0]:
        mask = mask[start:stop]
    mask = mask.reshape((1,) * (x.ndim - mask.ndim) + mask.shape)
    return torch.as_tensor(mask.astype(ART_NUMPY_DTYPE), device=device)


def label_indices(y: np.ndarray, n: int, nb_classes: int) -> torch.Tensor:
    """Indices from ``y`` through ART's ``check_and_transform_label_format``, after
    checking its length and, for one-hot rows, their width against ``nb_classes``."""
    y = np.asarray(y)
    if y.ndim not in (1, 2) or y.shape[0] != n:
        raise ValueError(
            f"y must have shape ({n},) or ({n}, 1) (indices) or ({n}, nb_classes) "
            f"(one-hot), got {y.shape}"
        )
    if y.ndim == 2 and y.shape[1] > 1 and y.shape[1] != nb_classes:
        raise ValueError(
            f"y has {y.shape[1]} columns but the estimator has nb_classes={nb_classes}: "
            f"one-hot labels must have shape ({n}, {nb_classes})"
        )
    if not np.issubdtype(y.dtype, np.integer) and not np.all(np.equal(np.mod(y, 1), 0)):
        raise ValueError("y must hold integer class indices or one-hot rows")
    if y.ndim == 1 or y.shape[1] == 1:
        flat = y.reshape(-1)
        if flat.size and (flat.min() < 0 or flat.max() >= nb_classes):
            raise ValueError(
                f"labels must be class indices in [0, {nb_classes - 1}] for nb_classes="
                f"{nb_classes}, got values in [{flat.min()}, {flat.max()}]"
            )
    if y.ndim == 2 and y.shape[1] > 1:
        # the package's one-hot rule: 0s and one 1 per row (ART would read an all-zero row
        # as class 0 and a row with two 1s as the first of them, silently)
        bad = np.flatnonzero(~(np.isin(y, (0, 1)).all(axis=1) & (y.sum(axis=1) == 1)))
        if bad.size:
            raise ValueError(
                f"one-hot labels y must hold 0s and exactly one 1 per row; row {bad[0]} is "
                f"{y[bad[0]].tolist()} ({bad.size} such rows): pass class indices, or fix them"
            )
    onehot = check_and_transform_label_format(y, nb_classes=nb_classes)
    return torch.from_numpy(np.argmax(onehot, axis=1).astype(np.int64))
