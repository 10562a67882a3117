"""The attacks on legal but unusual input, each once a wrong result (an outside audit's
findings): DPGD-L2 on confident samples (its step vanished in a large batch), the
torchattacks faces and each module's train/eval flag, half-precision images, a start with
a mask, small integer labels, inference mode."""

from __future__ import annotations

import pytest
import torch
from conftest import TinyCNN
from torch import nn

from dard_plugin.attacks import DPGD, DPGDL2, cross_entropy_objective, dpgd, dpgd_l2, dpgd_objective
from dard_plugin.attacks.pgd import pgd_l2, pgd_linf


def confident_linear() -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 10)).eval()
    with torch.no_grad():
        model[1].weight.mul_(25.0)  # median confidence about 0.9997
    x = torch.rand(64, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        y = model(x).argmax(1)
    return model, x, y


def test_dpgd_l2_moves_confident_samples_as_it_does_alone() -> None:
    """The L2 step was g / (||g|| + 1e-10), torchattacks' guard: a confident sample's Dice
    gradient, divided by its set's size, fell near 1e-10 in a batch, and its step shrank
    (56 of 256 robust in one batch, 27 attacked one by one). A zero gradient alone stays."""
    model, x, y = confident_linear()
    model, x = model.double(), x.double()  # float64: batch and alone agree to rounding
    objective = dpgd_objective("sample")
    batch = pgd_l2(model, x, y, objective, eps=1.0, alpha=0.25, steps=5)
    alone = torch.cat(
        [
            pgd_l2(model, x[i : i + 1], y[i : i + 1], objective, eps=1.0, alpha=0.25, steps=5)
            for i in range(len(x))
        ]
    )
    # the same examples but where a saturated softmax (p = 1 - 1e-20) leaves only rounding
    # in the gradient's direction; before, batch and alone disagreed on robustness
    assert int(((batch - alone).flatten(1).abs().max(1).values > 1e-6).sum()) <= 1
    with torch.no_grad():
        assert int((model(batch).argmax(1) == y).sum()) == int((model(alone).argmax(1) == y).sum())
    model, x = model.float(), x.float()  # float32, the torchattacks face: batch as alone
    face = DPGDL2(model, eps=1.0, steps=5)
    alone = torch.cat([face(x[i : i + 1], y[i : i + 1]) for i in range(len(x))])
    with torch.no_grad():
        robust = [int((model(a).argmax(1) == y).sum()) for a in (face(x, y), alone)]
    assert robust[0] == robust[1]
    flat = nn.Sequential(nn.Flatten(), nn.Linear(64, 10, bias=False)).eval()
    nn.init.zeros_(flat[1].weight)  # a zero gradient everywhere: nothing moves, no NaN
    still = pgd_l2(flat, x[:4], y[:4], cross_entropy_objective, eps=1.0, alpha=0.25, steps=2)
    assert torch.equal(still, x[:4])


@pytest.mark.parametrize("face", [DPGD, DPGDL2])
def test_the_torchattacks_faces_give_every_module_its_flag_back(face) -> None:
    """torchattacks' __call__ sets the whole model to train or eval and back: a frozen
    BatchNorm came back training, an MC-dropout layer evaluating, and after an error a
    training model was left in eval mode."""
    x = torch.rand(4, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    y = torch.arange(4)
    torch.manual_seed(0)
    model = TinyCNN()
    model.features[1].eval()  # a frozen BatchNorm in a training model
    flags = [m.training for m in model.modules()]
    face(model, eps=0.03 if face is DPGD else 0.5, steps=2)(x, y)
    assert [m.training for m in model.modules()] == flags
    model.eval()
    model.features[3].train()  # MC dropout in an evaluating model
    flags = [m.training for m in model.modules()]
    face(model, eps=0.03 if face is DPGD else 0.5, steps=2)(x, y)
    assert [m.training for m in model.modules()] == flags
    model.train()
    with pytest.raises(ValueError, match="labels must be class indices"):
        face(model, eps=0.03 if face is DPGD else 0.5, steps=2)(x, y + 20)
    assert all(m.training for m in model.modules())


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_images_are_attacked_and_returned_in_float32(dtype) -> None:
    """The ball was projected in 16 bits: bf16 examples lay 6% of eps outside it, and
    DPGD-L2's step was 0/0 (NaN) where the fp16 gradient underflowed."""
    torch.manual_seed(0)
    model = TinyCNN().eval()
    x = torch.rand(8, 1, 8, 8, generator=torch.Generator().manual_seed(0)).to(dtype)
    y = torch.arange(8)
    eps = 8 / 255
    adversarial = dpgd(model, x, y, eps=eps, alpha=2 / 255, steps=3)
    assert adversarial.dtype == torch.float32
    assert float((adversarial - x.float()).abs().max()) <= eps + 1e-7
    l2 = pgd_l2(model, x, y, dpgd_objective("sample"), eps=0.5, alpha=0.125, steps=3)
    assert l2.dtype == torch.float32 and not bool(l2.isnan().any())
    assert float((l2 - x.float()).flatten(1).norm(dim=1).max()) <= 0.5 + 1e-6


@pytest.mark.parametrize("face", [DPGD, DPGDL2])
def test_the_torchattacks_faces_attack_a_float16_model(face) -> None:
    """The faces hand the core torchattacks' ``get_logits``, a plain callable, so the core
    fed a float16 model the float32 images it attacks in: "Input type (float) and bias
    type (c10::Half) should be the same", where torchattacks' PGD attacks that model."""
    torch.manual_seed(0)
    model = TinyCNN().eval()
    half = TinyCNN().eval().half()
    half.load_state_dict(model.state_dict())
    x = torch.rand(8, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    y = torch.arange(8)
    eps = 0.03 if face is DPGD else 0.5
    adversarial = face(half, eps=eps, steps=3)(x.half(), y)
    assert adversarial.dtype == torch.float32
    core = dpgd if face is DPGD else dpgd_l2
    expected = core(
        half, x.half(), y, eps=eps, alpha=face(half, eps=eps).alpha, steps=3, reduction="sample"
    )
    assert torch.equal(adversarial, expected)
    assert all(p.dtype == torch.float16 for p in half.parameters())


def test_a_given_start_leaves_masked_features_alone() -> None:
    torch.manual_seed(0)
    model = TinyCNN().eval()
    x = torch.rand(4, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    y = torch.arange(4)
    mask = torch.zeros(1, 1, 8, 8)
    mask[..., :4] = 1  # only the left half may move
    start = (x + 0.01 * torch.randn(x.shape, generator=torch.Generator().manual_seed(1))).clamp(
        0, 1
    )
    for attack, eps in ((pgd_linf, 0.03), (pgd_l2, 0.5)):
        out = attack(
            model,
            x,
            y,
            cross_entropy_objective,
            eps=eps,
            alpha=0.01,
            steps=3,
            start=start,
            mask=mask,
        )
        assert float((out - x)[..., 4:].abs().max()) == 0.0
        assert float((out - x)[..., :4].abs().max()) > 0.0


def test_small_integer_labels_and_inference_mode() -> None:
    torch.manual_seed(0)
    model = TinyCNN().eval()
    x = torch.rand(4, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    y = torch.arange(4)
    reference = dpgd(model, x, y, eps=0.03, alpha=0.01, steps=2)
    for dtype in (torch.uint8, torch.int16, torch.int32):  # the loss's gather refused them
        assert torch.equal(dpgd(model, x, y.to(dtype), eps=0.03, alpha=0.01, steps=2), reference)
    with torch.inference_mode(), pytest.raises(RuntimeError, match="inference_mode"):
        dpgd(model, x, y, eps=0.03, alpha=0.01, steps=2)
