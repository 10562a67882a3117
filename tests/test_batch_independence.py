"""Issue 14: DPGD's result for an image must not depend on the batch it was attacked in,
wherever a host library or the evaluation batches images for the user."""

from __future__ import annotations

import pytest
import torch
import torchattacks
from conftest import TinyCNN, make_prototype_data
from torch.utils.data import DataLoader, TensorDataset

from dard_plugin import DPGD, dpgd
from dard_plugin.evaluation import evaluate


def mixed_setup(n: int = 40, seed: int = 3) -> tuple[torch.nn.Module, torch.Tensor, torch.Tensor]:
    """A confident random CNN (the coupling of the batch Dice shows with confident
    predictions) and labels half of which it predicts."""
    images, labels, _ = make_prototype_data(n=n, seed=seed)
    torch.manual_seed(0)
    model = TinyCNN().eval()
    with torch.no_grad():
        model.head.weight.mul_(30)
        labels[::2] = model(images[::2]).argmax(1)
    return model, images, labels


@pytest.mark.slow  # 200 images are needed for the batch form to move a row: ~30 s here
def test_evaluate_dpgd_row_does_not_depend_on_batch_size() -> None:
    # The row used the paper's batch reduction: one Dice per set over each evaluation batch,
    # so batch_size changed the robust accuracy (seen failing before the fix).
    # Measured before the fix: 43.0 % at batch_size 200, 43.5 % at 7.
    model, images, labels = mixed_setup(n=200, seed=4)
    rows = [
        evaluate(
            model, images, labels, eps=0.005, attacks=("dpgd",), batch_size=size, verbose=False
        ).per_attack["dpgd"]
        for size in (200, 7)
    ]
    assert rows[0] == rows[1]


def test_torchattacks_multiattack_and_save_equal_attacking_each_image_alone(tmp_path) -> None:
    model, images, labels = mixed_setup(n=24)
    attack = DPGD(model, eps=0.1, alpha=0.02, steps=5)
    alone = torch.cat([attack(images[i : i + 1], labels[i : i + 1]) for i in range(24)])
    assert torch.equal(attack(images, labels), alone)
    # MultiAttack re-attacks the images the first attack left robust
    pgd = torchattacks.PGD(model, eps=0.1, alpha=0.02, steps=5, random_start=False)
    multi = torchattacks.MultiAttack([pgd, attack])(images, labels)
    pgd_images = pgd(images, labels)  # torchattacks' PGD fails under no_grad
    with torch.no_grad():
        pgd_fooled = model(pgd_images).argmax(1) != labels
    assert torch.equal(multi[~pgd_fooled], alone[~pgd_fooled])
    # save() attacks the loader's batches
    path = tmp_path / "adv.pt"
    attack.save(DataLoader(TensorDataset(images, labels), batch_size=5), str(path), verbose=False)
    assert torch.equal(torch.load(path, weights_only=True)["adv_inputs"], alone)


def test_paper_batch_reduction_does_couple_a_batch() -> None:
    # why the faces default to "sample": with "batch" an image's result can change with
    # the rest of its batch
    model, images, labels = mixed_setup()
    together = dpgd(model, images, labels, eps=0.1, alpha=0.02, steps=5, reduction="batch")
    split = torch.cat(
        [
            dpgd(
                model,
                images[i : i + 7],
                labels[i : i + 7],
                eps=0.1,
                alpha=0.02,
                steps=5,
                reduction="batch",
            )
            for i in range(0, 40, 7)
        ]
    )
    assert not torch.equal(together, split)
