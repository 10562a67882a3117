"""DPGD as an ART evasion attack: a thin face over the package's projected gradient loop
(``attacks/pgd.py``) driven by the DPGD objective (``attacks/dpgd.py``).

Numpy in, numpy out, as every ART attack; inside, each batch stays in torch for all its
steps (no per-step numpy round trip) and only input gradients are computed, so the
estimator's parameters and their ``.grad`` are never touched. Parameters, their checks and
their meaning follow ART's ``ProjectedGradientDescent``; ART's own code is used where it
exists (its parameter checks, label handling, random initialisation and summary writer).
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from art.attacks.attack import EvasionAttack
from art.attacks.evasion.projected_gradient_descent.projected_gradient_descent_numpy import (
    ProjectedGradientDescentCommon,
)
from art.config import ART_NUMPY_DTYPE
from art.defences.preprocessor.preprocessor import PreprocessorPyTorch
from art.estimators.classification.pytorch import PyTorchClassifier
from art.preprocessing.standardisation_mean_std.pytorch import StandardisationMeanStdPyTorch
from art.preprocessing.standardisation_mean_std.utils import broadcastable_mean_std
from art.summary_writer import SummaryWriter
from art.utils import check_and_transform_label_format, random_sphere, to_categorical
from scipy.stats import truncnorm
from tqdm.auto import tqdm

from dard_plugin._validation import check_eps_plausible
from dard_plugin.attacks.dpgd import DPGD_REDUCTIONS, dpgd_objective
from dard_plugin.attacks.pgd import StepCallback, eval_mode, projected_gradient_descent

logger = logging.getLogger(__name__)

# ART's norm values -> the package's loop; other p >= 1 are valid in ART but have no
# steepest-ascent step here (ART itself only rescales for them)
_SUPPORTED_NORMS: dict[float, str] = {float("inf"): "Linf", 2.0: "L2"}


class _Standardise:
    """``(x - mean) / std`` broadcast by ART's own rule, with the tensors made once."""

    def __init__(self, mean: np.ndarray, std: np.ndarray, device: torch.device) -> None:
        self.mean, self.std, self.device = mean, std, device
        self._tensors: tuple[torch.Tensor, torch.Tensor] | None = None

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if self._tensors is None:
            mean, std = broadcastable_mean_std(x, self.mean, self.std)
            self._tensors = (
                torch.as_tensor(mean, device=self.device),
                torch.as_tensor(std, device=self.device),
            )
        mean_t, std_t = self._tensors
        return (x - mean_t) / std_t


def _forward_only_x(operation: PreprocessorPyTorch, x: torch.Tensor) -> torch.Tensor:
    result: torch.Tensor = operation.forward(x, None)[0]
    return result


def _norm_value(norm: object) -> float:
    return float("inf") if norm == "inf" else float(norm)  # type: ignore[arg-type]


class DicePGD(EvasionAttack):
    """Dice Projected Gradient Descent for ART's ``PyTorchClassifier``.

    The parameters are those of ART's ``ProjectedGradientDescent``, in its order, with its
    checks and meaning; DPGD's own are ``reduction`` and ``generator``.

    :param estimator: a ``PyTorchClassifier`` returning logits (or one logit for a binary
        classifier with ``nb_classes=2``: the two-class view ``[0, z]`` is attacked); its
        ``preprocessing`` (e.g. mean/std standardisation) and ``clip_values`` (numbers or
        per-feature arrays) are honoured.
    :param norm: ``np.inf``, ``"inf"`` or ``2`` (validated like ART's: a real ``p >= 1``;
        other values of p are refused with the supported list). With 2, the L2 loop of the
        package (normalized gradient step, projection onto the L2 ball, clip); the defaults
        of ``eps`` and ``eps_step`` are the L-inf ones, so pass L2 budgets explicitly (e.g.
        0.5 and 0.125 on CIFAR-10).
    :param eps: maximum perturbation: a number or an array broadcasting against ``x``
        (per feature; an array whose first dimension is the number of samples and with
        ``x``'s dimensions is per sample, as in ART).
    :param eps_step: step size per iteration, of the same type and shape as ``eps``.
    :param decay: momentum decay (ART's MI-FGSM accumulation of L1-normalized gradients),
        or None for none.
    :param max_iter: number of iterations (0 returns ``x`` unchanged, as ART).
    :param targeted: descend the Dice loss towards the labels ``y`` given to ``generate``.
    :param num_random_init: number of random initialisations in the eps ball (0: start at
        ``x``). After the first, a sample takes each later restart that succeeds, as in
        ART's PGD.
    :param batch_size: number of samples attacked together.
    :param random_eps: draw eps per ``generate`` call from a normal distribution truncated
        to [0, eps] (scale eps/2), scaling eps_step to keep eps/eps_step, as ART does.
    :param summary_writer: ART's TensorBoard summary writer (bool, path or a
        ``SummaryWriter``), fed the loss gradient at every iteration.
    :param verbose: show a progress bar over batches.
    :param reduction: ``"sample"`` (default: per-sample Dice, each image's result
        independent of ``batch_size``, as ART users expect of that parameter) or ``"batch"``
        (the paper's one Dice per set over the batch, for reproducing the paper).
    :param generator: random source of the random initialisations. If None, they are drawn
        by ART's ``random_sphere`` from numpy's global generator, so ART's ``master_seed``
        makes runs reproducible.
    """

    attack_params = [  # noqa: RUF012  (ART's own convention: a class-level list)
        *EvasionAttack.attack_params,
        "norm",
        "eps",
        "eps_step",
        "decay",
        "targeted",
        "num_random_init",
        "batch_size",
        "max_iter",
        "random_eps",
        "verbose",
        "reduction",
        "generator",
    ]
    _estimator_requirements = (PyTorchClassifier,)

    def __init__(
        self,
        estimator: PyTorchClassifier,
        norm: int | float | str = np.inf,
        eps: int | float | np.ndarray = 8 / 255,
        eps_step: int | float | np.ndarray = 2 / 255,
        decay: float | None = None,
        max_iter: int = 10,
        targeted: bool = False,
        num_random_init: int = 0,
        batch_size: int = 128,
        random_eps: bool = False,
        summary_writer: str | bool | SummaryWriter = False,
        verbose: bool = True,
        reduction: str = "sample",
        generator: torch.Generator | None = None,
    ) -> None:
        if summary_writer and num_random_init > 1:
            raise ValueError(
                "TensorBoard is not yet supported for more than 1 random restart "
                "(num_random_init>1), as in ART's PGD."
            )
        super().__init__(estimator=estimator, summary_writer=summary_writer)
        self.norm = norm
        self.eps = eps
        self.eps_step = eps_step
        self.decay = decay
        self.max_iter = max_iter
        self._targeted = targeted
        self.num_random_init = num_random_init
        self.batch_size = batch_size
        self.random_eps = random_eps
        self.verbose = verbose
        self.reduction = reduction
        self.generator = generator
        self._check_params()
        self._chain: list[Callable[[torch.Tensor], torch.Tensor]] = []

    # ----------------------------------------------------------------- parameters
    def _check_params(self) -> None:
        super()._check_params()
        # types ART's checks compare without checking first
        for name in ("max_iter", "batch_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
                raise ValueError(f"`{name}` must be an integer, got {value!r}")
        if isinstance(self.num_random_init, bool) or not isinstance(
            self.num_random_init, (int, np.integer)
        ):
            raise TypeError(
                f"`num_random_init` must be an integer >= 0, got {self.num_random_init!r}"
            )
        if self.num_random_init < 0:
            raise ValueError(f"`num_random_init` must be >= 0, got {self.num_random_init}")
        # ART's own checks, with ART's messages and exception types
        ProjectedGradientDescentCommon._check_params(self)
        if _norm_value(self.norm) not in _SUPPORTED_NORMS:
            raise ValueError(
                f"DicePGD supports norm in {['inf', np.inf, 2]}, got {self.norm!r} (ART's other "
                "p >= 1 only rescale the gradient; no Dice variant is defined for them)"
            )
        if not isinstance(self.random_eps, bool):
            raise ValueError(
                f"The flag `random_eps` has to be of type bool, got {self.random_eps!r}"
            )
        if self.reduction not in DPGD_REDUCTIONS:
            raise ValueError(
                f"`reduction` must be one of {list(DPGD_REDUCTIONS)}, got {self.reduction!r}"
            )
        if self.generator is not None and not isinstance(self.generator, torch.Generator):
            raise ValueError(
                f"`generator` must be a torch.Generator or None, got {self.generator!r}"
            )
        for operation in self.estimator.preprocessing_operations:
            if not isinstance(operation, PreprocessorPyTorch):
                raise ValueError(
                    "estimator preprocessing must be PyTorch-native (PreprocessorPyTorch) so "
                    f"the attack can stay in torch, got {type(operation).__name__}"
                )
        bounds = self._bounds_numpy()
        if bounds is not None:
            largest = float(np.max(self.eps))
            width = float(np.max(np.asarray(bounds[1]) - np.asarray(bounds[0])))
            norm = _SUPPORTED_NORMS[_norm_value(self.norm)]
            features = int(np.prod(self.estimator.input_shape))
            check_eps_plausible(largest, (0.0, width), norm=norm, num_features=features)

    def _bounds_numpy(self) -> tuple[np.ndarray, np.ndarray] | None:
        clip_values = self.estimator.clip_values
        if clip_values is None:
            return None
        return np.asarray(clip_values[0]), np.asarray(clip_values[1])

    # ----------------------------------------------------------------- model
    def _preprocessing_chain(self) -> list[Callable[[torch.Tensor], torch.Tensor]]:
        """The estimator's prediction-time preprocessing as torch callables. Mean/std
        standardisation becomes two cached tensors (or nothing when it is the identity)
        instead of ART's per-call numpy-to-tensor conversion."""
        chain: list[Callable[[torch.Tensor], torch.Tensor]] = []
        for operation in self.estimator.preprocessing_operations:
            if not operation.apply_predict:
                continue
            if isinstance(operation, StandardisationMeanStdPyTorch):
                mean = np.asarray(operation.mean, dtype=np.float32)
                std = np.asarray(operation.std, dtype=np.float32)
                if np.all(mean == 0) and np.all(std == 1):
                    continue
                chain.append(_Standardise(mean, std, self.estimator.device))
            else:
                chain.append(functools.partial(_forward_only_x, operation))
        return chain

    def _logits(self, x: torch.Tensor) -> torch.Tensor:
        """The estimator's preprocessing chain, then its model, all in torch. A single
        output of a binary classifier becomes the two logits ``[0, z]`` (softmax of those
        is ``[1 - sigmoid(z), sigmoid(z)]``)."""
        for step in self._chain:
            x = step(x)
        output: torch.Tensor = self.estimator.model(x)
        if output.ndim == 2 and output.shape[1] == 1 and self.estimator.nb_classes == 2:
            output = torch.cat([torch.zeros_like(output), output], dim=1)
        return output

    # ----------------------------------------------------------------- generate
    def generate(self, x: np.ndarray, y: np.ndarray | None = None, **kwargs: Any) -> np.ndarray:
        """Adversarial examples for ``x``.

        :param x: inputs, inside the estimator's ``clip_values`` (a rounding error outside
            is clipped), of shape ``(N, *estimator.input_shape)``.
        :param y: labels, as indices (N,) or (N, 1), or one-hot (N, nb_classes); the
            targets when ``targeted``. If None (untargeted only), the estimator's own
            predictions are used, as in ART.
        :param mask: (keyword) an array broadcasting against ``x``, or of ``x``'s shape:
            features where it is zero are not perturbed. Other keyword arguments are
            ignored, as ART's PGD ignores them.
        :return: adversarial examples, same shape and dtype as ``x``.
        """
        mask = self._mask(x, kwargs)
        unknown = sorted(set(kwargs) - {"mask"})
        if unknown:
            logger.debug("DicePGD.generate ignores keyword arguments %s, as ART's PGD", unknown)
        if not isinstance(x, np.ndarray):
            raise TypeError(f"x must be a numpy array, got {type(x).__name__}")
        if x.ndim < 2 or x.shape[0] == 0:
            raise ValueError(f"x must hold at least one example, got shape {x.shape}")
        expected = tuple(self.estimator.input_shape)
        if tuple(x.shape[1:]) != expected:
            raise ValueError(
                f"x must have shape (N, *input_shape) = (N, {', '.join(map(str, expected))}) "
                f"for this estimator, got {x.shape}"
            )
        if self.targeted and y is None:
            raise ValueError("Target labels `y` need to be provided for a targeted attack.")
        if isinstance(self.eps, np.ndarray) and self.eps.ndim > x.ndim:
            raise ValueError("The `eps` shape must be broadcastable to input shape.")
        labels = None if y is None else self._label_indices(y, x.shape[0])
        eps, eps_step = self._draw_eps()
        if self.max_iter == 0:
            return x.copy()

        device = self.estimator.device
        self._chain = self._preprocessing_chain()
        x_all = torch.from_numpy(np.ascontiguousarray(x, dtype=ART_NUMPY_DTYPE))
        adversarial = torch.empty_like(x_all)
        with eval_mode(self.estimator.model):  # ART attacks run the estimator in inference mode
            starts = range(0, x.shape[0], self.batch_size)
            for batch_id, start in enumerate(
                tqdm(starts, desc="DicePGD", disable=not self.verbose)
            ):
                stop = start + self.batch_size
                batch = x_all[start:stop].to(device)
                if labels is None:
                    with torch.no_grad():
                        batch_labels = self._logits(batch).argmax(dim=1)
                else:
                    batch_labels = labels[start:stop].to(device)
                adversarial[start:stop] = self._attack_batch(
                    batch,
                    batch_labels,
                    eps=self._for_norm(self._per_batch(eps, x, start, stop, device), batch),
                    eps_step=self._for_norm(
                        self._per_batch(eps_step, x, start, stop, device), batch
                    ),
                    mask=self._mask_batch(mask, x, start, stop, device),
                    batch_id=batch_id,
                ).cpu()
        if self.summary_writer is not None:
            self.summary_writer.reset()
        return adversarial.numpy().astype(x.dtype, copy=False)

    def _attack_batch(
        self,
        batch: torch.Tensor,
        labels: torch.Tensor,
        *,
        eps: float | torch.Tensor,
        eps_step: float | torch.Tensor,
        mask: torch.Tensor | None,
        batch_id: int,
    ) -> torch.Tensor:
        best: torch.Tensor | None = None
        bounds = self._bounds_torch(batch)
        norm = _SUPPORTED_NORMS[_norm_value(self.norm)]
        for _ in range(max(1, self.num_random_init)):
            start = None
            if self.num_random_init > 0 and self.generator is None:
                start = self._art_random_start(batch, eps, mask, bounds)
            candidate = projected_gradient_descent(
                self._logits,
                batch,
                labels,
                dpgd_objective(self.reduction, targeted=self.targeted),
                norm=norm,
                eps=eps,
                alpha=eps_step,
                steps=self.max_iter,
                random_start=self.num_random_init > 0 and self.generator is not None,
                targeted=self.targeted,
                bounds=bounds,
                generator=self.generator,
                start=start,
                mask=mask,
                decay=self.decay,
                on_step=self._summary_callback(batch_id, labels),
            )
            if best is None:
                best = candidate
                continue
            # ART's PGD: every later restart that succeeds replaces the sample
            with torch.no_grad():
                success = self._success(candidate, labels)
            best[success] = candidate[success]
        assert best is not None
        return best

    def _art_random_start(
        self,
        batch: torch.Tensor,
        eps: float | torch.Tensor,
        mask: torch.Tensor | None,
        bounds: tuple[Any, Any] | None,
    ) -> torch.Tensor:
        """ART's random initialisation: ``random_sphere`` (numpy's global generator), times
        the mask, clipped."""
        n, m = batch.shape[0], int(np.prod(batch.shape[1:]))
        if not isinstance(eps, torch.Tensor):
            noise = random_sphere(n, m, float(eps), self.norm)
        elif eps.ndim == 1:  # L2, one radius per sample: the unit ball, scaled
            noise = random_sphere(n, m, 1.0, self.norm) * eps.cpu().numpy()[:, None]
        else:
            radius = np.broadcast_to(eps.cpu().numpy(), batch.shape).reshape(n, m)
            noise = random_sphere(n, m, radius, self.norm)
        noise = noise.reshape(batch.shape)
        perturbation = torch.from_numpy(noise.astype(ART_NUMPY_DTYPE)).to(batch.device)
        if mask is not None:
            perturbation = perturbation * mask
        start = batch + perturbation
        if bounds is not None:
            low, high = (torch.as_tensor(b).to(start) for b in bounds)
            start = torch.maximum(torch.minimum(start, high), low)
        return start

    def _summary_callback(self, batch_id: int, labels: torch.Tensor) -> StepCallback | None:
        writer = self.summary_writer
        if writer is None:
            return None
        onehot = to_categorical(labels.cpu().numpy(), self.estimator.nb_classes)

        def update(step: int, x_t: torch.Tensor, gradient: torch.Tensor) -> None:
            writer.update(
                batch_id=batch_id,
                global_step=step,
                grad=gradient.detach().cpu().numpy(),
                patch=None,
                estimator=self.estimator,
                x=x_t.detach().cpu().numpy(),
                y=onehot,
                targeted=self.targeted,
            )

        return update

    def _success(self, x_adv: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        predictions = self._logits(x_adv).argmax(dim=1)
        return predictions == labels if self.targeted else predictions != labels

    # ----------------------------------------------------------------- inputs
    def _draw_eps(self) -> tuple[float | np.ndarray, float | np.ndarray]:
        """ART's ``random_eps``: eps from a normal truncated to [0, eps] with scale eps/2,
        drawn from numpy's global generator; eps_step keeps its ratio to eps."""
        eps, eps_step = self.eps, self.eps_step
        if not self.random_eps:
            return eps, eps_step
        ratio = eps_step / eps
        if isinstance(eps, (int, float)):
            distribution = truncnorm(0.0, 2.0, loc=0.0, scale=eps / 2)
            drawn: float | np.ndarray = float(np.round(distribution.rvs(1)[0], 10))
        else:
            scale = eps / 2
            distribution = truncnorm(np.zeros_like(eps), eps / scale, loc=0.0, scale=scale)
            drawn = np.round(distribution.rvs(size=eps.shape), 10)
        return drawn, ratio * drawn

    @staticmethod
    def _per_batch(
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

    def _for_norm(self, value: float | torch.Tensor, batch: torch.Tensor) -> float | torch.Tensor:
        """For L2 an array budget must be one value per sample (ART: "weighted L_p ball not
        supported with finite norm"); it becomes a (B,) tensor for the loop."""
        if not isinstance(value, torch.Tensor) or _norm_value(self.norm) == float("inf"):
            return value
        full = value.expand(batch.shape).reshape(batch.shape[0], -1)
        if not bool((full == full[:, :1]).all()):
            raise ValueError(
                "with norm=2, eps and eps_step arrays must hold one value per sample (a "
                "weighted L2 ball is not supported, as in ART)"
            )
        return full[:, 0].contiguous()

    @staticmethod
    def _mask(x: np.ndarray, kwargs: dict[str, Any]) -> np.ndarray | None:
        """ART's checks of ``mask``."""
        mask = kwargs.get("mask")
        if mask is None:
            return None
        if not isinstance(mask, np.ndarray):
            raise ValueError(f"`mask` must be a numpy array, got {type(mask).__name__}")
        if mask.ndim > np.ndim(x):
            raise ValueError("Mask shape must be broadcastable to input shape.")
        if not (np.issubdtype(mask.dtype, np.floating) or mask.dtype == bool):
            raise ValueError(
                "The `mask` has to be either of type np.float32, np.float64 or bool, "
                f"got {mask.dtype}."
            )
        if np.issubdtype(mask.dtype, np.floating) and np.amin(mask) < 0.0:
            raise ValueError(
                "The `mask` of a floating type must hold only zero or positive values."
            )
        return mask

    @staticmethod
    def _mask_batch(
        mask: np.ndarray | None, x: np.ndarray, start: int, stop: int, device: torch.device
    ) -> torch.Tensor | None:
        if mask is None:
            return None
        if mask.ndim == x.ndim:  # one mask per sample, as in ART
            mask = mask[start:stop]
        mask = mask.reshape((1,) * (x.ndim - mask.ndim) + mask.shape)
        return torch.as_tensor(mask.astype(ART_NUMPY_DTYPE), device=device)

    def _bounds_torch(self, batch: torch.Tensor) -> tuple[Any, Any] | None:
        bounds = self._bounds_numpy()
        if bounds is None:
            return None
        low, high = bounds
        if low.size == 1 and high.size == 1:
            return float(low), float(high)
        shape = (1,) * (batch.ndim - low.ndim)
        return (
            torch.as_tensor(
                low.reshape(shape + low.shape), dtype=torch.float32, device=batch.device
            ),
            torch.as_tensor(
                high.reshape(shape + high.shape), dtype=torch.float32, device=batch.device
            ),
        )

    def _label_indices(self, y: np.ndarray, n: int) -> torch.Tensor:
        """Indices from ``y`` through ART's ``check_and_transform_label_format``, after
        checking its length and, for one-hot rows, their width against ``nb_classes``."""
        y = np.asarray(y)
        nb_classes = self.estimator.nb_classes
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
        onehot = check_and_transform_label_format(y, nb_classes=nb_classes)
        return torch.from_numpy(np.argmax(onehot, axis=1).astype(np.int64))
