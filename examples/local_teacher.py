"""A teacher from a local checkpoint file, loaded safely, then distilled (offline).

Checkpoints from elsewhere come in several shapes: a bare ``state_dict``, a dict holding
one beside other entries (``{"state_dict": ..., "epoch": ...}``, as many training scripts
save), keys prefixed ``module.`` by DistributedDataParallel, and a file this package wrote
with ``save_model`` (which records its architecture). Every one loads with
``weights_only=True``: a pickle that would run code is refused, never executed.

The example writes each shape from the shipped teacher's weights (standing in for a
teacher trained elsewhere), loads it (``load_checkpoint`` with the architecture's name, or
``load_model`` for a file that records it), checks that each predicts exactly as the
original, shows a pickle that would create a file refused (the file does not appear), then
distils a small student from the loaded teacher with DARD and evaluates both.

    python examples/local_teacher.py --n-train 5000 --epochs 3 --out runs/local-teacher
    python examples/local_teacher.py --fast     # seconds: 256 images, 1 epoch, 2 steps
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
from _common import parse_args

from dard_plugin import evaluate, load_teacher
from dard_plugin.recipes import distill, load_model, save_model
from dard_plugin.teachers import CheckpointError, load_checkpoint


class _RunsCode:
    """What an unsafe checkpoint holds: unpickling it would call ``Path.touch``."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return Path.touch, (str(self.marker),)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--n-train", type=int, default=5000)
    parser.add_argument("--n-test", type=int, default=500)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--steps", type=int, default=10, help="attack steps in training")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="runs/local_teacher")
    args = parse_args(parser, fast={"n_train": 256, "n_test": 32, "epochs": 1, "steps": 2})
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    original = load_teacher("dard-fmnist-teacher")  # stands in for a teacher from elsewhere
    weights = original.state_dict()
    shapes = {
        "bare.pt": weights,
        "wrapped.pt": {"state_dict": weights, "epoch": 30, "best_acc": 0.72},
        "ddp.pt": {"model": {f"module.{k}": v for k, v in weights.items()}},
    }
    probe = torch.rand(8, 1, 28, 28, generator=torch.Generator().manual_seed(args.seed))
    with torch.no_grad():
        expected = original(probe)
    loaded = {}
    for name, payload in shapes.items():
        torch.save(payload, out / name)
        loaded[name] = load_checkpoint(out / name, "teacher-cnn", num_classes=10)
    save_model(out / "recorded.pt", original, "teacher-cnn", 10)
    loaded["recorded.pt"] = load_model(str(out / "recorded.pt"))  # it records its arch
    for name, model in loaded.items():
        with torch.no_grad():
            same = torch.equal(model(probe), expected)
        print(f"{name:12s} loaded (weights_only=True), frozen: {not model.training}, "
              f"predicts as the original: {same}")  # fmt: skip
        assert same, name

    marker = out / "this-file-means-code-ran"
    marker.unlink(missing_ok=True)
    torch.save({"state_dict": weights, "payload": _RunsCode(marker)}, out / "unsafe.pt")
    try:
        load_checkpoint(out / "unsafe.pt", "teacher-cnn", num_classes=10)
    except CheckpointError as error:
        print(f"unsafe.pt    refused: {str(error).splitlines()[0][:110]}...")
    else:
        raise SystemExit("unsafe.pt was loaded: it should have been refused")
    print(f"the code in unsafe.pt ran: {marker.exists()}")
    assert not marker.exists()

    teacher = loaded["wrapped.pt"]
    result = distill(
        method="dard",
        teacher=teacher,
        n_train=args.n_train,
        n_val=min(1000, args.n_test),
        epochs=args.epochs,
        steps=args.steps,
        seed=args.seed,
        out_dir=out / "student",
        overwrite=True,
        verbose=not args.fast,
    )
    from dard_plugin.data import load_dataset

    x_test, y_test = load_dataset("fashion-mnist", train=False, n_examples=args.n_test)
    summary = {}
    for label, model in {"teacher (wrapped.pt)": teacher, "DARD student": result.student}.items():
        report = evaluate(model, x_test, y_test, eps=0.1, attacks=("clean", "pgd"),
                          seed=args.seed, model_name=label, verbose=False)  # fmt: skip
        summary[label] = report.to_dict()["clean_accuracy"], report.to_dict()["robust_accuracy"]
        print(report.to_markdown())
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    print(f"written: {out / 'summary.json'} and the student's run in {out / 'student'}")


if __name__ == "__main__":
    main()
