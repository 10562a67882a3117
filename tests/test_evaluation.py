"""evaluate(): numbers against direct calls (pyautoattack itself), worst-case logic,
reports (JSON, markdown, plots), model untouched, bad input."""

from __future__ import annotations

import copy
import dataclasses
import importlib.metadata
import json
import os

import numpy as np
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


def test_float64_images_give_the_float32_report(linear_setup) -> None:
    """float64 images (numpy's default) once failed inside the model's first layer with
    "expected scalar type Double but found Float", naming no argument."""
    model, x, y = linear_setup
    attacks = ("clean", "fgsm", "pgd")
    single = evaluate(model, x, y, eps=0.3, attacks=attacks, verbose=False)
    double = evaluate(model, x.double(), y, eps=0.3, attacks=attacks, verbose=False)
    assert double.per_sample == single.per_sample and "0" in single.per_sample["pgd"]


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16, torch.float64])
def test_a_model_of_another_precision_is_attacked_inside_the_ball(
    linear_setup, dtype, monkeypatch
) -> None:
    """A bf16 (fp16) model once got bf16 images: the eps ball was projected in bf16, and
    every L-inf example lay up to 1.06 eps (1.008 eps) away. The attacks now perturb
    float32 images and feed the model its dtype; a float64 model, which AutoAttack failed
    on ("Index put requires the source and destination dtypes match"), runs it."""
    from dard_plugin.evaluation import attacks as suite

    model, x, y = linear_setup
    distances = []
    run = suite.SuiteAttack.run

    def measured(self, model_, images, labels, eps, norm, source):
        adversarial = run(self, model_, images, labels, eps, norm, source)
        assert adversarial.dtype == torch.float32
        distances.append(float((adversarial - images).abs().amax()) / eps)
        return adversarial

    monkeypatch.setattr(suite.SuiteAttack, "run", measured)
    cast = copy.deepcopy(model).to(dtype)
    attacks = ["clean", "fgsm", "pgd", *(["apgd-ce"] if dtype == torch.float64 else [])]
    report = evaluate(cast, x, y, eps=8 / 255, attacks=attacks, verbose=False)
    assert distances and max(distances) <= 1 + 1e-6
    assert all(p.dtype == dtype for p in cast.parameters()) and not cast.training
    assert set(report.per_attack) == set(attacks) - {"clean"}


class _TrailingAxis(torch.nn.Module):
    """Logits of shape (B, K, 1)."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x).unsqueeze(-1)


def test_a_model_whose_logits_are_not_b_by_k_is_refused_on_the_clean_pass(linear_setup) -> None:
    """The clean pass alone read no shape: with (B, K, 1) logits, argmax(1) of shape (B, 1)
    against (B,) labels broadcast to a (B, B) comparison, and "clean" reported the share of
    matching pairs over the batch, every sample marked correct."""
    model, x, y = linear_setup
    with pytest.raises(
        ValueError, match=r"logits of shape \(batch_size, num_classes\).*got \(8, 10, 1\)"
    ):
        evaluate(_TrailingAxis(model).eval(), x, y, eps=0.1, attacks=("clean",), verbose=False)


def test_the_probabilities_warning_points_at_the_callers_line(linear_setup) -> None:
    """Through the new shape check the warning was attributed one frame too deep, inside
    evaluate.py, and so shown once per process instead of once per calling line."""
    model, x, y = linear_setup
    softmax = torch.nn.Sequential(model, torch.nn.Softmax(dim=1)).eval()
    with pytest.warns(UserWarning, match="look like probabilities") as caught:
        evaluate(softmax, x, y, eps=0.1, attacks=("clean",), verbose=False)
    assert [w.filename for w in caught if "probabilities" in str(w.message)] == [__file__]


def test_a_model_with_nan_logits_is_refused_before_any_attack(linear_setup) -> None:
    """NaN logits were scored as class 0 (argmax), so a diverged student reported the share
    of class 0 as its clean and robust accuracy, with a warning about randomness."""
    model, x, y = linear_setup
    broken = copy.deepcopy(model)
    with torch.no_grad():
        next(broken.parameters()).fill_(float("nan"))
    with pytest.raises(ValueError, match="logits hold NaN"):
        evaluate(broken, x, y, eps=0.1, attacks=("clean", "pgd"), verbose=False)
    # a masked class (-inf logit) is no divergence: argmax reads it correctly
    masked = torch.nn.Sequential(model, _MaskClass(9)).eval()
    report = evaluate(masked, x, y, eps=0.1, attacks=("clean",), verbose=False)
    with torch.no_grad():
        expected = (model(x)[:, :9].argmax(1) == y).float().mean()
    assert report.clean_accuracy == pytest.approx(float(expected))


class _MaskClass(torch.nn.Module):
    def __init__(self, masked: int) -> None:
        super().__init__()
        self.masked = masked

    def forward(self, logits: torch.Tensor) -> torch.Tensor:
        return logits.index_fill(1, torch.tensor([self.masked]), float("-inf"))


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


def test_each_module_keeps_its_own_mode(linear_setup) -> None:
    """A model in train mode with a frozen BatchNorm (eval) inside: evaluate, the trainers'
    validation and their class probe give every module its own flag back, not one flag
    for all (the frozen BatchNorm would update its statistics in the next training step)."""
    from dard_plugin.training.models import student_classes
    from dard_plugin.training.validation import validate

    _, x, y = linear_setup
    torch.manual_seed(0)
    model = TinyCNN().train()
    model.features[1].eval()
    flags = [m.training for m in model.modules()]
    assert flags.count(False) == 1
    with pytest.warns(UserWarning, match="train mode"):
        evaluate(model, x, y, eps=0.05, attacks=("clean", "fgsm"), verbose=False)
    assert [m.training for m in model.modules()] == flags
    validate(
        model,
        x,
        y,
        attack="pgd",
        eps=0.05,
        batch_size=16,
        device=torch.device("cpu"),
        seed=0,
        bounds=(0.0, 1.0),
    )
    assert [m.training for m in model.modules()] == flags
    assert student_classes(model, x, (0.0, 1.0)) == 10
    assert [m.training for m in model.modules()] == flags


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
    l2_table = dataclasses.replace(report, norm="L2").to_markdown()  # rows named as in L2
    assert "| pgd (PGD-L2) |" in l2_table and "| dpgd (DPGD-L2) |" in l2_table
    parts = dataclasses.replace(report, norm="L2", per_attack={"apgd-ce": 0.5}).to_markdown()
    assert "| apgd-ce (APGD-CE, L2) |" in parts
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


def test_robustness_curve_plot_refuses_reports_of_different_evaluations(tmp_path) -> None:
    """An L-inf and an L2 report were drawn as one line on an axis labelled from the first
    report's norm (and two models' reports, or two reports at one eps, as one line)."""
    base = RobustnessReport(
        clean_accuracy=0.9,
        per_attack={"pgd": 0.5},
        robust_accuracy=0.5,
        eps=0.1,
        norm="Linf",
        n_examples=10,
        seed=0,
        seconds={},
        versions={},
    )
    l2 = dataclasses.replace(base, eps=1.5, norm="L2")
    cases = {
        "one norm": [base, l2],
        "one model_name": [base, dataclasses.replace(base, eps=0.2, model_name="other")],
        "one n_examples": [base, dataclasses.replace(base, eps=0.2, n_examples=20)],
        "one attacks": [base, dataclasses.replace(base, eps=0.2, per_attack={"fgsm": 0.6})],
        "one report per eps": [base, dataclasses.replace(base, robust_accuracy=0.4)],
        "at least one": [],
    }
    for expected, reports in cases.items():
        with pytest.raises(ValueError, match=rf"reports must .*{expected}"):
            plot_robustness_curve(reports, tmp_path / "curve.png")
    assert not (tmp_path / "curve.png").exists()
    plot_robustness_curve([dataclasses.replace(base, eps=0.2), base], tmp_path / "curve.png")
    assert (tmp_path / "curve.png").stat().st_size > 0


def test_accuracies_are_exact_shares_and_files_get_the_umask_mode(tmp_path, linear_setup) -> None:
    """Accuracies were float32 means (35/48 reported as 0.7291666865); report.json was
    written with mkstemp's mode 0600 while its neighbours had 0644."""
    model, x, y = linear_setup
    labels = y[:30].clone()
    labels[:7] = (labels[:7] + 1) % 10  # 23 of 30 right at best: shares float32 cannot hold
    report = evaluate(
        model, x[:30], labels, eps=0.3, attacks=("clean", "fgsm", "pgd"), verbose=False
    )
    shares = {name: flags.count("1") / 30 for name, flags in report.per_sample.items()}
    assert report.clean_accuracy == shares["clean"]
    assert {k: report.per_attack[k] for k in ("fgsm", "pgd")} == {
        k: shares[k] for k in ("fgsm", "pgd")
    }
    assert any(float(np.float32(v)) != v for v in shares.values())  # float32 would differ
    umask = os.umask(0)
    os.umask(umask)
    report.to_json(tmp_path / "report.json")
    assert (tmp_path / "report.json").stat().st_mode & 0o777 == 0o666 & ~umask


def test_eps_string() -> None:
    assert eps_string(8 / 255) == "8/255" and eps_string(0.1) == "0.1"
    # fractions that reduce (3/255 = 1/85) once came out as 0.0117647
    assert [eps_string(k / 255) for k in (1, 3, 5, 17)] == ["1/255", "3/255", "5/255", "17/255"]
    assert eps_string(0.2) == "0.2" and eps_string(1.0) == "1"  # short decimals stay so
    # a float32 budget is read at float32 precision: once "0.0313726" for 8/255
    assert eps_string(np.float32(8 / 255)) == "8/255" and eps_string(np.float32(0.2)) == "0.2"
    assert eps_string(np.float32(0.1)) == "0.1" and eps_string(0.0314) == "0.0314"
    # eight significant digits: nearby budgets (and their curve state files) stay apart
    assert eps_string(0.1234567) == "0.1234567" != eps_string(0.1234568)
    # ... and a float32 budget keeps its shortest float32 form (not 0.30000001)
    assert [eps_string(np.float32(e)) for e in (0.3, 0.05, 0.01)] == ["0.3", "0.05", "0.01"]
    from dard_plugin.evaluation import budget_state

    assert budget_state("aa.json", np.float32(0.05)).name == "aa.eps-0.05.json"


def test_l2_has_every_row(linear_setup) -> None:
    """Every suite row has an L2 form (tests/test_evaluation_l2.py checks them)."""
    model, x, y = linear_setup
    attacks = ("clean", "fgsm", "pgd", "bim", "tpgd", "cw", "dpgd")
    report = evaluate(model, x[:8], y[:8], eps=0.5, norm="L2", attacks=attacks, verbose=False)
    assert report.norm == "L2" and set(report.per_attack) == set(attacks) - {"clean"}


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


class CountingModel(torch.nn.Module):
    """A wrapper counting forward calls: "before any work" means zero calls."""

    def __init__(self, inner: torch.nn.Module) -> None:
        super().__init__()
        self.inner = inner
        self.calls = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        return self.inner(x)


def test_eps_covering_the_input_range_is_an_error_before_work(linear_setup) -> None:
    model, x, y = linear_setup
    counted = CountingModel(model).eval()
    for eps in (8.0, 1.5):  # above the range (eps equal to it only warns, as in ART)
        with pytest.raises(ValueError, match=r"eps=.* covers the whole input range.*8/255"):
            evaluate(counted, x, y, eps=eps, attacks=("clean", "pgd"), verbose=False)
    # L2: the whole range is the diagonal of the 1x8x8 box, sqrt(64) = 8
    with pytest.raises(ValueError, match=r"eps=9 .*L2 diameter of the box is 8.*0\.5"):
        evaluate(counted, x, y, eps=9.0, norm="L2", attacks=("clean",), verbose=False)
    assert counted.calls == 0
    with pytest.warns(UserWarning, match="above 0.3"):
        evaluate(counted, x, y, eps=0.5, attacks=("clean", "fgsm"), verbose=False)
    evaluate(counted, x, y, eps=0.5, norm="L2", attacks=("clean",), verbose=False)  # no warning


def test_registry_model_input_shape_mismatch_names_both_shapes() -> None:
    from dard_plugin.models import create

    model = create("small-cnn", num_classes=10).eval()
    counted = CountingModel(model).eval()
    counted.input_shape = model.input_shape
    labels = torch.zeros(4, dtype=torch.long)
    for bad in (torch.rand(4, 3, 28, 28), torch.rand(4, 1, 32, 32)):
        with pytest.raises(ValueError, match=r"expects inputs of shape \(1, 28, 28\).*got \(4, "):
            evaluate(counted, bad, labels, eps=0.1, attacks=("clean",), verbose=False)
    assert counted.calls == 0
    evaluate(model, torch.rand(4, 1, 28, 28), labels, eps=0.1, attacks=("clean",), verbose=False)


@pytest.mark.slow  # AutoAttack (APGD-CE, APGD-T) twice on CPU (~25 s on 2 shared cores)
def test_two_autoattack_sets_each_keep_and_resume_their_state(tmp_path, linear_setup) -> None:
    """Once a crash inside pyautoattack ('a different set of attacks') after the first set."""
    model, x, y = linear_setup
    x, y = x[:8], y[:8]
    state = tmp_path / "aa.json"
    # eps 0.3 fools every point early, which keeps APGD-T (9 targets) fast on CPU
    options = {"eps": 0.3, "attacks": ("clean", "apgd-ce", "apgd-t"), "verbose": False}
    first = evaluate(model, x, y, state_path=state, batch_size=4, **options)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["aa.apgd-ce.json", "aa.apgd-t.json"]
    calls = []
    hook = model.register_forward_hook(lambda *_: calls.append(1))
    again = evaluate(model, x, y, state_path=state, batch_size=4, **options)
    hook.remove()
    assert again.per_sample == first.per_sample and again.per_attack == first.per_attack
    # resumed: only the sanity checks (2), the label check (1) and the clean batches (2)
    assert len(calls) == 2 + 1 + 2
    # the resumed report's times are the chunks' own (it once timed the resuming process:
    # 0.0 s for a set already done), kept in the state beside each chunk's results
    for name in ("apgd-ce", "apgd-t"):
        kept = json.loads((tmp_path / f"aa.{name}.json").read_text())["seconds"]
        assert sorted(kept, key=int) == ["0", "4"] and all(t > 0 for t in kept.values())
        assert again.seconds[name] == first.seconds[name] == sum(kept.values())
    # a state file written before the times were kept: this process's time, as before
    for written in tmp_path.glob("aa.*.json"):
        payload = json.loads(written.read_text())
        del payload["seconds"]
        written.write_text(json.dumps(payload))
    older = evaluate(model, x, y, state_path=state, batch_size=4, **options)
    assert (
        older.per_sample == first.per_sample and older.seconds["apgd-t"] < first.seconds["apgd-t"]
    )


def test_a_state_for_another_evaluation_is_refused(tmp_path, linear_setup) -> None:
    model, x, y = linear_setup
    state = tmp_path / "aa.json"
    evaluate(model, x, y, eps=0.22, attacks=("apgd-ce",), state_path=state, verbose=False)
    with pytest.raises(ValueError, match=r"written for another evaluation \(differs in \['eps'\]"):
        evaluate(model, x, y, eps=0.25, attacks=("apgd-ce",), state_path=state, verbose=False)
    with pytest.raises(ValueError, match=r"\['fingerprint'\]: the images or labels\)"):
        evaluate(
            model,
            x.flip(0),
            y.flip(0),
            eps=0.22,
            attacks=("apgd-ce",),
            state_path=state,
            verbose=False,
        )
    other = copy.deepcopy(model)
    with torch.no_grad():
        next(other.parameters()).add_(1.0)
    with pytest.raises(ValueError, match=r"\['fingerprint'\]: the model's weights\)"):
        evaluate(other, x, y, eps=0.22, attacks=("apgd-ce",), state_path=state, verbose=False)
    # a state written by another pyautoattack release (an upgrade between the runs)
    for written in sorted(tmp_path.glob("aa*.json")):
        payload = json.loads(written.read_text())
        assert payload["settings"]["pyautoattack"] == importlib.metadata.version("pyautoattack")
        payload["settings"]["pyautoattack"] = "0.1.0"
        written.write_text(json.dumps(payload))
    with pytest.raises(ValueError, match=r"differs in \['pyautoattack'\]"):
        evaluate(model, x, y, eps=0.22, attacks=("apgd-ce",), state_path=state, verbose=False)


@pytest.mark.slow  # APGD-CE through evaluate and through pyautoattack per chunk (~25 s)
def test_autoattack_runs_chunk_by_chunk_as_pyautoattack_does_on_each_chunk(linear_setup) -> None:
    model, x, y = linear_setup
    x, y = x[:16], y[:16]
    report = evaluate(model, x, y, eps=0.22, attacks=("apgd-ce",), batch_size=8, verbose=False)
    direct = [
        pyautoattack_accuracy(model, x[i : i + 8], y[i : i + 8], 0.22, ["apgd-ce"]) for i in (0, 8)
    ]
    assert report.per_attack["apgd-ce"] == sum(direct) / 2
    assert 0.0 < report.per_attack["apgd-ce"] < 1.0


def test_per_sample_flags_world_size_and_shards_in_the_report(tmp_path, linear_setup) -> None:
    model, x, y = linear_setup
    report = evaluate(model, x, y, eps=0.1, attacks=("clean", "fgsm", "pgd"), verbose=False)
    assert report.world_size == 1 and report.shards == [[0, 32]]
    flags = {k: torch.tensor([c == "1" for c in v]) for k, v in report.per_sample.items()}
    assert set(flags) == {"clean", "fgsm", "pgd"} and all(len(f) == 32 for f in flags.values())
    assert report.per_attack["pgd"] == float(flags["pgd"].float().mean())
    worst = flags["clean"] & flags["fgsm"] & flags["pgd"]
    assert report.robust_accuracy == float(worst.float().mean())
    payload = json.loads(report.to_json(tmp_path / "r.json"))
    assert payload["dard_plugin"]["world_size"] == 1
    assert RobustnessReport.from_json((tmp_path / "r.json").read_text()) == report


def test_sharding_plan_cuts_at_batch_boundaries() -> None:
    from dard_plugin.evaluation.distributed import plan

    assert plan(32, 8, 2, 1).ranges == ((0, 16), (16, 32))
    third = plan(30, 8, 3, 2)
    assert third.ranges == ((0, 8), (8, 16), (16, 30)) and third.first_batch == 2
    assert (third.start, third.stop) == (16, 30)
    assert plan(5, 256, 1, 0).ranges == ((0, 5),)
    with pytest.raises(ValueError, match=r"empty shard; use a batch_size of at most 4"):
        plan(8, 8, 2, 0)


def test_torchrun_environment_without_a_process_group_is_an_error(monkeypatch, linear_setup):
    model, x, y = linear_setup
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(RuntimeError, match=r"no torch\.distributed process group is initialised"):
        evaluate(model, x, y, eps=0.1, attacks=("clean",), verbose=False)
    from dard_plugin.evaluation.distributed import check_torchrun_environment

    monkeypatch.delenv("MASTER_ADDR", raising=False)
    with pytest.raises(RuntimeError, match=r"half set up.*MASTER_ADDR"):
        check_torchrun_environment()


class BoundaryLinear(torch.nn.Module):
    """Two classes split by the hyperplane mean(x) = 0.5: logits +-20 (mean(x) - 0.5)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        score = 20.0 * (x.flatten(1).mean(1) - 0.5)
        return torch.stack([score, -score], dim=1)


def _near_the_boundary(n: int = 16) -> tuple[torch.Tensor, torch.Tensor]:
    """Images 0.01 either side of the boundary (well inside an eps of 0.1), labels set so
    that the first half is misclassified clean."""
    side = torch.tensor([1.0, -1.0]).repeat(n // 2)
    images = (0.5 + 0.01 * side).reshape(n, 1, 1, 1).expand(n, 1, 8, 8).contiguous()
    predicted = (side < 0).long()  # class 0 where mean > 0.5
    labels = predicted.clone()
    labels[: n // 2] = 1 - labels[: n // 2]
    return images, labels


def test_a_sample_misclassified_clean_is_never_robust_whatever_the_attacks_listed() -> None:
    """Issue 25, item 8: T-PGD pushes away from the clean prediction, so it moves a
    misclassified sample near the boundary to the right class; the worst case must still
    count it as not robust, with or without "clean" in the list."""
    model = BoundaryLinear().eval()
    images, labels = _near_the_boundary()
    with torch.no_grad():
        clean = model(images).argmax(1) == labels
    assert clean.tolist() == [False] * 8 + [True] * 8
    alone = evaluate(model, images, labels, eps=0.1, attacks=("tpgd",), verbose=False)
    listed = evaluate(model, images, labels, eps=0.1, attacks=("clean", "tpgd"), verbose=False)
    under_tpgd = torch.tensor([c == "1" for c in alone.per_sample["tpgd"]])
    assert (under_tpgd & ~clean).any()  # the attack does turn wrong into right here
    expected = float((under_tpgd & clean).float().mean())
    assert alone.robust_accuracy == listed.robust_accuracy == expected
    assert alone.robust_accuracy <= alone.clean_accuracy == 0.5
    assert alone.per_attack == listed.per_attack  # the row itself: accuracy under T-PGD


def test_worst_case_rule_needs_the_clean_flags() -> None:
    from dard_plugin.evaluation import worst_case

    flags = {"clean": torch.tensor([False, True, True]), "pgd": torch.tensor([True, True, False])}
    assert worst_case(flags).tolist() == [False, True, False]
    with pytest.raises(ValueError, match="clean"):
        worst_case({"pgd": torch.tensor([True])})


def test_robustness_curve_checks_every_eps_before_evaluating(monkeypatch, linear_setup) -> None:
    import dard_plugin.evaluation as evaluation

    model, x, y = linear_setup
    calls = []
    monkeypatch.setattr(evaluation, "evaluate", lambda *a, **k: calls.append(k["eps"]))
    with pytest.raises(ValueError, match=r"eps_values\[2\]"):
        robustness_curve(model, x, y, [0.01, 0.02, 8.0], attacks=("clean",), verbose=False)
    with pytest.raises(ValueError, match=r"eps_values\[1\]"):
        robustness_curve(model, x, y, [0.01, -0.1], attacks=("clean",), verbose=False)
    assert calls == []


def _strict_loads(text: str):
    def refuse(constant: str):
        raise ValueError(f"not strict JSON: {constant}")

    return json.loads(text, parse_constant=refuse)


def test_a_report_without_clean_listed_is_strict_json(tmp_path, linear_setup) -> None:
    """Issue 25: a report without "clean" once wrote NaN, which strict parsers reject."""
    model, x, y = linear_setup
    report = evaluate(model, x, y, eps=0.03, attacks=("fgsm",), verbose=False)
    payload = _strict_loads(report.to_json(tmp_path / "report.json"))
    assert _strict_loads((tmp_path / "report.json").read_text()) == payload
    with torch.no_grad():
        clean = float((model(x).argmax(1) == y).float().mean())
    assert payload["dard_plugin"]["clean_accuracy"] == clean
    assert payload["clean_acc"] == f"{100 * clean:.2f}"


def test_the_shared_json_writer_writes_null_for_numbers_that_are_not_finite(tmp_path) -> None:
    import math

    from dard_plugin._json import dumps_strict
    from dard_plugin.training.checkpointing import write_json

    history = [{"epoch": 1, "loss": math.nan, "pgd_accuracy": 0.5, "grad": [math.inf, 1.0]}]
    text = dumps_strict(history)
    assert _strict_loads(text) == [
        {"epoch": 1, "loss": None, "pgd_accuracy": 0.5, "grad": [None, 1.0]}
    ]
    write_json(tmp_path / "history.json", history)
    assert _strict_loads((tmp_path / "history.json").read_text()) == _strict_loads(text)


def test_ranks_that_disagree_are_shown_in_full() -> None:
    from dard_plugin.evaluation.distributed import describe_disagreement

    first, second = "a" * 63 + "0", "a" * 63 + "1"  # fingerprints that differ at the end
    text = describe_disagreement([first, second, first])
    assert f"ranks [0, 2]: {first}" in text and f"ranks [1]: {second}" in text


def test_attacks_and_budgets_given_as_iterators_run_in_full(tmp_path, linear_setup) -> None:
    """An iterator for ``attacks`` was read up by the checks: no attack ran, and the report
    gave the clean accuracy as the worst case. ``robustness_curve`` returned [] for a
    generator of budgets."""
    model, x, y = linear_setup
    listed = evaluate(model, x, y, eps=0.2, attacks=["clean", "pgd"], verbose=False)
    lazy = evaluate(model, x, y, eps=0.2, attacks=map(str.strip, ["clean", " pgd"]), verbose=False)
    assert list(lazy.per_attack) == ["pgd"]
    assert lazy.robust_accuracy == listed.robust_accuracy < listed.clean_accuracy
    reports = robustness_curve(model, x, y, (e for e in (0.1, 0.2)), attacks=["pgd"], verbose=False)
    assert [r.eps for r in reports] == [0.1, 0.2]
    lazy_curve = robustness_curve(model, x, y, [0.1, 0.2], attacks=iter(["pgd"]), verbose=False)
    assert [r.per_attack for r in lazy_curve] == [r.per_attack for r in reports]  # both budgets
    with pytest.raises(ValueError, match="attacks must be a non-empty list"):
        evaluate(model, x, y, eps=0.2, attacks=None)


def test_a_curve_with_autoattack_state_keeps_one_state_per_budget(tmp_path, linear_setup) -> None:
    """Every budget once shared one state file: the second was refused as "written for
    another evaluation" after the first had run."""
    model, x, y = linear_setup
    options = {"attacks": ["clean", "apgd-ce"], "verbose": False}
    state = tmp_path / "aa.json"
    reports = robustness_curve(model, x, y, [0.1, 8 / 255], state_path=state, **options)
    files = sorted(p.name for p in tmp_path.iterdir())
    assert files == ["aa.eps-0.1.apgd-ce.json", "aa.eps-8_255.apgd-ce.json"]
    again = robustness_curve(model, x, y, [0.1, 8 / 255], state_path=state, **options)
    assert [r.per_sample for r in again] == [r.per_sample for r in reports]  # resumed


def test_autoattack_leaves_no_gradient_in_the_parameters(linear_setup) -> None:
    """FAB's ``backward()`` filled ``.grad`` of a model whose parameters require grad."""
    model, x, y = linear_setup
    assert all(p.requires_grad for p in model.parameters())
    report = evaluate(model, x[:8], y[:8], eps=0.2, attacks=["fab-t"], verbose=False)
    assert 0.0 <= report.per_attack["fab-t"] <= 1.0
    assert all(p.grad is None and p.requires_grad for p in model.parameters())


def test_percentages_round_half_up_from_the_exact_share() -> None:
    """``f"{100 * 115 / 800:.2f}"`` is 14.37 (the product is 14.374999...)."""
    from dard_plugin.evaluation.report import percent

    assert [percent(k / 800) for k in (115, 117, 203)] == ["14.38", "14.63", "25.38"]
    assert [percent(v) for v in (0.0, 1.0, 2 / 3, 0.4567)] == ["0.00", "100.00", "66.67", "45.67"]
    report = RobustnessReport(
        model_name="m",
        eps=0.1,
        norm="Linf",
        clean_accuracy=115 / 800,
        robust_accuracy=115 / 800,
        per_attack={},
        n_examples=800,
        seed=0,
        seconds={},
        versions={},
    )
    assert json.loads(report.to_json())["clean_acc"] == "14.38"
    assert "| clean | 14.38 |" in report.to_markdown()


def test_trainers_validation_scores_nan_logits_as_wrong() -> None:
    """The trainers' per-epoch validation scored an all-NaN row as class 0 (argmax), so a
    student giving NaN on validation images reported the share of class-0 labels as its
    clean and PGD accuracy; the suite counts such a row wrong, and so does validation."""
    from dard_plugin.training.validation import validate

    class NaNOnSome(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.linear = torch.nn.Linear(16, 10)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            logits = torch.zeros(x.shape[0], 10) + 0 * self.linear(x.flatten(1))
            logits[:, 0] = 1.0  # class 0 everywhere, but NaN for the first half
            return torch.where(torch.arange(x.shape[0])[:, None] < 4, torch.nan, logits)

    x = torch.rand(8, 1, 4, 4)
    y = torch.zeros(8, dtype=torch.long)
    result = validate(
        NaNOnSome(),
        x,
        y,
        attack="pgd",
        eps=0.05,
        batch_size=8,
        device=torch.device("cpu"),
        seed=0,
        bounds=(0.0, 1.0),
    )
    assert result == {"clean_accuracy": 0.5, "pgd_accuracy": 0.5}
