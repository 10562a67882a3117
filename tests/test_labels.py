"""Issue 25, items 1 to 4: one label rule (``dard_plugin/_labels.py``) for ``fit``,
``fit_generator`` (per batch), the per-epoch validation and ``evaluate``. Class indices of
shape (N,) or (N, 1) and one-hot rows as wide as the model has classes are accepted; every
other kind of label is refused before any work, naming the argument and what was found."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest
import torch
from conftest import PrototypeLinear, TinyCNN, make_prototype_data, state_snapshot
from torch import nn

from dard_plugin._labels import class_indices, read_labels
from dard_plugin.evaluation import evaluate
from dard_plugin.training import DARDTrainer, SATTrainer

ATTACK = {"eps": 0.1, "alpha": 0.05, "steps": 2}


class Counting(nn.Module):
    """Counts forward calls: "before any work" is zero calls (or only the class probe)."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner
        self.calls = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        return self.inner(x)


def fresh_student() -> tuple[nn.Module, torch.optim.Optimizer]:
    torch.manual_seed(0)
    student = TinyCNN()
    return student, torch.optim.SGD(student.parameters(), lr=0.05, momentum=0.9)


def dard(tmp_path=None, **kwargs) -> tuple[DARDTrainer, Counting, nn.Module]:
    _, _, prototypes = make_prototype_data()
    teacher = Counting(PrototypeLinear(prototypes)).eval()
    student, optimizer = fresh_student()
    checkpoint = {"checkpoint_dir": tmp_path / "ckpt"} if tmp_path is not None else {}
    trainer = DARDTrainer(
        student, teacher, optimizer=optimizer, attack=ATTACK, verbose=False, **checkpoint, **kwargs
    )
    return trainer, teacher, student


def one_hot(y: torch.Tensor, width: int = 10) -> torch.Tensor:
    return torch.nn.functional.one_hot(y, width)


# ----------------------------------------------------------------- the rule itself
@pytest.mark.parametrize(
    "given",
    [
        lambda y: y,
        lambda y: y.numpy(),
        lambda y: y.int(),
        lambda y: y.float(),  # whole numbers, as numpy label files often hold them
        lambda y: y[:, None],
        lambda y: y[:, None].numpy(),
        lambda y: one_hot(y),
        lambda y: one_hot(y).float().numpy(),
        lambda y: one_hot(y).numpy().astype(np.uint64),  # torch's argmax has no uint64
        lambda y: one_hot(y).numpy().astype(np.int8),
        lambda y: y.numpy()[::-1].copy()[::-1],  # a view with negative strides
    ],
)
def test_accepted_labels_give_the_class_indices(given) -> None:
    _, y, _ = make_prototype_data(n=16)
    indices = class_indices("y", given(y), num_examples=16, num_classes=10)
    assert indices.dtype == torch.int64 and torch.equal(indices, y)


@pytest.mark.parametrize(
    ("labels", "error", "match"),
    [
        (torch.tensor([0, 1, 2]), ValueError, r"y must have shape \(4,\) or \(4, 1\)"),
        (torch.zeros(4, 10, 1), ValueError, r"y must have shape.*got shape \(4, 10, 1\)"),
        (torch.tensor([0, 1, 2, 10]), ValueError, r"y must be class indices in \[0, 9\].*10"),
        (torch.tensor([0, -1, 2, 3]), ValueError, r"y must be class indices in \[0, 9\]"),
        (torch.tensor([0.0, 1.5, 2.0, 3.0]), ValueError, r"y must hold whole-number.*1\.5"),
        (torch.tensor([0.0, float("nan"), 2, 3]), ValueError, "y must hold whole-number"),
        (torch.tensor([True, False, True, True]), TypeError, "y must hold integer"),
        ([0, 1, 2, 3], TypeError, r"y must be a torch.Tensor or a numpy array.*got list"),
        (one_hot(torch.tensor([0, 1, 2, 3]), 5), ValueError, r"y has one-hot rows of width 5.*10"),
        (torch.full((4, 10), 0.1), ValueError, r"y .*one-hot rows.*row 0 is \[0\.1, 0\.1"),
        (
            torch.tensor([[0.0, 1.0, 1.0] + [0.0] * 7] * 4),
            ValueError,
            r"one 1 per row.*row 0",
        ),
    ],
)
def test_refused_labels_name_the_argument_and_what_was_found(labels, error, match) -> None:
    with pytest.raises(error, match=match):
        class_indices("y", labels, num_examples=4, num_classes=10)


def test_probability_rows_are_refused_with_the_fix() -> None:
    probabilities = torch.softmax(torch.randn(4, 10, generator=torch.Generator()), dim=1)
    with pytest.raises(ValueError, match=r"soft labels.*y\.argmax\(1\)"):
        class_indices("y", probabilities, num_examples=4, num_classes=10)


def test_the_one_hot_width_is_checked_once_the_classes_are_known() -> None:
    read = read_labels("y", one_hot(torch.tensor([0, 1, 2, 3]), 5), num_examples=4)
    assert torch.equal(read.indices, torch.tensor([0, 1, 2, 3]))
    assert torch.equal(read.check_classes(5), read.indices)
    with pytest.raises(ValueError, match=r"y has one-hot rows of width 5, but the model has 10"):
        read.check_classes(10)


# ----------------------------------------------------------------- fit and fit_generator
@pytest.mark.parametrize(
    "given", [lambda y: y[:, None], lambda y: y[:, None].numpy(), lambda y: one_hot(y)]
)
def test_fit_trains_on_n_by_1_and_one_hot_labels_as_on_indices(given) -> None:
    """Issue 25 item 1: labels of shape (N, 1) used to train every image as class 0."""
    x, y, _ = make_prototype_data(n=32)
    reference, _, reference_student = dard()
    history = reference.fit(x, y, batch_size=16, nb_epochs=1)
    trainer, _, student = dard()
    again = trainer.fit(x, given(y), batch_size=16, nb_epochs=1)
    assert again[0]["teacher_fooled"] == history[0]["teacher_fooled"]
    expected = state_snapshot(reference_student)
    assert all(torch.equal(v, expected[k]) for k, v in state_snapshot(student).items())


def test_validation_labels_of_shape_n_by_1_are_class_indices() -> None:
    """Issue 25 item 2: they used to be scored as class 0 (0.625 instead of 0.125)."""
    x, y, _ = make_prototype_data(n=32)
    scores = []
    for labels in (y, y[:, None], y[:, None].numpy(), one_hot(y)):
        trainer, _, _ = dard()
        history = trainer.fit(x, y, batch_size=16, nb_epochs=1, validation_data=(x, labels))
        scores.append((history[0]["clean_accuracy"], history[0]["pgd_accuracy"]))
    assert scores[1:] == [scores[0]] * 3
    trainer, _, student = dard()
    trainer.fit(x, y, batch_size=16, nb_epochs=1)
    student.eval()
    with torch.no_grad():
        assert scores[0][0] == float((student(x).argmax(1) == y).float().mean())


@pytest.mark.parametrize(
    ("labels", "match"),
    [
        (lambda y: one_hot(y, 5), r"y has one-hot rows of width 5, but the model has 10"),
        (lambda y: one_hot(y, 12), r"y has one-hot rows of width 12, but the model has 10"),
        (lambda y: torch.softmax(one_hot(y).float(), 1), r"y of shape \(32, 10\) must be one-hot"),
        (lambda y: torch.cat([y[:-1], torch.tensor([10])]), r"y must be class indices in \[0, 9\]"),
    ],
)
@pytest.mark.parametrize("targets", ["online", "cached"])
def test_fit_refuses_wrong_labels_before_any_work(tmp_path, labels, match, targets) -> None:
    """Issue 25 items 3 and 4, and a bad label in the last batch: found before training or
    the teacher-target cache (once found mid-epoch or mid-cache)."""
    x, y, _ = make_prototype_data(n=32, num_classes=10)
    y = y.clamp(max=4)  # classes 0-4 only: a width-5 one-hot is possible
    trainer, teacher, student = dard(tmp_path, teacher_targets=targets)
    before = state_snapshot(student)
    with pytest.raises(ValueError, match=match):
        trainer.fit(x, labels(y), batch_size=16, nb_epochs=1)
    assert teacher.calls == 0  # the student's probe gives the classes; the teacher waits
    assert all(torch.equal(v, before[k]) for k, v in state_snapshot(student).items())
    assert not (tmp_path / "ckpt").exists()


def test_validation_labels_are_refused_before_any_work(tmp_path) -> None:
    x, y, _ = make_prototype_data(n=32)
    y = y.clamp(max=4)
    for labels, match in (
        (one_hot(y, 5), r"validation_data\[1\] has one-hot rows of width 5"),
        (torch.full((32, 10), 0.1), r"validation_data\[1\] of shape \(32, 10\) must be one-hot"),
        (y[:-1], r"validation_data\[1\] must have shape \(32,\)"),
    ):
        trainer, teacher, _ = dard(tmp_path)
        with pytest.raises(ValueError, match=match):
            trainer.fit(x, y, batch_size=16, nb_epochs=1, validation_data=(x, labels))
        assert teacher.calls == 0
        assert not (tmp_path / "ckpt").exists()


def test_a_make_loader_loader_is_checked_whole(tmp_path) -> None:
    from dard_plugin.data import make_loader

    x, y, _ = make_prototype_data(n=32)
    bad = torch.cat([y[:-1], torch.tensor([10])])  # the last image's label, last batch
    trainer, teacher, _ = dard(tmp_path, teacher_targets="cached")
    with pytest.raises(ValueError, match=r"training loader's labels must be class indices"):
        trainer.fit_generator(make_loader(x, bad, batch_size=16), nb_epochs=1)
    assert teacher.calls == 0 and not (tmp_path / "ckpt").exists()
    reference, _, reference_student = dard(teacher_targets="cached")
    reference.fit_generator(make_loader(x, y, batch_size=16), nb_epochs=1)
    trainer, _, student = dard(teacher_targets="cached")
    trainer.fit_generator(make_loader(x, one_hot(y), batch_size=16), nb_epochs=1)
    assert torch.equal(trainer.targets.cache["teacher_adv"], reference.targets.cache["teacher_adv"])
    expected = state_snapshot(reference_student)
    assert all(torch.equal(v, expected[k]) for k, v in state_snapshot(student).items())


class DictBatches(torch.utils.data.Dataset):
    def __init__(self, x: torch.Tensor, y: torch.Tensor) -> None:
        self.x, self.y = x, y

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        return {"image": self.x[index], "label": self.y[index]}


def test_dict_batches_refuse_a_one_hot_of_the_wrong_width(tmp_path) -> None:
    """Issue 25 item 3, for dict batches: the first batch is checked before training."""
    x, y, _ = make_prototype_data(n=32)
    loader = torch.utils.data.DataLoader(DictBatches(x, one_hot(y.clamp(max=4), 5)), batch_size=16)
    trainer, teacher, student = dard(tmp_path)
    with pytest.raises(ValueError, match=r"labels of training batch 1 has one-hot rows of width 5"):
        trainer.fit_generator(loader, nb_epochs=1)
    assert teacher.calls == 0 and not (tmp_path / "ckpt").exists()
    right = torch.utils.data.DataLoader(DictBatches(x, one_hot(y)), batch_size=16)
    reference, _, reference_student = dard()
    reference.fit_generator(
        torch.utils.data.DataLoader(DictBatches(x, y), batch_size=16), nb_epochs=1
    )
    trainer, _, student = dard()
    trainer.fit_generator(right, nb_epochs=1)
    expected = state_snapshot(reference_student)
    assert all(torch.equal(v, expected[k]) for k, v in state_snapshot(student).items())


def test_a_generator_refuses_a_bad_later_batch_by_number() -> None:
    """A generator is read as it trains: a later batch is refused when it comes, by number."""
    x, y, _ = make_prototype_data(n=48)

    def batches() -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        yield x[:16], y[:16]
        yield x[16:32], y[16:32, None]  # (N, 1): fine
        yield x[32:], torch.full((16, 10), 0.1)

    student, optimizer = fresh_student()
    trainer = SATTrainer(student, optimizer=optimizer, attack=ATTACK, verbose=False)
    with pytest.raises(ValueError, match=r"labels of training batch 3 of shape \(16, 10\)"):
        trainer.fit_generator(batches(), nb_epochs=1)


# ----------------------------------------------------------------- evaluate
@pytest.fixture
def linear_setup() -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    x, y, prototypes = make_prototype_data(n=16)
    return PrototypeLinear(prototypes).eval(), x, y


def test_evaluate_takes_the_same_labels(linear_setup) -> None:
    model, x, y = linear_setup
    options = {"eps": 0.1, "attacks": ("clean", "pgd"), "verbose": False}
    reference = evaluate(model, x, y, **options)
    for labels in (y[:, None], one_hot(y), y.float()):
        report = evaluate(model, x, labels, **options)
        assert report.per_sample == reference.per_sample
        assert report.clean_accuracy == reference.clean_accuracy


def test_evaluate_refuses_the_same_labels_before_any_attack(linear_setup) -> None:
    model, x, y = linear_setup
    counted = Counting(model).eval()
    options = {"eps": 0.1, "attacks": ("clean", "pgd"), "verbose": False}
    for labels, match in (
        (one_hot(y.clamp(max=4), 5), r"labels has one-hot rows of width 5, but the model has 10"),
        (torch.softmax(torch.randn(16, 10), 1), r"labels of shape \(16, 10\) must be one-hot"),
        (y[:-1], r"labels must have shape \(16,\) or \(16, 1\)"),
    ):
        counted.calls = 0
        with pytest.raises(ValueError, match=match):
            evaluate(counted, x, labels, **options)
        assert counted.calls <= 3  # the sanity checks and the class probe, no attack


def test_numpy_labels_accepted_by_fit_and_evaluate_alike(linear_setup) -> None:
    model, x, y = linear_setup
    report = evaluate(model, x, y.numpy(), eps=0.1, attacks=("clean",), verbose=False)
    assert (
        report.clean_accuracy
        == evaluate(model, x, y, eps=0.1, attacks=("clean",), verbose=False).clean_accuracy
    )
    assert np.isfinite(report.clean_accuracy)
