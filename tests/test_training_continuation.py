"""A later ``fit`` on the same trainer continues its run, as ART users call ``fit`` once
per epoch: an outside audit found each call restarting the run (the same batch order and
random starts every call, the eps warm-up back at its first step, IAD's introspection on
from the first call and IGDM's weight at 1 throughout)."""

from __future__ import annotations

import pytest
import torch
from conftest import PrototypeLinear, TinyCNN, make_prototype_data

from dard_plugin.training import build_trainer

ATTACK = {"eps": 0.1, "alpha": 0.05, "steps": 2}


def trainer_for(method: str, **options):
    torch.manual_seed(0)
    student = TinyCNN()
    teacher = None if method == "sat" else PrototypeLinear(make_prototype_data()[2]).eval()
    optimizer = torch.optim.SGD(student.parameters(), lr=0.05, momentum=0.9)
    return build_trainer(method, student, teacher, optimizer=optimizer, attack=ATTACK,
                         verbose=False, **options)  # fmt: skip


@pytest.mark.parametrize(
    ("method", "options"),
    [("sat", {"eps_warmup_epochs": 2}), ("dard", {"teacher_targets": "cached"})],
)
def test_one_epoch_fits_train_what_one_fit_trains(method: str, options) -> None:
    """Three ``fit(nb_epochs=1)`` calls give the weights of one ``fit(nb_epochs=3)``, bit
    for bit, and the same history (epochs 1-3, the warm-up's budgets): batch orders,
    random starts and schedules follow the run's epoch, not the call."""
    x, y, _ = make_prototype_data(n=48)
    whole = trainer_for(method, **options)
    expected = whole.fit(x, y, nb_epochs=3, batch_size=16)
    stepwise = trainer_for(method, **options)
    for _ in range(3):
        history = stepwise.fit(x, y, nb_epochs=1, batch_size=16)
    assert [h["epoch"] for h in history] == [1, 2, 3]
    drop = {"seconds"}
    assert [{k: v for k, v in h.items() if k not in drop} for h in history] == [
        {k: v for k, v in h.items() if k not in drop} for h in expected
    ]
    for name, tensor in whole.student.state_dict().items():
        assert torch.equal(stepwise.student.state_dict()[name], tensor), name
    if method == "sat":
        assert [h["attack_eps"] for h in history] == pytest.approx([0.05, 0.1, 0.1])


@pytest.mark.parametrize("method", ["iad", "adaad-igdm"])
def test_a_schedule_over_the_run_refuses_a_second_fit_before_any_work(method: str) -> None:
    """IAD's start epoch and IGDM's weight are fractions of one fit's epochs: a second fit
    would restart them. It is refused, naming what to do, and the student is untouched."""
    x, y, _ = make_prototype_data(n=16)
    trainer = trainer_for(method)
    trainer.fit(x, y, nb_epochs=1, batch_size=16)
    before = {k: v.clone() for k, v in trainer.student.state_dict().items()}
    with pytest.raises(ValueError, match=r"already trained 1 epochs.*one fit call"):
        trainer.fit(x, y, nb_epochs=1, batch_size=16)
    assert all(torch.equal(v, trainer.student.state_dict()[k]) for k, v in before.items())


def test_a_resumed_run_at_its_length_warns_that_nothing_trained(tmp_path) -> None:
    """With ``resume=True`` ``nb_epochs`` is the run's length: ART's habit of repeated
    ``fit(nb_epochs=1)`` trained once and then nothing, silently. It now says so."""
    x, y, _ = make_prototype_data(n=16)
    trainer = trainer_for("sat", checkpoint_dir=tmp_path, resume=True)
    trainer.fit(x, y, nb_epochs=1, batch_size=16)
    with pytest.warns(UserWarning, match=r"nothing trained: with resume=True, nb_epochs=1"):
        history = trainer.fit(x, y, nb_epochs=1, batch_size=16)
    assert [h["epoch"] for h in history] == [1] and trainer.epochs_run == 0
    history = trainer.fit(x, y, nb_epochs=2, batch_size=16)  # the run's new length
    assert [h["epoch"] for h in history] == [1, 2]
