"""The trainers: every method through fit and fit_generator, with an ART classifier and a
plain module; online and cached targets; checks on bad input; robustness that improves."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torchattacks
from art.data_generators import NumpyDataGenerator, PyTorchDataGenerator
from art.estimators.classification import PyTorchClassifier
from conftest import PrototypeLinear, TinyCNN, make_prototype_data, state_snapshot
from torch import nn

from dard_plugin.attacks.pgd import cross_entropy_objective, pgd_linf
from dard_plugin.data import make_loader
from dard_plugin.training import (
    METHODS,
    TRAINERS,
    ARDTrainer,
    DARDTrainer,
    SATTrainer,
    build_trainer,
)

ATTACK = {"eps": 0.1, "alpha": 0.05, "steps": 2}


def student_and_optimizer(seed: int = 0) -> tuple[nn.Module, torch.optim.Optimizer]:
    torch.manual_seed(seed)
    student = TinyCNN()
    return student, torch.optim.SGD(student.parameters(), lr=0.05, momentum=0.9)


def teacher_model() -> nn.Module:
    _, _, prototypes = make_prototype_data()
    return PrototypeLinear(prototypes).eval()


def make_trainer(method: str, student, optimizer, **kwargs):
    spec = METHODS[method]
    teacher = teacher_model() if spec.needs_teacher else None
    if spec.needs_natural_teacher:
        _, _, prototypes = make_prototype_data()
        kwargs["natural_teacher"] = PrototypeLinear(1.0 - prototypes).eval()
    attack = ATTACK if spec.adversarial else {"eps": ATTACK["eps"]}  # natural: validation's
    return build_trainer(
        method, student, teacher, optimizer=optimizer, attack=attack, verbose=False, **kwargs
    )


def robust_accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float) -> float:
    model.eval()
    adversarial = pgd_linf(
        model,
        x,
        y,
        cross_entropy_objective,
        eps=eps,
        alpha=eps / 4,
        steps=10,
        random_start=True,
        generator=torch.Generator().manual_seed(0),
    )
    with torch.no_grad():
        return float((model(adversarial).argmax(1) == y).float().mean())


@pytest.mark.parametrize("method", sorted(TRAINERS))
@pytest.mark.parametrize("kind", ["art", "module"])
@pytest.mark.parametrize("entry", ["fit", "fit_generator"])
def test_every_trainer_runs(method: str, kind: str, entry: str) -> None:
    x, y, _ = make_prototype_data(n=48)
    student, optimizer = student_and_optimizer()
    if kind == "art":
        classifier = PyTorchClassifier(
            model=student,
            loss=nn.CrossEntropyLoss(),
            optimizer=optimizer,
            input_shape=(1, 8, 8),
            nb_classes=10,
            clip_values=(0, 1),
        )
        trainer = make_trainer(method, classifier, None)
    else:
        trainer = make_trainer(method, student, optimizer)
    before = state_snapshot(student)
    if entry == "fit":
        history = trainer.fit(
            x.numpy(), y.numpy(), batch_size=16, nb_epochs=2, validation_data=(x[:16], y[:16])
        )
    else:
        loader = torch.utils.data.DataLoader(
            torch.utils.data.TensorDataset(x, y), batch_size=16, shuffle=False
        )
        source = PyTorchDataGenerator(loader, size=48, batch_size=16) if kind == "art" else loader
        history = trainer.fit_generator(source, nb_epochs=2, validation_data=(x[:16], y[:16]))
    assert [h["epoch"] for h in history] == [1, 2]
    assert all(
        np.isfinite(h["loss"]) and 0 <= h["pgd_accuracy"] <= h["clean_accuracy"] + 1e-9
        for h in history
    )
    assert not torch.equal(state_snapshot(student)["head.weight"], before["head.weight"])
    if method == "dard":
        assert {"loss_nat", "loss_adv"} <= history[0].keys()
    classifier_out = trainer.get_classifier()
    assert classifier_out.predict(x[:4].numpy()).shape == (4, 10)


def test_teacher_is_frozen_and_untouched() -> None:
    x, y, _ = make_prototype_data(n=32)
    student, optimizer = student_and_optimizer()
    teacher = teacher_model().train()
    snapshot = state_snapshot(teacher)
    with pytest.warns(UserWarning, match="teacher was in train mode"):
        trainer = DARDTrainer(student, teacher, optimizer=optimizer, attack=ATTACK, verbose=False)
    trainer.fit(x, y, batch_size=16, nb_epochs=1)
    assert not teacher.training
    assert all(torch.equal(v, snapshot[k]) for k, v in teacher.state_dict().items())
    assert all(p.grad is None for p in teacher.parameters())


@pytest.mark.parametrize("which", ["teacher", "natural_teacher"])
def test_a_teacher_put_in_train_mode_after_the_trainer_was_built_is_queried_in_eval(
    which: str,
) -> None:
    """The teacher was put in eval mode only when the trainer was built: a teacher trained
    afterwards (a pipeline that builds both trainers first) was queried in train mode, its
    BatchNorm statistics overwritten and dropout in its soft labels. ``fit`` now puts it
    (and MTARD's natural teacher) in eval mode, with a warning."""
    x, y, _ = make_prototype_data(n=32)
    student, optimizer = student_and_optimizer()
    torch.manual_seed(5)
    teachers = {"teacher": TinyCNN().eval(), "natural_teacher": TinyCNN().eval()}
    trainer = build_trainer(
        "mtard", student, teachers["teacher"], optimizer=optimizer, attack=ATTACK,
        natural_teacher=teachers["natural_teacher"], verbose=False,
    )  # fmt: skip
    teacher = teachers[which].train()  # e.g. fitted by its own trainer in between
    snapshot = state_snapshot(teacher)
    name = "second teacher" if which == "natural_teacher" else "teacher"
    with pytest.warns(UserWarning, match=f"the {name} was in train mode") as caught:
        trainer.fit(x, y, batch_size=16, nb_epochs=1)
    assert any(w.filename == __file__ for w in caught)  # points at the caller's fit
    assert not any(module.training for module in teacher.modules())
    assert all(torch.equal(v, snapshot[k]) for k, v in teacher.state_dict().items())


def test_a_scheduler_on_another_optimizer_is_refused_before_work() -> None:
    """A scheduler built on another optimizer (the ART classifier's, where the trainer was
    given its own) stepped an lr nothing used: 0.1, 0.1, 0.1, silently."""
    x, y, _ = make_prototype_data(n=32)
    student, optimizer = student_and_optimizer()
    other = torch.optim.SGD(student.parameters(), lr=0.1)
    before = state_snapshot(student)
    trainer = SATTrainer(student, optimizer=optimizer, attack=ATTACK, verbose=False)
    with pytest.raises(ValueError, match="scheduler StepLR was built on another optimizer"):
        trainer.fit(x, y, nb_epochs=2, scheduler=torch.optim.lr_scheduler.StepLR(other, 1))
    assert all(torch.equal(v, before[k]) for k, v in state_snapshot(student).items())


def test_pythons_random_is_seeded_per_epoch_and_the_callers_left_as_found() -> None:
    """A Dataset that augments with ``random`` (as many transforms do) trained other
    weights under the same seed, and ``fit_generator`` moved the caller's ``random``."""
    import random

    x, y, _ = make_prototype_data(n=32)

    class Jitter(torch.utils.data.Dataset):
        def __len__(self) -> int:
            return 32

        def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
            return (x[i] * random.uniform(0.8, 1.0), y[i])

    weights = []
    for caller_seed in (1, 2):
        random.seed(caller_seed)
        state = random.getstate()
        student, optimizer = student_and_optimizer()
        loader = torch.utils.data.DataLoader(Jitter(), batch_size=16)
        SATTrainer(student, optimizer=optimizer, attack=ATTACK, verbose=False).fit_generator(
            loader, nb_epochs=2
        )
        assert random.getstate() == state
        weights.append(state_snapshot(student))
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])


def test_fit_leaves_the_gradient_of_images_that_require_it() -> None:
    x, y, _ = make_prototype_data(n=32)
    x.requires_grad_(True)
    student, optimizer = student_and_optimizer()
    DARDTrainer(student, teacher_model(), optimizer=optimizer, attack=ATTACK, verbose=False).fit(
        x, y, batch_size=16, nb_epochs=1
    )
    assert x.grad is None


def test_training_improves_robust_accuracy() -> None:
    images, labels, _ = make_prototype_data(n=384, noise=0.25)  # the teacher's prototypes
    x, y, x_test, y_test = images[:256], labels[:256], images[256:], labels[256:]
    student, optimizer = student_and_optimizer(seed=1)
    initial = robust_accuracy(student, x_test, y_test, eps=0.1)
    trainer = DARDTrainer(
        student,
        teacher_model(),
        optimizer=optimizer,
        attack={"eps": 0.1, "alpha": 0.025, "steps": 5},
        verbose=False,
    )
    trainer.fit(x, y, batch_size=32, nb_epochs=4)
    after = robust_accuracy(student, x_test, y_test, eps=0.1)
    assert after > initial + 0.3, (initial, after)


def test_cached_targets_computed_once_on_unaugmented_images() -> None:
    x, y, _ = make_prototype_data(n=40)
    calls: list[int] = []
    student, optimizer = student_and_optimizer()

    class CountingTeacher(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.inner = teacher_model()

        def forward(self, images: torch.Tensor) -> torch.Tensor:
            calls.append(images.shape[0])
            return self.inner(images)

    teacher = CountingTeacher().eval()
    trainer = DARDTrainer(
        student,
        teacher,
        optimizer=optimizer,
        attack=ATTACK,
        teacher_targets="cached",
        cache_refresh_epochs=2,
        verbose=False,
    )
    trainer.fit(x, y, batch_size=16, nb_epochs=3)
    # every image seen by the teacher 2 (attack steps) + 2 (outputs) times per cache build,
    # and the cache built at epochs 1 and 3 (refresh every 2 epochs); plus the first-batch
    # shape check and the channels-last probe (2 images each)
    assert sum(calls) == 2 * 40 * (ATTACK["steps"] + 2) + 2 + 2
    assert trainer.targets.cache is not None
    with torch.no_grad():
        assert torch.allclose(trainer.targets.cache["teacher_nat"], teacher.inner(x), atol=1e-6)


def test_online_and_cached_differ_only_in_targets() -> None:
    x, y, _ = make_prototype_data(n=32)
    results = {}
    for mode in ("online", "cached"):
        student, optimizer = student_and_optimizer()
        trainer = DARDTrainer(
            student,
            teacher_model(),
            optimizer=optimizer,
            attack=ATTACK,
            teacher_targets=mode,
            verbose=False,
        )
        trainer.fit(x, y, batch_size=16, nb_epochs=1)
        results[mode] = state_snapshot(student)
    # without augmentation the cached targets are the online ones: identical training
    assert all(
        torch.allclose(results["online"][k], results["cached"][k], atol=1e-5)
        for k in results["online"]
    )


def test_cached_needs_known_images() -> None:
    x, y, _ = make_prototype_data(n=32)
    student, optimizer = student_and_optimizer()
    trainer = DARDTrainer(
        student,
        teacher_model(),
        optimizer=optimizer,
        teacher_targets="cached",
        attack=ATTACK,
        verbose=False,
    )
    plain = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=16)
    with pytest.raises(ValueError, match="cached"):
        trainer.fit_generator(plain, nb_epochs=1)
    trainer.fit_generator(make_loader(x, y, batch_size=16), nb_epochs=1)  # indexable: fine


def test_torchattacks_attack_for_the_student() -> None:
    x, y, _ = make_prototype_data(n=32)
    student, optimizer = student_and_optimizer()
    attack = torchattacks.PGD(student, eps=0.1, alpha=0.05, steps=2)
    trainer = ARDTrainer(
        student, teacher_model(), optimizer=optimizer, attack=attack, verbose=False
    )
    history = trainer.fit(x, y, batch_size=16, nb_epochs=1, validation_data=(x, y))
    assert "pgd_accuracy" in history[0]
    with pytest.raises(ValueError, match="built on the student"):
        ARDTrainer(
            student,
            teacher_model(),
            optimizer=optimizer,
            attack=torchattacks.PGD(teacher_model(), eps=0.1),
        )


@pytest.mark.parametrize(
    ("attack", "settings"),
    [
        (lambda s: torchattacks.PGD(s, eps=0.1, alpha=0.02, steps=7), (0.1, 0.02, 7)),
        (lambda s: torchattacks.FGSM(s, eps=0.1), (0.1, 0.025, 10)),  # eps / 4, 10 steps
    ],
)
def test_dards_teacher_is_attacked_at_a_torchattacks_attacks_own_budget(
    attack, settings: tuple[float, float, int]
) -> None:
    """With the student's attack a torchattacks attack, the teacher's DPGD takes its eps
    (and alpha and steps where it has them), not the default 8/255."""
    student, optimizer = student_and_optimizer()
    trainer = DARDTrainer(
        student, teacher_model(), optimizer=optimizer, attack=attack(student), verbose=False
    )
    teacher = trainer.teacher_attack
    assert (teacher.eps, teacher.alpha, teacher.steps, teacher.norm) == (*settings, "Linf")
    x, y, _ = make_prototype_data(n=8)
    images = torch.as_tensor(x)
    # the teacher's adversarial example reaches beyond 8/255, inside 0.1
    taken = {}
    original = trainer.teacher

    def spy(batch: torch.Tensor) -> torch.Tensor:
        if not torch.equal(batch, images):
            taken["distance"] = float((batch - images).detach().abs().max())
        return original(batch)

    trainer.teacher = spy
    trainer.teacher_outputs(images, torch.as_tensor(y))
    assert 8 / 255 + 1e-6 < taken["distance"] <= 0.1 + 1e-6


def test_global_rng_untouched_and_seeded_runs_equal() -> None:
    x, y, _ = make_prototype_data(n=32)
    weights = []
    for _ in range(2):
        student, optimizer = student_and_optimizer()
        state = torch.get_rng_state()
        SATTrainer(student, optimizer=optimizer, attack=ATTACK, seed=7, verbose=False).fit(
            x, y, batch_size=16, nb_epochs=2
        )
        assert torch.equal(torch.get_rng_state(), state)
        weights.append(state_snapshot(student))
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])


@pytest.mark.parametrize("method", ["sat", "dard", "adaad"])
def test_a_batchnorm_frozen_by_the_caller_stays_frozen_and_a_loaded_student_trains(
    method: str,
) -> None:
    """A student in train mode with one BatchNorm put in eval mode (fine-tuning with frozen
    statistics): training keeps that flag and those statistics, as the attacks and the
    validation do, and trains the rest. A student given wholly in eval mode (as loaded)
    trains in train mode (as ART's ``fit``), its statistics updated."""
    x, y, _ = make_prototype_data(n=32)
    for frozen in (True, False):
        student, optimizer = student_and_optimizer()
        batchnorm = student.features[1]
        if frozen:
            batchnorm.eval()
        else:
            student.eval()
        before = state_snapshot(student)
        make_trainer(method, student, optimizer).fit(x, y, batch_size=16, nb_epochs=1)
        after = state_snapshot(student)
        statistics = ("features.1.running_mean", "features.1.running_var")
        assert batchnorm.training is not frozen
        assert all(torch.equal(before[k], after[k]) for k in statistics) is frozen
        assert not torch.equal(before["head.weight"], after["head.weight"])  # trained


@pytest.mark.parametrize("preprocessing", [None, (0.5, 0.25)])
def test_art_predict_before_or_between_fits_changes_no_training_mode(preprocessing) -> None:
    """ART's ``predict`` (and its attacks) leave the classifier's model in eval mode. With a
    mean/std standardisation the student is a wrapper around that model, still flagged
    train: the next ``fit`` took every module for one the caller froze and trained the whole
    network in eval mode (BatchNorm statistics never updated, dropout off). A BatchNorm the
    caller froze was unfrozen by a ``get_classifier().predict`` between two fits. The
    modules kept in eval are now read at the run's first ``fit``, inside the wrapper."""
    x, y, _ = make_prototype_data(n=32)
    for frozen in (False, True):
        student, optimizer = student_and_optimizer()
        batchnorm = student.features[1]
        if frozen:
            batchnorm.eval()
        classifier = PyTorchClassifier(
            student, nn.CrossEntropyLoss(), input_shape=(1, 8, 8), nb_classes=10,
            optimizer=optimizer, clip_values=(0.0, 1.0), preprocessing=preprocessing,
        )  # fmt: skip
        trainer = SATTrainer(classifier, attack=ATTACK, verbose=False)
        if not frozen:  # ART's predict before the first fit would erase the caller's flag
            classifier.predict(x.numpy())
        tracked = int(batchnorm.num_batches_tracked)
        trainer.fit(x, y, batch_size=16, nb_epochs=1)
        assert int(batchnorm.num_batches_tracked) == tracked + (0 if frozen else 2)
        trainer.get_classifier().predict(x.numpy())  # between two fits
        trainer.fit(x, y, batch_size=16, nb_epochs=1)
        assert int(batchnorm.num_batches_tracked) == tracked + (0 if frozen else 4)
        assert batchnorm.training is not frozen


def test_a_second_fit_continues_the_run_and_leaves_the_first_ones_history() -> None:
    """``fit`` again on one trainer trains on (ART's trainers do), continuing the run
    (``tests/test_training_continuation.py``): it returns the run's history with its own
    epoch after the first call's, and the list the first call returned is not changed."""
    x, y, _ = make_prototype_data(n=32)
    student, optimizer = student_and_optimizer()
    trainer = SATTrainer(student, optimizer=optimizer, attack=ATTACK, verbose=False)
    first = trainer.fit(x, y, batch_size=16, nb_epochs=2)
    kept = [dict(record) for record in first]
    second = trainer.fit(x, y, batch_size=16, nb_epochs=1)
    assert [h["epoch"] for h in first] == [1, 2] and first == kept
    assert [h["epoch"] for h in second] == [1, 2, 3] and second[:2] == kept
    assert second[2]["loss"] != first[0]["loss"]


@pytest.mark.parametrize("kind", ["pytorch", "numpy"])
def test_an_art_generators_own_get_batch_and_size_are_what_trains(kind: str) -> None:
    """ART's trainers call ``get_batch`` ``ceil(size / batch_size)`` times an epoch. The
    trainers iterated the generator's source instead, skipping a subclass's ``get_batch``
    (here: labels mapped to 0..4, images inverted) and a ``size`` below the source's."""
    x, y, _ = make_prototype_data(n=64)
    base = PyTorchDataGenerator if kind == "pytorch" else NumpyDataGenerator

    class Coarse(base):  # type: ignore[misc, valid-type]
        def get_batch(self) -> tuple:
            images, labels = super().get_batch()
            return 1.0 - images, labels // 2

    def generator(size: int) -> object:
        if kind == "numpy":
            return Coarse(x[:size].numpy(), y[:size].numpy(), batch_size=16)
        loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=16)
        return Coarse(loader, size=size, batch_size=16)

    seen: list[tuple[torch.Tensor, torch.Tensor]] = []

    def attack(model, images, labels, generator):
        seen.append((images.clone(), labels.clone()))
        return images

    student, optimizer = student_and_optimizer()
    SATTrainer(student, optimizer=optimizer, attack=attack, verbose=False).fit_generator(
        generator(32), nb_epochs=2
    )
    assert len(seen) == 4  # two batches an epoch, as ART's trainers take
    expected = Coarse.get_batch(generator(32))  # ART's own first batch
    assert torch.equal(seen[0][1], torch.as_tensor(expected[1]))
    assert torch.equal(seen[0][0], torch.as_tensor(expected[0]))
    assert max(int(labels.max()) for _, labels in seen) <= 4
    # ART's own generator (no get_batch of its own) is still iterated, seeded by the run
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=16)
    stock = (
        NumpyDataGenerator(x.numpy(), y.numpy(), batch_size=16)
        if kind == "numpy"
        else PyTorchDataGenerator(loader, size=64, batch_size=16)
    )
    counted: list[int] = []

    def count(model, images, labels, generator):
        counted.append(len(labels))
        return images

    plain, optimizer = student_and_optimizer()
    SATTrainer(plain, optimizer=optimizer, attack=count, verbose=False).fit_generator(
        stock, nb_epochs=1
    )
    assert counted == [16, 16, 16, 16]


@pytest.mark.parametrize("shuffle", [False, True])
def test_a_numpy_generator_dropping_its_remainder_trains_arts_number_of_batches(
    shuffle: bool,
) -> None:
    """ART's ``NumpyDataGenerator`` drops a short last batch by default, so its own epoch
    is ``floor(size / batch_size)`` batches; ART's trainers call ``get_batch``
    ``ceil(size / batch_size)`` times an epoch, running on into its next pass. Iterating
    the generator trained 2 batches of 16 an epoch on 40 images where ART trains 3."""
    x, y, _ = make_prototype_data(n=40)
    labels: list[torch.Tensor] = []

    def record(model, images, batch_labels, generator):
        labels.append(batch_labels.clone())
        return images

    student, optimizer = student_and_optimizer()
    SATTrainer(student, optimizer=optimizer, attack=record, verbose=False).fit_generator(
        NumpyDataGenerator(x.numpy(), y.numpy(), batch_size=16, shuffle=shuffle), nb_epochs=2
    )
    assert [len(batch) for batch in labels] == [16] * 6
    if not shuffle:  # ART's own stream of get_batch calls, batch for batch
        stream = NumpyDataGenerator(x.numpy(), y.numpy(), batch_size=16)
        expected = [torch.as_tensor(stream.get_batch()[1]) for _ in range(6)]
        assert all(torch.equal(a, b) for a, b in zip(labels, expected, strict=True))


@pytest.mark.parametrize("source", ["dataloader", "art-generator", "art-numpy-generator"])
def test_fit_generator_leaves_the_global_rng_and_follows_the_seed(source: str) -> None:
    """Probing the first batch started a shuffling DataLoader's iterator outside the run's
    fork of the RNG: the caller's global RNG moved (and an ART generator's first epoch
    followed the caller's RNG instead of the run's seed). ART's NumpyDataGenerator
    shuffles with NumPy's global RNG: its order followed the caller's NumPy seed, and it
    consumed that RNG."""
    x, y, _ = make_prototype_data(n=48)

    def loader() -> object:
        if source == "art-numpy-generator":
            return NumpyDataGenerator(x.numpy(), y.numpy(), batch_size=16, shuffle=True)
        data = torch.utils.data.DataLoader(
            torch.utils.data.TensorDataset(x, y), batch_size=16, shuffle=True
        )
        if source == "art-generator":
            return PyTorchDataGenerator(data, size=48, batch_size=16)
        return data

    weights = []
    for global_seed in (1, 2):
        student, optimizer = student_and_optimizer()
        trainer = SATTrainer(student, optimizer=optimizer, attack=ATTACK, seed=7, verbose=False)
        generator = loader()
        torch.manual_seed(global_seed)
        np.random.seed(global_seed)
        state, numpy_state = torch.get_rng_state(), np.random.get_state()
        trainer.fit_generator(generator, nb_epochs=2)
        assert torch.equal(torch.get_rng_state(), state)
        after = np.random.get_state()
        assert np.array_equal(after[1], numpy_state[1]) and after[2] == numpy_state[2]
        weights.append(state_snapshot(student))
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])


@pytest.mark.parametrize(
    "source", ["dataloader", "make-loader", "batch-sampler", "art-numpy-generator"]
)
def test_fit_generator_refuses_a_resume_that_batches_otherwise(tmp_path, source: str) -> None:
    """fit_generator's fingerprint had no batch size (fit's has): a run resumed on a loader
    of another batch size, order or short-batch rule was continued, mixing two runs."""
    x, y, _ = make_prototype_data(n=48)

    def loader(batch_size: int, shuffle: bool) -> object:
        if source == "art-numpy-generator":
            return NumpyDataGenerator(x.numpy(), y.numpy(), batch_size=batch_size, shuffle=shuffle)
        if source == "make-loader":
            return make_loader(x, y, batch_size=batch_size, shuffle=shuffle)
        dataset = torch.utils.data.TensorDataset(x, y)
        if source == "batch-sampler":
            order = (
                torch.utils.data.RandomSampler if shuffle else torch.utils.data.SequentialSampler
            )(dataset)
            batches = torch.utils.data.BatchSampler(order, batch_size, drop_last=False)
            return torch.utils.data.DataLoader(dataset, batch_sampler=batches)
        return torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=shuffle)

    def fit(batch_size: int, shuffle: bool, epochs: int) -> list:
        student, optimizer = student_and_optimizer()
        trainer = SATTrainer(
            student, optimizer=optimizer, attack=ATTACK, checkpoint_dir=tmp_path, resume=True,
            verbose=False,
        )  # fmt: skip
        return trainer.fit_generator(loader(batch_size, shuffle), nb_epochs=epochs)

    fit(16, True, 1)
    for batch_size, shuffle, field in ((8, True, "batch_size"), (16, False, "")):
        with pytest.raises(ValueError, match=f"differing fields: batch_size.*{field}"):
            fit(batch_size, shuffle, 2)
    assert [h["epoch"] for h in fit(16, True, 2)] == [1, 2]  # the same loader continues


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"alpha": 1.2}, ValueError, "alpha"),
        ({"adv_weight": -0.5}, ValueError, "adv_weight"),
        ({"temperature": 0}, ValueError, "temperature"),
        ({"teacher_targets": "lazy"}, ValueError, "teacher_targets"),
        ({"attack": {"eps": 0.1, "bogus": 1}}, ValueError, "unknown keys"),
        ({"attack": {"eps": -0.1}}, ValueError, "eps"),
        ({"attack": 3}, TypeError, "attack"),
        ({"resume": True}, ValueError, "checkpoint_dir"),
        ({"eval_attack": "fgsm"}, ValueError, "eval_attack"),
    ],
)
def test_bad_trainer_arguments(kwargs, error, match) -> None:
    student, optimizer = student_and_optimizer()
    with pytest.raises(error, match=match):
        DARDTrainer(student, teacher_model(), optimizer=optimizer, **kwargs)


def test_bad_fit_inputs_fail_before_training(tmp_path) -> None:
    x, y, _ = make_prototype_data(n=32)
    student, optimizer = student_and_optimizer()
    before = state_snapshot(student)
    trainer = DARDTrainer(
        student,
        teacher_model(),
        optimizer=optimizer,
        attack=ATTACK,
        checkpoint_dir=tmp_path / "ckpt",
        verbose=False,
    )
    cases = [
        ((x + 1, y), {}, ValueError, r"x must lie in \[0"),
        ((x, y + 10), {}, ValueError, r"y must be class indices in \[0, 9\]"),
        ((x, y[:-1]), {}, ValueError, r"y must have shape \(32,\).*one label per example"),
        ((x, y), {"nb_epochs": 0}, ValueError, "nb_epochs"),
        ((x, y), {"batch_size": 0}, ValueError, "batch_size"),
        ((x, y), {"validation_data": (x, y + 20)}, ValueError, "validation_data"),
    ]
    for args, kwargs, error, match in cases:
        with pytest.raises(error, match=match):
            trainer.fit(*args, **kwargs)
    wide = torch.rand(32, 1, 9, 9)
    with pytest.raises(ValueError, match="cannot take"):
        trainer.fit(wide, y)
    eleven = nn.Sequential(nn.Flatten(), nn.Linear(64, 11)).eval()
    mismatched = DARDTrainer(student, eleven, optimizer=optimizer, attack=ATTACK, verbose=False)
    with pytest.raises(ValueError, match="number of classes"):
        mismatched.fit(x, y)
    assert all(torch.equal(v, before[k]) for k, v in state_snapshot(student).items())
    assert not (tmp_path / "ckpt").exists()  # nothing half-written


def test_sat_takes_no_teacher_and_others_need_one() -> None:
    student, optimizer = student_and_optimizer()
    with pytest.raises(ValueError, match="needs a teacher"):
        DARDTrainer(student, None, optimizer=optimizer)
    with pytest.raises(ValueError, match="optimizer must be given"):
        SATTrainer(student)
    with pytest.raises(ValueError, match="different models"):
        DARDTrainer(student, student, optimizer=optimizer)


def test_bf16_autocast_and_channels_last_path_runs_on_cpu() -> None:
    # the CUDA defaults (bf16 autocast, channels-last), forced on CPU: the code path works
    x, y, _ = make_prototype_data(n=32)
    student, optimizer = student_and_optimizer()
    trainer = DARDTrainer(
        student,
        teacher_model(),
        optimizer=optimizer,
        attack=ATTACK,
        amp=True,
        channels_last=True,
        verbose=False,
    )
    history = trainer.fit(x, y, batch_size=16, nb_epochs=1, validation_data=(x, y))
    assert np.isfinite(history[0]["loss"])
    assert trainer.amp and trainer.channels_last
    default = DARDTrainer(student, teacher_model(), optimizer=optimizer, verbose=False)
    assert not default.amp  # CPU: bf16 off unless asked


class ViewHead(nn.Module):
    """A conv model that calls ``.view`` on a conv output: fails on a channels-last batch."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3, padding=1)
        self.head = nn.Linear(4 * 8 * 8, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv(x)
        return self.head(out.view(out.shape[0], -1))


@pytest.mark.parametrize("model_kind", ["conv", "view"])
def test_channels_last_by_default_where_the_models_run_it(model_kind: str) -> None:
    x, y, _ = make_prototype_data(n=32)
    torch.manual_seed(0)
    student = TinyCNN() if model_kind == "conv" else ViewHead()
    optimizer = torch.optim.SGD(student.parameters(), lr=0.05)
    with pytest.raises(RuntimeError):  # the premise: .view on a channels-last conv output
        ViewHead().to(memory_format=torch.channels_last)(
            x[:2].contiguous(memory_format=torch.channels_last)
        )
    trainer = SATTrainer(student, optimizer=optimizer, attack=ATTACK, verbose=False)
    history = trainer.fit(x, y, batch_size=16, nb_epochs=1)
    assert np.isfinite(history[0]["loss"])
    conv_weight = next(p for p in student.parameters() if p.ndim == 4)
    if model_kind == "conv":
        assert trainer.channels_last
        assert conv_weight.is_contiguous(memory_format=torch.channels_last)
    else:  # fell back before any training step
        assert not trainer.channels_last
        assert conv_weight.is_contiguous()
    other = TinyCNN()
    forced_off = SATTrainer(
        other,
        optimizer=torch.optim.SGD(other.parameters(), lr=0.05),
        attack=ATTACK,
        verbose=False,
        channels_last=False,
    )
    forced_off.fit(x, y, batch_size=16, nb_epochs=1)
    assert not forced_off.channels_last
    with pytest.raises(TypeError, match="channels_last"):
        SATTrainer(TinyCNN(), optimizer=optimizer, channels_last="yes")


def test_resume_on_another_validation_is_refused(tmp_path) -> None:
    """The validation set was in neither the fingerprint nor the checkpoint: a resume with
    other validation images trained on, its history mixing two validations."""
    x, y, _ = make_prototype_data(n=48)

    def run(validation: tuple[torch.Tensor, torch.Tensor], epochs: int) -> list[dict]:
        student, optimizer = student_and_optimizer()
        trainer = SATTrainer(
            student,
            optimizer=optimizer,
            attack=ATTACK,
            eval_eps=0.1,
            checkpoint_dir=tmp_path / "run",
            resume=True,
            verbose=False,
        )
        return trainer.fit(x, y, validation_data=validation, batch_size=16, nb_epochs=epochs)

    run((x[:16], y[:16]), 1)
    with pytest.raises(ValueError, match="validated on other data or settings"):
        run((x[16:32], y[16:32]), 2)
    assert [h["epoch"] for h in run((x[:16], y[:16]), 2)] == [1, 2]  # the same: resumed


def test_resume_by_another_number_of_processes_is_refused(tmp_path) -> None:
    """Each process takes its own batch: a run trained by 2 torchrun processes and resumed
    by 1 changed its effective batch mid-run, silently. The checkpoint records the world
    size; here one written by 2 processes is stood in for by editing that field."""
    from dard_plugin.training.checkpointing import CHECKPOINT_NAME

    x, y, _ = make_prototype_data(n=32)

    def run(epochs: int) -> list[dict]:
        student, optimizer = student_and_optimizer()
        trainer = SATTrainer(
            student,
            optimizer=optimizer,
            attack=ATTACK,
            checkpoint_dir=tmp_path / "run",
            resume=True,
            verbose=False,
        )
        return trainer.fit(x, y, batch_size=16, nb_epochs=epochs)

    run(1)
    path = next((tmp_path / "run").rglob(CHECKPOINT_NAME))
    state = torch.load(path, weights_only=True)
    assert state["world_size"] == 1
    state["world_size"] = 2
    torch.save(state, path)
    with pytest.raises(ValueError, match="trained by 2 processes, this run has 1"):
        run(2)
    state["world_size"] = 1
    torch.save(state, path)
    assert [h["epoch"] for h in run(2)] == [1, 2]
