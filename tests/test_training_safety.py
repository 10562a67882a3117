"""Issue 10's "Why": each way the trainer used to train on the wrong thing silently, now a
clear error before any work or the result a user expects. Also bounds other than [0, 1] end
to end, dict batches (issue 11 item 6), and writability of every output location."""

from __future__ import annotations

import re
from collections.abc import Iterator

import numpy as np
import pytest
import torch
from art.estimators.classification import PyTorchClassifier
from conftest import PrototypeLinear, TinyCNN, make_prototype_data, state_snapshot
from torch import nn

from dard_plugin.attacks.dpgd import dpgd
from dard_plugin.data import make_loader
from dard_plugin.training import DARDTrainer, SATTrainer

ATTACK = {"eps": 0.1, "alpha": 0.05, "steps": 2}


def student_and_optimizer(lr: float = 0.05) -> tuple[nn.Module, torch.optim.Optimizer]:
    torch.manual_seed(0)
    student = TinyCNN()
    return student, torch.optim.SGD(student.parameters(), lr=lr, momentum=0.9)


def counting_attack(calls: list[int]):
    def attack(model, images, labels, generator):
        calls.append(images.shape[0])
        return dpgd(model, images, labels, eps=0.1, alpha=0.05, steps=1)

    return attack


def four_batches(x: torch.Tensor, y: torch.Tensor) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    for start in range(0, 64, 16):
        yield x[start : start + 16], y[start : start + 16]


def test_a_one_shot_generator_trains_every_batch() -> None:
    x, y, _ = make_prototype_data(n=64)
    calls: list[int] = []
    student, optimizer = student_and_optimizer()
    trainer = SATTrainer(student, optimizer=optimizer, attack=counting_attack(calls), verbose=False)
    history = trainer.fit_generator(four_batches(x, y), nb_epochs=1)
    assert calls == [16, 16, 16, 16]  # the first batch, inspected, is trained on too
    assert np.isfinite(history[0]["loss"])


def test_a_one_shot_generator_for_two_epochs_is_refused_before_work() -> None:
    x, y, _ = make_prototype_data(n=64)
    calls: list[int] = []
    student, optimizer = student_and_optimizer()
    before = state_snapshot(student)
    trainer = SATTrainer(student, optimizer=optimizer, attack=counting_attack(calls), verbose=False)
    with pytest.raises(ValueError, match=r"can be read only once.*nb_epochs"):
        trainer.fit_generator(four_batches(x, y), nb_epochs=2)
    assert calls == []
    assert all(torch.equal(v, before[k]) for k, v in state_snapshot(student).items())


def test_a_replayable_iterable_is_replayed_each_epoch() -> None:
    x, y, _ = make_prototype_data(n=64)
    calls: list[int] = []
    student, optimizer = student_and_optimizer()
    trainer = SATTrainer(student, optimizer=optimizer, attack=counting_attack(calls), verbose=False)
    history = trainer.fit_generator(list(four_batches(x, y)), nb_epochs=2)
    assert len(calls) == 8 and all(np.isfinite(h["loss"]) for h in history)


def sat(tmp_path, lr: float, **kwargs) -> SATTrainer:
    student, optimizer = student_and_optimizer(lr)
    return SATTrainer(
        student,
        optimizer=optimizer,
        attack={"eps": 0.1, "alpha": 0.05, "steps": 1},
        checkpoint_dir=tmp_path / "ckpt",
        resume=True,
        verbose=False,
        **kwargs,
    )


def test_resume_with_another_learning_rate_is_refused(tmp_path) -> None:
    x, y, _ = make_prototype_data(n=32)
    sat(tmp_path, 0.01).fit(x, y, batch_size=16, nb_epochs=1)
    with pytest.raises(ValueError, match=r"optimizer\.lr: checkpoint 0\.01, now 0\.5") as error:
        sat(tmp_path, 0.5).fit(x, y, batch_size=16, nb_epochs=2)
    assert "resume=False" in str(error.value) and "checkpoint_dir" in str(error.value)
    with pytest.raises(ValueError, match="batch_size"):
        sat(tmp_path, 0.01).fit(x, y, batch_size=8, nb_epochs=2)
    sat(tmp_path, 0.01).fit(x, y, batch_size=16, nb_epochs=2)  # same settings: continues


def test_a_run_extended_in_the_same_process_resumes(tmp_path) -> None:
    """The scheduler has moved the learning rate: the fingerprint holds the initial one."""
    x, y, _ = make_prototype_data(n=32)
    trainer = sat(tmp_path, 0.1)
    scheduler = torch.optim.lr_scheduler.StepLR(trainer.optimizer, 1, gamma=0.5)
    trainer.fit(x, y, batch_size=16, nb_epochs=1, scheduler=scheduler)
    history = trainer.fit(x, y, batch_size=16, nb_epochs=2, scheduler=scheduler)
    assert [h["epoch"] for h in history] == [1, 2]
    assert [h["lr"] for h in history] == pytest.approx([0.1, 0.05])
    assert trainer.epochs_run == 1


@pytest.mark.parametrize("mode", ["online", "cached"])
def test_resume_on_other_training_images_is_refused(tmp_path, mode: str) -> None:
    x, y, prototypes = make_prototype_data(n=32)
    other, _, _ = make_prototype_data(n=32, seed=5)

    def trainer() -> DARDTrainer:
        student, optimizer = student_and_optimizer()
        return DARDTrainer(
            student,
            PrototypeLinear(prototypes).eval(),
            optimizer=optimizer,
            attack=ATTACK,
            teacher_targets=mode,
            checkpoint_dir=tmp_path,
            resume=True,
            verbose=False,
        )

    trainer().fit(x, y, batch_size=16, nb_epochs=1)
    with pytest.raises(ValueError, match="data"):
        trainer().fit(other, y, batch_size=16, nb_epochs=2)


def test_a_corrupt_or_foreign_checkpoint_is_named(tmp_path) -> None:
    x, y, _ = make_prototype_data(n=32)
    (tmp_path / "ckpt").mkdir()
    path = tmp_path / "ckpt" / "checkpoint.pt"
    path.write_bytes(b"not a checkpoint at all")
    with pytest.raises(ValueError, match=r"checkpoint\.pt.*(corrupt|cannot be read)"):
        sat(tmp_path, 0.01).fit(x, y, batch_size=16, nb_epochs=1)
    torch.save({"weights": torch.zeros(2)}, path)
    with pytest.raises(ValueError, match="not a dard-plugin training checkpoint"):
        sat(tmp_path, 0.01).fit(x, y, batch_size=16, nb_epochs=1)


def test_unwritable_outputs_fail_before_training(tmp_path) -> None:
    x, y, _ = make_prototype_data(n=32)
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    for kwargs in (
        {"checkpoint_dir": blocker},
        {"checkpoint_dir": blocker / "sub"},
        {"history_path": blocker / "history.json"},
        {"history_path": tmp_path},
    ):
        calls: list[int] = []
        student, optimizer = student_and_optimizer()
        before = state_snapshot(student)
        trainer = SATTrainer(
            student, optimizer=optimizer, attack=counting_attack(calls), verbose=False, **kwargs
        )
        path = str(next(iter(kwargs.values())))
        with pytest.raises(ValueError, match=re.escape(path)):
            trainer.fit(x, y, batch_size=16, nb_epochs=1)
        assert calls == []
        assert all(torch.equal(v, before[k]) for k, v in state_snapshot(student).items())


class SignedInputs(nn.Module):
    """A model on [-1, 1] inputs, recording the range of everything it is given."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner
        self.seen = [np.inf, -np.inf]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        low, high = float(x.detach().min()), float(x.detach().max())
        self.seen = [min(self.seen[0], low), max(self.seen[1], high)]
        return self.inner((x + 1) / 2)


@pytest.mark.parametrize("method", ["sat", "dard", "rslad"])
@pytest.mark.parametrize("source", ["argument", "art"])
def test_bounds_minus_one_to_one_end_to_end(method: str, source: str) -> None:
    x01, y, prototypes = make_prototype_data(n=32, noise=0.3)
    x = 2 * x01 - 1
    assert float(x.min()) < -0.5
    torch.manual_seed(0)
    student = SignedInputs(TinyCNN())
    teacher = SignedInputs(PrototypeLinear(prototypes)).eval()
    optimizer = torch.optim.SGD(student.parameters(), lr=0.05)
    classifier: object = student
    options: dict[str, object] = {"optimizer": optimizer}
    if source == "art":
        classifier = PyTorchClassifier(
            model=student,
            loss=nn.CrossEntropyLoss(),
            optimizer=optimizer,
            input_shape=(1, 8, 8),
            nb_classes=10,
            clip_values=(-1.0, 1.0),
        )
        options = {}
    else:
        options["bounds"] = (-1.0, 1.0)
    from dard_plugin.training import TRAINERS

    args = (classifier,) if method == "sat" else (classifier, teacher)
    trainer = TRAINERS[method](
        *args, attack={"eps": 0.3, "alpha": 0.2, "steps": 3}, verbose=False, **options
    )
    history = trainer.fit(x, y, batch_size=16, nb_epochs=1, validation_data=(x, y))
    assert np.isfinite(history[0]["loss"]) and 0 <= history[0]["pgd_accuracy"] <= 1
    for model in (student, teacher) if method != "sat" else (student,):
        low, high = model.seen
        assert -1.0 <= low < -0.9 and high <= 1.0, (low, high)
    if source == "art":
        assert tuple(trainer.get_classifier().clip_values) == (-1.0, 1.0)


def test_inputs_outside_the_bounds_are_refused() -> None:
    x, y, _ = make_prototype_data(n=32)
    student, optimizer = student_and_optimizer()
    trainer = SATTrainer(student, optimizer=optimizer, attack=ATTACK, verbose=False)
    with pytest.raises(ValueError, match=r"x must lie in \[0.0, 1.0\].*bounds"):
        trainer.fit(2 * x - 1, y)
    with pytest.raises(ValueError, match="bounds"):
        SATTrainer(student, optimizer=optimizer, bounds=(1.0, 0.0))


class DictBatches(torch.utils.data.Dataset):
    def __init__(self, x: torch.Tensor, y: torch.Tensor, keys: tuple[str, str]) -> None:
        self.x, self.y, self.keys = x, y, keys

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        return {self.keys[0]: self.x[index], self.keys[1]: self.y[index]}


@pytest.mark.parametrize("keys", [("image", "label"), ("images", "labels"), ("pixels", "target")])
def test_dict_batches(keys: tuple[str, str]) -> None:
    x, y, _ = make_prototype_data(n=32)
    loader = torch.utils.data.DataLoader(DictBatches(x, y, keys), batch_size=16)
    calls: list[int] = []
    student, optimizer = student_and_optimizer()
    trainer = SATTrainer(student, optimizer=optimizer, attack=counting_attack(calls), verbose=False)
    if keys[0] == "pixels":
        with pytest.raises(
            ValueError, match=r"'image'/'label'.*\['pixels', 'target'\].*batch_keys"
        ):
            trainer.fit_generator(loader, nb_epochs=1)
        assert calls == []
        trainer.fit_generator(loader, nb_epochs=1, batch_keys=keys)
    else:
        trainer.fit_generator(loader, nb_epochs=1)
    assert calls == [16, 16]


def test_data_helper_unpacks_dict_batches() -> None:
    from dard_plugin.data import unpack_batch

    x, y = torch.rand(3, 1, 2, 2), torch.tensor([0, 1, 2])
    for batch in ((x, y), [x, y], {"image": x, "label": y}, {"images": x, "labels": y}):
        images, labels = unpack_batch(batch)
        assert images is x and labels is y
    assert unpack_batch({"a": x, "b": y}, keys=("a", "b"))[1] is y
    with pytest.raises(ValueError, match="keys"):
        unpack_batch({"a": x})
    with pytest.raises(TypeError, match="batch"):
        unpack_batch(x)


def test_cached_targets_follow_the_training_images() -> None:
    """A second fit on other images rebuilds the cache (keyed by data and teacher)."""
    x, y, prototypes = make_prototype_data(n=32)
    other, other_y, _ = make_prototype_data(n=32, seed=5)
    teacher = PrototypeLinear(prototypes).eval()
    student, optimizer = student_and_optimizer()
    trainer = DARDTrainer(
        student,
        teacher,
        optimizer=optimizer,
        attack=ATTACK,
        teacher_targets="cached",
        verbose=False,
    )
    trainer.fit(x, y, batch_size=16, nb_epochs=1)
    trainer.fit(other, other_y, batch_size=16, nb_epochs=1)
    with torch.no_grad():
        assert torch.allclose(trainer.targets.cache["teacher_nat"], teacher(other), atol=1e-6)
    loader = make_loader(other, other_y, batch_size=16)
    trainer.fit_generator(loader, nb_epochs=1)


# ----------------------------------------------------------------- issue 25: no surprises
class CountingTeacher(nn.Module):
    """The prototype teacher, counting its forward calls ("never called" means zero)."""

    def __init__(self) -> None:
        super().__init__()
        _, _, prototypes = make_prototype_data()
        self.inner = PrototypeLinear(prototypes)
        self.calls = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        return self.inner(x)


def counted_dard(tmp_path, **kwargs) -> tuple[DARDTrainer, CountingTeacher, nn.Module]:
    student, optimizer = student_and_optimizer()
    teacher = CountingTeacher().eval()
    options = {"attack": ATTACK, "checkpoint_dir": tmp_path / "ckpt", "verbose": False}
    options.update(kwargs)
    return DARDTrainer(student, teacher, optimizer=optimizer, **options), teacher, student


def test_resume_never_shortens_a_finished_run(tmp_path) -> None:
    """Issue 25 item 6: nb_epochs=2 on a finished 3-epoch run returned the 3-epoch model."""
    x, y, _ = make_prototype_data(n=32)
    trainer, _, _ = counted_dard(tmp_path)
    trainer.fit(x, y, batch_size=16, nb_epochs=3)
    checkpoint = tmp_path / "ckpt" / "checkpoint.pt"
    saved = checkpoint.read_bytes()
    trainer, teacher, student = counted_dard(tmp_path, resume=True)
    before = state_snapshot(student)
    with pytest.raises(
        ValueError, match=r"already trained 3 epochs, more than nb_epochs=2"
    ) as error:
        trainer.fit(x, y, batch_size=16, nb_epochs=2)
    message = str(error.value)
    assert "nb_epochs=3" in message and "resume=False" in message and str(checkpoint) in message
    assert "--epochs 3" in message  # usable as it is from `dard distill --resume`
    assert teacher.calls == 0 and checkpoint.read_bytes() == saved
    assert all(torch.equal(v, before[k]) for k, v in state_snapshot(student).items())
    # the same number of epochs gives the finished run back, and trains nothing
    history = trainer.fit(x, y, batch_size=16, nb_epochs=3)
    assert [h["epoch"] for h in history] == [1, 2, 3] and trainer.epochs_run == 0
    assert checkpoint.read_bytes() == saved


@pytest.mark.parametrize(
    ("options", "fit_options", "match"),
    [
        # the student's eps: once found only after the whole teacher-target cache was built
        (
            {"attack": {"eps": 8.0, "alpha": 0.05, "steps": 1}, "teacher_attack": ATTACK},
            {},
            r"attack\['eps'\]=8 covers the whole input range",
        ),
        (
            {"teacher_attack": {"eps": 8.0, "alpha": 0.05, "steps": 1}},
            {},
            r"teacher_attack\['eps'\]=8 covers the whole input range",
        ),
        (
            {"attack": {"norm": "L2", "eps": 9.0, "steps": 1}},
            {},
            r"attack\['eps'\]=9 .*L2 diameter of the box is 8",
        ),
        # the validation budget and images: once found after epoch 1
        ({"eval_eps": 8.0}, {"validation": "same"}, r"eval_eps=8 covers the whole input range"),
        ({}, {"validation": "wrong shape"}, r"validation_data\[0\] must hold images of the "),
    ],
)
@pytest.mark.parametrize("targets", ["online", "cached"])
def test_every_check_runs_before_the_teacher_and_the_cache(
    tmp_path, options, fit_options, match, targets
) -> None:
    x, y, _ = make_prototype_data(n=32)
    trainer, teacher, student = counted_dard(tmp_path, teacher_targets=targets, **options)
    before = state_snapshot(student)
    shapes = {"same": (x, y), "wrong shape": (x[:, :, :7, :7], y)}
    validation = shapes.get(fit_options.get("validation", ""))
    with pytest.raises(ValueError, match=match):
        trainer.fit(x, y, batch_size=16, nb_epochs=1, validation_data=validation)
    assert teacher.calls == 0
    assert all(torch.equal(v, before[k]) for k, v in state_snapshot(student).items())
    assert not (tmp_path / "ckpt").exists()


def test_a_diverging_run_stops_at_its_first_non_finite_epoch(tmp_path) -> None:
    """Epoch 1 trains at lr 0.05, then a scheduler sets lr 3e38: the weights overflow and
    the loss of epoch 2 is NaN. The run stops there, naming the learning rate; the
    checkpoint keeps epoch 1 and the error carries the history before it."""
    from dard_plugin.training import TrainingDivergedError

    x, y, _ = make_prototype_data(n=32)
    trainer = sat(tmp_path, 0.05)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        trainer.optimizer, lambda epoch: 1.0 if epoch == 0 else 6e39
    )
    with pytest.raises(TrainingDivergedError, match=r"sat epoch 2: training diverged") as error:
        trainer.fit(x, y, batch_size=8, nb_epochs=4, scheduler=scheduler)
    message = str(error.value)
    assert "loss=nan" in message and "lr=3e+38" in message
    assert "the checkpoint of epoch 1 is kept" in message
    assert [record["epoch"] for record in error.value.history] == [1]
    assert np.isfinite(error.value.history[0]["loss"])
    assert error.value.record["epoch"] == 2 and np.isnan(error.value.record["loss"])
    assert trainer.checkpointer.read()["epoch"] == 1
    assert isinstance(error.value, FloatingPointError)


def test_non_finite_batch_norm_statistics_stop_the_run_though_the_loss_is_finite() -> None:
    """In train mode BatchNorm normalises by the batch's statistics, so the loss stays
    finite while an infinite running variance makes every eval-mode prediction garbage."""
    from dard_plugin.training import TrainingDivergedError

    x, y, _ = make_prototype_data(n=32)
    student, optimizer = student_and_optimizer()
    trainer = SATTrainer(student, optimizer=optimizer, attack=ATTACK, verbose=False)
    trainer.fit(x, y, batch_size=16, nb_epochs=1)
    student.features[1].running_var.fill_(float("inf"))
    with pytest.raises(TrainingDivergedError, match=r"epoch 2: training diverged") as error:
        trainer.fit(x, y, batch_size=16, nb_epochs=1)
    message = str(error.value)
    assert "loss=" not in message and "features.1.running_var" in message
    assert "no checkpoint was written" in message
    assert np.isfinite(error.value.record["loss"])
    assert [record["epoch"] for record in error.value.history] == [1]


def test_a_finite_run_is_not_stopped(tmp_path) -> None:
    x, y, _ = make_prototype_data(n=32)
    history = sat(tmp_path, 0.05).fit(x, y, batch_size=8, nb_epochs=2)
    assert [record["epoch"] for record in history] == [1, 2]


def test_augment_with_a_channels_last_art_student_is_refused_before_work() -> None:
    """``BatchAugment`` reads (N, C, H, W): on NHWC images it padded and shifted the width
    and channels and flipped the channel axis (91% of pixels in colours never given)."""
    from dard_plugin.data import BatchAugment

    x, y, _ = make_prototype_data(n=32)
    student = nn.Sequential(nn.Flatten(), nn.Linear(64, 10))
    classifier = PyTorchClassifier(
        student, nn.CrossEntropyLoss(), input_shape=(8, 8, 1), nb_classes=10,
        optimizer=torch.optim.SGD(student.parameters(), lr=0.1), clip_values=(0.0, 1.0),
        channels_first=False,
    )  # fmt: skip
    before = state_snapshot(student)
    trainer = SATTrainer(classifier, attack=ATTACK, verbose=False)
    nhwc = x.permute(0, 2, 3, 1).contiguous()
    with pytest.raises(ValueError, match="channels_first=False"):
        trainer.fit(nhwc, y, batch_size=16, nb_epochs=1, augment=BatchAugment(padding=1))
    assert all(torch.equal(v, before[k]) for k, v in state_snapshot(student).items())
    trainer.fit(nhwc, y, batch_size=16, nb_epochs=1)  # without augment it trains


def test_images_given_as_a_view_with_negative_strides_train_as_a_copy() -> None:
    x, y, _ = make_prototype_data(n=32)
    flipped = x.numpy()[..., ::-1]  # numpy's flip: torch.as_tensor refused it
    weights = []
    for images in (flipped, np.ascontiguousarray(flipped)):
        student, optimizer = student_and_optimizer()
        SATTrainer(student, optimizer=optimizer, attack=ATTACK, verbose=False).fit(
            images, y, batch_size=16, nb_epochs=1
        )
        weights.append(state_snapshot(student))
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float64])
def test_a_model_of_another_dtype_is_named_by_its_dtype_not_the_inputs_shape(dtype) -> None:
    x, y, _ = make_prototype_data(n=32)
    student, optimizer = student_and_optimizer()
    student.to(dtype)
    trainer = SATTrainer(student, optimizer=optimizer, attack=ATTACK, verbose=False)
    with pytest.raises(ValueError, match=f"its weights are {dtype} \\(convert it with"):
        trainer.fit(x, y, batch_size=16, nb_epochs=1)


def test_a_teacher_declaring_other_inputs_is_refused_before_work() -> None:
    """A CIFAR ResNet-56 takes a grey 28x28 batch: its 3-channel normalisation broadcasts
    it and its global pooling accepts the size, so a Fashion-MNIST student was distilled
    from a network that never saw such images, with no error (``evaluate`` refused it)."""
    from dard_plugin.models import create

    teacher = create("resnet56", num_classes=10, dataset="cifar10").eval()
    student = create("tiny-cnn", num_classes=10, dataset="fashion-mnist")
    before = state_snapshot(student)
    x = torch.rand(4, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert teacher(x).shape == (4, 10)  # it runs: the check is what refuses it
    trainer = DARDTrainer(
        student, teacher, optimizer=torch.optim.SGD(student.parameters(), lr=0.1), verbose=False
    )
    with pytest.raises(ValueError, match=r"teacher expects inputs of shape \(3, 32, 32\)"):
        trainer.fit(x, torch.arange(4), batch_size=4, nb_epochs=1)
    assert all(torch.equal(v, before[k]) for k, v in state_snapshot(student).items())


def test_a_last_batch_of_one_image_a_batchnorm_cannot_train_on_is_refused_first() -> None:
    """33 images in batches of 16 with a BatchNorm1d student: torch failed on the last
    batch, after two batches had changed the weights, with nothing in the history."""
    x, y, _ = make_prototype_data(n=33)
    torch.manual_seed(0)
    student = nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.BatchNorm1d(32), nn.Linear(32, 10))
    optimizer = torch.optim.SGD(student.parameters(), lr=0.1)
    before = state_snapshot(student)
    trainer = SATTrainer(student, optimizer=optimizer, attack=ATTACK, verbose=False)
    with pytest.raises(ValueError, match=r"batch_size=16 leaves a last batch of 1 of the 33"):
        trainer.fit(x, y, batch_size=16, nb_epochs=1)
    assert all(torch.equal(v, before[k]) for k, v in state_snapshot(student).items())
    assert trainer.history == [] and trainer.epochs_trained == 0
    assert [h["epoch"] for h in trainer.fit(x, y, batch_size=11, nb_epochs=1)] == [1]
    conv, conv_optimizer = student_and_optimizer()  # BatchNorm2d over 8x8: one image trains
    SATTrainer(conv, optimizer=conv_optimizer, attack=ATTACK, verbose=False).fit(
        x, y, batch_size=16, nb_epochs=1
    )


def test_a_student_is_held_to_its_declared_channels_only() -> None:
    """A registry ResNet-18 declares (3, 32, 32) and its global pooling trains on 64x64
    images, as it did before the declared-shape check; grey images for it are refused."""
    from dard_plugin.models import create

    student = create("resnet18", num_classes=10)
    trainer = SATTrainer(
        student, optimizer=torch.optim.SGD(student.parameters(), lr=0.01), attack=ATTACK,
        verbose=False,
    )  # fmt: skip
    x = torch.rand(4, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    assert len(trainer.fit(x, torch.arange(4), batch_size=4, nb_epochs=1)) == 1
    grey = create("resnet18", num_classes=10)
    refused = SATTrainer(grey, optimizer=torch.optim.SGD(grey.parameters(), lr=0.01))
    with pytest.raises(ValueError, match=r"student expects 3-channel inputs"):
        refused.fit(x[:, :1, :32, :32], torch.arange(4), batch_size=4, nb_epochs=1)


def test_the_last_batch_probe_counts_each_ranks_share_and_leaves_the_rng() -> None:
    from dard_plugin.training._checks import check_last_batch

    torch.manual_seed(0)
    student = nn.Sequential(
        nn.Flatten(), nn.Linear(64, 32), nn.BatchNorm1d(32), nn.Dropout(0.5), nn.Linear(32, 10)
    )
    x = torch.rand(66, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    state = torch.get_rng_state()
    check_last_batch(student, x, 16, [], world=1)  # 66 % 16 == 2: fine
    with pytest.raises(ValueError, match="each of the 2 processes' shares"):
        check_last_batch(student, x, 16, [], world=2)  # 33 a rank: 1 left over
    assert torch.equal(torch.get_rng_state(), state)
    check_last_batch(student, x, 16, [student[2]], world=2)  # a frozen BatchNorm: fine
