"""DPGD as an ART evasion attack: a thin face over the package's projected gradient loop
(``attacks/pgd.py``) driven by the DPGD objective (``attacks/dpgd.py``).

Numpy in, numpy out, as every ART attack; inside, each batch stays in torch for all its
steps (no per-step numpy round trip) and only input gradients are computed, so the
estimator's parameters and their ``.grad`` are never touched. Parameters, their checks and
their meaning follow ART's ``ProjectedGradientDescent``; ART's own code is used where it
exists (its parameter checks, label handling, random initialisation and summary writer).

This module is the attack's own logic: batches, restarts, ART's random start and the
summary writer. The estimator as a torch callable is in ``art/_classifier.py``; the
parameters' checks and conversions are in ``art/_parameters.py``.
"""

from __future__ import annotations

import logging
import warnings
from typing import Any

import numpy as np
import torch
from art.attacks.attack import EvasionAttack
from art.config import ART_NUMPY_DTYPE
from art.estimators.classification.pytorch import PyTorchClassifier
from art.summary_writer import SummaryWriter
from art.utils import random_sphere, to_categorical
from tqdm.auto import tqdm

from dard_plugin._validation import BUDGET_WARNING
from dard_plugin.art import _parameters as parameters
from dard_plugin.art._classifier import ClassifierLogits, clip_values_torch
from dard_plugin.attacks.dpgd import dpgd_objective
from dard_plugin.attacks.pgd import StepCallback, eval_mode, projected_gradient_descent

logger = logging.getLogger(__name__)


class DicePGD(EvasionAttack):
    """Dice Projected Gradient Descent for ART's ``PyTorchClassifier``.

    The parameters are those of ART's ``ProjectedGradientDescent``, in its order, with its
    checks and meaning; DPGD's own are ``reduction`` and ``generator``.

    :param estimator: a ``PyTorchClassifier`` returning logits (or one logit for a binary
        classifier with ``nb_classes=2``: the two-class view ``[0, z]`` is attacked); its
        ``preprocessing`` (e.g. mean/std standardisation) and ``clip_values`` (numbers or
        per-feature arrays) are honoured.
    :param norm: ``np.inf``, ``"inf"``, ``2`` or ``1`` (validated like ART's: a real
        ``p >= 1``; other values of p are refused with the supported list). With 2, the L2
        loop of the package (normalized gradient step, projection onto the L2 ball, clip);
        with 1, ART's L1 geometry (the feature of largest gradient magnitude moves by
        ``eps_step``, clip, rescale onto the L1 ball). The defaults of ``eps`` and
        ``eps_step`` are the L-inf ones, so pass L2 or L1 budgets explicitly (e.g. 0.5 and
        0.125 for L2 on CIFAR-10).
    :param eps: maximum perturbation: a number or an array broadcasting against ``x``
        (per feature; an array whose first dimension is the number of samples and with
        ``x``'s dimensions is per sample, as in ART).
    :param eps_step: step size per iteration, of the same type and shape as ``eps``.
    :param decay: momentum decay (ART's MI-FGSM accumulation of L1-normalized gradients),
        or None for none.
    :param max_iter: number of iterations (0 returns ``x`` unchanged, as ART).
    :param targeted: descend the Dice loss towards the labels ``y`` given to ``generate``.
    :param num_random_init: number of random initialisations in the eps ball (0: start at
        ``x``). After the first, a sample takes each later restart that misclassifies it,
        judged against ``y`` (ART's PGD judges an untargeted restart against the clean
        prediction; the two agree for ``y=None``).
    :param batch_size: number of samples attacked together.
    :param random_eps: draw eps per ``generate`` call from a normal distribution truncated
        to [0, eps] (scale eps/2), scaling eps_step to keep eps/eps_step, as ART does.
    :param summary_writer: ART's TensorBoard summary writer (bool, path or a
        ``SummaryWriter``), fed the loss gradient at every iteration.
    :param verbose: show a progress bar over batches.
    :param reduction: ``"sample"`` (default: per-sample Dice, each image's result
        independent of ``batch_size`` up to float32 rounding, as ART users expect of that
        parameter) or ``"batch"``
        (the paper's one Dice per set over the batch, for reproducing the paper).
    :param generator: random source of the random initialisations and of ``random_eps``'s
        draw, leaving numpy's global generator untouched. If None, they are drawn as ART
        draws them (``random_sphere``, scipy's ``truncnorm``) from numpy's global
        generator, so ART's ``master_seed`` makes runs reproducible.
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

    def _check_params(self) -> None:
        super()._check_params()
        parameters.check_parameters(self)

    def set_params(self, **kwargs: Any) -> None:
        """ART's ``set_params``, but a refused value is not kept: ART sets every value, then
        checks, so after an error ``generate`` ran with it (``random_eps=1`` drew random
        budgets; ``norm=3`` failed with a bare ``KeyError``). The settings before the call
        are restored when a check fails."""
        before = {key: getattr(self, key) for key in self.attack_params if hasattr(self, key)}
        try:
            super().set_params(**kwargs)
        except Exception:
            for key, value in before.items():
                setattr(self, key, value)
            raise

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
        :return: adversarial examples of ``x``'s shape, in ``x``'s dtype when it is float32
            or float64, else in float32 as ART returns them (rounding to integers or to
            float16 would move them off the attack's result, out of the eps ball).
        """
        mask = parameters.mask_from_kwargs(x, kwargs)
        unknown = sorted(set(kwargs) - {"mask"})
        if unknown:
            logger.debug("DicePGD.generate ignores keyword arguments %s, as ART's PGD", unknown)
        parameters.check_inputs(self, x, y)
        nb_classes = self.estimator.nb_classes
        labels = None if y is None else parameters.label_indices(y, x.shape[0], nb_classes)
        eps, eps_step = parameters.draw_eps(
            self.eps, self.eps_step, self.random_eps, self.generator
        )
        out_dtype = x.dtype if x.dtype in (np.float32, np.float64) else np.dtype(ART_NUMPY_DTYPE)
        if self.max_iter == 0:
            return x.astype(out_dtype, copy=True)

        device = self.estimator.device
        logits = ClassifierLogits(self.estimator)
        x_all = torch.from_numpy(np.ascontiguousarray(x, dtype=ART_NUMPY_DTYPE))
        adversarial = torch.empty_like(x_all)
        # ART attacks run the estimator in inference mode. The budget was judged (and any
        # warning given) when the parameters were set; the loop's own judgement of each
        # batch's (or each random_eps draw's) budget would only repeat it.
        with eval_mode(self.estimator.model), warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=BUDGET_WARNING, category=UserWarning)
            starts = range(0, x.shape[0], self.batch_size)
            for batch_id, start in enumerate(
                tqdm(starts, desc="DicePGD", disable=not self.verbose)
            ):
                stop = start + self.batch_size
                batch = x_all[start:stop].to(device)
                if labels is None:
                    with torch.no_grad():
                        batch_labels = logits(batch).argmax(dim=1)
                else:
                    batch_labels = labels[start:stop].to(device)
                adversarial[start:stop] = self._attack_batch(
                    logits,
                    batch,
                    batch_labels,
                    eps=parameters.batch_budget(eps, x, start, stop, batch, self.norm),
                    eps_step=parameters.batch_budget(eps_step, x, start, stop, batch, self.norm),
                    mask=parameters.mask_batch(mask, x, start, stop, device),
                    batch_id=batch_id,
                ).cpu()
        if self.summary_writer is not None:
            self.summary_writer.reset()
        return adversarial.numpy().astype(out_dtype, copy=False)

    def _attack_batch(
        self,
        logits: ClassifierLogits,
        batch: torch.Tensor,
        labels: torch.Tensor,
        *,
        eps: float | torch.Tensor,
        eps_step: float | torch.Tensor,
        mask: torch.Tensor | None,
        batch_id: int,
    ) -> torch.Tensor:
        best: torch.Tensor | None = None
        bounds = clip_values_torch(self.estimator, batch)
        for _ in range(max(1, self.num_random_init)):
            start = None
            if self.num_random_init > 0 and self.generator is None:
                start = self._art_random_start(batch, eps, mask, bounds)
            candidate = projected_gradient_descent(
                logits,
                batch,
                labels,
                dpgd_objective(self.reduction, targeted=self.targeted),
                norm=parameters.loop_norm(self.norm),
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
                predictions = logits(candidate).argmax(dim=1)
            success = predictions == labels if self.targeted else predictions != labels
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
        elif eps.ndim == 1:  # L2 or L1, one radius per sample: the unit ball, scaled
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
