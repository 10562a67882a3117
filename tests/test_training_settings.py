"""Settings a trainer used to ignore or mix without a word, found by an outside audit: each
now changes the run's fingerprint (a resume under another value is refused) or is refused
before any work. ART classifiers' standardisation and clip values, bf16 autocast, options
that do nothing, schedulers that need an argument."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torchattacks
from art.estimators.classification import PyTorchClassifier
from conftest import PrototypeLinear, TinyCNN, dard_in_process, make_prototype_data, state_snapshot
from torch import nn

from dard_plugin.training import ARDTrainer, AttackSettings, DARDTrainer, SATTrainer

ATTACK = {"eps": 0.1, "alpha": 0.05, "steps": 2}


def classifier(model: nn.Module, *, mean: float = 0.0, std: float = 1.0, clip=(0.0, 1.0)):
    return PyTorchClassifier(
        model=model,
        loss=nn.CrossEntropyLoss(),
        optimizer=torch.optim.SGD(model.parameters(), lr=0.05),
        input_shape=(1, 8, 8),
        nb_classes=10,
        clip_values=clip,
        preprocessing=(np.array([mean], dtype=np.float32), np.array([std], dtype=np.float32)),
    )


def fresh_student() -> TinyCNN:
    torch.manual_seed(0)
    return TinyCNN()


def teacher_model() -> nn.Module:
    return PrototypeLinear(make_prototype_data()[2]).eval()


@pytest.mark.parametrize("side", ["teacher", "student"])
def test_a_resume_under_another_art_standardisation_is_refused(side: str, tmp_path) -> None:
    """The mean/std of an ART classifier's ``preprocessing`` lie outside the state dict;
    a resume under other values trained (and, for a teacher, reused its cached targets)."""
    x, y, _ = make_prototype_data(n=32)

    def run(mean: float, std: float, epochs: int) -> ARDTrainer:
        stats = {"mean": mean, "std": std}
        teacher: object = teacher_model()
        if side == "teacher":
            teacher = classifier(teacher, **stats)
        student = fresh_student()
        trainer = ARDTrainer(
            classifier(student, **stats) if side == "student" else student,
            teacher,
            optimizer=None if side == "student" else torch.optim.SGD(student.parameters(), 0.05),
            attack=ATTACK,
            teacher_targets="cached",
            checkpoint_dir=tmp_path,
            resume=True,
            verbose=False,
        )
        trainer.fit(x, y, batch_size=16, nb_epochs=epochs)
        return trainer

    run(0.5, 0.25, 1)
    assert run(0.5, 0.25, 1).epochs_run == 0  # the same standardisation resumes
    saved = torch.load(tmp_path / "checkpoint.pt", weights_only=True)
    with pytest.raises(ValueError, match=side):
        run(0.1, 0.5, 2)
    after = torch.load(tmp_path / "checkpoint.pt", weights_only=True)
    assert after["epoch"] == saved["epoch"] == 1  # nothing trained or written


def test_a_resume_under_another_amp_setting_is_refused(tmp_path) -> None:
    """bf16 autocast changes the weights (it runs on the CPU too); its default follows the
    device, so a run started on the CPU and resumed on CUDA would have switched."""
    x, y, _ = make_prototype_data(n=32)

    def run(amp: bool, epochs: int) -> SATTrainer:
        student = fresh_student()
        trainer = SATTrainer(
            student,
            optimizer=torch.optim.SGD(student.parameters(), lr=0.05),
            attack=ATTACK,
            amp=amp,
            checkpoint_dir=tmp_path,
            resume=True,
            verbose=False,
        )
        trainer.fit(x, y, batch_size=16, nb_epochs=epochs)
        return trainer

    assert "amp" not in run(False, 1).config()  # CPU runs keep their fingerprints
    with pytest.raises(ValueError, match="amp"):
        run(True, 2)


def test_teacher_batch_size_without_cached_targets_is_refused() -> None:
    student = fresh_student()
    with pytest.raises(ValueError, match=r"teacher_batch_size.*teacher_targets='online'"):
        DARDTrainer(
            student,
            teacher_model(),
            optimizer=torch.optim.SGD(student.parameters(), lr=0.05),
            teacher_batch_size=3,
        )
    DARDTrainer(  # with cached targets it sets the teacher's chunk
        student,
        teacher_model(),
        optimizer=torch.optim.SGD(student.parameters(), lr=0.05),
        teacher_batch_size=3,
        teacher_targets="cached",
    )


def test_cached_targets_for_a_loss_with_nothing_to_cache_are_refused() -> None:
    """AdaAD with alpha=1 queries the teacher only on its attack's examples: with
    teacher_targets='cached' it ran online while its records said cached (bit-identical
    weights, the online cost), and a resume with 'online' was refused as another run."""
    from dard_plugin.training import AdaADTrainer

    student = fresh_student()
    optimizer = torch.optim.SGD(student.parameters(), lr=0.05)
    for options in ({}, {"igdm": 1.0}):
        with pytest.raises(ValueError, match=r"AdaADTrainer with these settings reads none"):
            AdaADTrainer(
                student, teacher_model(), optimizer=optimizer, teacher_targets="cached", **options
            )
    mixed = AdaADTrainer(  # alpha < 1 reads the teacher on the natural images: cacheable
        student, teacher_model(), optimizer=optimizer, alpha=0.5, teacher_targets="cached"
    )
    assert mixed.targets.cached
    done = dard_in_process(
        "distill", "--method", "adaad", "--teacher-targets", "cached", "--out", "unwritten"
    )
    assert done.returncode == 2 and "reads none" in done.stderr, done.stderr


def test_per_feature_clip_values_are_read_or_refused_by_name() -> None:
    uniform = (np.zeros((1, 8, 8)), np.ones((1, 8, 8)))
    trainer = SATTrainer(classifier(fresh_student(), clip=uniform), attack=ATTACK)
    assert trainer.bounds == (0.0, 1.0)
    high = np.ones((1, 8, 8))
    high[..., 0] = 0.5
    with pytest.raises(ValueError, match=r"classifier: .*clip_values.*per-feature"):
        SATTrainer(classifier(fresh_student(), clip=(np.zeros((1, 8, 8)), high)))


def test_ranges_are_compared_at_art_float32_precision() -> None:
    """ART stores clip_values as float32: the same range given as bounds was refused."""
    low, high = -0.4242, 2.8215
    student = fresh_student()
    teacher = classifier(teacher_model(), clip=(low, high))
    trainer = ARDTrainer(
        student, teacher, optimizer=torch.optim.SGD(student.parameters(), 0.05), bounds=(low, high)
    )
    assert trainer.bounds == (low, high)
    art_student = classifier(fresh_student(), clip=(low, high))
    assert SATTrainer(art_student, bounds=(low, high)).bounds == (low, high)
    with pytest.raises(ValueError, match="differ"):
        SATTrainer(classifier(fresh_student(), clip=(low, high)), bounds=(low, high + 1e-3))


def test_a_trainer_without_its_teacher_says_so() -> None:
    from dard_plugin.training import TRAINERS

    for name in ("ard", "rslad", "dard", "iad", "adaad"):
        student = fresh_student()
        with pytest.raises(ValueError, match="needs a teacher"):
            TRAINERS[name](student, optimizer=torch.optim.SGD(student.parameters(), 0.05))


def test_a_teacher_classifier_for_another_input_range_is_refused() -> None:
    """A teacher classifier for 0..255 inputs, queried on the student's 0..1 images,
    predicted one class for everything."""
    student = fresh_student()
    teacher = classifier(teacher_model(), clip=(0.0, 255.0))
    with pytest.raises(ValueError, match=r"teacher's clip_values \(0.0, 255.0\).*bounds"):
        ARDTrainer(student, teacher, optimizer=torch.optim.SGD(student.parameters(), lr=0.05))
    ARDTrainer(  # the same range is accepted
        student,
        classifier(teacher_model()),
        optimizer=torch.optim.SGD(student.parameters(), lr=0.05),
    )


def test_a_scheduler_that_needs_a_metric_is_refused_before_work() -> None:
    x, y, _ = make_prototype_data(n=32)
    student = fresh_student()
    optimizer = torch.optim.SGD(student.parameters(), lr=0.05)
    before = state_snapshot(student)
    trainer = SATTrainer(student, optimizer=optimizer, attack=ATTACK, verbose=False)
    plateau = torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer)
    with pytest.raises(ValueError, match=r"ReduceLROnPlateau.step needs metrics"):
        trainer.fit(x, y, batch_size=16, nb_epochs=2, scheduler=plateau)
    assert all(torch.equal(v, before[k]) for k, v in student.state_dict().items())

    class KeywordMetric:  # a scheduler of one's own whose step needs a keyword
        def step(self, *, metrics: float) -> None:
            del metrics

    with pytest.raises(ValueError, match=r"KeywordMetric.step needs metrics"):
        trainer.fit(x, y, batch_size=16, nb_epochs=1, scheduler=KeywordMetric())
    step = torch.optim.lr_scheduler.StepLR(optimizer, step_size=1, gamma=0.5)
    trainer.fit(x, y, batch_size=16, nb_epochs=2, scheduler=step)
    assert optimizer.param_groups[0]["lr"] == pytest.approx(0.0125)


def test_a_torchattacks_attack_on_a_standardised_art_model_is_refused_by_what_it_is() -> None:
    art_student = classifier(fresh_student(), mean=0.5, std=0.25)
    attack = torchattacks.PGD(art_student.model, eps=0.1, alpha=0.05, steps=2)
    with pytest.raises(ValueError, match=r"preprocessing=\(mean, std\).*dict"):
        SATTrainer(art_student, attack=attack)


def test_an_omitted_step_is_a_quarter_of_the_given_budget() -> None:
    """``{"eps": 8.0}`` on [0, 255] kept the default step 2/255: ten steps moved a pixel by
    0.08 of its budget of 8, and SAT trained on its random start. An omitted ``alpha`` is
    now ``eps / 4`` in either norm, 2/255 bit for bit at the L-inf default."""
    assert AttackSettings().step == 2 / 255
    assert AttackSettings(eps=0.3).step == 0.075
    assert AttackSettings(eps=0.3, alpha=0.01).step == 0.01
    assert AttackSettings(eps=2.0, norm="L2").step == 0.5
    pixels = SATTrainer(classifier(fresh_student(), clip=(0.0, 255.0)), attack={"eps": 8.0})
    assert pixels.attack_settings is not None and pixels.attack_settings.step == 2.0
    dard = DARDTrainer(classifier(fresh_student()), teacher_model(), teacher_attack={"eps": 0.2})
    assert dard.teacher_attack.step == 0.05


def test_default_budgets_follow_the_inputs_range() -> None:
    """A classifier with ``clip_values=(0, 255)`` and no attack trained at eps 8/255 of a
    pixel (1/8160 of the range: natural training, reported as adversarial). An omitted
    budget is now the default scaled to the range, as ART's Madry trainer's eps=8 for
    pixels; given budgets are taken as they are, and [0, 1] inputs keep 8/255."""
    pixels = SATTrainer(classifier(fresh_student(), clip=(0.0, 255.0)))
    assert pixels.attack_settings is not None
    assert pixels.attack_settings.budget == pytest.approx(8.0)
    assert pixels.attack_settings.step == pytest.approx(2.0)
    assert pixels.eval_eps == pytest.approx(8.0)  # validation at the same budget
    partial = SATTrainer(classifier(fresh_student(), clip=(0.0, 255.0)), attack={"steps": 3})
    assert partial.attack_settings is not None and partial.attack_settings.steps == 3
    assert partial.attack_settings.budget == pytest.approx(8.0)
    l2 = SATTrainer(classifier(fresh_student(), clip=(0.0, 255.0)), attack={"norm": "L2"})
    assert l2.attack_settings is not None
    assert l2.attack_settings.budget == pytest.approx(0.5 * 255)  # RobustBench's, scaled
    given = SATTrainer(classifier(fresh_student(), clip=(0.0, 255.0)), attack={"eps": 4.0})
    assert given.attack_settings is not None and given.attack_settings.budget == 4.0
    unit = SATTrainer(classifier(fresh_student()))
    assert unit.attack_settings is not None and unit.attack_settings.budget == 8 / 255
    dard = DARDTrainer(
        classifier(fresh_student(), clip=(0.0, 255.0)),
        classifier(teacher_model(), clip=(0.0, 255.0)),
        teacher_attack={"steps": 5},
    )
    assert dard.teacher_attack.budget == pytest.approx(8.0) and dard.teacher_attack.steps == 5


def test_an_open_ended_range_is_written_open() -> None:
    """``temperature=0`` was refused as outside "(0.0, inf]", a range that contradicts itself."""
    with pytest.raises(
        ValueError, match=r"temperature must be a finite number in \(0\.0, inf\), got 0"
    ):
        DARDTrainer(classifier(fresh_student()), teacher_model(), temperature=0)


@pytest.mark.parametrize("seed", [2**29, 2**32, -1, 1.5])
def test_a_seed_torch_would_truncate_is_refused(seed, tmp_path) -> None:
    """torch's CPU generator keeps a seed's low 32 bits: ``seed=2**32`` trained what
    ``seed=0`` trains, bit for bit; ``seed=2**29`` shuffled and cropped as ``seed=0`` (the
    loaders' generators take 3 of the 32 bits for their streams); ``distill(seed=1.5)``
    failed after loading the data."""
    from dard_plugin import evaluate
    from dard_plugin.data import make_loader
    from dard_plugin.data.loaders import BatchAugment
    from dard_plugin.recipes import distill

    with pytest.raises((ValueError, TypeError), match=r"seed must be an int in \[0, 536870911\]"):
        SATTrainer(classifier(fresh_student()), seed=seed)
    with pytest.raises((ValueError, TypeError), match=r"seed must be an int in \[0, 536870911\]"):
        distill(method="sat", seed=seed, n_train=8, epochs=1, verbose=False)
    with pytest.raises((ValueError, TypeError), match=r"seed must be an int in \[0, 536870911\]"):
        make_loader(torch.zeros(4, 1, 8, 8), torch.zeros(4, dtype=torch.long), seed=seed)
    with pytest.raises((ValueError, TypeError), match=r"seed must be an int in \[0, 536870911\]"):
        BatchAugment(seed=seed)
    with pytest.raises((ValueError, TypeError), match=r"seed must be an int in \[0, 536870911\]"):
        evaluate(fresh_student().eval(), torch.zeros(2, 1, 8, 8), torch.zeros(2, dtype=torch.long),
                 eps=0.1, seed=seed)  # fmt: skip
    if isinstance(seed, int):
        for command in ("distill", "evaluate dard-fmnist-teacher"):
            done = dard_in_process(*command.split(), "--seed", str(seed), "--out", str(tmp_path))
            assert done.returncode == 2, done.stderr
            assert "--seed must be an int in [0, 536870911]" in done.stderr, done.stderr
        assert not list(tmp_path.iterdir())  # refused before any work


def test_the_start_noise_of_rslad_adaad_mtard_scales_with_the_bounds() -> None:
    """The codes' ``x + 0.001 N(0, 1)`` start is for [0, 1]; on [0, 255] it stayed 0.001 (a
    start 255 times closer to ``x`` than the codes') while the budgets scale. With a zero
    gradient the attack stays at its start, which shows the noise."""
    from dard_plugin.training.attacks import attack_from_noise
    from dard_plugin.training.batches import Batch

    def objective(logits, labels, step, steps):
        return 0.0 * logits.sum()  # no gradient: the attack stays at its start

    images = torch.full((64, 1, 8, 8), 0.5)
    for high in (1.0, 255.0):
        batch = Batch(images * high, torch.zeros(64, dtype=torch.long), None)
        start = attack_from_noise(
            fresh_student().eval(),
            batch,
            objective,
            AttackSettings(eps=0.25 * high, steps=1),
            torch.Generator().manual_seed(0),
            (0.0, high),
        )
        noise = torch.randn(images.shape, generator=torch.Generator().manual_seed(0))
        torch.testing.assert_close(
            start, batch.images + 0.001 * high * noise, rtol=0, atol=1e-4 * high
        )
        if high == 1.0:  # bit for bit the codes' start on [0, 1]
            assert torch.equal(start, images + 0.001 * noise)
