"""The DPGD core: agreement with a literal reference, invariants, bad input."""

from __future__ import annotations

import warnings

import pytest
import torch
import torch.nn.functional as F
from conftest import (
    PrototypeLinear,
    TinyCNN,
    assert_state_equal,
    make_prototype_data,
    state_snapshot,
)
from torch import nn

from dard_plugin import dpgd
from dard_plugin.attacks import cross_entropy_objective, pgd_linf
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
    """METHOD.md §1 written out literally, with index sets, one step at a time (targeted:
    the samples not yet at their target carry 1 - lambda_t, "Targeted mode")."""
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
        hit = logits.argmax(1) == y  # correct (untargeted) or at the target (targeted)
        to_move = ~hit if targeted else hit  # the set that carries 1 - lambda_t
        lam = t / (2 * steps)
        loss = (1 - lam) * dice(p[to_move], onehot[to_move]) + lam * dice(
            p[~to_move], onehot[~to_move]
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
    adversarial = dpgd(prototype_model, images, labels, eps=0.25, alpha=alpha, steps=1)
    moved = (adversarial - images).abs().flatten(1)
    assert torch.equal(moved[~correct], torch.zeros_like(moved[~correct]))
    inside = ((images > alpha) & (images < 1 - alpha)).flatten(1)
    assert torch.allclose(moved[correct][inside[correct]], torch.tensor(alpha), atol=1e-7)


def test_later_steps_also_move_fooled_samples(prototype_data, prototype_model) -> None:
    images, labels, _ = prototype_data
    labels = mixed_labels(labels)
    with torch.no_grad():
        fooled = prototype_model(images).argmax(1) != labels
    adversarial = dpgd(prototype_model, images, labels, eps=0.25, alpha=0.01, steps=3)
    assert (adversarial - images)[fooled].abs().amax() > 0


@pytest.mark.parametrize("reduction", ["batch", "sample"])
def test_the_schedule_acts_only_through_its_zero_first_weight(
    tiny_cnn, monkeypatch, reduction: str
) -> None:
    """A property of the method for classification (docs/method.md): each sample lies in one
    set, so lambda_t scales its whole gradient by (1 - lambda_t) or lambda_t, which the sign
    step ignores. The weights after step 0 change nothing; lambda_0 = 0 (the fooled samples
    hold still at step 0) is what the schedule does."""
    import dard_plugin.losses.dpgd as dpgd_loss_module

    torch.manual_seed(1)
    images, labels = torch.rand(48, 1, 8, 8), torch.randint(0, 10, (48,))

    def attack() -> torch.Tensor:
        return dpgd(tiny_cnn, images, labels, eps=0.1, alpha=0.025, steps=6, reduction=reduction)

    paper = attack()
    monkeypatch.setattr(dpgd_loss_module, "segpgd_lambda", lambda t, steps: 0.3 * (t > 0))
    assert torch.equal(attack(), paper)
    monkeypatch.setattr(dpgd_loss_module, "segpgd_lambda", lambda t, steps: 0.3)
    assert not torch.equal(attack(), paper)


def test_linear_model_closed_form_direction(prototype_data, prototype_model) -> None:
    # For a correctly classified sample the Dice loss rises as p_y falls: the first step must
    # have a positive inner product with the gradient of -(logit_y - mean logit).
    images, labels, _ = prototype_data
    adversarial = dpgd(prototype_model, images, labels, eps=0.25, alpha=0.01, steps=1)
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
    # the attack runs the model in eval mode: BatchNorm statistics stay as found in both
    # modes (issue 11 item 4)
    assert_state_equal(tiny_cnn, snapshot)


def test_model_is_attacked_in_eval_mode_and_every_flag_restored(tiny_cnn) -> None:
    images, labels, _ = make_prototype_data(n=8)
    seen: list[bool] = []
    tiny_cnn.features.register_forward_hook(lambda module, i, o: seen.append(module.training))
    tiny_cnn.train()
    tiny_cnn.features[1].eval()  # a frozen BatchNorm inside a training model
    before = {name: module.training for name, module in tiny_cnn.named_modules()}
    snapshot = state_snapshot(tiny_cnn)
    dpgd(tiny_cnn, images, labels, steps=3)
    assert seen == [False, False, False]
    assert {name: module.training for name, module in tiny_cnn.named_modules()} == before
    assert_state_equal(tiny_cnn, snapshot)


def test_model_state_restored_when_the_objective_raises(tiny_cnn) -> None:
    from dard_plugin.attacks import pgd_linf

    images, labels, _ = make_prototype_data(n=4)
    tiny_cnn.train()

    def failing(logits, labels, step, steps):
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        pgd_linf(tiny_cnn, images, labels, failing, eps=EPS, alpha=0.01, steps=2)
    assert all(module.training for module in tiny_cnn.modules())


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


# --------------------------------------------------------------------------- issue 14
def test_targeted_first_step_moves_samples_not_yet_at_their_target(prototype_data) -> None:
    # METHOD.md §1 "Targeted mode": at step 0 the weight 1 - lambda_0 = 1 is on the samples
    # not yet at their target. The old schedule put it on those already there, so one step
    # moved nothing that still had to move (seen failing before the fix).
    images, labels, prototypes = prototype_data
    model = PrototypeLinear(prototypes).eval()
    targets = labels.clone()
    targets[::3] = (targets[::3] + 1) % 10  # two thirds already "at their target"
    with torch.no_grad():
        reached = model(images).argmax(1) == targets
    assert reached.any() and (~reached).any()
    alpha = 0.01
    adversarial = dpgd(model, images, targets, eps=0.25, alpha=alpha, steps=1, targeted=True)
    moved = (adversarial - images).abs().flatten(1)
    inside = ((images > alpha) & (images < 1 - alpha)).flatten(1)
    assert torch.equal(moved[reached], torch.zeros_like(moved[reached]))
    assert torch.allclose(moved[~reached][inside[~reached]], torch.tensor(alpha), atol=1e-7)


@pytest.mark.parametrize("steps", [1, 5, 10])
def test_targeted_success_matches_targeted_pgd(steps: int) -> None:
    # Measured on 200 images of a random TinyCNN at eps 0.1: DPGD 45.5 / 47.5 / 47.0 %,
    # PGD-CE 45.5 / 47.5 / 47.0 % at 1 / 5 / 10 steps; the old schedule gave 4 % at 1 step.
    images, labels, _ = make_prototype_data(n=200)
    torch.manual_seed(0)
    model = TinyCNN().eval()
    targets = (labels + 1) % 10
    alpha = 0.1 if steps == 1 else 0.25 / steps
    dice = dpgd(model, images, targets, eps=0.1, alpha=alpha, steps=steps, targeted=True)
    pgd = pgd_linf(
        model,
        images,
        targets,
        cross_entropy_objective,
        eps=0.1,
        alpha=alpha,
        steps=steps,
        targeted=True,
    )
    with torch.no_grad():
        dice_success = (model(dice).argmax(1) == targets).float().mean()
        pgd_success = (model(pgd).argmax(1) == targets).float().mean()
    assert pgd_success > 0.3
    assert dice_success >= pgd_success - 0.05


def test_round_off_outside_the_bounds_is_clipped_not_refused(prototype_model) -> None:
    images, labels, _ = make_prototype_data(n=8)
    images[0, 0, 0, 0] = -3e-8  # what torchattacks' inverse normalization leaves
    images[1, 0, 0, 0] = 1 + 3e-8
    before = images.clone()
    adversarial = dpgd(prototype_model, images, labels, steps=2)
    assert torch.equal(images, before)  # the input is not clipped in place
    assert adversarial.min() >= 0 and adversarial.max() <= 1
    clipped = images.clamp(0, 1)
    assert (adversarial - clipped).abs().max() <= EPS + 1e-7
    with pytest.raises(ValueError, match=r"images must lie in \[0"):
        dpgd(prototype_model, images - 1e-4, labels)


# --------------------------------------------------------------------------- issue 11
@pytest.mark.parametrize("eps", [8.0, 1.0001, torch.tensor([0.01, 2.0])])
def test_budget_above_the_whole_range_is_refused(prototype_model, eps) -> None:
    images, labels, _ = make_prototype_data(n=2)
    counting = CountingModel(prototype_model)
    with pytest.raises(ValueError, match=r"eps=.* covers the whole input range.*8/255"):
        dpgd(counting, images, labels, eps=eps)
    assert counting.calls == 0


@pytest.mark.parametrize("eps", [1.0, torch.tensor([0.01, 1.0])])
def test_budget_equal_to_the_range_runs_with_a_warning_naming_the_slips(
    prototype_model, eps
) -> None:
    # ART's own tests pass eps=1.0 with clip_values (0, 1): accepted, as ART's PGD does
    images, labels, _ = make_prototype_data(n=2)
    with pytest.warns(UserWarning, match=r"eps=1 equals the whole input range") as record:
        adversarial = dpgd(prototype_model, images, labels, eps=eps, steps=2)
    message = str(record[0].message)
    assert "0-255 pixel units" in message and "1/255" in message  # the pixel-unit slip
    assert 'norm="L2"' in message  # the L2-budget-under-L-inf slip
    assert bool((adversarial >= 0).all() & (adversarial <= 1).all())
    assert not torch.equal(adversarial, images)


def test_an_l2_sized_budget_under_linf_names_the_l2_attack(prototype_model) -> None:
    images, labels, _ = make_prototype_data(n=2)
    with pytest.raises(ValueError, match="covers the whole input range") as error:
        dpgd(prototype_model, images, labels, eps=1.5)
    message = str(error.value)
    assert "1.5/255" not in message
    assert "L2 budget" in message and 'norm="L2"' in message and "8/255" in message
    # a whole number is the pixel-unit slip
    with pytest.raises(ValueError, match=r"did you mean 8/255 = 0.03137"):
        dpgd(prototype_model, images, labels, eps=8)


def test_implausibly_large_budget_warns_and_common_ones_do_not(prototype_model) -> None:
    images, labels, _ = make_prototype_data(n=2)
    with pytest.warns(UserWarning, match=r"eps=0.5 is above 0.3 .*8/255"):
        dpgd(prototype_model, images, labels, eps=0.5, steps=1)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for eps in (8 / 255, 16 / 255, 0.3):
            dpgd(prototype_model, images, labels, eps=eps, steps=1)
        # unbounded inputs: no range to judge against
        dpgd(prototype_model, images, labels, eps=5.0, steps=1, bounds=None)


def test_plausibility_check_scales_with_the_range_and_norm() -> None:
    from dard_plugin._validation import check_eps_plausible

    check_eps_plausible(0.5, (-1.0, 1.0))  # 0.25 of the range
    with pytest.raises(ValueError, match="eps"):
        check_eps_plausible(255.0 * 0.99 + 10, (0.0, 255.0))
    with pytest.warns(UserWarning):
        check_eps_plausible(100.0, (0.0, 255.0))
    with pytest.warns(UserWarning, match="equals the whole input range 255"):
        check_eps_plausible(255.0, (0.0, 255.0))
    with pytest.warns(UserWarning, match="equals the whole input range 2"):
        check_eps_plausible(2.0, (-1.0, 1.0))
    # float32 rounding of the range still counts as equal
    with pytest.warns(UserWarning, match="equals"):
        check_eps_plausible(torch.tensor([1.0], dtype=torch.float32), (0.0, 1.0))
    # L2: the per-feature root mean square budget eps / sqrt(d)
    check_eps_plausible(3.0, (0.0, 1.0), norm="L2", num_features=784)
    with pytest.warns(UserWarning, match="L2"):
        check_eps_plausible(10.0, (0.0, 1.0), norm="L2", num_features=784)
    # at the L2 diameter exactly: accepted with a warning
    with pytest.warns(UserWarning, match="equals the whole input range"):
        check_eps_plausible(28.0, (0.0, 1.0), norm="L2", num_features=784)
    with pytest.raises(ValueError, match="sqrt"):
        check_eps_plausible(28.01, (0.0, 1.0), norm="L2", num_features=784)


# --------------------------------------------------------------------------- the loop's options
def test_per_feature_eps_mask_and_bounds(prototype_data, prototype_model) -> None:
    images, labels, _ = prototype_data
    eps = torch.full((1, 1, 8, 8), 0.1)
    eps[..., :4] = 0.0  # the left half may not move
    mask = torch.ones(1, 1, 8, 8)
    mask[..., 0, :] = 0  # nor the first row
    low = torch.zeros(1, 1, 8, 8)
    high = torch.full((1, 1, 8, 8), 0.9)
    clean = images.clamp(max=0.9)
    adversarial = pgd_linf(
        prototype_model,
        clean,
        labels,
        cross_entropy_objective,
        eps=eps,
        alpha=0.02 * torch.ones(1, 1, 8, 8),
        steps=10,
        bounds=(low, high),
        mask=mask,
        random_start=True,
        generator=torch.Generator().manual_seed(0),
    )
    delta = adversarial - clean
    assert (delta.abs() <= eps + 1e-7).all()
    assert torch.equal(delta[..., :4], torch.zeros_like(delta[..., :4]))
    assert torch.equal(delta[..., 0, :], torch.zeros_like(delta[..., 0, :]))
    assert adversarial.max() <= 0.9 and adversarial.min() >= 0
    assert (delta[..., 1:, 4:] != 0).any()


def test_momentum_decay_zero_equals_plain_sign_steps(prototype_data, prototype_model) -> None:
    # decay=0 keeps only the current L1-normalized gradient: its sign is the plain step
    images, labels, _ = prototype_data
    kwargs = {"eps": 0.1, "alpha": 0.02, "steps": 5}
    plain = pgd_linf(prototype_model, images, labels, cross_entropy_objective, **kwargs)
    zero = pgd_linf(prototype_model, images, labels, cross_entropy_objective, decay=0.0, **kwargs)
    assert torch.equal(plain, zero)
    heavy = pgd_linf(prototype_model, images, labels, cross_entropy_objective, decay=1.0, **kwargs)
    assert (heavy - images).abs().max() <= 0.1 + 1e-7


def test_on_step_sees_every_step_with_the_ascent_gradient(prototype_data, prototype_model) -> None:
    images, labels, _ = prototype_data
    calls: list[tuple[int, torch.Tensor]] = []
    pgd_linf(
        prototype_model,
        images,
        labels,
        cross_entropy_objective,
        eps=0.1,
        alpha=0.02,
        steps=3,
        targeted=True,
        on_step=lambda step, x, g: calls.append((step, g)),
    )
    assert [step for step, _ in calls] == [0, 1, 2]
    x = images.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(cross_entropy_objective(prototype_model(x), labels, 0, 3), x)
    assert torch.allclose(calls[0][1], -grad)  # targeted: the loss descended


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"mask": torch.ones(2, 2, 8, 8, 1)}, ValueError, "mask"),
        ({"mask": torch.ones(3, 1, 8, 8)}, ValueError, "mask"),
        ({"mask": -torch.ones(1, 1, 8, 8)}, ValueError, "mask"),
        ({"mask": torch.ones(1, 1, 8, 8, dtype=torch.long)}, TypeError, "mask"),
        ({"decay": -1.0}, ValueError, "decay"),
        ({"eps": torch.ones(3, 1, 8, 8) * 0.1}, ValueError, "eps"),
        ({"bounds": (torch.ones(1, 1, 8, 8), torch.zeros(1, 1, 8, 8))}, ValueError, "bounds"),
    ],
)
def test_bad_loop_options_fail_before_any_work(prototype_model, kwargs, error, match) -> None:
    images, labels, _ = make_prototype_data(n=2)
    counting = CountingModel(prototype_model)
    options = {"eps": 0.1, "alpha": 0.02, "steps": 2, **kwargs}
    with pytest.raises(error, match=match):
        pgd_linf(counting, images, labels, cross_entropy_objective, **options)
    assert counting.calls == 0
