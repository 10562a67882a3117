"""``evaluate``: clean accuracy and robust accuracy under an attack suite, per sample, in
one process or sharded over the ranks of a ``torch.distributed`` process group."""

from __future__ import annotations

import importlib.metadata
import logging
import time
import warnings
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from dard_plugin._labels import read_labels
from dard_plugin._validation import (
    MAX_SEED,
    check_choice,
    check_eps_plausible,
    check_images,
    check_int,
    check_logits,
    check_not_inference_mode,
    check_real,
    refuse_nan_logits,
    warn_if_probabilities,
)
from dard_plugin.attacks._placement import model_dtype
from dard_plugin.attacks.pgd import eval_mode
from dard_plugin.evaluation import distributed
from dard_plugin.evaluation._checks import check_input_shape, evaluation_model
from dard_plugin.evaluation.attacks import SUITE, accuracy_flags, check_norm_supported
from dard_plugin.evaluation.autoattack import (
    AUTOATTACK_PARTS,
    cuda_devices_to_fork,
    run_autoattack,
    state_file,
)
from dard_plugin.evaluation.report import RobustnessReport

logger = logging.getLogger(__name__)

NORMS = ("Linf", "L2")
ATTACK_NAMES = ("clean", *SUITE, "autoattack", *AUTOATTACK_PARTS)
DEFAULT_ATTACKS = ("clean", "fgsm", "pgd", "dpgd", "autoattack")


def _versions() -> dict[str, str]:
    names = [
        "dard-plugin",
        "torch",
        "torchattacks",
        "pyautoattack",
        "adversarial-robustness-toolbox",
        "robustbench",
    ]
    versions = {}
    for name in names:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


class AtItsDtype(nn.Module):
    """``model`` fed at its own floating dtype and answering float32 logits: the attacks
    perturb float32 images (the eps ball exact) for a bf16, fp16 or float64 model, and
    AutoAttack's float32 buffers meet float32 outputs."""

    def __init__(self, model: nn.Module, dtype: torch.dtype) -> None:
        super().__init__()
        self.model, self.dtype = model, dtype

    @classmethod
    def around(cls, model: nn.Module) -> nn.Module:
        """``model`` itself when it computes in float32 (or has no floating parameter)."""
        dtype = model_dtype(model)
        if dtype in (None, torch.float32):
            return model
        wrapper = cls(model, dtype)
        wrapper.training = False  # its own flag only: the model's are the caller's
        return wrapper

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits: torch.Tensor = self.model(x.to(self.dtype))
        return logits.float()


def _check_targeted_classes(attacks: Sequence[str], num_classes: int) -> None:
    """APGD-T's targeted DLR loss reads the 3rd and 4th largest logits: below 4 classes it
    cannot run (the original AutoAttack only warns, then fails inside the attack)."""
    targeted = [a for a in attacks if a in ("autoattack", "apgd-t")]
    if targeted and num_classes < 4:
        raise ValueError(
            f"{', '.join(targeted)} needs a model of at least 4 classes (APGD-T's targeted "
            f"DLR loss), this one has {num_classes}: use apgd-ce, fab-t, square and the suite"
        )


def _sanity_checks(model: nn.Module, images: torch.Tensor, device: torch.device) -> None:
    """The output's shape, and AutoAttack's own warnings: probabilities instead of logits,
    randomness."""
    sample = images[:8].to(device)
    with torch.no_grad():
        first, second = model(sample), model(sample)
    # the attacks check each batch's logits; the clean pass alone did not, and a (B, K, 1)
    # output broadcast its argmax against the labels to a (B, B) comparison
    check_logits(first, sample.shape[0], warn=False)
    refuse_nan_logits(first)
    warn_if_probabilities(first)  # at the caller's line of evaluate(...)
    if not torch.allclose(first, second, atol=1e-5):
        warnings.warn(
            "the model's outputs differ between two identical calls (a randomized "
            "defence?): use an adaptive evaluation (e.g. AutoAttack's 'rand' "
            "version); these numbers may overestimate robustness",
            UserWarning,
            stacklevel=3,
        )


def evaluate(
    model: nn.Module | Any,
    images: torch.Tensor,
    labels: torch.Tensor | np.ndarray,
    *,
    eps: float,
    norm: str = "Linf",
    attacks: Sequence[str] = DEFAULT_ATTACKS,
    batch_size: int = 256,
    n_examples: int | None = None,
    seed: int = 0,
    device: str | torch.device | None = None,
    state_path: str | Path | None = None,
    verbose: bool = True,
    model_name: str = "model",
) -> RobustnessReport:
    """Clean and robust accuracy of ``model`` on ``images`` (in [0, 1]) at budget ``eps``.

    Every attack runs on all examples, so ``per_attack[name]`` is what that attack alone
    gives (accuracy on its adversarial examples); ``robust_accuracy`` is the per-sample
    worst case over all of them and the clean prediction (:func:`worst_case`). The clean
    pass runs whether or not ``"clean"`` is listed (one forward pass): a sample
    misclassified clean is never robust, even where an attack that ignores the label
    (T-PGD) moves it to the right class, and ``clean_accuracy`` is always reported.

    Args:
        model: logits on [0, 1] images; or an ART ``PyTorchClassifier``, evaluated as its
            ``predict`` computes (its model behind its mean/std ``preprocessing``).
        labels: class indices of shape (N,) or (N, 1), or one-hot rows of shape
            (N, num_classes): the package's one label rule (``dard_plugin/_labels.py``),
            the same as the trainers'; checked in full before any attack runs.
        attacks: names from ``clean``, ``fgsm``, ``pgd``, ``bim``, ``tpgd``, ``cw``,
            ``dpgd``, ``autoattack`` (standard: APGD-CE, APGD-T, FAB-T, Square) and
            AutoAttack's parts ``apgd-ce``, ``apgd-t``, ``fab-t``, ``square`` (run with the
            standard version's settings). Every suite row has an L-inf and an L2 form
            (``norm="L2"``: FGM, PGD-L2, BIM-L2, T-PGD-L2, CW-L2, DPGD-L2 on the package's
            L2 loop, AutoAttack's standard L2 version); a row with no form for ``norm``
            would be an error naming it.
        batch_size: examples per batch; also AutoAttack's resume unit and the unit in
            which examples are shared out between ranks.
        n_examples: evaluate the first N examples only.
        seed: seeds every random start, including AutoAttack's; each batch draws from its
            own seeded source, so results do not depend on the number of ranks. The
            caller's global RNG state is restored afterwards.
        device: default: the model's device.
        state_path: where AutoAttack's resumable state goes: one file per attack set
            (and per rank), derived from this name (``aa.json`` -> ``aa.autoattack.json``;
            see :func:`~dard_plugin.evaluation.autoattack.state_file`). A run started again
            with the same arguments skips the chunks already done.
    The model runs in eval mode (each module's flag restored afterwards, with a warning if
    it was training); its parameters and buffers never change. Images are attacked in
    float32 whatever their dtype and the model's (a bf16 or float64 model is fed its own
    dtype), so the eps ball is projected in float32. NaN logits are refused before any attack.

    Under an initialised ``torch.distributed`` process group (e.g. started by ``torchrun``)
    every rank must call this with the same model, data and arguments: each rank evaluates
    its batch-aligned shard on ``device``, the per-sample results are gathered, and every
    rank returns the same report (the CLI writes it from rank 0). The ranks' data and model
    fingerprints are compared before any attack runs.
    """
    check_not_inference_mode("evaluate (its gradient attacks)")
    model = evaluation_model(model)
    check_real("eps", eps, low=0.0, low_inclusive=False)
    check_choice("norm", norm, NORMS)
    if isinstance(attacks, Iterable) and not isinstance(attacks, str):
        attacks = list(attacks)  # an iterator is read once, here (not by the checks alone)
    if isinstance(attacks, str) or not attacks:
        raise ValueError(f"attacks must be a non-empty list of names from {list(ATTACK_NAMES)}")
    for name in attacks:
        check_choice("attacks", name, ATTACK_NAMES)
        if name in SUITE:
            check_norm_supported(name, norm)
    batch_size = check_int("batch_size", batch_size, minimum=1)  # numpy ints as ints
    seed = check_int("seed", seed, minimum=0, maximum=MAX_SEED)  # one range everywhere
    images = check_images("images", images, (0.0, 1.0))  # rounding errors clipped
    if images.ndim != 4 and {"autoattack", "square"} & set(attacks):
        raise ValueError(
            f"images of shape {tuple(images.shape)}: AutoAttack's Square attack works on "
            "(N, C, H, W) images; drop 'square' and 'autoattack' from attacks, or give images"
        )
    given_labels = read_labels("labels", labels, num_examples=images.shape[0])
    indices = given_labels.indices
    check_input_shape("images", model, images)
    check_eps_plausible(eps, (0.0, 1.0), norm=norm, input_shape=tuple(images.shape[1:]))
    if n_examples is not None:
        n_examples = check_int("n_examples", n_examples, minimum=1)
        if n_examples > images.shape[0]:
            raise ValueError(
                f"n_examples must be at most {images.shape[0]} (the number of "
                f"images given), got {n_examples}"
            )
        images, indices = images[:n_examples], indices[:n_examples]
    # the attacks perturb float32 images, whatever the model's precision: a bf16 model once
    # got bf16 images, and the eps ball was projected in bf16 (up to 1.06 eps); the model
    # sees its own dtype through a cast at its input (AtItsDtype)
    if images.dtype != torch.float32:
        images = images.float()
    attacked = AtItsDtype.around(model)
    world_size, rank = distributed.process_group()
    fingerprint = ""
    if state_path is not None or world_size > 1:
        data_print = distributed.fingerprint_tensors(images, indices)
        model_print = distributed.fingerprint_model(model)
        fingerprint = data_print + model_print
    if world_size > 1:  # before anything that could differ between ranks
        arguments = {"eps": float(eps), "norm": norm, "attacks": list(attacks)}
        arguments.update({"batch_size": batch_size, "seed": seed})
        distributed.check_agreement(
            {"data": data_print, "model": model_print, "arguments": repr(arguments)},
            world_size,
        )
    sharding = distributed.plan(images.shape[0], batch_size, world_size, rank)
    if device is None:
        device = next((t.device for t in model.parameters()), torch.device("cpu"))
    device = torch.device(device)

    if model.training:
        warnings.warn(
            "the model was in train mode: it is evaluated in eval mode (each module's "
            "train/eval flag is given back afterwards)",
            UserWarning,
            stacklevel=2,
        )
    fork_devices = cuda_devices_to_fork(device)
    shard = slice(sharding.start, sharding.stop)
    # every submodule gets its own train/eval flag back (a frozen BatchNorm stays frozen)
    # the CPU RNG is always forked; device_type names the devices' (CUDA) RNG, also for a
    # CPU evaluation on a machine where CUDA is in use
    with eval_mode(model), torch.random.fork_rng(devices=fork_devices, device_type="cuda"):
        _sanity_checks(attacked, images, device)
        with torch.no_grad():
            logits = attacked(images[:1].to(device))
        given_labels.check_classes(logits.shape[1])
        _check_targeted_classes(attacks, logits.shape[1])
        correct, seconds = _run_all(
            attacked,
            images[shard],
            indices[shard],
            eps=eps,
            norm=norm,
            attacks=attacks,
            batch_size=batch_size,
            seed=seed,
            device=device,
            state_path=state_path,
            verbose=verbose,
            sharding=sharding,
            fingerprint=fingerprint,
        )
    if world_size > 1:
        correct = distributed.gather_flags(correct, world_size)
    report = _report(correct, seconds, images.shape[0], eps, norm, seed, model_name, sharding)
    # the batches seed the random starts: the results are the same for any number of
    # ranks at this batch size, not for another one
    report.extra["batch_size"] = batch_size
    return report


def worst_case(correct: dict[str, torch.Tensor]) -> torch.Tensor:
    """The per-sample robustness flags: classified correctly clean and under every attack.
    The one rule of the package's robust accuracy; ``correct`` must hold ``"clean"``."""
    if "clean" not in correct:
        raise ValueError(
            f"the worst case needs the clean flags, got only {list(correct)}: a sample "
            "misclassified clean is never robust"
        )
    return torch.stack(list(correct.values())).all(dim=0)


def _fraction(flags: torch.Tensor) -> float:
    """The share of true flags, as the nearest double (count / n; a float32 mean is
    off by about 1e-8)."""
    return int(flags.sum()) / flags.numel() if flags.numel() else float("nan")


def _report(
    correct: dict[str, torch.Tensor],
    seconds: dict[str, float],
    n_examples: int,
    eps: float,
    norm: str,
    seed: int,
    model_name: str,
    sharding: distributed.Sharding,
) -> RobustnessReport:
    """The report from the per-sample flags of all examples."""
    worst = worst_case(correct)
    report = RobustnessReport(
        clean_accuracy=_fraction(correct["clean"]),
        per_attack={k: _fraction(v) for k, v in correct.items() if k != "clean"},
        robust_accuracy=_fraction(worst),
        eps=float(eps),
        norm=norm,
        n_examples=int(n_examples),
        seed=seed,
        seconds=seconds,
        versions=_versions(),
        model_name=model_name,
        world_size=sharding.world_size,
        shards=[list(r) for r in sharding.ranges],
        per_sample={k: "".join("1" if f else "0" for f in v.tolist()) for k, v in correct.items()},
    )
    if sharding.rank == 0:  # one line per evaluation, not one per rank
        logger.info(
            "evaluation of %s: clean %.4f, worst case %.4f over %s",
            model_name,
            report.clean_accuracy,
            report.robust_accuracy,
            list(correct),
        )
    return report


def _run_all(
    model: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    *,
    eps: float,
    norm: str,
    attacks: Sequence[str],
    batch_size: int,
    seed: int,
    device: torch.device,
    state_path: str | Path | None,
    verbose: bool,
    sharding: distributed.Sharding,
    fingerprint: str,
) -> tuple[dict[str, torch.Tensor], dict[str, float]]:
    """Per-sample flags of this rank's shard (``images``), attack by attack, and always the
    clean flags first (the worst case needs them)."""
    correct: dict[str, torch.Tensor] = {}
    seconds: dict[str, float] = {}
    names = list(dict.fromkeys(["clean", *attacks]))
    for name in tqdm(names, desc="evaluation", disable=not verbose):
        started = time.perf_counter()
        if name == "autoattack" or name in AUTOATTACK_PARTS:
            parts = AUTOATTACK_PARTS if name == "autoattack" else (name,)
            path = None
            if state_path is not None:
                path = state_file(
                    state_path, parts, rank=sharding.rank, world_size=sharding.world_size
                )
            correct[name], spent = run_autoattack(
                model,
                images,
                labels,
                eps=eps,
                norm=norm,
                parts=parts,
                seed=seed,
                batch_size=batch_size,
                device=device,
                state_path=path,
                first_index=sharding.start,
                fingerprint=fingerprint,
            )
            if spent is not None:  # its chunks' own times, a resumed run's earlier ones too
                seconds[name] = spent
                continue
        else:
            correct[name] = accuracy_flags(
                model,
                images,
                labels,
                None if name == "clean" else SUITE[name],
                eps=eps,
                norm=norm,
                batch_size=batch_size,
                device=device,
                seed=seed,
                first_batch=sharding.first_batch,
            )
        seconds[name] = time.perf_counter() - started
    return correct, seconds
