"""evaluate(): numbers against direct calls (pyautoattack itself), worst-case logic,
reports (JSON, markdown, plots), model untouched, bad input."""

from __future__ import annotations

import json

import pytest
import torch
from conftest import PrototypeLinear, TinyCNN, make_prototype_data, state_snapshot

from dard_plugin.evaluation import (
    RobustnessReport,
    eps_string,
    evaluate,
    plot_robustness_curve,
    robustness_curve,
)


@pytest.fixture
def linear_setup():
    x, y, prototypes = make_prototype_data(n=32, noise=0.3)
    return PrototypeLinear(prototypes, scale=1.0).eval(), x, y


def pyautoattack_accuracy(model, x, y, eps, parts, seed=0) -> float:
    from pyautoattack import AutoAttack

    adversary = AutoAttack(model, eps=eps, norm="Linf", seed=seed, version="standard", device="cpu")
    adversary.attacks_to_run = list(parts)
    adversarial, _ = adversary.run_standard_evaluation(x, y, batch_size=256)
    with torch.no_grad():
        return float((model(adversarial).argmax(1) == y).float().mean())


def test_autoattack_part_equals_pyautoattack_direct(linear_setup) -> None:
    model, x, y = linear_setup
    report = evaluate(model, x, y, eps=0.22, attacks=("clean", "apgd-t"), verbose=False)
    direct = pyautoattack_accuracy(model, x, y, 0.22, ["apgd-t"])
    assert 0.0 < report.per_attack["apgd-t"] < 1.0  # a non-trivial case
    assert report.per_attack["apgd-t"] == direct


def test_full_autoattack_equals_pyautoattack_direct() -> None:
    torch.manual_seed(0)
    model = TinyCNN().eval()
    x, y, _ = make_prototype_data(n=16)
    with torch.no_grad():
        y = model(x).argmax(1)  # every point correct before the attack
    report = evaluate(model, x, y, eps=0.3, attacks=("autoattack",), verbose=False)
    direct = pyautoattack_accuracy(model, x, y, 0.3, ["apgd-ce", "apgd-t", "fab-t", "square"])
    assert report.per_attack["autoattack"] == direct


def test_worst_case_never_above_any_attack() -> None:
    torch.manual_seed(1)
    model = TinyCNN().eval()
    x, y, _ = make_prototype_data(n=64)
    with torch.no_grad():
        y[:40] = model(x[:40]).argmax(1)
    report = evaluate(
        model,
        x,
        y,
        eps=0.03,
        attacks=("clean", "fgsm", "pgd", "bim", "tpgd", "cw", "dpgd"),
        verbose=False,
    )
    assert report.robust_accuracy <= min(report.per_attack.values())
    assert report.robust_accuracy <= report.clean_accuracy
    assert set(report.per_attack) == {"fgsm", "pgd", "bim", "tpgd", "cw", "dpgd"}
    alone = evaluate(model, x, y, eps=0.03, attacks=("pgd",), verbose=False)
    assert alone.per_attack["pgd"] == report.per_attack["pgd"]  # as if run alone


def test_model_rng_and_mode_untouched(linear_setup) -> None:
    _, x, y = linear_setup
    torch.manual_seed(0)
    model = TinyCNN().train()
    before = state_snapshot(model)
    rng = torch.get_rng_state()
    with pytest.warns(UserWarning, match="train mode"):
        first = evaluate(model, x, y, eps=0.05, attacks=("clean", "pgd", "tpgd"), verbose=False)
    assert model.training
    assert all(torch.equal(v, before[k]) for k, v in state_snapshot(model).items())
    assert torch.equal(torch.get_rng_state(), rng)
    model.eval()
    second = evaluate(model, x, y, eps=0.05, attacks=("clean", "pgd", "tpgd"), verbose=False)
    assert first.per_attack == second.per_attack  # seeded


def test_report_json_markdown_and_plot(tmp_path, linear_setup) -> None:
    model, x, y = linear_setup
    report = evaluate(
        model,
        x,
        y,
        eps=8 / 255,
        attacks=("clean", "pgd", "dpgd"),
        verbose=False,
        model_name="proto",
    )
    payload = json.loads(report.to_json(tmp_path / "r.json"))
    assert payload["eps"] == "8/255" and payload["clean_acc"] == "100.00"
    assert payload["name"] == "proto" and payload["n_examples"] == 32
    assert RobustnessReport.from_json((tmp_path / "r.json").read_text()) == report
    table = report.to_markdown()
    assert "| pgd |" in table and "| dpgd |" in table and "worst case" in table
    reports = robustness_curve(
        model, x, y, [0.1, 0.22, 0.3], attacks=("clean", "pgd"), verbose=False
    )
    assert [r.eps for r in reports] == [0.1, 0.22, 0.3]
    png = plot_robustness_curve(reports, tmp_path / "curve.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    svg = plot_robustness_curve(reports, tmp_path / "curve.svg")
    assert b"<svg" in svg.read_bytes()[:500]
    with pytest.raises(ValueError, match=r"\.png or \.svg"):
        plot_robustness_curve(reports, tmp_path / "curve.jpg")


def test_eps_string() -> None:
    assert eps_string(8 / 255) == "8/255" and eps_string(0.1) == "0.1"


def test_l2_where_supported(linear_setup) -> None:
    model, x, y = linear_setup
    report = evaluate(
        model, x, y, eps=0.5, norm="L2", attacks=("clean", "fgsm", "pgd"), verbose=False
    )
    assert report.norm == "L2" and set(report.per_attack) == {"fgsm", "pgd"}
    with pytest.raises(ValueError, match="supports norms"):
        evaluate(model, x, y, eps=0.5, norm="L2", attacks=("bim",))


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"attacks": ("clean", "deepfool")}, r"attacks must be one of \['clean'"),
        ({"eps": 0.0}, "eps"),
        ({"n_examples": 33}, "n_examples must be at most 32"),
        ({"norm": "L1"}, "norm"),
        ({"attacks": "pgd"}, "non-empty list"),
    ],
)
def test_bad_arguments(linear_setup, kwargs, match) -> None:
    model, x, y = linear_setup
    options = {"eps": 0.1, "verbose": False}
    options.update(kwargs)
    with pytest.raises(ValueError, match=match):
        evaluate(model, x, y, **options)
    with pytest.raises(ValueError, match="labels must have shape"):
        evaluate(model, x, y[:-1], eps=0.1)
