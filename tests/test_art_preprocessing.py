"""The trainers see what an ART classifier's ``predict`` sees: its mean/std standardisation
(``preprocessing=(mean, std)``) runs in front of the model in training, the training attack
and validation, for the student and for a teacher given as an ART classifier; other
preprocessing is refused before any work."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from art.defences.preprocessor import FeatureSqueezing
from art.estimators.classification import PyTorchClassifier
from torch import nn

from dard_plugin import DARDTrainer, SATTrainer, load_teacher
from dard_plugin.data import load_dataset
from dard_plugin.models import create


def art(model: nn.Module, *, lr: float = 0.0, **options) -> PyTorchClassifier:
    return PyTorchClassifier(
        model=model,
        loss=nn.CrossEntropyLoss(),
        optimizer=torch.optim.SGD(model.parameters(), lr=lr),
        input_shape=(1, 28, 28),
        nb_classes=10,
        **{"clip_values": (0.0, 1.0), **options},
    )


def accuracy(logits: np.ndarray, labels: np.ndarray) -> float:
    return float((logits.argmax(1) == labels).mean())


def test_student_validation_equals_predict_through_its_standardisation() -> None:
    # a trained network (the shipped teacher's weights) as the student, so that the inputs
    # it is given matter: on raw images it scores 0.81 here, through (x - 0.5) / 0.5 0.70
    student = copy.deepcopy(load_teacher("dard-fmnist-teacher")).requires_grad_(True)
    classifier = art(student, preprocessing=(0.5, 0.5))  # lr 0: only BatchNorm statistics move
    x, y = (t.numpy() for t in load_dataset("fashion-mnist", n_examples=64))
    x_val, y_val = (t.numpy() for t in load_dataset("fashion-mnist", train=False, n_examples=128))
    trainer = SATTrainer(classifier, attack={"eps": 0.1, "steps": 2}, eval_eps=0.1, verbose=False)
    history = trainer.fit(x, y, validation_data=(x_val, y_val), batch_size=32, nb_epochs=1)

    through_predict = accuracy(trainer.get_classifier().predict(x_val), y_val)
    with torch.no_grad():
        raw = accuracy(student.eval()(torch.from_numpy(x_val)).numpy(), y_val)
    assert abs(history[-1]["clean_accuracy"] - through_predict) <= 1 / 128
    assert abs(raw - through_predict) > 5 / 128  # the two readings differ: the test can fail


def test_teacher_as_art_classifier_answers_as_its_predict() -> None:
    teacher = art(load_teacher("dard-fmnist-teacher"), preprocessing=(0.2860, 0.3530))
    student = create("tiny-cnn", num_classes=10)
    trainer = DARDTrainer(
        student, teacher, optimizer=torch.optim.SGD(student.parameters(), lr=0.01), verbose=False
    )
    x = load_dataset("fashion-mnist", train=False, n_examples=32)[0]
    with torch.no_grad():
        logits = trainer.teacher(x)
    np.testing.assert_allclose(logits.numpy(), teacher.predict(x.numpy()), rtol=1e-5, atol=1e-5)
    with torch.no_grad():
        raw = teacher.model(x)
    assert not torch.allclose(logits, raw, atol=1e-2)


def test_identity_preprocessing_leaves_the_model_bare() -> None:
    student = create("tiny-cnn", num_classes=10)
    trainer = SATTrainer(art(student), verbose=False)
    assert trainer.student is student  # checkpoints keep the model's own keys


@pytest.mark.parametrize("role", ["classifier", "teacher"])
def test_other_preprocessing_is_refused_naming_the_argument(role: str) -> None:
    squeezing = FeatureSqueezing(clip_values=(0.0, 1.0), bit_depth=4)
    defended = art(create("tiny-cnn", num_classes=10), preprocessing_defences=[squeezing])
    student = create("tiny-cnn", num_classes=10)
    with pytest.raises(ValueError, match=rf"{role}: .*preprocessing FeatureSqueezing"):
        if role == "classifier":
            SATTrainer(defended, verbose=False)
        else:
            DARDTrainer(
                student,
                defended,
                optimizer=torch.optim.SGD(student.parameters(), lr=0.01),
                verbose=False,
            )


def test_evaluate_takes_an_art_classifier_as_its_predict_computes() -> None:
    """``evaluate(classifier)`` failed (no ``parameters``), and ``evaluate(classifier.model)``
    silently skipped ART's standardisation: 9.0% clean where ``predict`` gives 83.5%. An
    ART classifier is now evaluated as its ``predict`` computes, attacks included."""
    from dard_plugin import evaluate
    from dard_plugin.training.art_classifiers import Standardised

    teacher = load_teacher("dard-fmnist-teacher")
    classifier = art(teacher, preprocessing=(0.5, 0.25))
    x, y = load_dataset("fashion-mnist", train=False, n_examples=64)
    options = {"eps": 0.1, "attacks": ["clean", "fgsm"], "verbose": False}
    report = evaluate(classifier, x, y, **options)
    assert report.clean_accuracy == accuracy(classifier.predict(x.numpy()), y.numpy())
    wrapped = Standardised(teacher, torch.tensor(0.5), torch.tensor(0.25))
    same = evaluate(wrapped, x, y, **options)
    assert (report.per_attack, report.robust_accuracy) == (same.per_attack, same.robust_accuracy)
    bare = evaluate(teacher, x, y, **options)  # the module alone: another function
    assert bare.clean_accuracy != report.clean_accuracy
    assert not teacher.training


def test_evaluate_refuses_an_art_classifier_for_another_range_and_other_objects() -> None:
    from dard_plugin import evaluate

    x, y = load_dataset("fashion-mnist", train=False, n_examples=8)
    scaled = art(create("tiny-cnn", num_classes=10), clip_values=(0.0, 255.0))
    with pytest.raises(ValueError, match=r"model: an ART classifier with clip_values \(0.0, 255"):
        evaluate(scaled, x, y, eps=0.1, verbose=False)
    with pytest.raises(TypeError, match=r"model must be an nn\.Module or an ART PyTorchClass"):
        evaluate(lambda images: images, x, y, eps=0.1, verbose=False)


def test_a_classifier_loss_the_trainers_do_not_use_is_warned_about() -> None:
    """ART's trainers train through classifier.fit, with the classifier's loss; these
    trainers use each method's own, and a label-smoothed or weighted loss was dropped with
    no word (bit-identical weights to plain cross-entropy)."""
    import warnings

    smoothed = PyTorchClassifier(
        model=create("tiny-cnn", num_classes=10),
        loss=nn.CrossEntropyLoss(label_smoothing=0.1),
        optimizer=None,
        input_shape=(1, 28, 28),
        nb_classes=10,
        clip_values=(0.0, 1.0),
    )
    optimizer = torch.optim.SGD(smoothed.model.parameters(), lr=0.01)
    with pytest.warns(
        UserWarning, match=r"loss CrossEntropyLoss\(.*label_smoothing=0.1.*\) is not used"
    ) as caught:
        SATTrainer(smoothed, optimizer=optimizer, verbose=False)
    assert caught[0].filename == __file__  # pointed at the caller
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        SATTrainer(art(create("tiny-cnn", num_classes=10)), verbose=False)  # plain CE: quiet


def test_autoattack_state_tells_classifiers_under_other_preprocessing_apart(tmp_path) -> None:
    """Two ART classifiers over one network under other ``preprocessing`` had the same model
    fingerprint (the standardisation is outside the state dict), so the second reused the
    first one's AutoAttack state: apgd-ce 0.4375 reported where a fresh run gives 0.0."""
    from dard_plugin import evaluate

    teacher = load_teacher("dard-fmnist-teacher")
    x, y = load_dataset("fashion-mnist", train=False, n_examples=8)
    state = tmp_path / "aa.json"
    options = {"eps": 0.1, "attacks": ["apgd-ce"], "verbose": False, "state_path": state}
    evaluate(art(teacher, preprocessing=(0.5, 0.25)), x, y, **options)
    with pytest.raises(ValueError, match="state_path"):
        evaluate(art(teacher, preprocessing=(0.9, 0.1)), x, y, **options)


@pytest.mark.parametrize("role", ["evaluate", "student"])
def test_postprocessing_defences_are_refused_not_skipped(role: str) -> None:
    """``evaluate`` read an ART classifier as its model behind its standardisation and
    skipped its postprocessing defences (GaussianNoise(scale=5): predict 45.3%, evaluate's
    clean 73.4%); the trainers skipped them too."""
    from art.defences.postprocessor import GaussianNoise

    from dard_plugin import evaluate

    noisy = art(create("tiny-cnn", num_classes=10), postprocessing_defences=[GaussianNoise(5.0)])
    x, y = load_dataset("fashion-mnist", train=False, n_examples=8)
    if role == "evaluate":
        with pytest.raises(ValueError, match=r"model: .*GaussianNoise.*cannot be evaluated"):
            evaluate(noisy, x, y, eps=0.1, verbose=False)
    else:
        with pytest.raises(ValueError, match=r"classifier: .*GaussianNoise.*cannot be trained"):
            SATTrainer(noisy, verbose=False)
