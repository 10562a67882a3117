"""Issue 13 item 4: ``evaluate(norm="L2")`` has every suite row (FGM, PGD-L2, BIM-L2,
T-PGD-L2, CW-L2, DPGD-L2) on the package's own L2 loop, seeded from the evaluation's
generator, plus AutoAttack's standard L2 version; checked against torchattacks' PGDL2,
``dpgd_l2`` and pyautoattack run directly."""

from __future__ import annotations

import dataclasses
import importlib

import pytest
import torch
import torchattacks
from conftest import PrototypeLinear, TinyCNN, make_prototype_data, state_snapshot
from host_fixtures import needs_fashion_mnist

from dard_plugin.attacks import dpgd_l2
from dard_plugin.attacks.pgd import projected_gradient_descent
from dard_plugin.evaluation import DEFAULT_ATTACKS, SUITE, evaluate
from dard_plugin.evaluation.attacks import SuiteAttack, batch_generator

EPS = 1.0  # 8x8 grey images: 0.125 per feature root-mean-square
# (step fraction, steps, start) of each row, the same in both norms
SETTINGS = {
    "fgsm": (1.0, 1, "clean"),
    "pgd": (0.25, 20, "uniform"),
    "bim": (0.1, 20, "clean"),
    "tpgd": (0.25, 10, "gaussian"),
    "cw": (0.25, 30, "uniform"),
    "dpgd": (0.25, 10, "clean"),
}


def l2(delta: torch.Tensor) -> torch.Tensor:
    return delta.flatten(1).norm(dim=1)


@pytest.fixture(autouse=True)
def one_thread():
    """One intra-op thread: small models on shared, loaded cores ran 25x slower with two
    (the shipped-teacher test: 40 s against 1.6 s)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def data() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    return make_prototype_data(n=24, noise=0.3)


@pytest.fixture
def model() -> torch.nn.Module:
    torch.manual_seed(0)
    return TinyCNN().eval()


def test_every_row_has_an_l2_form_with_its_linf_settings() -> None:
    assert set(SUITE) == set(SETTINGS)
    for name, row in SUITE.items():
        assert row.name == name and row.norms == ("Linf", "L2")
        assert (row.step_fraction, row.steps, row.start) == SETTINGS[name]
    assert set(DEFAULT_ATTACKS) - {"clean", "autoattack"} <= set(SUITE)


@pytest.mark.parametrize("name", sorted(SETTINGS))
def test_l2_row_stays_in_the_ball_and_bounds_and_leaves_inputs_and_model(data, name) -> None:
    images, labels, _ = data
    torch.manual_seed(0)
    model = TinyCNN().train()  # BatchNorm and dropout: mode and buffers must be kept
    model.features[3].eval()  # a submodule's own flag, given back as found
    flags = [m.training for m in model.modules()]
    before, x_before = state_snapshot(model), images.clone()
    rng = torch.get_rng_state()
    bounds = (0.1, 0.9)
    x = images.clamp(*bounds)
    adversarial = SUITE[name].run(
        model, x, labels, EPS, "L2", torch.Generator().manual_seed(0), bounds=bounds
    )
    assert torch.equal(images, x_before)
    assert [m.training for m in model.modules()] == flags
    assert all(torch.equal(v, before[k]) for k, v in state_snapshot(model).items())
    assert torch.equal(torch.get_rng_state(), rng)  # no global RNG
    norms = l2(adversarial - x)
    assert float(norms.max()) <= EPS + 1e-5
    assert float(norms.max()) > EPS / 4  # it moved
    assert float((adversarial - x).abs().max()) > EPS / 8  # an L2, not an L-inf, step
    assert float(adversarial.min()) >= bounds[0] and float(adversarial.max()) <= bounds[1]


@pytest.mark.parametrize("name", ["pgd", "cw", "tpgd"])
def test_random_starts_come_from_the_generator(data, model, name) -> None:
    images, labels, _ = data
    row = dataclasses.replace(SUITE[name], steps=1)

    def run(seed: int) -> torch.Tensor:
        return row.run(model, images, labels, EPS, "L2", torch.Generator().manual_seed(seed))

    first = run(0)
    assert torch.equal(run(0), first)
    assert not torch.equal(run(1), first)


def test_gaussian_start_is_clipped_into_the_bounds_not_into_0_1(data, model) -> None:
    images, labels, _ = data
    assert float(images.min()) == 0.0 and float(images.max()) == 1.0  # pixels on the edges
    bounds = (-0.5, 1.5)
    noise = torch.randn(images.shape, generator=torch.Generator().manual_seed(4))
    row = SUITE["tpgd"]
    expected = projected_gradient_descent(
        model,
        images,
        labels,
        row.objective(model, images),
        norm="L2",
        eps=EPS,
        alpha=EPS / 4,
        steps=10,
        start=images + 0.001 * noise,
        bounds=bounds,
    )
    got = row.run(model, images, labels, EPS, "L2", torch.Generator().manual_seed(4), bounds)
    assert torch.equal(got, expected)


@pytest.mark.parametrize(
    ("name", "alpha", "steps"), [("fgsm", EPS, 1), ("bim", EPS / 10, 20), ("pgd", EPS / 4, 20)]
)
def test_cross_entropy_rows_equal_torchattacks_pgdl2(data, model, name, alpha, steps) -> None:
    """Where the definitions coincide: CE, no random start (PGDL2's start, a radius uniform
    in [0, eps], is not the suite's uniform draw in the ball)."""
    images, labels, _ = data
    row = dataclasses.replace(SUITE[name], start="clean")
    ours = row.run(model, images, labels, EPS, "L2", torch.Generator().manual_seed(0))
    theirs = torchattacks.PGDL2(model, eps=EPS, alpha=alpha, steps=steps, random_start=False)(
        images, labels
    )
    assert float((ours - theirs).abs().max()) < 1e-6
    assert float(l2(ours - images).min()) > 0.0


def test_dpgd_row_is_dpgd_l2_with_per_sample_dice(data, model) -> None:
    images, labels, _ = data
    ours = SUITE["dpgd"].run(model, images, labels, EPS, "L2", torch.Generator())
    # dpgd_l2's defaults (10 steps of eps / 4, no random start), per-sample Dice
    assert torch.equal(ours, dpgd_l2(model, images, labels, eps=EPS, reduction="sample"))
    assert not torch.equal(ours, images)


def test_evaluation_seeds_each_batch_and_same_seed_same_report(data) -> None:
    images, labels, prototypes = data
    model = PrototypeLinear(prototypes, scale=1.0).eval()
    attacks = ("clean", *SUITE)
    options = {"eps": 1.5, "norm": "L2", "attacks": attacks, "batch_size": 8, "verbose": False}
    rng = torch.get_rng_state()
    first = evaluate(model, images, labels, seed=3, **options)
    assert torch.equal(torch.get_rng_state(), rng)
    again = evaluate(model, images, labels, seed=3, **options)
    assert first.norm == "L2" and set(first.per_attack) == set(SUITE)
    assert again.per_sample == first.per_sample and again.per_attack == first.per_attack
    assert 0.0 < first.per_attack["pgd"] < first.clean_accuracy  # a non-trivial case
    for name in ("pgd", "cw", "tpgd"):  # the rows with a random start
        flags = []
        for batch, start in enumerate(range(0, 24, 8)):
            x, y = images[start : start + 8], labels[start : start + 8]
            adversarial = SUITE[name].run(model, x, y, 1.5, "L2", batch_generator(3, batch))
            flags += (model(adversarial).argmax(1) == y).tolist()
        assert first.per_sample[name] == "".join("1" if f else "0" for f in flags)


def test_autoattack_l2_equals_pyautoattack_direct() -> None:
    from pyautoattack import AutoAttack

    torch.manual_seed(0)
    model = TinyCNN().eval()
    x, y, _ = make_prototype_data(n=16)
    with torch.no_grad():
        y = model(x).argmax(1)  # every point correct before the attack
    eps = 0.1  # some points survive: all four attacks run (~5 s each way on one thread)
    report = evaluate(model, x, y, eps=eps, norm="L2", attacks=("autoattack",), verbose=False)
    assert 0.0 < report.per_attack["autoattack"] < 1.0
    adversary = AutoAttack(model, eps=eps, norm="L2", seed=0, version="standard", device="cpu")
    adversarial, _ = adversary.run_standard_evaluation(x, y, batch_size=256)
    assert float(l2(adversarial - x).max()) <= eps + 1e-5
    with torch.no_grad():
        direct = model(adversarial).argmax(1) == y
    assert report.per_sample["autoattack"] == "".join("1" if f else "0" for f in direct.tolist())


def test_a_row_without_an_l2_form_is_refused_naming_it_and_the_norm(data, monkeypatch) -> None:
    """Every row has an L2 form today; the refusal stays for a row that has none."""
    images, labels, prototypes = data
    linf_only = dataclasses.replace(SUITE["bim"], norms=("Linf",))
    with pytest.raises(ValueError, match=r"attack 'bim' has no L2 form.*\['Linf'\]"):
        linf_only.run(PrototypeLinear(prototypes), images, labels, EPS, "L2", torch.Generator())
    monkeypatch.setitem(SUITE, "bim", linf_only)
    calls = []
    model = PrototypeLinear(prototypes).eval()
    model.register_forward_hook(lambda *_: calls.append(1))
    with pytest.raises(ValueError, match=r"attack 'bim' has no L2 form in this suite"):
        evaluate(model, images, labels, eps=EPS, norm="L2", attacks=("clean", "bim"))
    assert not calls  # before any work
    with pytest.raises(ValueError, match="norms must be"):
        SuiteAttack("x", "x", SUITE["pgd"].objective, 0.25, 1, norms=("L1",))


def test_cli_default_attack_lists_have_l2_forms() -> None:
    main = importlib.import_module("dard_plugin.cli.main")
    evaluation = importlib.import_module("dard_plugin.cli.evaluation")
    training = importlib.import_module("dard_plugin.cli.training_options")

    assert ",".join(DEFAULT_ATTACKS) == evaluation.DEFAULT_EVALUATE_ATTACKS
    for names in (evaluation.DEFAULT_EVALUATE_ATTACKS, training.DEFAULT_TRAINING_EVAL_ATTACKS):
        assert "dpgd" in names.split(",")
        assert all("L2" in SUITE[n].norms for n in names.split(",") if n in SUITE)
    parser = main.build_parser()
    for command in ("distill", "train-teacher"):
        args = parser.parse_args([command, "--norm", "L2", "--out", "x"])
        assert args.eval_attacks == training.DEFAULT_TRAINING_EVAL_ATTACKS


@needs_fashion_mnist
def test_shipped_teacher_under_every_l2_row() -> None:
    """The first 32 test images, every row at L2 eps 1.5 (docs/training.md's choice)."""
    from dard_plugin import load_teacher
    from dard_plugin.data import load_dataset

    teacher = load_teacher("dard-fmnist-teacher", dataset="fashion-mnist")
    x, y = load_dataset("fashion-mnist", train=False, n_examples=32, download=False)
    report = evaluate(teacher, x, y, eps=1.5, norm="L2", attacks=("clean", *SUITE), verbose=False)
    assert report.norm == "L2" and report.eps == 1.5 and set(report.per_attack) == set(SUITE)
    values = [report.clean_accuracy, *report.per_attack.values(), report.robust_accuracy]
    assert all(0.0 <= v <= 1.0 for v in values)
    assert report.clean_accuracy > 0.5  # a trained teacher
    assert all(v <= report.clean_accuracy for v in report.per_attack.values())
    assert all(report.robust_accuracy <= v for v in report.per_attack.values())
    assert report.per_attack["pgd"] < report.clean_accuracy  # L2 1.5 fools some
