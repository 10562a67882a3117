"""``distill(val_split=...)``: validation images come from the end of the training split,
never from the test split, and never overlap the training images."""

from __future__ import annotations

import pytest
import torch

from dard_plugin.data import load_dataset
from dard_plugin.recipes.distillation import _holdout_split


def test_holdout_split_is_disjoint_and_from_the_training_tail() -> None:
    x, y, x_val, y_val = _holdout_split("fashion-mnist", 1000, 300, 5000, None)
    train_images, train_labels = load_dataset("fashion-mnist")
    assert torch.equal(x, train_images[:1000]) and torch.equal(y, train_labels[:1000])
    assert torch.equal(x_val, train_images[55_000:55_300])
    assert torch.equal(y_val, train_labels[55_000:55_300])
    test_images, _ = load_dataset("fashion-mnist", train=False, n_examples=300)
    assert not torch.equal(x_val, test_images)


@pytest.mark.parametrize(
    ("n_train", "n_val", "val_split", "message"),
    [
        (None, 100, 0, "val_split"),
        (56_000, 100, 5000, "n_train must be at most 55000"),
        (100, 6000, 5000, "n_val must be at most val_split"),
        (100, 100, 60_000, "val_split must leave training images"),
    ],
)
def test_holdout_split_bad_sizes(
    n_train: int | None, n_val: int, val_split: int, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        _holdout_split("fashion-mnist", n_train, n_val, val_split, None)


def test_choose_validation_holds_out_by_default_and_names_the_way_to_test_images() -> None:
    from dard_plugin.recipes import DEFAULT_VAL_SPLIT, choose_validation

    assert choose_validation(None, 1000, False) == DEFAULT_VAL_SPLIT == 5000
    assert choose_validation(None, 6000, False) == 6000
    assert choose_validation(2000, 1000, False) == 2000
    assert choose_validation(None, 1000, True) is None
    assert choose_validation(0, 1000, True) is None
    with pytest.raises(ValueError, match=r"val_split 0 holds nothing out.*validate_on_test=True"):
        choose_validation(0, 1000, False)
    with pytest.raises(ValueError, match=r"validate_on_test=True .*drop val_split 2000"):
        choose_validation(2000, 1000, True)
    with pytest.raises(TypeError, match="validate_on_test must be a bool"):
        choose_validation(None, 1000, "yes")  # type: ignore[arg-type]


@pytest.mark.parametrize("validate_on_test", [False, True])
def test_distill_validates_on_held_out_training_images_unless_asked(
    monkeypatch: pytest.MonkeyPatch, validate_on_test: bool
) -> None:
    """The Python recipe's default is the command line's: no test image is loaded for
    validation unless ``validate_on_test=True``; the validation images are then the
    training split's images 55,000.. (the 5,000 held out), else the first test images."""
    from dard_plugin import recipes
    from dard_plugin.recipes import distillation

    seen: list[torch.Tensor] = []
    calls: list[bool] = []
    real_load = distillation.load_dataset

    def recording_load(name, *, train=True, n_examples=None, root=None):
        calls.append(train)
        return real_load(name, train=train, n_examples=n_examples, root=root)

    monkeypatch.setattr(distillation, "load_dataset", recording_load)
    real_build = distillation.build_trainer

    def spying_build(*args, **kwargs):
        trainer = real_build(*args, **kwargs)
        fit = trainer.fit

        def fit_and_record(x, y, *, validation_data, **rest):
            seen.append(validation_data[0])
            return fit(x, y, validation_data=validation_data, **rest)

        trainer.fit = fit_and_record
        return trainer

    monkeypatch.setattr(distillation, "build_trainer", spying_build)
    recipes.distill(
        method="natural",
        n_train=64,
        n_val=16,
        epochs=1,
        batch_size=64,
        validate_on_test=validate_on_test,
        verbose=False,
    )
    train_images, _ = load_dataset("fashion-mnist")
    test_images, _ = load_dataset("fashion-mnist", train=False, n_examples=16)
    if validate_on_test:
        assert False in calls and torch.equal(seen[0], test_images)
    else:
        assert False not in calls
        assert torch.equal(seen[0], train_images[55_000:55_016])


def test_a_resume_that_trains_removes_the_earlier_runs_report(tmp_path) -> None:
    """``distill(resume=True)`` with more epochs, in a folder the command line wrote,
    retrained ``student.pt`` and left ``report.json`` and ``run.json`` describing the
    earlier student (25% clean for a student that scored 12.5%). They now go when the
    resume trains; a resume that trains nothing keeps them."""
    from dard_plugin import recipes

    options = {"method": "natural", "n_train": 64, "n_val": 16, "batch_size": 64}
    options.update({"verbose": False, "out_dir": tmp_path, "resume": True})
    recipes.distill(epochs=1, **options)
    for name in ("report.json", "report.md", "run.json"):  # as `dard distill` writes them
        (tmp_path / name).write_text("{}")
    again = recipes.distill(epochs=1, **options)
    assert again.epochs_run == 0 and (tmp_path / "report.json").is_file()
    longer = recipes.distill(epochs=2, **options)
    assert longer.epochs_run == 1 and (tmp_path / "student.pt").is_file()
    assert not any((tmp_path / n).exists() for n in ("report.json", "report.md", "run.json"))


def test_overwriting_a_run_removes_what_an_evaluation_into_its_folder_wrote(tmp_path) -> None:
    """``--overwrite`` left a ``dard evaluate --curve`` plot and AutoAttack's state files
    beside the new run; files of neither are kept."""
    from dard_plugin.cli.evaluation import STATE_PATTERN
    from dard_plugin.recipes.settings import EVALUATION_STATE_PATTERN, RUN_FILES, remove_run

    assert STATE_PATTERN == EVALUATION_STATE_PATTERN
    names = [*RUN_FILES, "autoattack-state.autoattack.json", "autoattack-state.apgd-ce.json"]
    for name in [*names, "notes.txt"]:
        (tmp_path / name).write_text("x")
    remove_run(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]
    assert "curve.png" in RUN_FILES
