"""The fast paths (issue 24), each against the plain path on CPU: the compiled attack step
(``attacks/_fast.py``), bf16 autocast and channels-last through the teachers' and the
students' attacks, and the teacher's cache built in larger batches.

The two compiled tests compile real graphs with ``torch.compile`` (inductor, C++ on CPU):
about 50 s of wall time on one loaded core with an empty inductor cache (24 s of CPU), most
of it the first compilation in the process; about 15 s with a warm cache.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from conftest import TinyCNN, make_prototype_data
from torch import nn

from dard_plugin.attacks import _fast
from dard_plugin.attacks.dpgd import dpgd, dpgd_l2
from dard_plugin.attacks.pgd import _loss_gradient, cross_entropy_objective, pgd_linf
from dard_plugin.training import DARDTrainer, SATTrainer

ATTACK = {"eps": 0.1, "alpha": 0.05, "steps": 3}


def tiny_model(seed: int, channels: int = 1) -> nn.Module:
    torch.manual_seed(seed)
    return TinyCNN(channels=channels)


# ------------------------------------------------------------------ the compiled step
@pytest.mark.slow
def test_compiled_attack_step_gives_the_plain_adversarial_examples() -> None:
    x, y, _ = make_prototype_data(n=8)
    model = tiny_model(0)
    plain_linf = dpgd(model, x, y, eps=0.1, alpha=0.03, steps=4)
    plain_l2 = dpgd_l2(model, x, y, eps=1.0, steps=4)
    plain_last = dpgd(model, x[:5], y[:5], eps=0.1, alpha=0.03, steps=4)
    with _fast.compiled_attacks():
        fast_linf = dpgd(model, x, y, eps=0.1, alpha=0.03, steps=4)
        calls_first = dict(_fast.compiled_step_calls(model))
        fast_l2 = dpgd_l2(model, x, y, eps=1.0, steps=4)  # same step, another update
        fast_last = dpgd(model, x[:5], y[:5], eps=0.1, alpha=0.03, steps=4)
    calls = _fast.compiled_step_calls(model)
    torch.testing.assert_close(fast_linf, plain_linf, rtol=0, atol=1e-6)
    torch.testing.assert_close(fast_l2, plain_l2, rtol=0, atol=1e-6)
    torch.testing.assert_close(fast_last, plain_last, rtol=0, atol=1e-6)
    # the first step of the first call runs plain (the model's output checked first),
    # the rest compiled; the smaller batch (the last of an epoch) runs plain throughout
    assert calls_first == {"compiled": 3, "plain": 1}
    assert calls == {"compiled": 7, "plain": 5}
    assert (fast_linf - x).abs().max() <= 0.1 + 1e-6
    # a plain callable (not a module) is not compiled
    assert _fast.gradient_function(len, lambda t: t) is len  # type: ignore[arg-type]


@pytest.mark.slow
def test_compiled_attack_step_trains_the_same_weights() -> None:
    # DARD with online targets: the teacher's DPGD and the student's attack both compiled;
    # 10 images in batches of 4: two full batches and a smaller last one (plain path)
    x, y, _ = make_prototype_data(n=10)
    teacher = tiny_model(5).eval()
    students = {}
    histories = {}
    for compiled in (False, True):
        student = tiny_model(1)
        optimizer = torch.optim.SGD(student.parameters(), lr=0.1, momentum=0.9)
        trainer = DARDTrainer(
            student,
            teacher,
            optimizer=optimizer,
            attack=ATTACK,
            compile_attack=compiled,
            verbose=False,
        )
        histories[compiled] = trainer.fit(x, y, batch_size=4, nb_epochs=1)
        students[compiled] = student
    for name, value in students[False].state_dict().items():
        torch.testing.assert_close(
            students[True].state_dict()[name], value, rtol=1e-5, atol=1e-6, msg=name
        )
    assert histories[True][0]["loss"] == pytest.approx(histories[False][0]["loss"], rel=1e-5)
    assert _fast.compiled_step_calls(teacher)["compiled"] > 0
    assert _fast.compiled_step_calls(students[True])["compiled"] > 0


def test_adaad_attack_step_goes_through_the_compiled_path(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """AdaAD's attack model (student and teacher side by side) was a closure, which
    ``compile_attack`` left plain, silently. It is a module now: its step is routed
    through the compiled path (here a stand-in compiler that returns the function, so no
    graph is built) and trains the plain path's weights, bit for bit."""
    from dard_plugin.training import AdaADTrainer, models

    monkeypatch.setattr(_fast.torch, "compile", lambda function, mode=None: function)
    pairs: list[nn.Module] = []

    class Recorded(models.StudentAndTeacher):
        def __init__(self, *args: Any) -> None:
            super().__init__(*args)
            pairs.append(self)

    monkeypatch.setattr(models, "StudentAndTeacher", Recorded)
    x, y, _ = make_prototype_data(n=10)
    teacher = tiny_model(5).eval()
    students, trainers = {}, {}
    for compiled in (False, True):
        student = tiny_model(1)
        optimizer = torch.optim.SGD(student.parameters(), lr=0.1, momentum=0.9)
        trainers[compiled] = AdaADTrainer(
            student, teacher, optimizer=optimizer, attack=ATTACK, compile_attack=compiled
        )
        trainers[compiled].fit(x, y, batch_size=4, nb_epochs=1)
        students[compiled] = student
    for name, value in students[False].state_dict().items():
        assert torch.equal(students[True].state_dict()[name], value), name
    # one module per fit (kept across its batches, let go at its end)
    assert len(pairs) == 2 and all(t._attack_pair is None for t in trainers.values())
    assert pairs[1].student is students[True] and pairs[1].teacher is teacher
    # two full batches of 4 compiled after each first look; the last batch of 2 plain
    assert _fast.compiled_step_calls(pairs[1]) == {"compiled": 5, "plain": 4}
    assert _fast.compiled_step_calls(pairs[0]) == {"compiled": 0, "plain": 0}


def test_a_failing_compiler_falls_back_to_the_plain_step(
    caplog: pytest.LogCaptureFixture,
) -> None:
    x, y, _ = make_prototype_data(n=6)
    model = tiny_model(0)
    plain = dpgd(model, x, y, eps=0.1, alpha=0.03, steps=3)

    def broken_compiler(*args: object) -> None:
        raise torch._dynamo.exc.Unsupported("an operation the compiler cannot handle")

    with _fast.compiled_attacks(), caplog.at_level("WARNING"):
        step = _fast.gradient_function(_loss_gradient, model)
        step.compiled = broken_compiler  # type: ignore[attr-defined]
        first = dpgd(model, x, y, eps=0.1, alpha=0.03, steps=3)
        second = dpgd(model, x, y, eps=0.1, alpha=0.03, steps=3)
    torch.testing.assert_close(first, plain, rtol=0, atol=0)
    torch.testing.assert_close(second, plain, rtol=0, atol=0)
    assert _fast.compiled_step_calls(model) == {"compiled": 0, "plain": 6}
    assert sum("compiling the attack step failed" in r.message for r in caplog.records) == 1


# ------------------------------------------------------------------ options
def test_compile_option_resolves_per_device_and_checks_its_input() -> None:
    for device_type, fastest in _fast.FASTEST.items():
        assert _fast.resolve_compile(None, torch.device(device_type)) is fastest
    assert _fast.resolve_compile(True, torch.device("cpu")) is True
    student = tiny_model(0)
    optimizer = torch.optim.SGD(student.parameters(), lr=0.1)
    assert SATTrainer(student, optimizer=optimizer, verbose=False).compile_attack is False
    with pytest.raises(TypeError, match="compile_attack"):
        SATTrainer(student, optimizer=optimizer, compile_attack="yes")
    with pytest.raises(ValueError, match="compile_mode"):
        SATTrainer(student, optimizer=optimizer, compile_mode="fastest")
    # a mode for a step that is not compiled was accepted and ignored (0 compiled calls)
    for plain in (False, None):
        with pytest.raises(ValueError, match="compile_attack=True, or drop compile_mode"):
            SATTrainer(
                student, optimizer=optimizer, compile_attack=plain, compile_mode="reduce-overhead"
            )
    compiled = SATTrainer(
        student, optimizer=optimizer, compile_attack=True, compile_mode="reduce-overhead"
    )
    assert (compiled.compile_attack, compiled.compile_mode) == (True, "reduce-overhead")
    with pytest.raises(ValueError, match="teacher_batch_size"):
        DARDTrainer(student, tiny_model(1).eval(), optimizer=optimizer, teacher_batch_size=0)


def test_plain_path_outside_the_context_and_inside_when_off() -> None:
    model = tiny_model(0)
    plain = _loss_gradient
    assert _fast.gradient_function(plain, model) is plain
    with _fast.compiled_attacks(False):
        assert _fast.gradient_function(plain, model) is plain
    with _fast.compiled_attacks(True):
        assert _fast.gradient_function(plain, model) is not plain
    assert _fast.gradient_function(plain, model) is plain  # the context is left


# ------------------------------------------------------------------ bf16 and channels-last
class Recording(nn.Module):
    """Records, for every forward, whether the batch is channels-last, whether bf16
    autocast is on, and whether the call computes an input gradient (an attack step)."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner
        self.calls: list[tuple[bool, bool, bool]] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls.append(
            (
                x.is_contiguous(memory_format=torch.channels_last),
                torch.is_autocast_enabled("cpu")
                and torch.get_autocast_dtype("cpu") == torch.bfloat16,
                x.requires_grad,
            )
        )
        return self.inner(x)


@pytest.mark.parametrize("teacher_targets", ["online", "cached"])
def test_teacher_and_student_attacks_run_in_bf16_and_channels_last(teacher_targets: str) -> None:
    x, y, _ = make_prototype_data(n=12)
    teacher, student = Recording(tiny_model(5)).eval(), Recording(tiny_model(1))
    optimizer = torch.optim.SGD(student.parameters(), lr=0.1)
    trainer = DARDTrainer(
        student,
        teacher,
        optimizer=optimizer,
        attack=ATTACK,
        amp=True,
        channels_last=True,
        teacher_targets=teacher_targets,
        verbose=False,
    )
    trainer.fit(x, y, batch_size=4, nb_epochs=1)
    teacher_attack = [c for c in teacher.calls if c[2]]
    student_attack = [c for c in student.calls if c[2]]
    # 3 DPGD steps per teacher call (3 batches online; one cache chunk of 12 cached)
    assert len(teacher_attack) == (9 if teacher_targets == "online" else 3)
    assert len(student_attack) >= 9
    # the first call of each is the loop's memory-format probe (no autocast); every later
    # teacher call (its DPGD steps, its soft labels) and every student attack step: both
    assert not teacher.calls[0][1]
    assert all(channels_last and bf16 for channels_last, bf16, _ in teacher.calls[1:])
    assert all(channels_last and bf16 for channels_last, bf16, _ in student_attack)


# ------------------------------------------------------------------ the teacher's batch
def dard_trainer(teacher: nn.Module, **options: Any) -> DARDTrainer:
    """A DARD trainer of a fresh tiny student with the tests' attack."""
    student = tiny_model(1)
    optimizer = torch.optim.SGD(student.parameters(), lr=0.1)
    return DARDTrainer(
        student, teacher, optimizer=optimizer, attack=ATTACK, verbose=False, **options
    )


def test_cached_targets_built_in_teacher_batches() -> None:
    x, y, _ = make_prototype_data(n=12)
    teacher = tiny_model(5).eval()
    caches = {}
    for teacher_batch_size in (None, 6):
        trainer = dard_trainer(
            teacher,
            teacher_targets="cached",
            eval_batch_size=4,
            teacher_batch_size=teacher_batch_size,
        )
        trainer.fit(x, y, batch_size=4, nb_epochs=1)
        assert trainer.targets.cache is not None
        caches[teacher_batch_size] = trainer.targets.cache
        # the chunk the targets were built in: eval_batch_size (4, not the default 256)
        # when teacher_batch_size is unset, so a resume under another one is refused
        in_fingerprint = trainer.config().get("teacher_batch_size")
        assert in_fingerprint == (teacher_batch_size or 4)
        # the reference: the teacher's outputs computed chunk by chunk at that size
        chunk = teacher_batch_size or 4
        reference = [
            trainer.teacher_outputs(x[i : i + chunk], y[i : i + chunk]) for i in range(0, 12, chunk)
        ]
        for name in ("teacher_nat", "teacher_adv"):
            expected = torch.cat([part[name] for part in reference])
            torch.testing.assert_close(caches[teacher_batch_size][name], expected)
    # DPGD's batch-reduced Dice: the teacher's example depends on the chunk it is in
    assert not torch.equal(caches[None]["teacher_adv"], caches[6]["teacher_adv"])
    torch.testing.assert_close(caches[None]["teacher_nat"], caches[6]["teacher_nat"])


@pytest.mark.parametrize("targets", ["cached", "online"])
def test_eval_batch_size_joins_the_fingerprint_only_where_it_shapes_cached_targets(
    targets: str,
) -> None:
    teacher = tiny_model(5).eval()

    def config(**kwargs: Any) -> dict[str, Any]:
        return dard_trainer(teacher, teacher_targets=targets, **kwargs).config()

    default = config()
    assert "teacher_batch_size" not in default  # default runs' fingerprints unchanged
    assert config(eval_batch_size=256) == default
    if targets == "cached":
        assert config(teacher_batch_size=64)["teacher_batch_size"] == 64
        assert config(eval_batch_size=128)["teacher_batch_size"] == 128
        assert config(eval_batch_size=128, teacher_batch_size=64)["teacher_batch_size"] == 64
    else:  # online targets are computed per training batch: eval_batch_size is irrelevant
        assert config(eval_batch_size=128) == default
        with pytest.raises(ValueError, match="teacher_batch_size"):  # and it changes nothing
            config(teacher_batch_size=64)


def test_resume_under_another_eval_batch_size_is_refused_for_cached_targets(
    tmp_path: Path,
) -> None:
    x, y, _ = make_prototype_data(n=12)
    teacher = tiny_model(5).eval()

    def trainer(eval_batch_size: int, resume: bool) -> DARDTrainer:
        return dard_trainer(
            teacher,
            teacher_targets="cached",
            eval_batch_size=eval_batch_size,
            checkpoint_dir=tmp_path,
            resume=resume,
        )

    trainer(4, False).fit(x, y, batch_size=4, nb_epochs=1)
    with pytest.raises(ValueError, match="teacher_batch_size"):
        trainer(6, True).fit(x, y, batch_size=4, nb_epochs=2)
    assert trainer(4, True).fit(x, y, batch_size=4, nb_epochs=2)[-1]["epoch"] == 2


def test_plain_pgd_unchanged_by_the_hook() -> None:
    # the hook's plain path is the loop as before: PGD on a linear model, closed form
    torch.manual_seed(0)
    model = nn.Linear(4, 3)
    x = torch.rand(5, 4)
    y = torch.randint(0, 3, (5,))
    adversarial = pgd_linf(model, x, y, cross_entropy_objective, eps=0.1, alpha=0.2, steps=1)
    # one step with alpha >= eps lands on the sign of the gradient, clipped to [0, 1]
    x_ref = x.clone().requires_grad_(True)
    loss = nn.functional.cross_entropy(model(x_ref), y)
    (gradient,) = torch.autograd.grad(loss, x_ref)
    expected = (x + 0.1 * gradient.sign()).clamp(0, 1)
    torch.testing.assert_close(adversarial, expected)
    assert model.weight.grad is None
