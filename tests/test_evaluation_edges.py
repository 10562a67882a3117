"""evaluate() on legal but unusual input, each once a wrong number or a late failure (an
outside audit's findings): NaN rows past the first images, rounding-error images of a
half-precision batch, numpy integers, models of fewer than 10 classes, flat inputs,
inference mode, nearby curve budgets, and the CLI's report before its curve."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import PrototypeLinear, make_prototype_data
from torch import nn

from dard_plugin.evaluation import budget_state, evaluate


@pytest.fixture
def linear_setup():
    x, y, prototypes = make_prototype_data(n=16, noise=0.3)
    return PrototypeLinear(prototypes, scale=1.0).eval(), x, y


class NaNOnDark(nn.Module):
    """NaN logits on dark images (an overflow in some preprocessing, say)."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dark = x.flatten(1).mean(1, keepdim=True) < 0.1
        return self.inner(x).masked_fill(dark, float("nan"))


@pytest.mark.parametrize("attacks", [("clean", "fgsm", "pgd"), ("clean", "apgd-ce")])
def test_nan_rows_past_the_first_images_count_as_wrong(linear_setup, attacks) -> None:
    """The NaN refusal reads the first 8 images; a NaN row after them was scored as class 0
    (argmax), and dark images labelled 0 came out 100% clean and robust."""
    model, x, y = linear_setup
    x, y = x.clone(), y.clone()
    x[8:], y[8:] = x[8:] * 0.05, 0  # dark, labelled 0: NaN rows whose argmax is 0
    model = NaNOnDark(model).eval()
    report = evaluate(model, x, y, eps=0.01, attacks=attacks, verbose=False)
    for flags in report.per_sample.values():
        assert flags[8:] == "0" * 8
    with torch.no_grad():
        expected = int((model(x[:8]).argmax(1) == y[:8]).sum()) / 16
    assert report.clean_accuracy == expected


def test_half_precision_images_clipped_as_accepted(linear_setup) -> None:
    """A float16 pixel at 1.000977 is accepted as rounding error; it was kept unclipped, and
    the first attack refused the images the clean pass had taken."""
    model, x, y = linear_setup
    half = x.half()
    half[0, 0, 0, 0] = torch.tensor(1.000977, dtype=torch.float16)
    report = evaluate(model, half, y, eps=0.05, attacks=("clean", "fgsm"), verbose=False)
    clipped = evaluate(model, half.float().clamp(0, 1), y, eps=0.05, attacks=("clean", "fgsm"))
    assert report.per_sample == clipped.per_sample


def test_numpy_integer_arguments_are_ints(linear_setup) -> None:
    """``batch_size=np.int64(8)`` overflowed in the batch seeds; ``seed=np.int64(0)`` ran
    the whole evaluation, then ``to_json`` failed on the numpy seed."""
    model, x, y = linear_setup
    given = evaluate(
        model, x, y, eps=0.05, attacks=("clean", "pgd"), verbose=False,
        batch_size=np.int64(8), seed=np.int64(0), n_examples=np.int32(12),
    )  # fmt: skip
    plain = evaluate(
        model, x, y, eps=0.05, attacks=("clean", "pgd"), verbose=False,
        batch_size=8, seed=0, n_examples=12,
    )  # fmt: skip
    assert given.per_sample == plain.per_sample and type(given.seed) is int
    json.loads(given.to_json())


def classes_model(k: int) -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 2, 3), nn.Flatten(), nn.Linear(2 * 6 * 6, k)).eval()


def test_fewer_than_ten_classes_target_every_other_class() -> None:
    """AutoAttack's standard version targets 9 classes: a 5-class model failed inside
    APGD-T with an IndexError after the earlier attacks had run. Now its 4 other classes
    are the targets; a 3-class model is refused APGD-T before any work."""
    x = torch.rand(4, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    for k in (5, 3):
        y = torch.arange(4) % k
        report = evaluate(classes_model(k), x, y, eps=0.05, attacks=("fab-t",), verbose=False)
        assert 0.0 <= report.robust_accuracy <= report.clean_accuracy
    report = evaluate(classes_model(5), x, torch.arange(4), eps=0.05, attacks=("apgd-t",))
    assert 0.0 <= report.robust_accuracy <= report.clean_accuracy
    with pytest.raises(ValueError, match=r"at least 4 classes.*this one has 3"):
        evaluate(classes_model(3), x, torch.arange(4) % 3, eps=0.05, attacks=("autoattack",))


def test_flat_inputs_refuse_square_before_any_work(linear_setup) -> None:
    model = nn.Sequential(nn.Linear(64, 10)).eval()
    x = torch.rand(8, 64, generator=torch.Generator().manual_seed(0))
    with pytest.raises(ValueError, match=r"images of shape \(8, 64\).*Square"):
        evaluate(model, x, torch.arange(8), eps=0.05, attacks=("clean", "pgd", "autoattack"))
    report = evaluate(model, x, torch.arange(8), eps=0.05, attacks=("pgd", "apgd-ce"))
    assert set(report.per_attack) == {"pgd", "apgd-ce"}


def test_inference_mode_is_named_and_no_grad_works(linear_setup) -> None:
    model, x, y = linear_setup
    with torch.no_grad():
        report = evaluate(model, x, y, eps=0.05, attacks=("pgd",), verbose=False)
    assert report.robust_accuracy <= report.clean_accuracy
    with torch.inference_mode(), pytest.raises(RuntimeError, match="inference_mode"):
        evaluate(model, x, y, eps=0.05, attacks=("pgd",), verbose=False)


def test_nearby_curve_budgets_get_their_own_state_files(tmp_path) -> None:
    """``0.1`` and ``0.1000000001`` are written alike: their AutoAttack state files were
    one, and the second budget was refused. Budgets their names give back keep them."""
    state = tmp_path / "aa.json"
    assert budget_state(state, 0.1) == tmp_path / "aa.eps-0.1.json"
    assert budget_state(state, np.float32(0.1)) == tmp_path / "aa.eps-0.1.json"
    assert budget_state(state, 8 / 255) == tmp_path / "aa.eps-8_255.json"
    for a, b in ((0.1, 0.1000000001), (8 / 255, 8 / 255 + 1e-12)):
        assert budget_state(state, a) != budget_state(state, b)


def test_the_cli_writes_its_report_before_the_curve_and_refuses_a_nan_budget(tmp_path) -> None:
    """``--curve 0.05,nan`` was accepted, failed after the main evaluation, and the report
    was never written (AutoAttack's state deleted before it). Refused before any work now;
    a curve that fails leaves the written report."""
    dard = [sys.executable, "-m", "dard_plugin"]
    base = ["evaluate", "dard-fmnist-teacher", "--attacks", "clean,fgsm", "--n-examples", "8"]
    done = subprocess.run(
        [*dard, *base, "--curve", "0.05,nan", "--out", str(tmp_path / "a"), "--quiet"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert done.returncode == 2 and "--curve values must be finite" in done.stderr
    assert not (tmp_path / "a").exists()


def test_the_report_comes_before_the_curve_in_the_command(monkeypatch, tmp_path: Path) -> None:
    import dard_plugin.evaluation as evaluation
    from dard_plugin.cli.main import main

    def failing_curve(*args, **kwargs):
        assert (tmp_path / "b" / "report.json").is_file()  # written first
        raise RuntimeError("the curve failed")

    monkeypatch.setattr(evaluation, "robustness_curve", failing_curve)
    base = ["evaluate", "dard-fmnist-teacher", "--attacks", "clean", "--n-examples", "8"]
    code = main([*base, "--curve", "0.05", "--out", str(tmp_path / "b"), "--quiet"])
    assert code == 2
    assert json.loads((tmp_path / "b" / "report.json").read_text())["n_examples"] == 8
