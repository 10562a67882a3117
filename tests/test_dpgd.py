"""The DPGD core: agreement with a literal reference, invariants, bad input."""

from __future__ import annotations

import warnings

import pytest
import torch
import torch.nn.functional as F
from conftest import TinyCNN, assert_state_equal, make_prototype_data, state_snapshot
from torch import nn

from dard_plugin import dpgd
from dard_plugin.attacks import dpgd as dpgd_from_attacks

EPS = 8 / 255


def reference_dpgd(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    eps: float,
    alpha: float,
    steps: int,
    reduction: str,
    targeted: bool = False,
) -> torch.Tensor:
    """METHOD.md §1 written out literally, with index sets, one step at a time."""
    s = 1e-5

    def dice(p: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        if p.shape[0] == 0:
            return p.sum() * 0.0
        if reduction == "batch":
            return 1 - (2 * (t * p).sum() + s) / ((t * t).sum() + (p * p).sum() + s)
        per = 1 - (2 * (t * p).sum(1) + s) / ((t * t).sum(1) + (p * p).sum(1) + s)
        return per.mean()

    x_t = x.clone()
    for t in range(steps):
        x_t = x_t.detach().requires_grad_(True)
        logits = model(x_t)
        p = F.softmax(logits, dim=1)
        onehot = F.one_hot(y, logits.shape[1]).to(p.dtype)
        correct = logits.argmax(1) == y
        lam = t / (2 * steps)
        loss = (1 - lam) * dice(p[correct], onehot[correct]) + lam * dice(
            p[~correct], onehot[~correct]
        )
        (g,) = torch.autograd.grad(loss, x_t)
        step = -alpha * g.sign() if targeted else alpha * g.sign()
        x_t = (x + (x_t + step - x).clamp(-eps, eps)).clamp(0, 1)
    return x_t.detach()


def mixed_labels(labels: torch.Tensor, every: int = 3) -> torch.Tensor:
    """Relabel every third sample so the batch holds both correct and fooled samples."""
    mixed = labels.clone()
    mixed[::every] = (mixed[::every] + 1) % 10
    return mixed


def test_exported_from_package_and_attacks() -> None:
    assert dpgd is dpgd_from_attacks


@pytest.mark.parametrize("reduction", ["batch", "sample"])
@pytest.mark.parametrize("targeted", [False, True])
def test_agrees_with_literal_reference(reduction: str, targeted: bool) -> None:
    images, labels, _ = make_prototype_data(n=24)
    images = images.double()
    torch.manual_seed(1)
    model = TinyCNN().double().eval()
    labels = mixed_labels(labels)
    got = dpgd(
        model, images, labels, eps=0.1, alpha=0.02, steps=7, reduction=reduction, targeted=targeted
    )
    expected = reference_dpgd(model, images, labels, 0.1, 0.02, 7, reduction, targeted)
    assert torch.equal(got, expected)


def test_first_step_moves_only_correct_samples(prototype_data, prototype_model) -> None:
    # lambda_0 = 0: the fooled set has no weight, so one step leaves fooled samples in place
    # and moves every pixel of a correct sample by exactly alpha (the linear model's
    # gradient has no zero entry).
    images, labels, _ = prototype_data
    labels = mixed_labels(labels)
    with torch.no_grad():
        correct = prototype_model(images).argmax(1) == labels
    assert correct.any() and (~correct).any()
    alpha = 0.01
    adversarial = dpgd(prototype_model, images, labels, eps=0.5, alpha=alpha, steps=1)
    moved = (adversarial - images).abs().flatten(1)
    assert torch.equal(moved[~correct], torch.zeros_like(moved[~correct]))
    inside = ((images > alpha) & (images < 1 - alpha)).flatten(1)
    assert torch.allclose(moved[correct][inside[correct]], torch.tensor(alpha), atol=1e-7)


def test_later_steps_also_move_fooled_samples(prototype_data, prototype_model) -> None:
    images, labels, _ = prototype_data
    labels = mixed_labels(labels)
    with torch.no_grad():
        fooled = prototype_model(images).argmax(1) != labels
    adversarial = dpgd(prototype_model, images, labels, eps=0.5, alpha=0.01, steps=3)
    assert (adversarial - images)[fooled].abs().amax() > 0


def test_linear_model_closed_form_direction(prototype_data, prototype_model) -> None:
    # For a correctly classified sample the Dice loss rises as p_y falls: the first step must
    # have a positive inner product with the gradient of -(logit_y - mean logit).
    images, labels, _ = prototype_data
    adversarial = dpgd(prototype_model, images, labels, eps=0.5, alpha=0.01, steps=1)
    weight = prototype_model.linear.weight.detach()
    toward = -(weight[labels] - weight.mean(0, keepdim=True))
    inner = ((adversarial - images).flatten(1) * toward).sum(1)
    assert (inner > 0).all()


def test_untargeted_attack_fools_with_a_large_budget(prototype_data, prototype_model) -> None:
    images, labels, _ = prototype_data
    with torch.no_grad():
        assert (prototype_model(images).argmax(1) == labels).float().mean() == 1.0
        adversarial = dpgd(prototype_model, images, labels, eps=0.3, alpha=0.05, steps=10)
        accuracy = (prototype_model(adversarial).argmax(1) == labels).float().mean()
    assert accuracy < 0.1


def test_targeted_attack_reaches_the_target(prototype_data, prototype_model) -> None:
    images, labels, _ = prototype_data
    targets = (labels + 3) % 10
    adversarial = dpgd(
        prototype_model, images, targets, eps=0.3, alpha=0.05, steps=10, targeted=True
    )
    with torch.no_grad():
        success = (prototype_model(adversarial).argmax(1) == targets).float().mean()
    assert success > 0.9


@pytest.mark.parametrize("mode", ["train", "eval"])
@pytest.mark.parametrize("random_start", [False, True])
def test_invariants(tiny_cnn, mode: str, random_start: bool) -> None:
    images, labels, _ = make_prototype_data(n=16)
    tiny_cnn.train(mode == "train")
    tiny_cnn.eval() if mode == "eval" else None
    # a .grad already present must survive unchanged; a missing one must stay missing
    tiny_cnn.head.weight.grad = torch.full_like(tiny_cnn.head.weight, 0.5)
    snapshot = state_snapshot(tiny_cnn)
    images_before = images.clone()
    labels_before = labels.clone()
    adversarial = dpgd(
        tiny_cnn,
        images,
        labels,
        eps=EPS,
        alpha=2 / 255,
        steps=5,
        random_start=random_start,
        generator=torch.Generator().manual_seed(0),
    )
    assert torch.equal(images, images_before) and torch.equal(labels, labels_before)
    assert (adversarial - images).abs().max() <= EPS + 1e-6
    assert adversarial.min() >= 0 and adversarial.max() <= 1
    assert adversarial.dtype == images.dtype and adversarial.shape == images.shape
    assert not adversarial.requires_grad
    assert tiny_cnn.training == (mode == "train")
    assert torch.equal(tiny_cnn.head.weight.grad, torch.full_like(tiny_cnn.head.weight, 0.5))
    assert tiny_cnn.head.bias.grad is None and tiny_cnn.features[0].weight.grad is None
    if mode == "eval":  # in train mode BatchNorm statistics update, as with any forward
        assert_state_equal(tiny_cnn, snapshot)
    else:
        assert torch.equal(tiny_cnn.head.weight, snapshot["head.weight"])


def test_works_under_no_grad(prototype_data, prototype_model) -> None:
    images, labels, _ = prototype_data
    expected = dpgd(prototype_model, images, labels)
    with torch.no_grad():
        got = dpgd(prototype_model, images, labels)
    assert torch.equal(got, expected)
    assert (got != images).any()


def test_per_sample_eps(prototype_data, prototype_model) -> None:
    images, labels, _ = prototype_data
    eps = torch.linspace(0, 0.2, images.shape[0])
    adversarial = dpgd(prototype_model, images, labels, eps=eps, alpha=0.01, steps=20)
    distance = (adversarial - images).flatten(1).abs().amax(1)
    assert (distance <= eps + 1e-6).all()
    assert distance[0] == 0
    assert (distance[1:] > 0).all()


def test_random_start_determinism_with_generator(prototype_data, prototype_model) -> None:
    images, labels, _ = prototype_data

    def run(seed: int) -> torch.Tensor:
        return dpgd(
            prototype_model,
            images,
            labels,
            random_start=True,
            steps=2,
            generator=torch.Generator().manual_seed(seed),
        )

    global_state = torch.get_rng_state()
    assert torch.equal(run(0), run(0))
    assert not torch.equal(run(0), run(1))
    assert torch.equal(torch.get_rng_state(), global_state)  # global RNG untouched


def test_sample_reduction_is_batch_independent(tiny_cnn) -> None:
    images, labels, _ = make_prototype_data(n=12)
    model = tiny_cnn.double().eval()
    images = images.double()
    labels = mixed_labels(labels)
    together = dpgd(model, images, labels, reduction="sample", steps=6)
    alone = torch.cat(
        [
            dpgd(model, images[i : i + 1], labels[i : i + 1], reduction="sample", steps=6)
            for i in range(images.shape[0])
        ]
    )
    assert torch.equal(together, alone)


def test_float64_and_bfloat16_models(prototype_data, prototype_model) -> None:
    images, labels, _ = prototype_data
    double_model = prototype_model.double()
    adversarial = dpgd(double_model, images.double(), labels)
    assert adversarial.dtype == torch.float64
    bf16_model = PrototypeCopy(prototype_model).to(torch.bfloat16)
    adversarial = dpgd(bf16_model, images, labels, eps=EPS)
    assert adversarial.dtype == torch.float32  # the images' dtype: the ball stays exact
    assert (adversarial - images).abs().max() <= EPS + 1e-6
    assert (adversarial != images).any()


class PrototypeCopy(nn.Module):
    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.linear = nn.Linear(model.linear.in_features, model.linear.out_features)
        self.linear.load_state_dict(model.linear.state_dict())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x.flatten(1))


class CountingModel(nn.Module):
    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner
        self.calls = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        return self.inner(x)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"eps": -0.1}, ValueError, "eps"),
        ({"eps": float("nan")}, ValueError, "eps"),
        ({"eps": torch.tensor([0.1, -0.1])}, ValueError, "eps"),
        ({"alpha": 0.0}, ValueError, "alpha"),
        ({"alpha": -1.0}, ValueError, "alpha"),
        ({"steps": 0}, ValueError, "steps"),
        ({"steps": 2.5}, TypeError, "steps"),
        ({"reduction": "mean"}, ValueError, "reduction"),
        ({"random_start": "yes"}, TypeError, "random_start"),
        ({"generator": 3}, TypeError, "generator"),
    ],
)
def test_bad_arguments_fail_before_any_work(prototype_model, kwargs, error, match) -> None:
    images, labels, _ = make_prototype_data(n=2)
    counting = CountingModel(prototype_model)
    with pytest.raises(error, match=match):
        dpgd(counting, images, labels, **kwargs)
    assert counting.calls == 0


@pytest.mark.parametrize(
    ("images", "labels", "error", "match"),
    [
        (torch.rand(2, 1, 8, 8) + 1.0, torch.tensor([0, 1]), ValueError, r"images must lie in \[0"),
        (torch.rand(2, 1, 8, 8) - 1.0, torch.tensor([0, 1]), ValueError, "images must lie"),
        (torch.full((2, 1, 8, 8), float("nan")), torch.tensor([0, 1]), ValueError, "NaN"),
        (torch.rand(0, 1, 8, 8), torch.zeros(0, dtype=torch.long), ValueError, "batch size 0"),
        (torch.randint(0, 2, (2, 1, 8, 8)), torch.tensor([0, 1]), TypeError, "floating"),
        ("not a tensor", torch.tensor([0, 1]), TypeError, "images"),
        (torch.rand(2, 1, 8, 8), torch.tensor([0.0, 1.0]), TypeError, "labels"),
        (torch.rand(2, 1, 8, 8), torch.tensor([0, 1, 2]), ValueError, "labels must have shape"),
        (torch.rand(2, 1, 8, 8), [0, 1], TypeError, "labels"),
    ],
)
def test_bad_images_and_labels(prototype_model, images, labels, error, match) -> None:
    counting = CountingModel(prototype_model)
    with pytest.raises(error, match=match):
        dpgd(counting, images, labels)
    assert counting.calls == 0


def test_labels_out_of_range_for_the_model(prototype_model) -> None:
    images, _, _ = make_prototype_data(n=2)
    with pytest.raises(ValueError, match=r"labels must be class indices in \[0, 9\]"):
        dpgd(prototype_model, images, torch.tensor([0, 10]))
    with pytest.raises(ValueError, match="labels must be class indices"):
        dpgd(prototype_model, images, torch.tensor([-1, 0]))


def test_model_output_must_be_batch_by_classes() -> None:
    images, labels, _ = make_prototype_data(n=3)
    with pytest.raises(ValueError, match=r"logits of shape \(batch_size, num_classes\)"):
        dpgd(lambda x: x.flatten(1).sum(1), images, labels)
    with pytest.raises(ValueError, match="K >= 2"):
        dpgd(lambda x: x.flatten(1)[:, :1], images, torch.zeros(3, dtype=torch.long))
    with pytest.raises(TypeError, match=r"model must return a torch\.Tensor"):
        dpgd(lambda x: (x, x), images, labels)


def test_probability_outputs_warn(prototype_model) -> None:
    images, labels, _ = make_prototype_data(n=4)
    softmax_model = nn.Sequential(prototype_model, nn.Softmax(dim=1))
    with pytest.warns(UserWarning, match="look like probabilities"):
        dpgd(softmax_model, images, labels, steps=1)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        dpgd(prototype_model, images, labels, steps=1)
