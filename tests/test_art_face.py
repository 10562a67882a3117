"""dard_plugin.art.DicePGD inside real ART workflows."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from art.attacks.evasion import ProjectedGradientDescentPyTorch
from art.defences.trainer import AdversarialTrainer
from art.estimators.classification import PyTorchClassifier
from conftest import TinyCNN, assert_state_equal, make_prototype_data, state_snapshot
from torch import nn

from dard_plugin import dpgd
from dard_plugin.art import DicePGD

EPS = 8 / 255


def classifier_for(model: nn.Module, **kwargs) -> PyTorchClassifier:
    options = {"clip_values": (0.0, 1.0)}
    options.update(kwargs)
    return PyTorchClassifier(
        model=model,
        loss=nn.CrossEntropyLoss(),
        optimizer=torch.optim.SGD(model.parameters(), lr=0.01),
        input_shape=(1, 8, 8),
        nb_classes=10,
        **options,
    )


@pytest.fixture
def data() -> tuple[np.ndarray, np.ndarray]:
    images, labels, _ = make_prototype_data(n=40)
    return images.numpy(), labels.numpy()


def test_generate_equals_the_core(prototype_model, data) -> None:
    x, y = data
    attack = DicePGD(
        classifier_for(prototype_model),
        eps=0.1,
        eps_step=0.02,
        max_iter=5,
        batch_size=16,
        verbose=False,
        reduction="batch",
    )
    x_before = x.copy()
    x_adv = attack.generate(x, y)
    assert isinstance(x_adv, np.ndarray) and x_adv.dtype == x.dtype and x_adv.shape == x.shape
    assert np.array_equal(x, x_before)
    # batch_size 16 over 40 samples, the paper's batch reduction: the core on the same
    # three batches
    expected = torch.cat(
        [
            dpgd(
                prototype_model,
                torch.from_numpy(x[i : i + 16]),
                torch.from_numpy(y[i : i + 16]),
                eps=0.1,
                alpha=0.02,
                steps=5,
            )
            for i in range(0, 40, 16)
        ]
    )
    assert np.array_equal(x_adv, expected.numpy())


def test_labels_one_hot_indices_or_predictions(prototype_model, data) -> None:
    x, y = data
    attack = DicePGD(classifier_for(prototype_model), verbose=False)
    from_indices = attack.generate(x, y)
    from_one_hot = attack.generate(x, np.eye(10, dtype=np.float32)[y])
    assert np.array_equal(from_indices, from_one_hot)
    predictions = classifier_for(prototype_model).predict(x).argmax(1)
    assert np.array_equal(attack.generate(x), attack.generate(x, predictions))


def test_preprocessing_and_clip_values_honoured(data) -> None:
    x, y = data
    torch.manual_seed(0)
    raw = TinyCNN().eval()
    mean, std = 0.4, 0.2
    classifier = classifier_for(raw, preprocessing=(mean, std))
    x_adv = DicePGD(
        classifier,
        eps=0.05,
        eps_step=0.01,
        max_iter=4,
        batch_size=64,
        verbose=False,
        reduction="batch",
    ).generate(x, y)

    class Normalized(nn.Module):
        def forward(self, t: torch.Tensor) -> torch.Tensor:
            return raw((t - mean) / std)

    expected = dpgd(
        Normalized(), torch.from_numpy(x), torch.from_numpy(y), eps=0.05, alpha=0.01, steps=4
    )
    assert np.allclose(x_adv, expected.numpy(), atol=1e-6)

    # clip values other than [0, 1]: inputs and outputs in [-1, 1]
    shifted = classifier_for(raw, clip_values=(-1.0, 1.0))
    x_shifted = 2 * x - 1
    x_adv = DicePGD(shifted, eps=0.5, eps_step=0.2, max_iter=5, verbose=False).generate(
        x_shifted, y
    )
    assert x_adv.min() >= -1 and x_adv.max() <= 1 and x_adv.min() < 0
    assert np.abs(x_adv - x_shifted).max() <= 0.5 + 1e-6


def test_estimator_state_untouched(tiny_cnn, data) -> None:
    x, y = data
    tiny_cnn.train()
    snapshot = state_snapshot(tiny_cnn)
    attack = DicePGD(classifier_for(tiny_cnn), verbose=False)
    x_adv = attack.generate(x, y)
    assert tiny_cnn.training
    assert_state_equal(tiny_cnn, snapshot)
    assert all(p.grad is None for p in tiny_cnn.parameters())  # no parameter gradients
    assert np.abs(x_adv - x).max() <= EPS + 1e-6
    assert x_adv.min() >= 0 and x_adv.max() <= 1


def test_targeted_and_random_restarts(prototype_model, data) -> None:
    x, y = data
    classifier = classifier_for(prototype_model)
    targets = (y + 2) % 10
    attack = DicePGD(classifier, eps=0.3, eps_step=0.05, max_iter=10, targeted=True, verbose=False)
    assert attack.targeted
    x_adv = attack.generate(x, targets)
    assert (classifier.predict(x_adv).argmax(1) == targets).mean() > 0.9
    with pytest.raises(ValueError, match="Target labels"):
        attack.generate(x)

    def restarts(seed: int) -> np.ndarray:
        return DicePGD(
            classifier,
            eps=0.02,
            eps_step=0.01,
            max_iter=2,
            num_random_init=3,
            verbose=False,
            generator=torch.Generator().manual_seed(seed),
        ).generate(x, y)

    assert np.array_equal(restarts(0), restarts(0))
    assert not np.array_equal(restarts(0), restarts(1))
    assert np.abs(restarts(0) - x).max() <= 0.02 + 1e-6


def test_lowers_accuracy_like_art_pgd(prototype_model, data) -> None:
    x, y = data
    classifier = classifier_for(prototype_model)
    dice = DicePGD(classifier, eps=0.25, eps_step=0.05, max_iter=10, verbose=False)
    pgd = ProjectedGradientDescentPyTorch(
        classifier, eps=0.25, eps_step=0.05, max_iter=10, num_random_init=0, verbose=False
    )
    clean = (classifier.predict(x).argmax(1) == y).mean()
    dice_acc = (classifier.predict(dice.generate(x, y)).argmax(1) == y).mean()
    pgd_acc = (classifier.predict(pgd.generate(x, y)).argmax(1) == y).mean()
    assert clean == 1.0
    assert dice_acc < 0.5 and pgd_acc < 0.5


def test_inside_art_adversarial_trainer(data) -> None:
    x, y = data
    torch.manual_seed(0)
    model = TinyCNN()
    classifier = classifier_for(model)
    attack = DicePGD(classifier, eps=0.1, eps_step=0.02, max_iter=3, verbose=True)
    before = state_snapshot(model)
    trainer = AdversarialTrainer(classifier, attacks=attack, ratio=0.5)
    trainer.fit(x, np.eye(10, dtype=np.float32)[y], nb_epochs=2, batch_size=16)
    assert attack.verbose is False  # ART's trainer silences its attacks
    changed = [k for k, v in state_snapshot(model).items() if not torch.equal(v, before[k])]
    assert "head.weight" in changed


def test_progress_bar_behind_verbose(prototype_model, data, capsys) -> None:
    x, y = data
    DicePGD(classifier_for(prototype_model), verbose=True).generate(x, y)
    assert "DicePGD" in capsys.readouterr().err
    DicePGD(classifier_for(prototype_model), verbose=False).generate(x, y)
    assert "DicePGD" not in capsys.readouterr().err


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"eps": -0.1}, ValueError, "eps"),
        ({"eps_step": 0.0}, ValueError, "eps_step"),
        ({"max_iter": -1}, ValueError, "max_iter"),
        ({"max_iter": 2.0}, ValueError, "max_iter"),
        ({"num_random_init": 1.0}, TypeError, "num_random_init"),
        ({"num_random_init": -1}, ValueError, "num_random_init"),
        ({"batch_size": 0}, ValueError, "batch_size"),
        ({"reduction": "mean"}, ValueError, "reduction"),
        # ART's PGD answers a wrong type with ValueError for these
        ({"targeted": "no"}, ValueError, "targeted"),
        ({"verbose": None}, ValueError, "verbose"),
    ],
)
def test_bad_parameters(prototype_model, kwargs, error, match) -> None:
    with pytest.raises(error, match=match):
        DicePGD(classifier_for(prototype_model), **kwargs)
    attack = DicePGD(classifier_for(prototype_model))
    with pytest.raises(error, match=match):
        attack.set_params(**kwargs)


def test_bad_inputs(prototype_model, data) -> None:
    x, y = data
    attack = DicePGD(classifier_for(prototype_model), verbose=False)
    with pytest.raises(ValueError, match="images must lie in"):
        attack.generate(x + 2, y)
    with pytest.raises(ValueError, match="y must have shape"):
        attack.generate(x, y[:-1])
    with pytest.raises(ValueError, match="labels must be class indices"):
        attack.generate(x, np.full_like(y, 12))
    with pytest.raises(ValueError, match="at least one example"):
        attack.generate(x[:0], y[:0])
    with pytest.raises(TypeError, match="numpy array"):
        attack.generate(torch.from_numpy(x), y)


# --------------------------------------------------------------------------- issue 14
def mixed(y: np.ndarray) -> np.ndarray:
    labels = y.copy()
    labels[::3] = (labels[::3] + 1) % 10
    return labels


def test_default_result_does_not_depend_on_batch_size(tiny_cnn, data) -> None:
    # ART users expect batch_size to change speed only: the default per-sample Dice
    # makes it so (the paper's "batch" reduction changed 1.3% of pixels between 40 and 7)
    x, y = data
    classifier = classifier_for(tiny_cnn.eval())
    x64, labels = x, mixed(y)

    def run(batch_size: int, **kwargs) -> np.ndarray:
        attack = DicePGD(classifier, batch_size=batch_size, verbose=False, **kwargs)
        return attack.generate(x64, labels)

    # equal in exact arithmetic; float32 kernels blocked differently for another batch size
    # may flip the sign of a near-zero gradient entry, so allow a few such pixels
    assert (run(40) != run(7)).mean() <= 1e-3


def test_round_off_outside_clip_values_is_clipped(prototype_model, data) -> None:
    x, y = data
    x = x.copy()
    x[0, 0, 0, 0], x[1, 0, 0, 0] = -3e-8, 1 + 3e-8
    x_adv = DicePGD(classifier_for(prototype_model), verbose=False).generate(x, y)
    assert x_adv.min() >= 0 and x_adv.max() <= 1
    assert np.abs(x_adv - np.clip(x, 0, 1)).max() <= EPS + 1e-6


def test_norm_is_validated_like_art(prototype_model) -> None:
    classifier = classifier_for(prototype_model)
    for norm in (np.inf, "inf", float("inf")):
        assert DicePGD(classifier, norm=norm).norm == norm
    for bad in (-1, 0, 0.5):
        with pytest.raises(ValueError, match="Norm order"):  # ART's own check
            DicePGD(classifier, norm=bad)
    with pytest.raises(ValueError, match=r"DicePGD supports norm"):
        DicePGD(classifier, norm=3)


def test_eps_arrays_per_sample_and_per_feature(prototype_model, data) -> None:
    x, y = data
    classifier = classifier_for(prototype_model)
    per_sample = np.linspace(0.0, 0.1, x.shape[0]).reshape(-1, 1, 1, 1)
    attack = DicePGD(
        classifier, eps=per_sample, eps_step=per_sample / 4 + 1e-3, batch_size=16, verbose=False
    )
    delta = np.abs(attack.generate(x, y) - x).reshape(x.shape[0], -1).max(1)
    assert (delta <= per_sample.ravel() + 1e-6).all() and delta[0] == 0 and delta[-1] > 0
    per_feature = np.full((1, 8, 8), 0.05, dtype=np.float32)
    per_feature[..., :4] = 0.0
    attack.set_params(eps=per_feature, eps_step=np.full_like(per_feature, 0.01))
    delta = attack.generate(x, y) - x
    assert np.abs(delta[..., :4]).max() == 0 and np.abs(delta).max() <= 0.05 + 1e-6
    with pytest.raises(TypeError):  # ART: eps and eps_step of different types
        DicePGD(classifier, eps=np.array([0.1]), eps_step=0.01)
    with pytest.raises(ValueError):  # ART: different shapes
        DicePGD(classifier, eps=np.array([0.1, 0.1]), eps_step=np.array([0.01]))


def test_mask_in_generate_per_sample_and_broadcast(prototype_model, data) -> None:
    x, y = data
    attack = DicePGD(classifier_for(prototype_model), num_random_init=1, verbose=False)
    rng = np.random.default_rng(0)
    for mask in (
        rng.binomial(1, 0.5, size=x.shape).astype(np.float32),
        rng.binomial(1, 0.5, size=x.shape[1:]).astype(np.float32),
        rng.binomial(1, 0.5, size=x.shape[2:]).astype(bool),
    ):
        x_adv = attack.generate(x, y, mask=mask)
        assert np.abs((1 - mask.astype(np.float32)) * (x_adv - x)).max() == 0
        assert (x_adv != x).any()
    # a leading 1 broadcasts over every batch, whatever the batch size
    leading = rng.binomial(1, 0.5, size=(1, *x.shape[1:])).astype(np.float32)
    for batch_size in (x.shape[0], 2, 1):
        attack.set_params(batch_size=batch_size)
        x_adv = attack.generate(x, y, mask=leading)
        assert np.abs((1 - leading) * (x_adv - x)).max() == 0 and (x_adv != x).any()
    with pytest.raises(ValueError, match=r"`mask` must broadcast against x"):
        attack.generate(x, y, mask=np.ones((2, *x.shape[1:]), dtype=np.float32))
    with pytest.raises(ValueError, match="mask"):
        attack.generate(x, y, mask=-np.ones(x.shape[1:], dtype=np.float32))
    with pytest.raises(ValueError, match="mask"):
        attack.generate(x, y, mask=np.ones(x.shape[1:], dtype=np.int64))


def test_per_feature_clip_values(prototype_model, data) -> None:
    x, y = data
    high = np.full((1, 8, 8), 0.95, dtype=np.float32)
    high[..., 0] = 0.6
    classifier = classifier_for(prototype_model, clip_values=(np.zeros((1, 8, 8)), high))
    x_in = np.minimum(x, high)
    x_adv = DicePGD(classifier, eps=0.1, eps_step=0.05, verbose=False).generate(x_in, y)
    assert (x_adv <= high + 1e-7).all() and (x_adv >= 0).all()
    assert np.abs(x_adv - x_in).max() <= 0.1 + 1e-6


def test_random_eps_and_master_seed_reproducibility(prototype_model, data) -> None:
    x, y = data
    classifier = classifier_for(prototype_model)

    def run(seed: int, **kwargs) -> np.ndarray:
        np.random.seed(seed)  # what ART's tests' master_seed does for numpy
        attack = DicePGD(classifier, eps=0.1, eps_step=0.02, max_iter=2, verbose=False, **kwargs)
        return attack.generate(x, y)

    for kwargs in ({"num_random_init": 2}, {"random_eps": True}):
        assert np.array_equal(run(1234, **kwargs), run(1234, **kwargs))
        assert not np.array_equal(run(1234, **kwargs), run(4321, **kwargs))
    drawn = np.abs(run(1234, random_eps=True) - x).max()
    assert 0 < drawn <= 0.1 + 1e-6


@pytest.mark.parametrize("eps", [0.1, "per-sample"])
def test_random_eps_with_a_generator_follows_it_and_leaves_numpy_alone(
    prototype_model, data, eps
) -> None:
    """With ``generator`` given, random_eps's draw came from numpy's global generator
    still: the same generator seed gave other examples, and numpy's state moved."""
    x, y = data
    classifier = classifier_for(prototype_model)
    budget = 0.1 if eps == 0.1 else np.linspace(0.05, 0.1, x.shape[0]).reshape(-1, 1, 1, 1)
    step = 0.02 if eps == 0.1 else np.full_like(budget, 0.02)

    def run(seed: int) -> np.ndarray:
        attack = DicePGD(
            classifier,
            eps=budget,
            eps_step=step,
            max_iter=2,
            random_eps=True,
            verbose=False,
            generator=torch.Generator().manual_seed(seed),
            num_random_init=1,
        )
        return attack.generate(x, y)

    np.random.seed(0)
    state = np.random.get_state()
    first = run(123)
    assert np.array_equal(np.random.get_state()[1], state[1])  # numpy's global state kept
    np.random.seed(1)  # another global state changes nothing
    assert np.array_equal(run(123), first)
    assert not np.array_equal(run(124), first)


def test_decay_momentum(prototype_model, data) -> None:
    x, y = data
    classifier = classifier_for(prototype_model)
    plain = DicePGD(classifier, eps=0.1, eps_step=0.02, verbose=False).generate(x, y)
    zero = DicePGD(classifier, eps=0.1, eps_step=0.02, decay=0.0, verbose=False).generate(x, y)
    assert np.array_equal(plain, zero)  # decay 0: the sign of the current gradient only
    heavy = DicePGD(classifier, eps=0.1, eps_step=0.02, decay=1.0, verbose=False).generate(x, y)
    assert np.abs(heavy - x).max() <= 0.1 + 1e-6
    with pytest.raises(ValueError, match="decay"):
        DicePGD(classifier, decay=-0.5)


def test_summary_writer_gets_every_iteration(prototype_model, data) -> None:
    from art.summary_writer import SummaryWriter

    class Recorder(SummaryWriter):
        def __init__(self) -> None:
            # not SummaryWriter.__init__, which imports tensorboardX (not installed here)
            self._summary_writer_arg = False
            self.updates: list[tuple[int, int, tuple[int, ...]]] = []
            self.resets = 0

        def update(
            self,
            batch_id,
            global_step,
            grad=None,
            patch=None,
            estimator=None,
            x=None,
            y=None,
            targeted=False,
            **kwargs,
        ) -> None:
            self.updates.append((batch_id, global_step, grad.shape))
            assert estimator is not None and y.shape == (x.shape[0], 10)

        def reset(self) -> None:
            self.resets += 1

    x, y = data
    recorder = Recorder()
    attack = DicePGD(
        classifier_for(prototype_model),
        max_iter=3,
        batch_size=16,
        summary_writer=recorder,
        verbose=False,
    )
    attack.generate(x, y)
    assert [(b, s) for b, s, _ in recorder.updates] == [(b, s) for b in range(3) for s in range(3)]
    assert recorder.updates[0][2] == (16, 1, 8, 8) and recorder.resets == 1
    with pytest.raises(ValueError, match="TensorBoard"):
        DicePGD(classifier_for(prototype_model), summary_writer=recorder, num_random_init=2)


def test_unknown_generate_keywords_are_ignored_as_in_art(prototype_model, data) -> None:
    x, y = data
    attack = DicePGD(classifier_for(prototype_model), verbose=False)
    assert np.array_equal(attack.generate(x, y, x_init=x, foo=1), attack.generate(x, y))


def test_max_iter_zero_returns_x(prototype_model, data) -> None:
    x, y = data
    assert np.array_equal(DicePGD(classifier_for(prototype_model), max_iter=0).generate(x, y), x)


class OneLogit(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(64, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x.flatten(1))


def test_single_output_binary_classifier(data) -> None:
    # one logit z for a binary classifier: attacked as the two-class view [0, z]
    x, _ = data
    torch.manual_seed(0)
    model = OneLogit().eval()
    with torch.no_grad():
        y = (model(torch.from_numpy(x)).squeeze(1) > 0).long().numpy()
    binary = PyTorchClassifier(
        model=model,
        loss=nn.BCEWithLogitsLoss(),
        input_shape=(1, 8, 8),
        nb_classes=2,
        clip_values=(0.0, 1.0),
    )
    x_adv = DicePGD(binary, eps=0.2, eps_step=0.05, verbose=False).generate(x, y)

    class TwoLogits(nn.Module):
        def forward(self, t: torch.Tensor) -> torch.Tensor:
            z = model(t)
            return torch.cat([torch.zeros_like(z), z], dim=1)

    expected = dpgd(
        TwoLogits(),
        torch.from_numpy(x),
        torch.from_numpy(y),
        eps=0.2,
        alpha=0.05,
        reduction="sample",
    )
    assert np.array_equal(x_adv, expected.numpy())
    with torch.no_grad():
        flipped = ((model(torch.from_numpy(x_adv)).squeeze(1) > 0).long().numpy() != y).mean()
    assert flipped > 0.5
    # (N, 1) labels, ART's binary index format, are accepted too
    assert np.array_equal(
        DicePGD(binary, eps=0.2, eps_step=0.05, verbose=False).generate(x, y[:, None]), x_adv
    )


# --------------------------------------------------------------------------- issue 11
@pytest.mark.parametrize("width", [5, 11])
def test_one_hot_width_must_match_nb_classes(prototype_model, data, width: int) -> None:
    x, y = data
    attack = DicePGD(classifier_for(prototype_model), verbose=False)
    with pytest.raises(ValueError, match=rf"y has {width} columns .* nb_classes=10"):
        attack.generate(x, np.eye(width, dtype=np.float32)[y % width])


@pytest.mark.parametrize("fault", ["all-zero", "two ones", "a two"])
def test_one_hot_rows_that_name_no_single_class_are_refused(prototype_model, data, fault) -> None:
    """ART's label transform reads an all-zero row as class 0 and a row with two 1s as the
    first of them; the attack once did too, silently."""
    x, y = data
    onehot = np.eye(10, dtype=np.float32)[y]
    row = 3
    if fault == "all-zero":
        onehot[row] = 0
    elif fault == "two ones":
        onehot[row, (y[row] + 1) % 10] = 1
    else:
        onehot[row, y[row]] = 2
    attack = DicePGD(classifier_for(prototype_model), verbose=False)
    with pytest.raises(ValueError, match=rf"exactly one 1 per row; row {row} is"):
        attack.generate(x, onehot)
    attack.generate(x, np.eye(10, dtype=np.float32)[y])  # proper rows still run


def test_input_shape_mismatch_names_both_shapes(prototype_model, data) -> None:
    x, y = data
    attack = DicePGD(classifier_for(prototype_model), verbose=False)
    with pytest.raises(ValueError, match=r"\(N, 1, 8, 8\).*\(40, 3, 8, 8\)"):
        attack.generate(np.repeat(x, 3, axis=1), y)
    with pytest.raises(ValueError, match=r"\(N, 1, 8, 8\).*\(40, 64\)"):
        attack.generate(x.reshape(40, 64), y)


def test_implausible_eps_refused_or_warned_at_construction(prototype_model) -> None:
    classifier = classifier_for(prototype_model)
    with pytest.raises(ValueError, match=r"eps=8 covers the whole input range.*8/255"):
        DicePGD(classifier, eps=8, eps_step=2)
    # an L2-sized budget under L-inf names ART's L2 switch, not "1.5/255"
    with pytest.raises(ValueError, match=r"L2 budget.*norm=2") as error:
        DicePGD(classifier, eps=1.5, eps_step=0.1)
    assert "1.5/255" not in str(error.value)
    # eps equal to the range (ART's own tests): accepted, with a warning naming the slips
    with pytest.warns(UserWarning, match=r"eps=1 equals the whole input range.*norm=2"):
        DicePGD(classifier, eps=1.0, eps_step=0.1)
    with pytest.warns(UserWarning, match="eps=0.5"):
        DicePGD(classifier, eps=0.5, eps_step=0.1)
    wide = classifier_for(prototype_model, clip_values=(0.0, 255.0))
    DicePGD(wide, eps=8, eps_step=2)  # 8 on a [0, 255] scale is the usual budget


def test_estimator_mode_of_every_submodule_restored(tiny_cnn, data) -> None:
    x, y = data
    tiny_cnn.train()
    tiny_cnn.features[1].eval()
    before = {name: m.training for name, m in tiny_cnn.named_modules()}
    snapshot = state_snapshot(tiny_cnn)
    DicePGD(classifier_for(tiny_cnn), verbose=False).generate(x, y)
    assert {name: m.training for name, m in tiny_cnn.named_modules()} == before
    assert_state_equal(tiny_cnn, snapshot)


def test_eps_equal_to_the_range_runs_as_arts_pgd_does(prototype_model, data) -> None:
    x, y = data
    classifier = classifier_for(prototype_model)
    with pytest.warns(UserWarning, match="equals the whole input range"):
        x_adv = DicePGD(classifier, eps=1.0, eps_step=0.1, max_iter=3, verbose=False).generate(x, y)
    assert x_adv.min() >= 0 and x_adv.max() <= 1 and not np.array_equal(x_adv, x)


@pytest.mark.parametrize(
    ("eps", "eps_step"),
    [(0.1, float("nan")), (0.1, float("inf")), (np.array([0.1]), np.array([np.nan]))],
)
def test_non_finite_eps_step_is_named_eps_step(prototype_model, eps, eps_step) -> None:
    with pytest.raises(ValueError, match=r"`eps_step` must be finite") as error:
        DicePGD(classifier_for(prototype_model), eps=eps, eps_step=eps_step)
    assert "alpha" not in str(error.value)
    with pytest.raises(ValueError, match=r"`eps` must be finite"):
        DicePGD(classifier_for(prototype_model), eps=float("nan"))


@pytest.mark.parametrize("norm", [np.inf, 2])
@pytest.mark.parametrize("eps", [0, 0.0, np.zeros((1, 8, 8))])
def test_random_eps_with_a_zero_budget_leaves_x_unchanged(prototype_model, data, norm, eps):
    x, y = data
    eps_step = 0.1 if np.ndim(eps) == 0 else np.full((1, 8, 8), 0.1)
    attack = DicePGD(
        classifier_for(prototype_model),
        norm=norm,
        eps=eps,
        eps_step=eps_step,
        random_eps=True,
        num_random_init=1,
        verbose=False,
    )
    assert np.array_equal(attack.generate(x, y), x)


def test_random_eps_with_some_zero_budgets(prototype_model, data) -> None:
    x, y = data
    eps = np.linspace(0.0, 0.1, x.shape[0]).reshape(-1, 1, 1, 1)
    np.random.seed(0)
    attack = DicePGD(
        classifier_for(prototype_model), eps=eps, eps_step=eps / 4 + 1e-3, random_eps=True
    )
    attack.set_params(verbose=False)
    x_adv = attack.generate(x, y)
    assert np.isfinite(x_adv).all()
    assert np.array_equal(x_adv[0], x[0])
    assert (np.abs(x_adv - x).reshape(len(x), -1).max(1) <= eps.ravel() + 1e-6).all()
    assert not np.array_equal(x_adv, x)


def test_generate_does_not_repeat_the_budget_warning(prototype_model, data) -> None:
    # judged once, when the parameters are set; not again per batch or per random_eps draw
    x, y = data
    for eps, random_eps in ((0.5, False), (1.0, False), (1.0, True)):
        with pytest.warns(UserWarning, match=f"eps={eps:g}"):
            attack = DicePGD(
                classifier_for(prototype_model),
                eps=eps,
                eps_step=0.1,
                random_eps=random_eps,
                batch_size=8,
                verbose=False,
            )
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            attack.generate(x, y)


def test_integer_and_half_inputs_come_back_as_float32_inside_the_ball(prototype_model) -> None:
    """An integer ``x`` (pixels 0..255) was rounded back to its dtype: a step of 2.5 came
    back as 3, out of the eps ball. Integer and float16 ``x`` now come back in float32, as
    ART's PGD returns them; float32 and float64 keep their dtype."""
    images, labels, _ = make_prototype_data(n=8)
    pixels = np.round(images.numpy() * 255).astype(np.uint8)
    scaled = nn.Sequential(_Scale(1 / 255), prototype_model)
    common = {"eps": 2.5, "eps_step": 1.0, "max_iter": 5, "verbose": False}
    attack = DicePGD(classifier_for(scaled, clip_values=(0.0, 255.0)), **common)
    adversarial = attack.generate(pixels, labels.numpy())
    assert adversarial.dtype == np.float32
    assert np.abs(adversarial - pixels.astype(np.float32)).max() <= 2.5 + 1e-5
    assert np.abs(adversarial - pixels).max() > 2.0  # it moved: the ball is not trivially kept
    art = ProjectedGradientDescentPyTorch(
        classifier_for(scaled, clip_values=(0.0, 255.0)), num_random_init=0, **common
    ).generate(pixels, labels.numpy())
    assert art.dtype == np.float32  # the host's convention
    half = images.numpy().astype(np.float16)
    out = DicePGD(classifier_for(prototype_model), eps=EPS, eps_step=EPS / 4, max_iter=5,
                  verbose=False).generate(half, labels.numpy())  # fmt: skip
    assert out.dtype == np.float32
    assert np.abs(out - half.astype(np.float32)).max() <= EPS + 1e-6
    assert DicePGD(classifier_for(prototype_model), max_iter=0).generate(pixels).dtype == (
        np.float32
    )


class _Scale(nn.Module):
    def __init__(self, factor: float) -> None:
        super().__init__()
        self.factor = factor

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.factor


class _LogAtZero(nn.Module):
    """Finite logits, but a NaN input gradient at pixels exactly 0 (``where`` over
    ``log``): a model not differentiable at some inputs."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.inner(torch.where(x > 0, x.log(), torch.zeros_like(x)))


@pytest.mark.parametrize(
    ("norm", "eps", "extra"), [("2", 0.5, {}), ("1", 3.0, {}), ("inf", 0.05, {"decay": 1.0})]
)
def test_a_nan_gradient_entry_moves_nothing_as_in_art(prototype_model, norm, eps, extra) -> None:
    """A NaN in the input gradient made the whole sample NaN (L2), or froze it (L1, and
    L-inf with momentum), where ART's PGD zeroes NaN entries and attacks on. Both now
    return finite examples inside the ball that move."""
    images, labels, _ = make_prototype_data(n=6)
    x = images.numpy().copy()
    x[:, :, :2, :] = 0.0  # the NaN-gradient pixels
    model = _LogAtZero(prototype_model)
    norm_value = np.inf if norm == "inf" else int(norm)
    common = {"norm": norm_value, "eps": eps, "eps_step": eps / 4, "max_iter": 5,
              "verbose": False}  # fmt: skip
    ours = DicePGD(classifier_for(model), **common, **extra).generate(x, labels.numpy())
    decay = {"decay": extra["decay"]} if extra else {}
    art = ProjectedGradientDescentPyTorch(
        classifier_for(model), num_random_init=0, **common, **decay
    ).generate(x, labels.numpy())
    order = {"2": 2, "1": 1, "inf": np.inf}[norm]
    for adversarial in (ours, art):
        assert np.isfinite(adversarial).all()
        moved = np.linalg.norm((adversarial - x).reshape(len(x), -1), ord=order, axis=1)
        assert (moved > 0).all() and (moved <= eps + 1e-5).all()


@pytest.mark.parametrize(
    "refused", [{"random_eps": 1}, {"norm": 3}, {"batch_size": 0}, {"eps": 0.1, "verbose": 1}]
)
def test_a_refused_set_params_keeps_the_settings_it_found(prototype_model, data, refused) -> None:
    """ART sets every value, then checks: after the error ``generate`` ran with the refused
    one (``random_eps=1`` drew random budgets, ``norm=3`` failed with a bare KeyError)."""
    x, y = data
    attack = DicePGD(classifier_for(prototype_model), eps=8 / 255, eps_step=2 / 255, max_iter=3)
    before = {key: getattr(attack, key) for key in attack.attack_params}
    with pytest.raises((ValueError, TypeError)):
        attack.set_params(**refused)
    assert {key: getattr(attack, key) for key in attack.attack_params} == before
    adversarial = attack.generate(x, y)
    assert float(np.abs(adversarial - x).max()) <= 8 / 255 + 1e-6
